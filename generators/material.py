"""Face material for the generators: the main face's landmarks over every frame, and source crops.

Unlike preprocessing (a sample of frames), a manipulation needs the face in every frame of the
target; frames are streamed, never all held in memory.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

import numpy as np

from dftoolkit.faces import DetectionCascade
from dftoolkit.generators.base import FacePatches, FaceTrack
from dftoolkit.preprocess.geometry import box_matrix, transform_points, warp
from dftoolkit.preprocess.tracking import link_tracks, main_track, smooth_landmarks
from dftoolkit.video import VideoReader

__all__ = ["PATCH_SCALE", "PATCH_SIZE", "face_patches", "face_track", "landmark_boxes", "still_patches"]

PATCH_SIZE = 320
PATCH_SCALE = 2.0  # crop side / longer side of the landmarks' box: room for forehead, hair and chin


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` landmarks -> ``(N, 4)`` float32 boxes ``x0, y0, x1, y1`` (NaN rows stay NaN)."""
    lm = np.asarray(landmarks, np.float32)
    return np.concatenate([lm.min(axis=1), lm.max(axis=1)], axis=1)


def face_track(
    path: str | os.PathLike[str],
    cascade: DetectionCascade,
    smooth: int = 5,
    policy: str = "persistent",
    frames: int | None = None,
) -> FaceTrack:
    """The main face's landmarks in every frame of a video (or in its first ``frames`` frames).

    Faces are found frame by frame by the cascade (each frame seeded with the previous face),
    linked into tracks, the main track kept (:func:`~dftoolkit.preprocess.tracking.main_track`)
    and its landmarks smoothed over ``smooth`` frames. Frames are decoded one at a time.

    Raises:
        VideoDecodeError: the video (or one of its frames) cannot be decoded.
    """
    reader = VideoReader(path)
    faces = cascade.detect_video(itertools.islice(iter(reader), frames))
    n = len(faces)
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    track = main_track(link_tracks([f.boxes for f in faces]), n, policy=policy)
    if track is not None:
        for frame, k in zip(track.frames, track.face_indices, strict=True):
            landmarks[frame] = faces[frame].landmarks[k]
    height, width = reader.shape[:2]
    return FaceTrack(smooth_landmarks(landmarks, smooth), height, width, reader.fps)


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
        track: the same video's :func:`face_track`.
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
    if len(faces) == 0:
        raise ValueError("no face found in the still image")
    sides = np.max(faces.boxes[:, 2:] - faces.boxes[:, :2], axis=1)
    landmarks = faces.landmarks[int(np.argmax(sides))][None]
    matrix = box_matrix(landmark_boxes(landmarks), size, scale)
    crop = warp(image[None], matrix, size)
    return FacePatches(crop, transform_points(landmarks, matrix), np.zeros(1, np.int64))
