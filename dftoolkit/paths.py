"""Corpus-relative paths: normalised, portable, and never escaping their root."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from dftoolkit.errors import DftoolkitError

__all__ = ["PathEscapeError", "normalise_relpath", "resolve_within"]


class PathEscapeError(DftoolkitError, ValueError):
    """A path is absolute, empty, or points outside the folder it must stay in."""


def normalise_relpath(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as a normalised POSIX relative path (``a/b/c.mp4``).

    Backslashes are treated as separators, ``.`` parts and repeated slashes are removed.
    Raises :class:`PathEscapeError` for empty, absolute (including ``C:``-style) paths and
    for paths whose ``..`` parts climb out of the root.
    """
    text = os.fspath(path).replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise PathEscapeError(f"path {text!r} must be relative to the corpus root")
    norm = posixpath.normpath(text)
    if norm == "." or norm == ".." or norm.startswith("../"):
        raise PathEscapeError(f"path {text!r} escapes the corpus root")
    return norm


def resolve_within(root: str | os.PathLike[str], relpath: str) -> Path:
    """Join ``root`` and ``relpath`` and check that the real path (symlinks followed) stays in ``root``.

    Returns the joined (absolute, unresolved) path. Raises :class:`PathEscapeError` when the
    path, or a symlink along it, leads outside ``root``.
    """
    root_path = Path(root).absolute()
    joined = root_path / normalise_relpath(relpath)
    real_root = root_path.resolve()
    real = joined.resolve()
    if real != real_root and real_root not in real.parents:
        raise PathEscapeError(f"{joined} resolves to {real}, outside the corpus root {real_root}")
    return joined
