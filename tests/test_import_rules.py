"""The layering of ARCHITECTURE.md, read from the source with ``ast`` (function-local imports too):
generators and quality never import each other, and face geometry (``dftoolkit.faces``) imports
none of the stages built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "generators": ("dftoolkit.quality",),
    "quality": ("dftoolkit.generators",),
    "dftoolkit/faces": ("dftoolkit.generators", "dftoolkit.quality", "dftoolkit.preprocess"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file, by line (``from a import b``: ``a`` and ``a.b``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return sorted(found)


def _cases() -> list:
    cases = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            cases.append(pytest.param(name, forbidden, id=name))
    return cases


@pytest.mark.parametrize(("name", "forbidden"), _cases())
def test_no_import_across_the_layers(name, forbidden):
    bad = [
        f"{name}:{line} imports {module}"
        for line, module in imported_modules(ROOT / name)
        if any(module == f or module.startswith(f"{f}.") for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_the_walk_sees_function_local_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from dftoolkit.generators.base import METHODS\n\nimport dftoolkit.quality\n"
    )
    assert imported_modules(source) == [
        (2, "dftoolkit.generators.base"),
        (2, "dftoolkit.generators.base.METHODS"),
        (4, "dftoolkit.quality"),
    ]
