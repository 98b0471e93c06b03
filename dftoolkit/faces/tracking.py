"""Across frames: link detections into face tracks, pick the face to keep, smooth its landmarks.

Frames here are the sampled frames of one video, in order (``boxes_per_frame[t]`` holds the
detections of the t-th sampled frame); boxes are ``(K, 4)`` ``x0, y0, x1, y1`` pixels.
:func:`face_track` runs it all over every frame of a video; :func:`tracked_face` finds a face
tracked earlier (a FaceStore's box) among one frame's detections.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dftoolkit.faces.base import Faces
from dftoolkit.video import VideoReader

if TYPE_CHECKING:
    from dftoolkit.faces.cascade import DetectionCascade

__all__ = [
    "TRACKED_MIN_IOU",
    "TRACK_POLICIES",
    "FaceTrack",
    "Track",
    "face_track",
    "iou",
    "link_tracks",
    "main_track",
    "smooth_landmarks",
    "tracked_face",
    "tracked_landmarks",
]

TRACK_POLICIES = ("persistent", "largest")
TRACKED_MIN_IOU = 0.3  # smallest IoU with the reference box at which a detection is the tracked face


@dataclass
class Track:
    """One face followed across frames (T detections).

    Attributes:
        frames: ``(T,)`` int64 positions in the frame list, increasing.
        face_indices: ``(T,)`` int64 which detection of that frame.
        boxes: ``(T, 4)`` float32 the detections' boxes.
    """

    frames: np.ndarray
    face_indices: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def mean_area(self) -> float:
        """Mean box area in square pixels."""
        return float(_area(self.boxes).mean())


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` ``(N, 4)`` with every box of ``b`` ``(M, 4)``.

    Returns:
        ``(N, M)`` float64 in [0, 1]; 0 where both boxes are empty, NaN where a box is NaN.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = _area(a) + _area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.where(np.isnan(union), np.nan, 0.0))


def link_tracks(boxes_per_frame: list[np.ndarray], min_iou: float = 0.3, max_gap: int = 2) -> list[Track]:
    """Greedy IoU linking of detections into tracks.

    Frame by frame, every open track (one that has missed at most ``max_gap`` frames since its last
    detection) is scored against the frame's detections by the larger IoU of its last box and of
    that box moved on at the track's last velocity (so a face that moves steadily is found again
    after a gap); pairs are taken in decreasing score, each track and detection once, while the
    score is >= ``min_iou``. Unmatched detections start new tracks. Boxes with NaN match nothing.

    Args:
        boxes_per_frame: one ``(K_t, 4)`` array per sampled frame (K_t may be 0).
        min_iou: smallest IoU that continues a track.
        max_gap: frames a track may go unmatched and still continue.

    Returns:
        Tracks ordered by their first frame (then by detection index).
    """
    frames: list[list[int]] = []
    faces: list[list[int]] = []
    boxes: list[list[np.ndarray]] = []
    for t, frame_boxes in enumerate(boxes_per_frame):
        current = np.asarray(frame_boxes, np.float32).reshape(-1, 4)
        open_ = [k for k in range(len(frames)) if t - frames[k][-1] - 1 <= max_gap]
        extended: set[int] = set()
        taken: set[int] = set()
        if open_ and len(current):
            last = np.stack([boxes[k][-1] for k in open_])
            ahead = np.stack([_predict(frames[k], boxes[k], t) for k in open_])
            overlap = np.nan_to_num(np.fmax(iou(last, current), iou(ahead, current)), nan=0.0)
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                row, col = divmod(int(flat), len(current))
                if overlap[row, col] < min_iou:
                    break
                if row in extended or col in taken:
                    continue
                k = open_[row]
                extended.add(row)
                frames[k].append(t)
                faces[k].append(col)
                boxes[k].append(current[col])
                taken.add(col)
        for col in range(len(current)):
            if col not in taken and np.isfinite(current[col]).all():
                frames.append([t])
                faces.append([col])
                boxes.append([current[col]])
    return [
        Track(np.array(f, np.int64), np.array(i, np.int64), np.stack(b).astype(np.float32))
        for f, i, b in zip(frames, faces, boxes, strict=True)
    ]


def _predict(frames: list[int], boxes: list[np.ndarray], t: int) -> np.ndarray:
    """A track's box at frame ``t`` at constant velocity (its last box if it has only one)."""
    if len(frames) < 2:
        return boxes[-1]
    return boxes[-1] + (boxes[-1] - boxes[-2]) * (t - frames[-1]) / (frames[-1] - frames[-2])


def main_track(
    tracks: list[Track], n_frames: int, policy: str = "persistent", mask_boxes: np.ndarray | None = None
) -> Track | None:
    """The face to keep, or None when there is none.

    With ``mask_boxes`` (the bounding box of a corpus' manipulation mask per frame, NaN where the mask
    is empty; e.g. DFD videos with several people) the track whose boxes overlap them most (summed
    IoU) is the manipulated face; if none overlaps at all the result is None, since cropping another
    person would mislabel the crop. If every mask box is NaN, or without masks, ``policy`` decides:
    ``persistent`` keeps the track seen in most frames (ties: larger mean area), ``largest`` the
    largest mean box area (ties: more frames).

    Args:
        tracks: from :func:`link_tracks`.
        n_frames: length of the frame list the tracks index.
        policy: one of :data:`TRACK_POLICIES`.
        mask_boxes: ``(n_frames, 4)`` or None.
    """
    if policy not in TRACK_POLICIES:
        raise ValueError(f"unknown track policy {policy!r}; choose from {TRACK_POLICIES}")
    if not tracks:
        return None
    if mask_boxes is not None:
        mask_boxes = np.asarray(mask_boxes, np.float64)
        if mask_boxes.shape != (n_frames, 4):
            raise ValueError(f"mask_boxes must be ({n_frames}, 4), got {mask_boxes.shape}")
        if np.isfinite(mask_boxes).all(1).any():
            votes = [
                float(np.nansum(np.diagonal(iou(track.boxes, mask_boxes[track.frames])))) for track in tracks
            ]
            best = int(np.argmax(votes))
            return tracks[best] if votes[best] > 0 else None
    if policy == "persistent":
        return max(tracks, key=lambda track: (len(track), track.mean_area))
    return max(tracks, key=lambda track: (track.mean_area, len(track)))


def smooth_landmarks(lm68: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of landmarks over time, using only frames where the face was found.

    Frame ``t`` becomes the mean of the valid frames among ``t - window // 2 .. t + (window - 1) // 2``
    (fewer at the ends and next to gaps). Rows with any NaN (no face) stay NaN and are not used.
    LipForensics averages the current and the next 11 frames (``window=12``, looking ahead only).

    Args:
        lm68: ``(N, 68, 2)`` landmarks, NaN rows where missing.
        window: frames averaged, >= 1 (1 returns the input).

    Returns:
        ``(N, 68, 2)`` float32.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    lm = np.asarray(lm68, np.float64)
    valid = np.isfinite(lm).all(axis=(1, 2))
    values = np.where(valid[:, None, None], lm, 0.0)
    sums = np.concatenate([np.zeros((1, *lm.shape[1:])), np.cumsum(values, 0)])
    counts = np.concatenate([[0], np.cumsum(valid)])
    t = np.arange(len(lm))
    lo = np.clip(t - window // 2, 0, len(lm))
    hi = np.clip(t + (window - 1) // 2 + 1, 0, len(lm))
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = (sums[hi] - sums[lo]) / n[:, None, None]
    return np.where(valid[:, None, None], smoothed, np.nan).astype(np.float32)


def tracked_face(
    faces: Faces, reference: np.ndarray | None = None, min_iou: float = TRACKED_MIN_IOU
) -> int | None:
    """Which of one frame's faces is the tracked one: an index into ``faces``, or None.

    With a finite ``reference`` (``(4,)`` box ``x0, y0, x1, y1`` of the tracked face in this frame,
    e.g. a FaceStore's :meth:`~dftoolkit.preprocess.store.FaceStore.track`), the face overlapping
    it most (ties: the first), None when no face reaches an IoU of ``min_iou``: the tracked face is
    not among them, and another person must not be scored in its place. Without a reference (None
    or NaN), the largest face (:meth:`~dftoolkit.faces.base.Faces.largest`).
    """
    if reference is None or not np.isfinite(reference).all():
        return faces.largest()
    if not len(faces):
        return None
    overlap = np.nan_to_num(iou(reference, faces.boxes)[0], nan=0.0)
    best = int(np.argmax(overlap))
    return best if overlap[best] >= min_iou else None


def tracked_landmarks(
    frames: Iterable[np.ndarray], cascade: DetectionCascade, boxes: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Per frame, in order: the frame and the ``(68, 2)`` float32 landmarks of its tracked face, or None.

    Each ``(H, W, 3)`` uint8 RGB frame is searched by ``cascade`` (around its reference box first,
    when it has one) and the face picked by :func:`tracked_face`.

    Args:
        frames: the frames, streamed.
        cascade: a :class:`~dftoolkit.faces.cascade.DetectionCascade`.
        boxes: ``(N, 4)`` reference box per frame (NaN rows: none, the largest face is taken), e.g.
            a FaceStore track's; None: the largest face in every frame.

    Raises:
        ValueError: ``boxes`` has a row count other than the number of frames.
    """
    references = None if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    n = 0
    for n, image in enumerate(frames, 1):
        if references is not None and n > len(references):
            raise ValueError(f"{len(references)} reference boxes for more frames")
        reference = None if references is None else references[n - 1]
        faces = cascade.detect(image, reference)
        k = tracked_face(faces, reference)
        yield image, (None if k is None or faces.landmarks is None else faces.landmarks[k])
    if references is not None and n != len(references):
        raise ValueError(f"{len(references)} reference boxes for {n} frames")


@dataclass(frozen=True)
class FaceTrack:
    """The main face of a video, frame by frame (every frame, not a sample).

    Attributes:
        landmarks: ``(T, 68, 2)`` float32 pixels, temporally smoothed; NaN rows where no face.
        height, width: frame size in pixels.
        fps: frames per second of the video.
    """

    landmarks: np.ndarray
    height: int
    width: int
    fps: float

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def found(self) -> np.ndarray:
        """``(T,)`` bool: frames where the face was found."""
        return ~np.isnan(self.landmarks).any(axis=(1, 2))


def face_track(
    path: str | os.PathLike[str],
    cascade: DetectionCascade,
    smooth: int = 5,
    policy: str = "persistent",
    frames: int | None = None,
) -> FaceTrack:
    """The main face's landmarks in every frame of a video (or in its first ``frames`` frames).

    Faces are found frame by frame by the cascade (each frame seeded with the previous face),
    linked into tracks (:func:`link_tracks`), the main track kept (:func:`main_track` by
    ``policy``) and its landmarks smoothed over ``smooth`` frames (:func:`smooth_landmarks`; 1
    keeps them raw). Frames are decoded one at a time.

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
