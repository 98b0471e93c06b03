"""Face swapping without weights: the source face warped onto the target's landmarks, frame by frame.

At target frame ``t`` a source crop is chosen, and its face is moved by a piecewise-affine warp
(:func:`~dftoolkit.generators.warping.piecewise_affine` over the fixed 68-point + ring triangulation)
from the crop's landmarks onto the target's landmarks ``L_t``; the source identity thus follows the
target's pose and expression. The mask is the convex hull of ``L_t``, eroded a little and feathered;
the target's landmarks are temporally smoothed (:func:`~dftoolkit.faces.tracking.face_track`), so
the mask does not flicker. Colour correction is the blend's job.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import cv2
import numpy as np

from dftoolkit.faces.geometry import MEAN_FACE_68, landmark_boxes, similarity, transform_points
from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.generators.base import FacePatches, Manipulation, Rendered, register_method
from dftoolkit.generators.warping import (
    face_triangles,
    paste,
    piecewise_affine,
    pixel_box,
    region_mask,
    with_ring,
)

__all__ = ["MATCHES", "LandmarkMethod", "LandmarkSwap", "check_frame", "face_size", "normalised_shapes"]

MATCHES = ("sequence", "nearest")


def normalised_shapes(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` landmarks mapped onto the mean face by a least-squares similarity over all 68
    points: what is left is pose out of the image plane, expression and face shape. ``(N, 68, 2)``
    float32 in the 256-px frame of :data:`~dftoolkit.faces.geometry.MEAN_FACE_68`."""
    lm = np.asarray(landmarks, np.float32)
    return transform_points(lm, similarity(lm, MEAN_FACE_68))


def face_size(landmarks: np.ndarray) -> float:
    """Longer side of the ``(68, 2)`` landmarks' box, in pixels."""
    box = landmark_boxes(landmarks[None])[0]
    return float(max(box[2] - box[0], box[3] - box[1]))


def check_frame(t: int, frame: np.ndarray, target: FaceTrack) -> None:
    """Raise IndexError for a frame index outside ``target``, ValueError for a frame of the wrong shape."""
    if not 0 <= t < len(target):
        raise IndexError(f"frame {t} is outside the target's {len(target)} frames")
    if frame.shape != (target.height, target.width, 3) or frame.dtype != np.uint8:
        raise ValueError(
            f"frame must be ({target.height}, {target.width}, 3) uint8, got {frame.shape} {frame.dtype}"
        )


class LandmarkMethod(Manipulation):
    """A manipulation drawn from the target's landmarks: :meth:`render` checks the frame
    (:func:`check_frame`) and returns frames where the target has no face unchanged (a copy, all-zero
    mask); the others go to :meth:`render_face`."""

    def render(self, t: int, frame: np.ndarray) -> Rendered:
        check_frame(t, frame, self.target)
        landmarks = self.target.landmarks[t]
        if not np.isfinite(landmarks).all():
            return Rendered(frame.copy(), np.zeros(frame.shape[:2], np.float32))
        return self.render_face(t, frame, landmarks)

    @abstractmethod
    def render_face(self, t: int, frame: np.ndarray, landmarks: np.ndarray) -> Rendered:
        """Frame ``t`` (``(H, W, 3)`` uint8, left unchanged) with the face drawn into a copy, given the
        target's ``(68, 2)`` finite ``landmarks`` there."""


@register_method
class LandmarkSwap(LandmarkMethod):
    """Landmark face swap: the source face warped piecewise-affinely onto the target's landmarks.

    Args:
        source: the identity to paste (crops of a video, or one still).
        target: the video whose face is replaced.
        match: which source crop serves frame ``t``. ``sequence``: ``source.at(t)``, the source played
            forward and back; its texture (lighting, blinks, mouth interior) changes smoothly from frame
            to frame, but its pose and expression may differ from the target's, which the warp then has
            to absorb (stretching a mouth that is closed in the source, for instance). ``nearest``: the
            crop whose :func:`normalised_shapes` is closest (mean point distance) to the target's at
            ``t``; pose and expression match best, but consecutive frames may take crops from distant
            source frames, so the texture can jump (flicker) where ``sequence`` is smooth.
        ring_scale: scale of the outer ring (:func:`~dftoolkit.generators.warping.face_ring`) that
            carries the warp beyond the face's outline.
        erode: erosion of the target's landmark hull, as a fraction of the face size (longer side of
            the landmarks' box).
        feather: standard deviation of the mask's soft edge, as a fraction of the face size.
    """

    name = "swap"
    kind = "swap"
    description = "landmark face swap: the source face warped piecewise-affinely onto the target's landmarks"

    def __init__(
        self,
        source: FacePatches,
        target: FaceTrack,
        match: str = "sequence",
        ring_scale: float = 1.4,
        erode: float = 0.04,
        feather: float = 0.02,
    ) -> None:
        super().__init__(source, target)
        if match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
        if erode < 0 or feather < 0:
            raise ValueError(f"erode and feather must be >= 0, got {erode} and {feather}")
        self.match = match
        self.ring_scale = float(ring_scale)
        self.erode = float(erode)
        self.feather = float(feather)
        self.triangles = face_triangles(self.ring_scale)
        self._source_points = with_ring(source.landmarks, self.ring_scale)
        self._source_shapes = normalised_shapes(source.landmarks) if match == "nearest" else None

    def crop_index(self, t: int) -> int:
        """The source crop used at target frame ``t`` (which must have a face when ``match="nearest"``)."""
        if self._source_shapes is None:
            return self.source.at(t)
        shape = normalised_shapes(self.target.landmarks[t][None])
        return int(np.argmin(np.linalg.norm(self._source_shapes - shape, axis=-1).mean(-1)))

    def render_face(self, t: int, frame: np.ndarray, landmarks: np.ndarray) -> Rendered:
        height, width = frame.shape[:2]
        i = self.crop_index(t)
        warped, coverage = piecewise_affine(
            self.source.images[i],
            self._source_points[i],
            with_ring(landmarks, self.ring_scale),
            self.triangles,
            (height, width),
        )
        size = face_size(landmarks)
        hull = cv2.convexHull(landmarks)
        mask = region_mask(hull, (height, width), self.erode * size, self.feather * size)
        return Rendered(
            *paste(frame.copy(), mask, warped, coverage, pixel_box(hull.reshape(-1, 2), (height, width), 2))
        )

    def params(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "ring_scale": self.ring_scale,
            "erode": self.erode,
            "feather": self.feather,
        }
