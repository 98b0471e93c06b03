"""Tracks, the main face, the tracked face among a frame's faces, and landmark smoothing: exact cases
and real detections on sample videos."""

from __future__ import annotations

import numpy as np
import pytest

from dftoolkit.faces import Faces
from dftoolkit.faces.tracking import (
    TRACK_POLICIES,
    Track,
    iou,
    link_tracks,
    main_track,
    smooth_landmarks,
    tracked_face,
    tracked_landmarks,
)
from dftoolkit.video import VideoReader


@pytest.fixture(scope="module")
def dlib_faces(dlib_backend):
    """``faces(image) -> (boxes (K, 4), landmarks (K, 68, 2))`` from the dlib backend."""

    def faces(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = dlib_backend.analyse(image)
        return found.boxes, found.landmarks

    return faces


@pytest.fixture(scope="module")
def carphone(sample, dlib_faces):
    """Per-frame dlib detections on all 120 carphone frames."""
    return [dlib_faces(frame) for frame in VideoReader(sample("carphone_pristine")).read(range(120))]


def test_iou_exact_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 2, 2]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [10, 0, 20, 10], [2, 2, 4, 4], [2, 2, 2, 2]], np.float32)
    got = iou(a, b)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got[0], [25 / 175, 1.0, 0.0, 4 / 100, 0.0])  # overlap, same, touching, inside
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[2], [0, 0, 0, 0, 0])  # an empty box overlaps nothing, itself included
    np.testing.assert_allclose(iou(b, a), got.T)
    with_nan = iou(np.array([[np.nan] * 4]), b)
    assert np.isnan(with_nan).all()
    assert iou(np.zeros((0, 4)), b).shape == (0, 5)


def _moving(start, step, size, n):
    """``(n, 4)`` boxes of side ``size`` whose top-left corner moves by ``step`` per frame."""
    corner = np.asarray(start, np.float32) + np.arange(n)[:, None] * np.asarray(step, np.float32)
    return np.concatenate([corner, corner + size], 1)


SPURIOUS = np.array([400, 10, 430, 40], np.float32)


def _scene(n: int, far_missed=(), spurious_at=None):
    """Two faces crossing: ``(near boxes, far boxes, detections per frame)``."""
    near = _moving((10, 40), (12, 0), 100, n)  # the subject moves right, close to the camera
    far = _moving((150, 60), (-12, 1), 45, n)  # a smaller face moves left behind: they cross mid-clip
    frames = []
    for t in range(n):
        boxes = [far[t], near[t]] if t % 2 else [near[t], far[t]]  # the detector's order varies
        if t in far_missed:
            boxes = [near[t]]
        if t == spurious_at:
            boxes.append(SPURIOUS)
        frames.append(np.array(boxes, np.float32))
    return near, far, frames


def test_link_tracks_two_faces_crossing_a_gap_and_a_spurious_box():
    n = 12
    near, far, frames = _scene(n, far_missed=(4, 5), spurious_at=7)
    frames.insert(9, np.zeros((0, 4), np.float32))  # a frame where nobody was found
    tracks = link_tracks(frames)
    assert [len(t) for t in tracks] == [n, n - 2, 1]
    near_track, far_track, spurious = tracks
    np.testing.assert_array_equal(near_track.boxes, near)
    np.testing.assert_array_equal(near_track.frames, [*range(9), *range(10, 13)])
    expected = [1 if t % 2 and t not in (4, 5) else 0 for t in range(n)]
    np.testing.assert_array_equal(near_track.face_indices, expected)
    np.testing.assert_array_equal(far_track.boxes, np.delete(far, [4, 5], 0))  # found again after the gap...
    assert iou(far[3:4], far[6:7])[0, 0] < 0.3  # ...by its velocity: its last box alone is too far off
    np.testing.assert_array_equal(far_track.frames, [0, 1, 2, 3, 6, 7, 8, 10, 11, 12])
    assert spurious.frames.tolist() == [7] and spurious.face_indices.tolist() == [2]
    assert all(isinstance(t, Track) and t.boxes.dtype == np.float32 for t in tracks)


def test_link_tracks_gap_longer_than_max_gap_splits():
    n = 12
    _, _, frames = _scene(n, far_missed=(4, 5, 6))
    assert sorted(len(t) for t in link_tracks(frames, max_gap=2)) == [4, 5, n]
    assert sorted(len(t) for t in link_tracks(frames, max_gap=3)) == [n - 3, n]


def test_link_tracks_respects_min_iou_and_nan():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[4, 0, 14, 10]], np.float32)  # IoU 6/14 = 0.43
    assert len(link_tracks([a, b], min_iou=0.4)) == 1
    assert len(link_tracks([a, b], min_iou=0.5)) == 2
    assert len(link_tracks([a, np.full((1, 4), np.nan, np.float32), a])) == 1  # a NaN box is nobody
    twins = np.array([[1, 0, 11, 10], [0, 0, 10, 10]], np.float32)  # both overlap the track: one continues it
    first, second = link_tracks([a, twins])
    assert first.face_indices.tolist() == [0, 1] and second.face_indices.tolist() == [0]
    assert link_tracks([]) == [] and link_tracks([np.zeros((0, 4))]) == []


def _track(frames, box):
    frames = np.asarray(frames)
    return Track(frames, np.zeros(len(frames), np.int64), np.tile(np.float32(box), (len(frames), 1)))


def test_main_track_policies():
    big_short = _track(range(0, 5), [0, 0, 200, 200])
    small_long = _track(range(0, 9), [300, 0, 350, 50])
    medium_long = _track(range(1, 10), [300, 100, 380, 180])  # as many frames as small_long, larger
    tracks = [big_short, small_long, medium_long]
    assert main_track(tracks, 10, "persistent") is medium_long
    assert main_track(tracks, 10, "largest") is big_short
    assert main_track([], 10) is None
    assert TRACK_POLICIES == ("persistent", "largest")
    with pytest.raises(ValueError, match="unknown track policy"):
        main_track(tracks, 10, "first")


def test_main_track_follows_the_manipulation_mask():
    subject = _track(range(10), [0, 0, 200, 200])  # the big, persistent face
    other = _track(range(2, 10), [300, 20, 360, 80])  # the one a DFD-style fake swapped
    mask = np.full((10, 4), np.nan)
    mask[3:8] = [305, 30, 355, 80]  # the mask video's box, empty in the other frames
    assert main_track([subject, other], 10, "persistent") is subject
    assert main_track([subject, other], 10, "persistent", mask_boxes=mask) is other
    assert main_track([subject, other], 10, "largest", mask_boxes=mask) is other
    elsewhere = np.full((10, 4), np.nan)
    elsewhere[5] = [600, 400, 640, 440]  # the mask covers nobody: keep no face rather than the wrong one
    assert main_track([subject, other], 10, mask_boxes=elsewhere) is None
    empty = np.full((10, 4), np.nan)  # an empty mask says nothing: the policy decides
    assert main_track([subject, other], 10, mask_boxes=empty) is subject
    with pytest.raises(ValueError, match="mask_boxes must be"):
        main_track([subject, other], 10, mask_boxes=mask[:5])


def test_real_detections_make_one_track(carphone):
    boxes = [b for b, _ in carphone]
    found = [len(b) > 0 for b in boxes]
    tracks = link_tracks(boxes)
    main = main_track(tracks, len(boxes))
    assert main is not None and len(main) == sum(found) >= 110  # dlib finds the face in (almost) all
    assert np.array_equal(main.frames, np.flatnonzero(found))
    assert 1500 < main.mean_area < 10000  # a ~60 px face in a 176x144 frame


def _naive_smooth(lm: np.ndarray, window: int) -> np.ndarray:
    """Reference: the same centred window, frame by frame."""
    valid = np.isfinite(lm).all((1, 2))
    out = np.full(lm.shape, np.nan, np.float32)
    for t in np.flatnonzero(valid):
        lo, hi = max(t - window // 2, 0), min(t + (window - 1) // 2 + 1, len(lm))
        out[t] = lm[lo:hi][valid[lo:hi]].mean(0)
    return out


def _jitter(lm: np.ndarray) -> float:
    """Mean second difference of landmark positions between consecutive frames, in pixels."""
    return float(np.nanmean(np.linalg.norm(lm[2:] - 2 * lm[1:-1] + lm[:-2], axis=-1)))


def test_smoothing_real_landmarks_reduces_jitter_and_keeps_gaps(carphone):
    lm = np.stack([p[0] if len(p) else np.full((68, 2), np.nan, np.float32) for _, p in carphone])
    missing = ~np.isfinite(lm).all((1, 2))
    assert missing.sum() >= 1  # the clip has real misses (the last frames)
    lm[[20, 21, 50]] = np.nan  # and some made here, mid-clip
    missing = ~np.isfinite(lm).all((1, 2))
    for window in (1, 2, 3, 12):
        smooth = smooth_landmarks(lm, window)
        assert smooth.dtype == np.float32 and smooth.shape == lm.shape
        assert (np.isnan(smooth).all((1, 2)) == missing).all()
        np.testing.assert_allclose(smooth, _naive_smooth(lm, window), atol=1e-3)
    np.testing.assert_array_equal(smooth_landmarks(lm, 1), lm)
    raw, smooth = _jitter(lm), _jitter(smooth_landmarks(lm, 5))
    assert smooth < 0.4 * raw, (smooth, raw)
    # no lag: a centred average follows the face; the mean offset to the raw points stays small
    assert np.nanmean(np.linalg.norm(smooth_landmarks(lm, 5) - lm, axis=-1)) < 1.5
    with pytest.raises(ValueError):
        smooth_landmarks(lm, 0)


# -- the largest face and the tracked face of one frame ---------------------------------------------


def _faces(*boxes: tuple[float, float, float, float]) -> Faces:
    """Faces at ``boxes``; face k's landmarks are all k (to tell which one was picked)."""
    n = len(boxes)
    landmarks = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((n, 68, 2), np.float32)
    return Faces(np.array(boxes, np.float32).reshape(-1, 4), np.ones(n, np.float32), landmarks)


def test_largest_is_by_area_ties_first():
    assert Faces.empty().largest() is None
    assert _faces((0, 0, 10, 10)).largest() == 0
    # the 30 x 2 box has the longest side, the 12 x 12 box the largest area
    assert _faces((0, 0, 10, 10), (0, 0, 30, 2), (5, 5, 17, 17)).largest() == 2
    assert _faces((0, 0, 10, 10), (20, 20, 30, 30), (0, 0, 5, 20)).largest() == 0  # a tie: the first


def test_tracked_face_follows_the_reference_box():
    faces = _faces((0, 0, 100, 100), (200, 0, 240, 40), (300, 0, 340, 40))
    assert tracked_face(faces, np.array([202, 2, 242, 42])) == 1  # the small face, not the largest
    assert tracked_face(faces, np.array([298, 0, 338, 40])) == 2
    # an IoU of at least 0.3 is needed (40 / 130 = 0.31 is, 40 / 140 = 0.29 is not): else the tracked
    # face is not among them
    assert tracked_face(faces, np.array([200, 0, 240, 130])) == 1
    assert tracked_face(faces, np.array([200, 0, 240, 140])) is None
    assert tracked_face(faces, np.array([200, 0, 240, 140]), min_iou=0.25) == 1
    assert tracked_face(faces, np.array([500, 500, 540, 540])) is None
    assert tracked_face(Faces.empty(), np.array([0, 0, 10, 10])) is None
    # no reference (None or NaN): the largest face
    assert tracked_face(faces) == 0 and tracked_face(faces, np.full(4, np.nan)) == 0
    assert tracked_face(Faces.empty()) is None
    # overlapping faces: the best overlap wins, ties the first
    both = _faces((0, 0, 40, 40), (20, 0, 60, 40))
    assert tracked_face(both, np.array([18, 0, 58, 40])) == 1
    assert tracked_face(both, np.array([10, 0, 50, 40])) == 0


class _ScriptedCascade:
    """A cascade whose ``detect`` returns the next scripted Faces and records its ``previous`` box."""

    def __init__(self, script: list[Faces]) -> None:
        self.script = iter(script)
        self.previous: list[np.ndarray | None] = []

    def detect(self, image: np.ndarray, previous: np.ndarray | None = None) -> Faces:
        self.previous.append(previous)
        return next(self.script)


def test_tracked_landmarks_picks_per_frame_and_seeds_the_search():
    two = _faces((0, 0, 100, 100), (200, 0, 240, 40))
    frames = [np.full((8, 8, 3), t, np.uint8) for t in range(4)]
    boxes = np.array([[200, 0, 240, 40], [np.nan] * 4, [600, 600, 640, 640], [0, 0, 100, 100]])
    cascade = _ScriptedCascade([two, two, two, Faces.empty()])
    got = list(tracked_landmarks(frames, cascade, boxes))
    assert [image[0, 0, 0] for image, _ in got] == [0, 1, 2, 3]
    assert [None if lm is None else int(lm[0, 0]) for _, lm in got] == [1, 0, None, None]
    np.testing.assert_array_equal(cascade.previous[0], boxes[0])  # searched around the reference first
    assert np.isnan(cascade.previous[1]).all()

    cascade = _ScriptedCascade([two, Faces.empty()])
    picked = [None if lm is None else int(lm[0, 0]) for _, lm in tracked_landmarks(frames[:2], cascade)]
    assert picked == [0, None] and cascade.previous == [None, None]  # no boxes: the largest face

    with pytest.raises(ValueError, match="2 reference boxes for more frames"):
        list(tracked_landmarks(frames, _ScriptedCascade([two] * 4), boxes[:2]))
    with pytest.raises(ValueError, match="4 reference boxes for 3 frames"):
        list(tracked_landmarks(frames[:3], _ScriptedCascade([two] * 3), boxes))
