"""Corpus loaders: one per public corpus, behind one interface and one registry.

>>> from dftoolkit.corpora import index_corpus, list_corpora
>>> manifest = index_corpus("ffpp", "/data/FaceForensics++", compression="c23")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from dftoolkit.corpora.base import CORPORA, Corpus, CorpusError, ExpectedFolder, ValidationReport
from dftoolkit.manifest import Manifest

__all__ = [
    "CORPORA",
    "Corpus",
    "CorpusError",
    "ExpectedFolder",
    "ValidationReport",
    "describe_corpora",
    "get_corpus",
    "index_corpus",
    "list_corpora",
    "validate_corpus",
]

# Each module registers its loader(s) with @register_corpus when imported.
LOADER_MODULES = (
    "ffpp",
    "celebdf",
    "dfdc",
    "deeperforensics",
    "wilddeepfake",
    "dftimit",
    "uadfv",
    "toolkit",
    "folder",
)
for _module in LOADER_MODULES:
    importlib.import_module(f"{__name__}.{_module}")


def list_corpora() -> list[str]:
    """The registered corpus names, sorted."""
    return CORPORA.names()


def describe_corpora() -> dict[str, str]:
    """Corpus name -> one-line description."""
    return CORPORA.describe()


def get_corpus(name: str, **options: Any) -> Corpus:
    """A new loader registered as ``name``, built with ``options`` (KeyError listing the known names)."""
    return CORPORA.get(name)(**options)


def _root(root: str | os.PathLike[str]) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise CorpusError(f"{path}: corpus root is not a folder")
    return path.absolute()


def index_corpus(name: str, root: str | os.PathLike[str], **options: Any) -> Manifest:
    """Index the corpus ``name`` at ``root`` into a Manifest (no decoding)."""
    return get_corpus(name).index(_root(root), **options)


def validate_corpus(
    name: str, root: str | os.PathLike[str], probe: bool = False, **options: Any
) -> ValidationReport:
    """Compare the tree at ``root`` with the official layout of ``name``."""
    return get_corpus(name).validate(_root(root), probe=probe, **options)
