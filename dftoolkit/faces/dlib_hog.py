"""dlib backend: the HOG frontal face detector and the 68-point shape predictor (DeepfakeBench's setup)."""

from __future__ import annotations

import os

import numpy as np

from dftoolkit.faces.assets import dlib_68_predictor
from dftoolkit.faces.base import FACES_INSTALL, FaceBackend, Faces, register_backend

__all__ = ["DlibBackend"]


@register_backend
class DlibBackend(FaceBackend):
    """dlib's HOG + linear SVM frontal face detector, then its iBUG 68-point shape predictor.

    Scores: the detector gives each box an SVM margin (0 is dlib's default decision threshold; clear
    faces reach 1-3); the score is its logistic ``1 / (1 + exp(-margin))``, so a score of 0.5 is
    dlib's own decision. ``threshold`` is the smallest margin kept: the default 0 is dlib's (and
    DeepfakeBench's) setting; -0.5 (scores down to 0.38) finds the face of the 1280x720 screencast
    sample on 32/32 sampled frames instead of 25/32, but also returns more boxes on non-faces, for a
    caller to filter by score. (With ``upsample=1`` even the default keeps a box on the mission patch
    of astronaut.png, score 0.53; the face scores 0.76.)

    dlib holds Python's GIL while it runs: threads give no speed-up, use processes.

    Args:
        upsample: times the image is upsampled by 2 before detection (1 as DeepfakeBench; each step
            finds faces half as large, at about 4x the cost).
        threshold: smallest SVM margin kept (``adjust_threshold`` of dlib's ``run``).
        predictor: path of ``shape_predictor_68_face_landmarks.dat`` (default: fetched, see
            :func:`~dftoolkit.faces.assets.dlib_68_predictor`).
    """

    name = "dlib"
    description = "dlib HOG frontal face detector + 68-point shape predictor (CPU)"

    def __init__(
        self, *, upsample: int = 1, threshold: float = 0.0, predictor: str | os.PathLike[str] | None = None
    ) -> None:
        try:
            import dlib
        except ImportError as e:
            raise ImportError(f"the dlib backend needs dlib (dlib-bin): {FACES_INSTALL}") from e
        self.upsample = upsample
        self.threshold = threshold
        self._rectangle = dlib.rectangle
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor or dlib_68_predictor()))

    def detect(self, image: np.ndarray) -> Faces:
        rects, margins, _ = self._detector.run(np.ascontiguousarray(image), self.upsample, self.threshold)
        h, w = image.shape[:2]
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32)
        boxes = np.clip(boxes.reshape(-1, 4), 0, [w, h, w, h]).astype(np.float32)
        scores = (1 / (1 + np.exp(-np.asarray(margins, np.float64)))).astype(np.float32)
        return Faces(boxes, scores)

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        out = np.zeros((len(boxes), 68, 2), np.float32)
        for k, (x0, y0, x1, y1) in enumerate(np.round(np.asarray(boxes, np.float64)).astype(int).tolist()):
            shape = self._predictor(image, self._rectangle(x0, y0, x1 - 1, y1 - 1))
            out[k] = [(p.x, p.y) for p in shape.parts()]
        return out
