"""Expression fidelity of reenactments: does the fake move like its driver (source) or like its target?

A reenactment should show the *source's* expression on the *target's* face. Faces of different
people differ in shape, so expressions are compared as landmark *motion* in a common face frame:

- ``N(x_t)``: the ``(68, 2)`` landmarks of frame ``t`` mapped onto the 256-px mean face by the
  least-squares similarity of their :data:`~dftoolkit.faces.geometry.STABLE_POINTS` (nose and
  eye corners, which expression barely moves; :func:`~dftoolkit.faces.geometry.face_frames`), so
  head pose in the image plane is gone;
- ``e_t = N(x_t) - mean_s N(x_s)``: the expression of frame ``t`` relative to the video's own mean
  shape over the compared frames (this removes the person's face shape);
- the error between two aligned sequences is ``mean_t mean_p ||e^a_{t,p} - e^b_{t,p}|| / D`` over
  the non-stable points ``p`` (brows, eyelids, mouth, jaw), with ``D`` the mean face's
  inter-ocular distance: a fraction of the eye distance, 0 when the motions are identical.

Frame ``t`` of a fake pairs with frame ``t`` of its target (same frames) and with frame
:func:`~dftoolkit.video.sampling.ping_pong` ``(t, n)`` of the ``n``-frame source: forward, then
backward once the source ends (the toolkit's generators play a short driver that way; for
``t < n`` it is ``t``, FF++'s Face2Face pairing).

- ``expression_to_source``: the error against the source (lower = follows the driver);
- ``expression_to_target``: the error against the target's own motion.

A reenactment that took hold has ``expression_to_source < expression_to_target``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from dftoolkit.faces.geometry import (
    MEAN_FACE_68,
    STABLE_POINTS,
    face_frames,
    inter_ocular_distance,
    transform_points,
)
from dftoolkit.faces.tracking import tracked_landmarks
from dftoolkit.video import VideoReader, ping_pong, sample_indices

if TYPE_CHECKING:
    from dftoolkit.faces import DetectionCascade

__all__ = ["expression_error", "expression_fidelity", "frame_landmarks", "sampled_pairs", "video_landmarks"]


def _expressions(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` landmarks, all finite -> ``(T, 68, 2)`` expressions ``e_t`` in mean-face pixels."""
    normalised = transform_points(landmarks, face_frames(landmarks)).astype(np.float64)
    return normalised - normalised.mean(axis=0, keepdims=True)


def expression_error(a: np.ndarray, b: np.ndarray) -> float:
    """Expression error between two aligned ``(T, 68, 2)`` landmark sequences (module docstring).

    Frames where either has NaN landmarks (no face) are dropped before the mean shapes are taken.

    Returns:
        Mean non-stable point distance in inter-ocular distances; NaN with fewer than 2 common frames.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1:] != (68, 2):
        raise ValueError(f"landmark sequences must both be (T, 68, 2), got {a.shape} and {b.shape}")
    both = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2))
    if both.sum() < 2:
        return float("nan")
    moving = np.setdiff1d(np.arange(68), STABLE_POINTS)
    diff = _expressions(a[both]) - _expressions(b[both])
    return float(np.linalg.norm(diff[:, moving], axis=-1).mean() / inter_ocular_distance(MEAN_FACE_68))


def expression_fidelity(fake: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Expression errors of a fake against its driver and its target.

    Args:
        fake, source, target: ``(T, 68, 2)`` landmarks of the same ``T`` frame pairs (the source's
            already picked by :func:`sampled_pairs`), NaN rows where no face was found.

    Returns:
        ``{"expression_to_source": ..., "expression_to_target": ...}`` (NaN when undefined).
    """
    return {
        "expression_to_source": expression_error(fake, source),
        "expression_to_target": expression_error(fake, target),
    }


def frame_landmarks(
    frames: Iterable[np.ndarray], cascade: DetectionCascade, boxes: np.ndarray | None = None
) -> np.ndarray:
    """``(N, 68, 2)`` float32 landmarks of one face in each of ``frames`` (``(H, W, 3)`` uint8 RGB);
    NaN rows where there is none.

    The face is the one at ``boxes`` (``(N, 4)`` ``x0, y0, x1, y1`` per frame, e.g. a FaceStore
    track's, so the face preprocessing kept is scored), else the largest (rows of NaN, or ``boxes``
    None); see :func:`~dftoolkit.faces.tracking.tracked_landmarks`.
    """
    missing = np.full((68, 2), np.nan, np.float32)
    rows = [missing if lm is None else lm for _, lm in tracked_landmarks(frames, cascade, boxes)]
    return np.array(rows, np.float32).reshape(-1, 68, 2)


def video_landmarks(
    path: str | os.PathLike[str], cascade: DetectionCascade, indices: np.ndarray
) -> np.ndarray:
    """:func:`frame_landmarks` of the frames ``indices`` of a video (any order, repeats allowed; each
    distinct frame is decoded and searched once)."""
    indices = np.asarray(indices, np.int64)
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = (image for _, image in VideoReader(path).iter_frames(unique))
    return frame_landmarks(frames, cascade)[inverse.reshape(-1)]


def sampled_pairs(fake_frames: int, source_frames: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` evenly spaced fake frame indices and the source frames that drive them."""
    fake = sample_indices(fake_frames, count)
    return fake, ping_pong(fake, source_frames)
