"""Detection policy over scales and frames: tracked ROI, downscaled frame, then tiles.

Faces are small in big frames (a 80 px webcam inset in a 1280x720 screencast) and large in close-ups;
no single detector call finds both (see ``shared/design/OFFLINE_ASSETS.md``). The cascade runs a
backend's detector on the cheapest view that can work and falls back to finer ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dftoolkit.faces import tracking
from dftoolkit.faces.base import FACE_BACKENDS, FaceBackend, Faces

__all__ = ["DetectionCascade", "nms"]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(K, 4)`` ``x0, y0, x1, y1`` pixels.
        scores: ``(K,)``.
        iou: boxes overlapping a kept, higher-scoring box by more than this are dropped.

    Returns:
        ``(M,)`` int64 indices of the kept boxes, by decreasing score.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlap = tracking.iou(boxes, boxes)
    keep = []
    while len(order):
        keep.append(order[0])
        order = order[1:][overlap[order[0], order[1:]] <= iou]
    return np.asarray(keep, np.int64)


class DetectionCascade:
    """Find faces with a backend at the scale that works, then place landmarks at full resolution.

    For one image (:meth:`detect`):

    1. given the previous box of the tracked face: a square ROI around it (``roi_scale`` x its
       longer side), downscaled so the face is at most ``roi_face`` px; done if a face is found;
    2. else the whole frame, downscaled so its longer side is at most ``max_side``;
    3. if still nothing: ``tiles`` (rows, columns) overlapping by 25%, each resized so its longer side
       is ``max_side``; boxes merged by NMS;
    4. faces found by 2 or 3 are re-detected in their own ROI view (as in 1), where the detector sees
       them at a better scale and boxes them more precisely;
    5. the backend's ``landmarks`` on the boxes, in the original image. Faces whose landmarks come back
       NaN (the mesh backend found no face in the box) are dropped.

    Boxes smaller than ``min_face`` px (in the original image) are dropped. :meth:`detect_video`
    passes each frame the largest box of the frame before. The ROI view is never upscaled: the
    backends here resize their input themselves (MediaPipe to 128/192 px) or upsample on request
    (dlib's ``upsample``), so a larger view only costs time.

    Args:
        backend: a :class:`FaceBackend` or a registered backend name (built with default options).
        max_side: longer side of the full-frame and tile views in pixels.
        roi_scale: ROI side as a multiple of the previous box's longer side.
        min_face: smallest face kept, px in the original image.
        tiles: ``(rows, columns)`` of the tile pass; ``(1, 1)`` or ``None`` disables it.
        roi_face: largest face size in px in the ROI view (bigger faces are downscaled to it).
    """

    def __init__(
        self,
        backend: FaceBackend | str,
        *,
        max_side: int = 640,
        roi_scale: float = 2.5,
        min_face: int = 24,
        tiles: tuple[int, int] | None = (2, 2),
        roi_face: int = 128,
    ) -> None:
        self.backend = FACE_BACKENDS.get(backend)() if isinstance(backend, str) else backend
        self.max_side = max_side
        self.roi_scale = roi_scale
        self.min_face = min_face
        self.tiles = tiles
        self.roi_face = roi_face

    def detect(self, image: np.ndarray, previous: np.ndarray | None = None) -> Faces:
        """Faces with landmarks in an ``(H, W, 3)`` uint8 RGB image.

        Args:
            image: the frame.
            previous: ``(4,)`` box ``x0, y0, x1, y1`` of the tracked face in the previous frame, or
                None (or NaN) to search the whole frame.
        """
        faces = Faces.empty()
        if previous is not None and np.all(np.isfinite(previous)):
            faces = self._roi(image, np.asarray(previous, np.float64))
        if not len(faces):
            faces = self._view(image, (0, 0, image.shape[1], image.shape[0]))
            if not len(faces):
                faces = self._tiled(image)
            faces = self._refine(image, faces)
        if not len(faces):
            return Faces.empty()
        landmarks = self.backend.landmarks(image, faces.boxes)
        ok = np.isfinite(landmarks).all(axis=(1, 2))
        return Faces(faces.boxes[ok], faces.scores[ok], landmarks[ok])

    def detect_video(self, frames: Sequence[np.ndarray]) -> list[Faces]:
        """One :class:`Faces` per frame, in order, each frame seeded with the largest face before it."""
        out: list[Faces] = []
        previous = None
        for frame in frames:
            faces = self.detect(frame, previous)
            out.append(faces)
            largest = faces.largest()
            if largest is not None:
                previous = faces.boxes[largest]
        return out

    # -- views ---------------------------------------------------------------------------------

    def _run(self, image: np.ndarray, affine: np.ndarray, size: tuple[int, int]) -> Faces:
        """Detect in ``image`` warped by the 2x3 ``affine`` (a scale and a shift) to ``size`` (w, h);
        boxes mapped back to the image, clipped, and filtered by ``min_face``."""
        interpolation = cv2.INTER_AREA if affine[0, 0] < 1 else cv2.INTER_LINEAR
        view = cv2.warpAffine(image, affine, size, flags=interpolation)
        found = self.backend.detect(view)
        h, w = image.shape[:2]
        scale, shift = affine[0, 0], affine[:, 2]
        boxes = (found.boxes - np.tile(shift, 2)) / scale
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        keep = np.min(boxes[:, 2:] - boxes[:, :2], axis=1) >= self.min_face
        return Faces(boxes[keep], found.scores[keep].astype(np.float32))

    def _view(self, image: np.ndarray, region: tuple[float, ...], grow: bool = False) -> Faces:
        """Detect in ``region`` (x0, y0, x1, y1) resized to ``max_side`` (upscaled only if ``grow``)."""
        x0, y0, x1, y1 = region
        scale = self.max_side / max(x1 - x0, y1 - y0)
        if not grow:
            scale = min(scale, 1.0)
        affine = np.array([[scale, 0, -scale * x0], [0, scale, -scale * y0]])
        size = (max(round(scale * (x1 - x0)), 1), max(round(scale * (y1 - y0)), 1))
        return self._run(image, affine, size)

    def _roi(self, image: np.ndarray, box: np.ndarray) -> Faces:
        face = max(box[2] - box[0], box[3] - box[1], 1.0)
        scale = min(self.roi_face / face, 1.0)
        side = round(self.roi_scale * face * scale)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        affine = np.array([[scale, 0, side / 2 - scale * cx], [0, scale, side / 2 - scale * cy]])
        return self._run(image, affine, (side, side))

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        """Re-detect each box in its ROI view: boxes of faces found small in a coarse view are imprecise."""
        boxes, scores = faces.boxes.copy(), faces.scores.copy()
        for k, box in enumerate(faces.boxes):
            near = self._roi(image, box.astype(np.float64))
            if len(near):
                overlap = tracking.iou(box[None], near.boxes)[0]
                j = int(np.argmax(overlap))
                if overlap[j] > 0.3:
                    boxes[k], scores[k] = near.boxes[j], near.scores[j]
        return Faces(boxes, scores)

    def _tiled(self, image: np.ndarray) -> Faces:
        if self.tiles is None or tuple(self.tiles) == (1, 1):
            return Faces.empty()
        h, w = image.shape[:2]
        rows, cols = self.tiles
        th, tw = min(h, 1.25 * h / rows), min(w, 1.25 * w / cols)
        found = [
            self._view(image, (x, y, x + tw, y + th), grow=True)
            for y in np.linspace(0, h - th, rows)
            for x in np.linspace(0, w - tw, cols)
        ]
        boxes = np.concatenate([f.boxes for f in found])
        scores = np.concatenate([f.scores for f in found])
        keep = nms(boxes, scores)
        return Faces(boxes[keep], scores[keep])
