"""The config options of the stage commands: ``--config FILE``, ``--set KEY=VALUE`` and one option per
config field, whose default and help come from the dataclass (:mod:`dftoolkit.config`).

Precedence: the dataclass defaults < the ``--config`` file < options given on the command line <
``--set``. :func:`resolve` builds the config before anything is written; a bad file, key or value
exits 2 with one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer

from dftoolkit.cli._render import fail
from dftoolkit.config import CONFIG_FILE, PairError, describe_config, field_help, load_config
from dftoolkit.workers import ENGINES, check_engine

__all__ = ["config_option", "given", "option", "resolve", "set_option"]

C = TypeVar("C")


def option(cls: type, name: str, *param_decls: str, **options: Any) -> Any:
    """A typer option for field ``name`` of the config class ``cls``: the field's help, and its default
    (a list as comma-separated text, a mapping as ``KEY=VALUE,...``) unless ``options`` give one.

    Pass the value to :func:`resolve` through :func:`given`: only a value typed on the command line
    overrides the config file.
    """
    if "default" not in options:
        options["default"] = _text(describe_config(cls)[name].default)
    return typer.Option(options.pop("default"), *param_decls, help=field_help(cls, name), **options)


def _text(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(f"{v[0]}={v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return value


def config_option() -> Any:
    """The ``--config FILE`` option."""
    return typer.Option(
        None,
        "--config",
        metavar="FILE",
        help=f"Settings from a YAML or JSON file, or from an output folder's {CONFIG_FILE} (a rerun "
        "with the settings it records); options given override them.",
    )


def engine_option() -> Any:
    """The ``--engine`` option of the per-video stages (:func:`~dftoolkit.workers.run_stage`)."""
    return typer.Option(
        "local",
        help=f"How the videos are spread: {' or '.join(ENGINES)} (local: a process pool; ray: Ray actors "
        "on RAY_ADDRESS's cluster, else a local Ray).",
        callback=_check_engine,
    )


def _check_engine(value: str) -> str:
    try:
        check_engine(value)
    except ValueError as err:
        fail(f"--{err}")
    return value


def workers_option() -> Any:
    """The ``--workers`` option of the per-video stages."""
    return typer.Option(0, min=0, help="Processes, or Ray actors with --engine ray (0: one per core).")


def set_option(example: str, what: str = "KEY=VALUE") -> Any:
    """The repeatable ``--set KEY=VALUE`` option; ``example`` shows one."""
    return typer.Option(
        None,
        "--set",
        metavar=what,
        help=f"A setting, over --config and the options, repeatable, e.g. {example}. KEY: a field of the "
        "config (FIELD.KEY: one entry of a mapping); VALUE: text, commas separate list items.",
    )


def given(ctx: typer.Context, **values: Any) -> dict[str, Any]:
    """The ``values`` (parameter name -> value) of the parameters given on the command line (or the
    environment); name each parameter as its config field."""
    return {
        name: value
        for name, value in values.items()
        if ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")
    }


def resolve(
    cls: type[C],
    config_file: Path | None,
    overrides: Mapping[str, Any],
    settings: Iterable[str] | None,
    *,
    example: str,
    shape: str = "KEY=VALUE",
) -> C:
    """The config ``cls`` from its defaults, ``config_file``, ``overrides`` (:func:`given` options) and
    ``settings`` (``--set``); a bad file, key or value :func:`fail`s with one line (exit 2)."""
    try:
        return load_config(cls, config_file, overrides, settings or ())
    except PairError as err:
        fail(f"--set {err.pair!r}: expected {shape}, e.g. {example}")
    except (ValueError, FileNotFoundError) as err:
        fail(err)
