"""The face-analysis interface every backend implements.

A backend finds faces in one RGB image and puts 68 landmarks on them in the iBUG 300-W order
(0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth). Detection policy across frames
(downscaling, tiling, tracking) lives in :mod:`dftoolkit.faces.cascade`, not in backends; face geometry
(crops, alignment) in :mod:`dftoolkit.faces.geometry`, tracks in :mod:`dftoolkit.faces.tracking`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dftoolkit.registry import Registry

__all__ = ["FACE_BACKENDS", "FaceBackend", "Faces", "register_backend"]

# How to install the optional face backends: the `faces` extra brings dlib and the real dependencies of
# mediapipe and face-alignment; those two go in with --no-deps, as their declared ones conflict with
# this stack (requirements/nodeps.txt says why).
FACES_INSTALL = (
    "pip install 'dftoolkit[faces]' && pip install --no-deps mediapipe==0.10.21 face-alignment==1.5.0"
)


@dataclass
class Faces:
    """The faces found in one image (K faces, K may be 0).

    Attributes:
        boxes: ``(K, 4)`` float32 ``x0, y0, x1, y1`` in pixels of the image.
        scores: ``(K,)`` float32 detection confidence in [0, 1].
        landmarks: ``(K, 68, 2)`` float32 ``x, y`` pixels in iBUG order, or None when only detected.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 68, 2), np.float32))

    def largest(self) -> int | None:
        """Index of the face whose box has the largest area (ties: the first); None when there is none."""
        if not len(self):
            return None
        return int(np.argmax(np.prod(self.boxes[:, 2:] - self.boxes[:, :2], axis=1)))


class FaceBackend(ABC):
    """Detect faces and place 68 landmarks. Instances hold loaded models; use one per process."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def detect(self, image: np.ndarray) -> Faces:
        """Faces in an ``(H, W, 3)`` uint8 RGB image (``landmarks`` may be None)."""

    @abstractmethod
    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(K, 68, 2)`` float32 landmarks for the ``(K, 4)`` boxes of ``image``."""

    def analyse(self, image: np.ndarray) -> Faces:
        """Detect, then place landmarks on every face found."""
        faces = self.detect(image)
        if faces.landmarks is None:
            faces.landmarks = self.landmarks(image, faces.boxes) if len(faces) else Faces.empty().landmarks
        return faces

    def close(self) -> None:  # noqa: B027 - optional hook: release native resources
        """Release models (optional)."""


FACE_BACKENDS: Registry[type[FaceBackend]] = Registry("face backend")


def register_backend(cls: type[FaceBackend]) -> type[FaceBackend]:
    """Class decorator: make a backend available by its ``name``."""
    return FACE_BACKENDS.register(cls.name, cls.description)(cls)
