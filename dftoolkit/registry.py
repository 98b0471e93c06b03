"""Name -> implementation registries (corpora, face backends, methods, blends, perturbations, metrics).

The CLI, configs and docs list what exists from these, so adding an implementation is one
decorator (or one ``register`` call) in its own module.

Every registry ``X`` is used through the same three module-level functions beside it:

- ``list_X() -> list[str]``: the registered names, sorted;
- ``describe_X() -> dict[str, str]``: name -> one-line description, in the same order;
- ``get_X(name, *material, **options)``: a ready instance, made from the registered
  implementation with the material (positional inputs an instance is made for, such as a
  manipulation's source patches and target track) and the options: a class is built, a function
  bound (``functools.partial``); a spec with no options (a frozen dataclass) is returned as is.
  An unknown name is a KeyError listing the known ones.

The :class:`Registry` itself (``CORPORA``, ``METHODS``, ...) stays available for the code that
needs the registered object, e.g. a class to inspect its options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """A named collection of implementations of one kind (``kind`` names it in errors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` as ``name``, described by ``description`` or its docstring."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            doc = (getattr(obj, "__doc__", None) or "").strip()
            self._entries[name] = Entry(name, obj, description or (doc.splitlines()[0] if doc else ""))
            return obj

        return add

    def get(self, name: str) -> T:
        """The implementation registered as ``name``; a KeyError lists the known names."""
        try:
            return self._entries[name].obj
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, sorted by name."""
        return {name: self._entries[name].description for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
