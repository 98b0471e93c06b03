"""MediaPipe backend: BlazeFace detection and the 468-point face mesh, mapped to the iBUG 68 points.

The models ship inside the ``mediapipe==0.10.21`` wheel (legacy ``mp.solutions``), so the backend
runs offline on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dftoolkit.faces.base import FACES_INSTALL, FaceBackend, Faces, register_backend

__all__ = ["MESH_TO_IBUG68", "MediaPipeBackend"]

# Face-mesh vertex of each iBUG 68 point. Derived from data, not by eye: dlib's 68-point predictor
# (on dlib HOG boxes) and this backend's mesh (full-range BlazeFace boxes, crop_scale 1.5, crop 256)
# on 477 real faces: every frame of carphone_pristine (120) and jesper_webcam (68), every 4th frame
# of hello_720p (its webcam inset: the frame cropped to 420x400) and the sample stills, each image
# also mirrored. Distances normalised by the inter-ocular distance (outer eye corners 36-45, as in
# 300-W); for each dlib point, the vertex with the lowest mean normalised distance. Residual mean
# error of this table: all 0.053, jaw 0.089, brows 0.055, nose 0.036, eyes 0.031, mouth 0.043 (the
# jaw differs most: dlib follows the visible contour, the mesh fixed surface points); 0.044-0.066 on
# each source when that source is left out of the fit.
# fmt: off
MESH_TO_IBUG68 = np.array(
    [
        127, 137, 177, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 401, 366, 356,  # jaw 0-16
        70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
        168, 197, 195, 4, 240, 99, 2, 326, 305,  # nose 27-35
        33, 160, 158, 155, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
        61, 40, 37, 11, 267, 304, 291, 405, 314, 17, 84, 91,  # outer lip 48-59
        76, 38, 13, 268, 292, 317, 15, 86,  # inner lip 60-67
    ],
    np.int64,
)
# fmt: on


@register_backend
class MediaPipeBackend(FaceBackend):
    """BlazeFace boxes; landmarks from the face mesh run on a square crop around each box.

    Args:
        model_selection: BlazeFace model, 0 short range (faces within ~2 m, 128 px input) or 1 full
            range (192 px input; finds smaller faces), or several tried in order until one finds a
            face. The default ``(0, 1)`` keeps short range's reliability on close-ups and face-centred
            crops (where full range misses some) and full range's reach on small faces.
        min_detection_confidence: BlazeFace score threshold in [0, 1].
        crop_scale: side of the square mesh crop as a multiple of the box's longer side.
        crop_size: the mesh crop is resized to ``crop_size`` x ``crop_size`` pixels.

    Attributes:
        last_mesh: ``(K, 468, 2)`` float32 mesh points (image pixels) of the last :meth:`landmarks`
            call; NaN rows where the mesh found no face in the crop.
    """

    name = "mediapipe"
    description = "MediaPipe BlazeFace + 468-point face mesh mapped to iBUG 68 (CPU, models in the wheel)"

    def __init__(
        self,
        *,
        model_selection: int | Sequence[int] = (0, 1),
        min_detection_confidence: float = 0.5,
        crop_scale: float = 1.5,
        crop_size: int = 256,
    ) -> None:
        try:
            import mediapipe as mp
        except ImportError as e:
            raise ImportError(f"the mediapipe backend needs mediapipe 0.10.21: {FACES_INSTALL}") from e
        models = [model_selection] if isinstance(model_selection, int) else list(model_selection)
        if not models or not set(models) <= {0, 1}:
            raise ValueError(f"model_selection must be 0 (short range), 1 (full range) or both: {models}")
        self.crop_scale = crop_scale
        self.crop_size = crop_size
        self._detectors = [
            mp.solutions.face_detection.FaceDetection(
                model_selection=m, min_detection_confidence=min_detection_confidence
            )
            for m in models
        ]
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=False, max_num_faces=1
        )
        self.last_mesh = np.zeros((0, 468, 2), np.float32)

    def detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image)
        found = []
        for detector in self._detectors:
            found = detector.process(image).detections or []
            if found:
                break
        rel = np.array(
            [
                [b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height]
                for b in (d.location_data.relative_bounding_box for d in found)
            ],
            np.float32,
        ).reshape(-1, 4)
        boxes = np.clip(rel * np.array([w, h, w, h], np.float32), 0, [w, h, w, h]).astype(np.float32)
        scores = np.array([d.score[0] for d in found], np.float32)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Faces(boxes[keep], scores[keep])

    def mesh(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(K, 468, 2)`` float32 mesh points in image pixels for the ``(K, 4)`` boxes; NaN where the
        mesh finds no face in the crop. Also stored as :attr:`last_mesh`."""
        size = self.crop_size
        out = np.full((len(boxes), 468, 2), np.nan, np.float32)
        for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
            side = self.crop_scale * max(x1 - x0, y1 - y0, 1.0)
            scale = size / side
            ox, oy = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2
            affine = np.array([[scale, 0, -scale * ox], [0, scale, -scale * oy]])
            crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR)
            found = self._mesh.process(crop).multi_face_landmarks
            if found:
                pts = np.array([(p.x, p.y) for p in found[0].landmark], np.float64) * size
                out[k] = pts / scale + (ox, oy)
        self.last_mesh = out
        return out

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(K, 68, 2)`` float32 iBUG points: the mesh vertices :data:`MESH_TO_IBUG68`; NaN where the
        mesh finds no face."""
        return self.mesh(image, boxes)[:, MESH_TO_IBUG68]

    def close(self) -> None:
        for detector in self._detectors:
            detector.close()
        self._mesh.close()
