"""Typed stage configs: dataclasses read from YAML or JSON, overridden by ``KEY=VALUE`` settings, and
recorded in each stage's output folder.

A config is a dataclass whose fields are declared with :func:`setting` (a default, a help text and,
optionally, the names the field takes) and whose ``__post_init__`` calls :func:`normalise` and then
checks the values. :func:`load_config` builds one from its defaults, then a file, then overrides,
then ``KEY=VALUE`` settings; each value is coerced to its field's type hint:

- ``int``, ``float``, ``str``: the value, or its text (``"3"``, ``"0.5"``);
- ``bool``: also ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``;
- ``X | None``: also ``none`` or ``null``;
- ``tuple[X, ...]``: a list, or a comma-separated text (``face,mouth``);
- ``tuple[tuple[str, X], ...]``, ``dict[str, X]``, ``Mapping[str, X]``: a mapping,
  ``[[key, value], ...]``, a JSON object, or ``key=value,key=value`` text;
- ``Any``: the value; in a ``KEY=VALUE`` setting, JSON when it parses (``3``, ``true``, ``null``,
  ``["a"]``), else a comma list when it has commas, else the text.

A key ``FIELD.ENTRY`` sets one entry of a mapping field (``sizes.face=256``,
``method_options.fomm.checkpoint=vox.pth``). An unknown key, or a value that does not fit, is a
:class:`ConfigError` naming it (and, for a key, the valid ones).

Each stage writes its resolved config to ``<output folder>/config.yaml`` (:func:`write_config`);
``load_config(Config, folder)`` reads it back, so a run can be repeated from its output.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import json
import numbers
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dftoolkit import __version__
from dftoolkit.errors import DftoolkitError
from dftoolkit.fileio import atomic_write_text

__all__ = [
    "CONFIG_FILE",
    "ConfigError",
    "FieldInfo",
    "PairError",
    "comma_list",
    "config_to_dict",
    "describe_config",
    "field_help",
    "load_config",
    "normalise",
    "override",
    "parse_pairs",
    "parse_value",
    "read_config_file",
    "setting",
    "write_config",
]

CONFIG_FILE = "config.yaml"
"""The file in which every stage records its resolved config, in its output folder."""

C = TypeVar("C")
Overrides = Mapping[str, Any] | Iterable[tuple[str, Any]]

_NONE = ("none", "null")
_BOOLS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
_WHAT = {int: "a whole number", float: "a number", bool: "true or false", str: "a text"}


class ConfigError(DftoolkitError, ValueError):
    """A config file, key or value that does not fit the config; the message names it."""


class PairError(ConfigError):
    """A ``KEY=VALUE`` setting without ``=`` or without a KEY; ``pair`` is the setting as given."""

    def __init__(self, pair: str) -> None:
        super().__init__(f"{pair!r}: expected KEY=VALUE")
        self.pair = pair


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One field of a config: its name, type hint (as text), default, help and the names it takes."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...]


# -- declaring and describing -----------------------------------------------------------------------


def setting(default: Any, help: str, *, choices: Any = None) -> Any:
    """A config field with its ``default`` (a mutable one is copied for each instance), its ``help``
    and optionally its ``choices``: the names it takes, as a sequence, a
    :class:`~dftoolkit.registry.Registry`, or ``"module:NAME"`` of either (imported when asked for).
    """
    metadata = {"help": help, "choices": choices}
    if isinstance(default, dict | list | set):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def describe_config(cls: type) -> dict[str, FieldInfo]:
    """Field name -> :class:`FieldInfo` of every field of the config class ``cls``, in order."""
    hints = _hints(cls)
    return {
        f.name: FieldInfo(
            f.name, _type_text(hints[f.name]), _default(f), f.metadata.get("help", ""), _choices(f)
        )
        for f in dataclasses.fields(cls)
    }


def field_help(cls: type, name: str) -> str:
    """The help of field ``name`` of ``cls``, followed by the names it takes when it declares them."""
    info = describe_config(cls)[name]
    return f"{info.help} Choices: {', '.join(info.choices)}." if info.choices else info.help


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _choices(f: dataclasses.Field) -> tuple[str, ...]:
    choices = f.metadata.get("choices")
    if isinstance(choices, str):
        module, _, attribute = choices.partition(":")
        choices = getattr(importlib.import_module(module), attribute)
    if choices is None:
        return ()
    return tuple(choices.names() if hasattr(choices, "names") else choices)


# -- KEY=VALUE text --------------------------------------------------------------------------------


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated text: ``"a, b,"`` -> ``["a", "b"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_value(text: str) -> Any:
    """The value of a ``KEY=VALUE`` text: JSON when it parses (``3``, ``0.5``, ``true``, ``null``,
    ``["c23","c40"]``), else the list of its items when it has commas (``c23,c40``), else itself."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return comma_list(text) if "," in text else text


def parse_pairs(pairs: Iterable[str], *, dotted: bool = False) -> list[tuple[str, str]]:
    """``["a=1", "b.c=x"]`` -> ``[("a", "1"), ("b.c", "x")]``, in order; the VALUE texts are kept.

    A pair without ``=`` or with an empty KEY (with ``dotted``: a KEY not of the form ``NAME.KEY``)
    raises :class:`PairError`.
    """
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        owner, dot, name = key.partition(".")
        if not (sep and key) or (dotted and not (owner and dot and name)):
            raise PairError(pair)
        parsed.append((key, value))
    return parsed


# -- building ----------------------------------------------------------------------------------------


def load_config(
    cls: type[C],
    path: str | os.PathLike[str] | None = None,
    overrides: Overrides = (),
    settings: Iterable[str] = (),
) -> C:
    """A ``cls`` made from its defaults, then the file at ``path``, then ``overrides``, then
    ``settings``; a later one wins.

    Args:
        cls: a config dataclass.
        path: a YAML or JSON file of ``{key: value}``, or an output folder (its :data:`CONFIG_FILE`).
        overrides: ``{key: value}`` or ``(key, value)`` pairs, e.g. a command's options.
        settings: ``KEY=VALUE`` texts (``--set``), whose ``Any`` values are parsed (:func:`parse_value`).

    Raises:
        ConfigError: a file that cannot be read, an unknown key or a value that does not fit (the
            message names the file and the key); PairError for a malformed setting.
        ValueError: the values together are refused by ``cls`` (its ``__post_init__``).
    """
    values = {f.name: _default(f) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if path is not None:
        file = Path(path) / CONFIG_FILE if Path(path).is_dir() else Path(path)
        try:
            _apply(cls, values, read_config_file(file).items(), text=False)
        except ConfigError as err:
            raise ConfigError(f"{file}: {err}") from None
    _apply(cls, values, _items(overrides), text=False)
    _apply(cls, values, parse_pairs(settings), text=True)
    return cls(**values)


def override(config: C, overrides: Overrides = (), settings: Iterable[str] = ()) -> C:
    """``config`` with ``overrides`` and then ``settings`` applied, as in :func:`load_config`."""
    cls = type(config)
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    _apply(cls, values, _items(overrides), text=False)
    _apply(cls, values, parse_pairs(settings), text=True)
    return cls(**values)


def normalise(config: Any) -> None:
    """Coerce every field of the config instance ``config`` to its type hint, in place (lists become
    tuples, a mapping the pairs of a pairs field, ...); call it first in ``__post_init__``."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        object.__setattr__(config, f.name, _coerce(getattr(config, f.name), hints[f.name], f.name, False))


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``{key: value}`` mapping of a YAML or JSON file; ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it ({err})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _items(overrides: Overrides) -> Iterable[tuple[str, Any]]:
    return overrides.items() if isinstance(overrides, Mapping) else overrides


def _apply(cls: type, values: dict[str, Any], items: Iterable[tuple[str, Any]], *, text: bool) -> None:
    """Set ``values[key]`` for each ``(key, value)``; a dotted key sets an entry of a mapping field."""
    hints = _hints(cls)
    for key, value in items:
        name, *path = str(key).split(".")
        name = name.replace("-", "_")
        if name not in values:
            raise ConfigError(f"unknown {cls.__name__} setting {key!r}; settings: {', '.join(values)}")
        if path:
            entries = _with_entry(values[name], hints[name], path, value, str(key), text)
            values[name] = _coerce(entries, hints[name], name, False)
        else:
            values[name] = _coerce(value, hints[name], name, text)


def _with_entry(current: Any, hint: Any, path: list[str], value: Any, key: str, text: bool) -> dict:
    """The mapping ``current`` with the entry at ``path`` set to ``value`` (coerced to its hint)."""
    entry = _entry_hint(hint)
    if entry is None:
        raise ConfigError(f"{key!r}: {key.rsplit('.', len(path))[0]} has no entries; set it whole")
    mapping, _ = _mapping(current, key)
    head, *rest = path
    if rest:
        mapping[head] = _with_entry(mapping.get(head) or {}, entry, rest, value, key, text)
    else:
        mapping[head] = _coerce(value, entry, key, text)
    return mapping


def _entry_hint(hint: Any) -> Any:
    """The value hint of a mapping hint (``dict[str, X]`` or ``tuple[tuple[str, X], ...]``), else None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (dict, Mapping):
        return args[1] if args else Any
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and _is_pair(args[0]):
        return typing.get_args(args[0])[1]
    return None


def _is_pair(hint: Any) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and len(args) == 2 and args[0] is str and args[1] is not Ellipsis


def _coerce(value: Any, hint: Any, key: str, text: bool) -> Any:
    """``value`` as ``hint`` says (see the module's table); ``text``: it came from a KEY=VALUE text."""
    if hint is Any:
        return parse_value(value) if text and isinstance(value, str) else value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(value, args, key, text)
    if hint in _WHAT:
        return _scalar(value, hint, key)
    entry = _entry_hint(hint)
    if entry is not None:
        mapping, entry_text = _mapping(value, key)
        pairs = ((k, _coerce(v, entry, f"{key}.{k}", text and entry_text)) for k, v in mapping.items())
        return dict(pairs) if origin in (dict, Mapping) else tuple(pairs)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, str):
            value = comma_list(value)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list or a comma-separated text, got {value!r}")
        return tuple(_coerce(item, args[0], key, text) for item in value)
    raise TypeError(f"{key}: config fields of type {_type_text(hint)} are not supported")


def _union(value: Any, args: tuple, key: str, text: bool) -> Any:
    optional = type(None) in args
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    kinds = [arg for arg in args if arg is not type(None)]
    for kind in kinds:
        try:
            return _coerce(value, kind, key, text)
        except ConfigError:
            continue
    what = " or ".join([_WHAT.get(kind, _type_text(kind)) for kind in kinds] + (["none"] if optional else []))
    raise ConfigError(f"{key}: expected {what}, got {value!r}")


def _scalar(value: Any, hint: type, key: str) -> Any:
    wrong = ConfigError(f"{key}: expected {_WHAT[hint]}, got {value!r}")
    if isinstance(value, str):
        word = value.strip()
        if hint is str:
            return value
        if hint is bool:
            if word.lower() not in _BOOLS:
                raise wrong
            return _BOOLS[word.lower()]
        try:
            return hint(word)
        except ValueError:
            raise wrong from None
    if isinstance(value, bool):
        if hint is bool:
            return value
        raise wrong
    if hint is bool:
        if value in (0, 1):
            return bool(value)
        raise wrong
    if hint is str and isinstance(value, numbers.Number | os.PathLike):
        return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if hint is int and isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    if hint is float and isinstance(value, numbers.Real):
        return float(value)
    raise wrong


def _mapping(value: Any, key: str) -> tuple[dict[str, Any], bool]:
    """A mapping value as a new dict, and whether its entries are still texts to parse."""
    if value is None:
        return {}, False
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}, False
    if isinstance(value, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        return {str(k): v for k, v in value}, False
    if isinstance(value, str):
        if value.strip().startswith("{"):
            try:
                decoded = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                decoded = None
            if isinstance(decoded, dict):
                return {str(k): v for k, v in decoded.items()}, False
        items = [item.partition("=") for item in comma_list(value)]
        if all(sep and k.strip() for k, sep, _ in items):
            return {k.strip(): v.strip() for k, _, v in items}, True
    raise ConfigError(f"{key}: expected a mapping or KEY=VALUE,... text, got {value!r}")


# -- recording -------------------------------------------------------------------------------------


def config_to_dict(config: Any) -> dict[str, Any]:
    """``{field: value}`` of a config in plain YAML/JSON types: tuples become lists, pairs mappings."""
    hints = _hints(type(config))
    return {f.name: _plain(getattr(config, f.name), hints[f.name]) for f in dataclasses.fields(config)}


def _plain(value: Any, hint: Any) -> Any:
    entry = _entry_hint(hint)
    if entry is not None and value is not None:
        return {k: _plain(v, entry) for k, v in (value.items() if isinstance(value, Mapping) else value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v, Any) for k, v in value.items()}
    if isinstance(value, list | tuple):
        args = typing.get_args(hint)
        item = args[0] if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis else Any
        return [_plain(v, item) for v in value]
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def write_config(folder: str | os.PathLike[str], config: Any) -> Path:
    """Write ``config`` to ``folder/config.yaml`` (atomically) and return the file's path."""
    path = Path(folder) / CONFIG_FILE
    header = (
        f"# {type(config).__name__}: the resolved settings of the last run in this folder "
        f"(dftoolkit {__version__}); --config reads it back\n"
    )
    body = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True, width=110)
    atomic_write_text(path, header + body)
    return path
