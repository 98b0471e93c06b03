"""Face reenactment without weights: the target's own face moved by the driver's landmark motion.

The source (the *driver*, a video's crops) is reduced to landmark motion relative to a neutral crop:

1. every driver crop's landmarks are put in a normalised face frame
   (:func:`~dftoolkit.faces.geometry.face_frames`), the similarity that maps their
   :data:`~dftoolkit.faces.geometry.STABLE_POINTS` (eye corners and nose, which expression barely
   moves) onto the mean face (:data:`~dftoolkit.faces.geometry.MEAN_FACE_68`, 256 px frame);
2. a neutral crop is chosen (``neutral``); the expression of crop ``i`` is the displacement
   ``normalised(driver_i) - normalised(driver_neutral)``, in mean-face units;
3. head motion (``motion=True``) is the similarity between the neutral crop's stable points and crop
   ``i``'s: in-plane rotation, scale, and shift in units of the face's scale. The crops are cut around
   the face's landmark box (:func:`~dftoolkit.generators.material.face_patches`), so rotation survives
   in full, while scale and shift are relative to that box (the head's travel across the source frame
   is not seen); all three are clamped.

At target frame ``t`` with landmarks ``L_t``, the expression is mapped into the target's face frame
(the inverse of the target's own normalising similarity, linear part) and added to ``L_t`` times
``strength``; the head motion turns, scales and shifts the result about the target's stable centre:
``L'_t``. The target frame is warped from ``L_t`` to ``L'_t`` piecewise-affinely with an outer ring
(:func:`~dftoolkit.generators.warping.face_ring` of ``L_t``) that stays fixed, so the warp is the
identity on the ring and continuous everywhere; where the motion would fold a triangle at the ring, it
is shortened until none folds. The mask is the region inside the ring with a soft edge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dftoolkit.faces.geometry import STABLE_POINTS, face_frames, transform_points
from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.generators.base import FacePatches, Rendered, register_method
from dftoolkit.generators.swap import LandmarkMethod, face_size
from dftoolkit.generators.warping import (
    face_ring,
    face_triangles,
    fold_free_fraction,
    paste,
    piecewise_affine,
    pixel_box,
    region_mask,
)

__all__ = ["NEUTRALS", "LandmarkReenact", "choose_neutral", "mouth_gap"]

NEUTRALS = ("mouth", "mean")

_INNER_LIPS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip pairs


def mouth_gap(normalised: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` normalised landmarks -> ``(N,)`` mean distance between the inner lips (mean-face
    units; about 2-3 for a closed mouth with MediaPipe's landmarks)."""
    upper, lower = zip(*_INNER_LIPS, strict=True)
    return np.linalg.norm(normalised[:, list(upper)] - normalised[:, list(lower)], axis=-1).mean(-1)


def choose_neutral(normalised: np.ndarray, neutral: str | int) -> int:
    """The index of the neutral crop among ``(N, 68, 2)`` normalised driver landmarks.

    ``mouth``: the crop with the most closed mouth (smallest :func:`mouth_gap`): a talking driver's
    mouth at rest is the reference, so speech opens the target's mouth. ``mean``: the crop closest
    (mean point distance) to the driver's mean normalised shape, so the displacements are centred and
    the target keeps its average expression. An int: that crop.
    """
    if isinstance(neutral, (int, np.integer)) and not isinstance(neutral, bool):
        if not 0 <= neutral < len(normalised):
            raise ValueError(f"neutral crop {neutral} is outside the driver's {len(normalised)} crops")
        return int(neutral)
    if neutral == "mouth":
        return int(np.argmin(mouth_gap(normalised)))
    if neutral == "mean":
        return int(np.argmin(np.linalg.norm(normalised - normalised.mean(0), axis=-1).mean(-1)))
    raise ValueError(f"neutral must be one of {NEUTRALS} or a crop index, got {neutral!r}")


def _scale_angle(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and angle (radians) of ``(N, 2, 3)`` similarities."""
    a, b = matrices[:, 0, 0], matrices[:, 1, 0]
    return np.hypot(a, b), np.arctan2(b, a)


@register_method
class LandmarkReenact(LandmarkMethod):
    """Landmark reenactment: the driver's expression and head motion moved onto the target face by a
    piecewise-affine warp with a fixed outer ring.

    Args:
        source: the driver (crops of a video; at least two, as motion is relative to a neutral crop).
        target: the video whose face is animated.
        strength: multiplier of the expression displacements (1: as the driver moves).
        motion: also transfer the driver's head motion (rotation, scale, shift relative to neutral).
        neutral: the driver's neutral crop, see :func:`choose_neutral`.
        ring_scale: scale of the fixed ring about the target face
            (:func:`~dftoolkit.generators.warping.face_ring`); the manipulated region lies inside it.
        max_rotation: clamp of the head's in-plane rotation, degrees.
        max_scale: clamp of the head's scale change: within ``[1 / (1 + m), 1 + m]``.
        max_shift: clamp of the head's shift, as a fraction of the target's outer-eye-corner distance.
        feather: standard deviation of the mask's soft edge, as a fraction of the face size (longer
            side of the landmarks' box); the ring polygon is eroded by twice that first.

    Raises:
        ValueError: a driver with one crop (a still cannot drive), or bad parameters.
    """

    name = "reenact"
    kind = "reenact"
    description = "landmark reenactment: the driver's expression and head motion warped onto the target face"

    def __init__(
        self,
        source: FacePatches,
        target: FaceTrack,
        strength: float = 1.0,
        motion: bool = True,
        neutral: str | int = "mouth",
        ring_scale: float = 1.6,
        max_rotation: float = 10.0,
        max_scale: float = 0.1,
        max_shift: float = 0.1,
        feather: float = 0.04,
    ) -> None:
        super().__init__(source, target)
        if len(source) < 2:
            raise ValueError("reenactment needs a driver with at least two face crops (a video, not a still)")
        if strength < 0 or max_rotation < 0 or max_scale < 0 or max_shift < 0 or feather < 0:
            raise ValueError("strength, max_rotation, max_scale, max_shift and feather must be >= 0")
        self.strength = float(strength)
        self.motion = bool(motion)
        self.ring_scale = float(ring_scale)
        self.max_rotation = float(max_rotation)
        self.max_scale = float(max_scale)
        self.max_shift = float(max_shift)
        self.feather = float(feather)
        self.triangles = face_triangles(self.ring_scale)
        self._at_ring = (self.triangles >= 68).any(1)

        frames = face_frames(source.landmarks)
        shapes = transform_points(source.landmarks, frames)
        self.neutral = neutral
        self.neutral_index = choose_neutral(shapes, neutral)
        n = self.neutral_index
        self._expression = (shapes - shapes[n]).astype(np.float64)  # (S, 68, 2) mean-face units
        scale, angle = _scale_angle(frames)
        centres = source.landmarks[:, STABLE_POINTS].astype(np.float64).mean(1)
        self._rotation = angle[n] - angle  # the face's turn from neutral, radians
        self._scale = scale[n] / scale
        self._shift = (centres - centres[n]) @ frames[n, :, :2].T  # mean-face units

    def new_landmarks(self, t: int) -> np.ndarray:
        """``L'_t``: the target's landmarks at frame ``t`` moved by the driver (before any fold limit);
        ``(68, 2)`` float32, NaN where the target has no face."""
        lm = self.target.landmarks[t].astype(np.float64)
        if not np.isfinite(lm).all():
            return lm.astype(np.float32)
        i = self.source.at(t)
        frame = face_frames(lm[None])[0]
        to_pixels = np.linalg.inv(frame[:, :2])  # mean-face units -> target pixels
        moved = lm + self.strength * self._expression[i] @ to_pixels.T
        if self.motion:
            turn = np.radians(np.clip(np.degrees(self._rotation[i]), -self.max_rotation, self.max_rotation))
            grow = np.clip(self._scale[i], 1 / (1 + self.max_scale), 1 + self.max_scale)
            shift = to_pixels @ self._shift[i]
            limit = self.max_shift * np.linalg.norm(lm[45] - lm[36])
            norm = np.linalg.norm(shift)
            if norm > limit:
                shift *= limit / norm
            centre = lm[list(STABLE_POINTS)].mean(0)
            c, s = np.cos(turn), np.sin(turn)
            rotate = grow * np.array([[c, -s], [s, c]])
            moved = centre + shift + (moved - centre) @ rotate.T
        return moved.astype(np.float32)

    def render_face(self, t: int, frame: np.ndarray, landmarks: np.ndarray) -> Rendered:
        height, width = frame.shape[:2]
        ring = face_ring(landmarks, self.ring_scale)
        src = np.concatenate([landmarks, ring])
        dst = np.concatenate([self.new_landmarks(t), ring])
        keep = fold_free_fraction(src, dst, self.triangles, check=self._at_ring)
        dst = src + keep * (dst - src)
        warped, coverage = piecewise_affine(frame, src, dst, self.triangles, (height, width))
        sigma = self.feather * face_size(landmarks)
        mask = region_mask(ring, (height, width), 2 * sigma, sigma)
        return Rendered(*paste(frame.copy(), mask, warped, coverage, pixel_box(ring, (height, width), 2)))

    def params(self) -> dict[str, Any]:
        return {
            "strength": self.strength,
            "motion": self.motion,
            "neutral": self.neutral if isinstance(self.neutral, str) else int(self.neutral),
            "ring_scale": self.ring_scale,
            "max_rotation": self.max_rotation,
            "max_scale": self.max_scale,
            "max_shift": self.max_shift,
            "feather": self.feather,
        }
