"""The detection cascade on the real sample videos: close-ups, the small 720p webcam inset, faces that
jump, frames without faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dftoolkit.faces import DetectionCascade, FaceBackend, Faces, get_backend
from dftoolkit.faces.cascade import nms
from dftoolkit.faces.tracking import iou
from dftoolkit.fetch import FetchError
from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader, sample_indices

INSET = (0, 0, 320, 260)  # where the presenter's face is in hello_720p (1280x720)


def _frames(path, num: int = 32) -> list[np.ndarray]:
    reader = VideoReader(path)
    return list(reader.read(sample_indices(reader.num_frames, num)))


@pytest.fixture(scope="module")
def mediapipe():
    return get_backend("mediapipe")


@pytest.fixture(scope="module")
def hello(sample) -> list[np.ndarray]:
    return _frames(sample("hello_720p"))


class Spy(FaceBackend):
    """Wraps a backend and records the ``(h, w)`` of every view the cascade asks it to search."""

    name = "spy"
    description = "records detect calls"

    def __init__(self, backend: FaceBackend) -> None:
        self.backend, self.views = backend, []

    def detect(self, image: np.ndarray) -> Faces:
        self.views.append(image.shape[:2])
        return self.backend.detect(image)

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return self.backend.landmarks(image, boxes)


def _in(box: np.ndarray, region: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[:2] + box[2:]) / 2
    return region[0] <= cx < region[2] and region[1] <= cy < region[3]


def _upright(faces: Faces) -> bool:
    """Landmarks of the first face inside its box (enlarged 1.6x), eyes above the mouth, the
    subject's right eye (iBUG 36-41) on the image left."""
    box, pts = faces.boxes[0], faces.landmarks[0]
    size = box[2:] - box[:2]
    inside = ((pts >= box[:2] - 0.3 * size) & (pts <= box[2:] + 0.3 * size)).all()
    return bool(
        inside and pts[36:48, 1].mean() < pts[48:68, 1].mean() and pts[36:42, 0].mean() < pts[42:48, 0].mean()
    )


def test_iou_and_nms():
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    overlap = iou(boxes, boxes)
    assert overlap.shape == (4, 4) and np.allclose(np.diag(overlap), 1)
    assert np.isclose(overlap[0, 1], 40 / 160) and np.isclose(overlap[0, 2], 81 / 100) and overlap[0, 3] == 0
    # box 0 overlaps box 2 by 0.81, box 1 overlaps box 2 by 0.25
    assert nms(boxes, np.array([0.9, 0.8, 0.95, 0.1])).tolist() == [2, 1, 3]
    assert nms(boxes, np.array([0.9, 0.8, 0.95, 0.1]), iou=0.9).tolist() == [2, 0, 1, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("name", ["carphone_pristine", "jesper_webcam"])
def test_close_ups_found_on_every_frame(sample, mediapipe, name):
    frames = _frames(sample(name))
    found = DetectionCascade(mediapipe).detect_video(frames)
    assert len(found) == len(frames) == 32
    assert sum(len(faces) == 1 for faces in found) >= 31  # measured 32/32 (goal: >= 95%)
    assert all(len(faces) <= 1 for faces in found)
    assert all(_upright(faces) for faces in found if len(faces))


def test_720p_inset_found(mediapipe, hello):
    found = DetectionCascade(mediapipe).detect_video(hello)
    assert len(found) == 32 and all(isinstance(faces, Faces) for faces in found)
    hits = [len(faces) == 1 and _in(faces.boxes[0], INSET) for faces in found]
    assert sum(hits) >= 30  # measured 32/32; BlazeFace on the full frame: 18/32
    assert all(_upright(faces) for faces in found if len(faces))
    sizes = [faces.boxes[0, 2] - faces.boxes[0, 0] for faces in found if len(faces)]
    assert 55 < np.median(sizes) < 100  # the ~80 px face, at full-frame coordinates


def test_720p_each_pass_matters(mediapipe, hello):
    """Without tracking (no ``previous``), the tile pass finds the face on frames where the
    downscaled full frame does not, and either beats BlazeFace on the full frame."""
    plain = sum(len(mediapipe.analyse(frame)) > 0 for frame in hello)
    untracked = [DetectionCascade(mediapipe, tiles=tiles) for tiles in ((2, 2), None)]
    with_tiles, without = (sum(len(c.detect(frame)) > 0 for frame in hello) for c in untracked)
    assert plain < with_tiles and plain <= without < with_tiles  # measured 18, 22, 30
    assert with_tiles >= 28


def test_face_jump_falls_back_to_the_full_frame(mediapipe, hello):
    """The face jumps to the other side (mirrored frames spliced in) and back: the ROI at the old
    place finds nothing, the full-frame pass finds it again; steady frames need only the ROI."""
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in hello[8:16]]
    frames = hello[:8] + mirrored + hello[16:24]
    spy = Spy(mediapipe)
    cascade = DetectionCascade(spy)
    found, calls = [], []
    previous = None
    for frame in frames:
        start = len(spy.views)
        faces = cascade.detect(frame, previous)
        calls.append(spy.views[start:])
        found.append(faces)
        previous = faces.boxes[0] if len(faces) else previous
    right_inset = (1280 - INSET[2], 0, 1280, INSET[3])
    for i, faces in enumerate(found):
        assert len(faces) == 1 and _in(faces.boxes[0], right_inset if 8 <= i < 16 else INSET), i
        assert _upright(faces)
    full_view = (360, 640)
    for i in (8, 16):  # the jumps: ROI (square, empty), full frame, then the ROI refinement
        assert calls[i][0][0] == calls[i][0][1] and full_view in calls[i], calls[i]
    for i in (*range(1, 8), *range(9, 16), *range(17, 24)):
        assert len(calls[i]) == 1 and calls[i][0][0] == calls[i][0][1] < 300, calls[i]
    # detect_video does the same bookkeeping
    assert [len(f) for f in DetectionCascade(mediapipe).detect_video(frames)] == [1] * 24


def test_frames_without_faces(mediapipe):
    face = VideoReader(sample_path("carphone_pristine")).read([40])[0]
    solid = np.full_like(face, 90)
    found = DetectionCascade(mediapipe).detect_video([solid, face, solid, face])
    assert [len(f) for f in found] == [0, 1, 0, 1]
    assert found[0].landmarks.shape == (0, 68, 2) and found[0].boxes.shape == (0, 4)


def test_no_face_among_pedestrians(sample, mediapipe):
    frames = _frames(sample("vtest"), 4)  # 768x576, people far away: no usable face
    assert [len(f) for f in DetectionCascade(mediapipe).detect_video(frames)] == [0] * 4


def test_mesh_rejects_a_blazeface_false_positive(mediapipe):
    patches = np.load(sample_path("lfw_subset"))[100:]  # non-faces, 25x25 grey
    images = [
        cv2.cvtColor(
            cv2.resize((p * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC),
            cv2.COLOR_GRAY2RGB,
        )
        for p in patches
    ]
    boxed = [image for image in images if len(mediapipe.detect(image))]
    assert len(boxed) >= 1  # BlazeFace boxes one of them (score 0.55) ...
    cascade = DetectionCascade(mediapipe, min_face=1)
    assert all(len(cascade.detect(image)) == 0 for image in boxed)  # ... the mesh finds no face there


def test_options(mediapipe):
    frames = _frames(sample_path("carphone_pristine"), 4)
    assert [len(f) for f in DetectionCascade("mediapipe").detect_video(frames)] == [1] * 4
    assert [len(f) for f in DetectionCascade(mediapipe, min_face=120).detect_video(frames)] == [0] * 4
    with pytest.raises(KeyError, match="face backend"):
        DetectionCascade("no-such-backend")


def test_cascade_with_dlib(sample):
    try:
        backend = get_backend("dlib")
    except FetchError as e:  # the predictor comes from Debian
        pytest.skip(str(e))
    found = DetectionCascade(backend).detect_video(_frames(sample("carphone_pristine")))
    assert sum(len(f) == 1 for f in found) >= 30  # measured 31/32, as dlib on full frames
    assert all(_upright(f) for f in found if len(f))


@pytest.mark.slow
def test_720p_cascade_beats_dlib_hog(mediapipe, hello):
    """dlib's HOG at upsample 1 on full frames (DeepfakeBench's way) vs the default cascade; ~12 s."""
    try:
        dlib_backend = get_backend("dlib")
    except FetchError as e:
        pytest.skip(str(e))
    hog = sum(any(_in(b, INSET) for b in dlib_backend.detect(frame).boxes) for frame in hello)
    cascade = sum(
        len(f) == 1 and _in(f.boxes[0], INSET) for f in DetectionCascade(mediapipe).detect_video(hello)
    )
    assert cascade > hog  # measured 32 vs 25
