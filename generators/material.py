"""Face material for the generators: crops of a source around its face.

The target's face in every frame is a :class:`~dftoolkit.faces.tracking.FaceTrack`
(:func:`~dftoolkit.faces.tracking.face_track`); frames are streamed, never all held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dftoolkit.faces import DetectionCascade
from dftoolkit.faces.geometry import box_matrix, landmark_boxes, transform_points, warp
from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.generators.base import FacePatches

__all__ = ["PATCH_SCALE", "PATCH_SIZE", "face_patches", "still_patches"]

PATCH_SIZE = 320
PATCH_SCALE = 2.0  # crop side / longer side of the landmarks' box: room for forehead, hair and chin


def face_patches(
    frames: Iterable[np.ndarray],
    track: FaceTrack,
    size: int = PATCH_SIZE,
    scale: float = PATCH_SCALE,
    max_patches: int | None = None,
) -> FacePatches:
    """Square crops around the tracked face of a video (the source of a swap or a reenactment).

    Args:
        frames: the video's frames in order, ``(H, W, 3)`` uint8 (e.g. a ``VideoReader``).
        track: the same video's :func:`~dftoolkit.faces.tracking.face_track`.
        size: crop side in pixels.
        scale: crop side as a multiple of the longer side of the landmarks' box.
        max_patches: keep at most this many crops, evenly spaced over the frames with a face.

    Raises:
        ValueError: the track has no face in any frame.
    """
    found = np.flatnonzero(track.found)
    if len(found) == 0:
        raise ValueError("the source video has no face in any frame")
    if max_patches is not None and len(found) > max_patches:
        found = found[np.round(np.linspace(0, len(found) - 1, max_patches)).astype(int)]
    keep = set(found.tolist())
    matrices = box_matrix(landmark_boxes(track.landmarks[found]), size, scale)
    images = np.zeros((len(found), size, size, 3), np.uint8)
    j = 0
    for t, frame in enumerate(frames):
        if t in keep:
            images[j] = warp(frame[None], matrices[j], size)[0]
            j += 1
            if j == len(found):
                break
    if j < len(found):
        raise ValueError(f"the source video ended after {t + 1} frames; its track has {len(track)}")
    return FacePatches(images, transform_points(track.landmarks[found], matrices), found.astype(np.int64))


def still_patches(
    image: np.ndarray, cascade: DetectionCascade, size: int = PATCH_SIZE, scale: float = PATCH_SCALE
) -> FacePatches:
    """The largest face of a still ``(H, W, 3)`` uint8 image as one crop.

    Raises:
        ValueError: no face in the image.
    """
    faces = cascade.detect(image)
    largest = faces.largest()
    if largest is None:
        raise ValueError("no face found in the still image")
    landmarks = faces.landmarks[largest][None]
    matrix = box_matrix(landmark_boxes(landmarks), size, scale)
    crop = warp(image[None], matrix, size)
    return FacePatches(crop, transform_points(landmarks, matrix), np.zeros(1, np.int64))
