"""The user documentation in docs/ matches the code.

- every ``dftoolkit COMMAND`` written in a shell block or an inline code span is a registered
  command (a sub-command of a group too), and every option written after it is in that command's
  ``--help``;
- every relative link between the pages resolves (the file, and the heading of a ``#anchor``);
- every Python block compiles, and the blocks whose first line is ``# runs`` run (in a temporary
  folder, on the sample media or small models).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dftoolkit.cli import COMMANDS, app

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(dftoolkit [^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SHELL = {"bash", "sh", "console", "shell"}  # unlabelled blocks are listings, not commands
GLOBAL_OPTIONS = {"--quiet", "-q", "--version", "--help", "-h"}
STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1", "&"}


def _blocks(language: set[str]) -> list[tuple[str, int, str]]:
    """``(page name, index on the page, text)`` of every fenced block in one of ``language``."""
    found = []
    for page in PAGES:
        blocks = [m for m in FENCE.finditer(page.read_text()) if m.group(1) in language]
        found += [(page.name, i, m.group(2)) for i, m in enumerate(blocks)]
    return found


def _invocations() -> list[tuple[str, list[str]]]:
    """``(where, tokens after "dftoolkit")`` for every command line in the docs (shell blocks, their
    continuation lines joined and comments dropped, and inline code spans)."""
    calls = []
    for name, index, text in _blocks(SHELL):
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():
            tokens = shlex.split(line, comments=True)
            calls += [
                (f"{name} block {index}", tokens[i + 1 :]) for i, t in enumerate(tokens) if t == "dftoolkit"
            ]
    for page in PAGES:
        for span in INLINE.findall(FENCE.sub("", page.read_text())):
            calls.append((f"{page.name} `{span}`", shlex.split(span)[1:]))
    return calls


def _command(tokens: list[str]) -> tuple[list[str], Any, list[str]]:
    """The command path the tokens name, its click command, and the tokens that follow it."""
    tokens = [t for t in tokens if t not in GLOBAL_OPTIONS and t != "..."]
    group = typer.main.get_command(app)
    path, command = [], group
    while hasattr(command, "list_commands") and tokens and not tokens[0].startswith("-"):
        name = tokens.pop(0)
        sub = command.get_command(command.context_class(command), name)
        assert sub is not None, f"`dftoolkit {' '.join([*path, name])}` is not a command"
        path.append(name)
        command = sub
    return path, command, tokens


def _options(tokens: list[str]) -> list[str]:
    """The option names among the arguments (``--set`` once per use, ``=VALUE`` cut), up to a pipe or
    redirection."""
    names = []
    for token in tokens:
        if token in STOP:
            break
        token = token.strip("[]")
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", token):
            names.append(token.split("=", 1)[0])
    return names


HELP_CACHE: dict[tuple[str, ...], str] = {}


def _help(path: list[str]) -> str:
    """``dftoolkit PATH --help`` as printed (wide, so that no option name is cut)."""
    key = tuple(path)
    if key not in HELP_CACHE:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "240"}, terminal_width=240)
        assert result.exit_code == 0, result.output
        HELP_CACHE[key] = result.output
    return HELP_CACHE[key]


def test_docs_exist_and_cover_every_stage():
    names = {page.name for page in PAGES}
    expected = {"index.md", "corpora.md", "preprocess.md", "generate.md", "quality.md", "detectors.md"}
    assert expected | {"weights.md"} <= names
    named = {tokens[0] for _, tokens in _invocations() if tokens and not tokens[0].startswith("-")}
    assert set(COMMANDS) <= named, f"commands no page shows: {sorted(set(COMMANDS) - named)}"


def test_every_command_and_option_in_the_docs_exists():
    calls = _invocations()
    assert len(calls) > 80
    problems = []
    for where, tokens in calls:
        try:
            path, command, rest = _command(list(tokens))
        except AssertionError as err:
            problems.append(f"{where}: {err}")
            continue
        assert path, f"{where}: no command after dftoolkit"
        known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", _help(path)))
        params = {
            opt
            for p in command.get_params(command.context_class(command))
            for opt in p.opts + p.secondary_opts
        }
        for option in _options(rest):
            if option not in known or option not in params:
                problems.append(f"{where}: `dftoolkit {' '.join(path)}` has no option {option}")
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_command_and_option():
    with pytest.raises(AssertionError, match="nosuch"):
        _command(["nosuch", "x"])
    path, command, rest = _command(["--quiet", "samples", "fetch"])
    assert path == ["samples", "fetch"] and rest == [] and command.name == "fetch"
    path, command, rest = _command(["preprocess", "m.parquet", "-o", "faces/", "--crops", "face"])
    assert _options(rest) == ["-o", "--crops"]
    assert "--nosuch" not in _help(path) and "--crops" in _help(path) and command.name == "preprocess"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_resolves():
    links = 0
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            links += 1
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.is_file(), f"{page.name}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(linked), f"{page.name}: link to {target}: no such heading"
    assert links >= 20


PYTHON = _blocks({"python"})
RUNS = [block for block in PYTHON if block[2].startswith("# runs\n")]


@pytest.mark.parametrize("name,index,text", PYTHON, ids=[f"{n}-{i}" for n, i, _ in PYTHON])
def test_python_blocks_compile(name, index, text):
    compile(text, f"{name} python block {index}", "exec")


def test_some_blocks_run_on_every_page_but_weights():
    assert {name for name, _, _ in RUNS} >= {
        "index.md",
        "corpora.md",
        "preprocess.md",
        "generate.md",
        "quality.md",
        "detectors.md",
    }


@pytest.mark.parametrize("name,index,text", RUNS, ids=[f"{n}-{i}" for n, i, _ in RUNS])
def test_marked_python_blocks_run(name, index, text, tmp_path, monkeypatch, samples_manifest):
    monkeypatch.chdir(tmp_path)  # the examples write relative paths
    exec(compile(text, f"{name} python block {index}", "exec"), {"__name__": "docs_example"})
