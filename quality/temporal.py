"""Temporal flicker of a face from its landmarks: landmark jitter.

A face that flickers (a per-frame swap or reenactment with an unstable alignment) makes its
landmarks shake from frame to frame, while real motion (head movement, speech) is smooth at
video rates. The jitter is the high-frequency part of the landmark motion relative to the face
size, measured by the second temporal difference (zero for any constant-velocity motion):

- ``x_t`` are the ``(68, 2)`` pixel landmarks of frame ``t`` (iBUG 68-point order); a frame is
  *valid* when all its coordinates are finite (NaN rows = no face) and its eyes are apart.
- Rigid motion is removed per frame according to ``align``: ``"translation"`` (default) subtracts
  the landmarks' centroid, so any head translation, smooth or not, contributes exactly 0;
  ``"similarity"`` also fits rotation and scale (least squares, no reflection) onto the mean
  centred shape of the valid frames, leaving only non-rigid motion; ``"none"`` keeps the pixels.
  Rotation and scale changes that are not removed contribute only through their acceleration.
- ``a_t = y_{t+1} - 2 y_t + y_{t-1}`` for every frame ``t`` whose neighbours ``t - 1, t, t + 1``
  are all valid; frames next to a gap (or at either end) have no value: differences never bridge
  a missing face, which may come back elsewhere.
- ``j_t = mean_over_68_points ||a_t||_2 / d_t`` with ``d_t`` the inter-ocular distance (between
  the eye centres, means of points 36-41 and 42-47) of frame ``t``, or of the reference shape
  for ``"similarity"``. Unit: fraction of the inter-ocular distance per frame squared, so it
  depends on the frame rate; compare videos at equal fps.
- The video's jitter is the mean of ``j_t`` over the frames that have one; NaN when none does
  (fewer than 3 consecutive frames with a face).

For i.i.d. per-frame landmark noise of standard deviation ``s`` pixels per coordinate,
``E||a_t|| ~ sqrt(6) s sqrt(pi/2)``, whatever the face does.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import numpy as np

from dftoolkit.faces.geometry import inter_ocular_distance
from dftoolkit.faces.tracking import face_track
from dftoolkit.quality.expression import frame_landmarks
from dftoolkit.video import VideoReader

if TYPE_CHECKING:
    from dftoolkit.faces import DetectionCascade

__all__ = [
    "ALIGNMENTS",
    "landmark_jitter",
    "landmark_jitter_series",
    "video_landmark_jitter",
]

ALIGNMENTS = ("translation", "similarity", "none")


def _align_similarity(centred: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit each centred shape onto the mean valid shape by rotation + scale; returns it and its IOD."""
    z = centred[..., 0] + 1j * centred[..., 1]
    ref = z[valid].mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (np.conj(z) * ref).sum(axis=1) / (np.abs(z) ** 2).sum(axis=1)
    w = a[:, None] * z
    ref_xy = np.stack([ref.real, ref.imag], axis=-1)
    return np.stack([w.real, w.imag], axis=-1), float(inter_ocular_distance(ref_xy))


def landmark_jitter_series(landmarks: np.ndarray, align: str = "translation") -> np.ndarray:
    """Per-frame landmark jitter ``j_t`` of one face (definition in the module docstring).

    Args:
        landmarks: ``(T, 68, 2)`` pixel landmarks, NaN rows where there is no face.
        align: rigid motion removed per frame: ``"translation"``, ``"similarity"`` or ``"none"``.

    Returns:
        ``(T,)`` float64, NaN at the ends, next to frames without a face, and on them.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2), got shape {lm.shape}")
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    iod = inter_ocular_distance(lm)
    valid = np.isfinite(lm).all(axis=(1, 2)) & (iod > 0)
    series = np.full(len(lm), np.nan)
    triple = valid[:-2] & valid[1:-1] & valid[2:]
    if not triple.any():
        return series
    if align == "none":
        y = lm
    else:
        y = lm - lm.mean(axis=1, keepdims=True)
        if align == "similarity":
            y, ref_iod = _align_similarity(y, valid)
            iod = np.full(len(lm), ref_iod)
    accel = y[2:] - 2.0 * y[1:-1] + y[:-2]
    with np.errstate(invalid="ignore"):
        per_frame = np.linalg.norm(accel, axis=-1).mean(axis=-1) / iod[1:-1]
    series[1:-1] = np.where(triple, per_frame, np.nan)
    return series


def landmark_jitter(landmarks: np.ndarray, align: str = "translation") -> float:
    """Landmark jitter of one face over a video: the mean of :func:`landmark_jitter_series`.

    Args:
        landmarks: ``(T, 68, 2)`` pixel landmarks, NaN rows where there is no face.
        align: rigid motion removed per frame: ``"translation"``, ``"similarity"`` or ``"none"``.

    Returns:
        Mean second-difference landmark motion in inter-ocular distances per frame squared
        (0 = perfectly smooth); NaN when no 3 consecutive frames have a face.
    """
    series = landmark_jitter_series(landmarks, align)
    defined = series[np.isfinite(series)]
    return float(defined.mean()) if len(defined) else float("nan")


def video_landmark_jitter(
    path: str | os.PathLike[str],
    cascade: DetectionCascade,
    align: str = "translation",
    frames: int | None = None,
    boxes: np.ndarray | None = None,
) -> float:
    """:func:`landmark_jitter` of a video's main face (in its first ``frames`` frames, default all),
    from the raw (unsmoothed) landmarks: smoothing would hide the very flicker measured.

    Without ``boxes`` the face is tracked by :func:`~dftoolkit.faces.tracking.face_track` with
    ``smooth=1``. With ``boxes`` (``(T, 4)`` ``x0, y0, x1, y1``, the face to score in each of the
    first ``T`` frames, e.g. a FaceStore's track; NaN rows: the largest face), those ``T`` frames
    are scored (``frames``, if given, must be ``T``) and the face in each is picked by
    :func:`~dftoolkit.quality.expression.frame_landmarks`.

    Raises:
        VideoDecodeError: the video cannot be decoded.
        ValueError: ``frames`` and ``boxes`` disagree, or the video has fewer than ``T`` frames.
    """
    if boxes is None:
        return landmark_jitter(face_track(path, cascade, smooth=1, frames=frames).landmarks, align)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if frames is not None and frames != len(boxes):
        raise ValueError(f"frames={frames} but {len(boxes)} reference boxes")
    images = itertools.islice(iter(VideoReader(path)), len(boxes))
    return landmark_jitter(frame_landmarks(images, cascade, boxes), align)
