"""Face backends on the real sample media: one face where there is one, none where there is none,
landmarks in iBUG order and place, MediaPipe-68 agreeing with dlib-68; FAN's loading and conversion."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
import pytest

from dftoolkit.faces import FACE_BACKENDS, Faces, describe_backends, get_backend, list_backends
from dftoolkit.faces.fan import FAN_WEIGHTS, S3FD_WEIGHTS, FanBackend, fan_weights
from dftoolkit.faces.mediapipe_mesh import MESH_TO_IBUG68, MediaPipeBackend
from dftoolkit.fetch import FetchError
from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader, sample_indices

# iBUG index of the mirror-image point (left <-> right), for the left/right order checks.
# fmt: off
IBUG_MIRROR = np.array([
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,  # jaw, brows, nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,  # mouth
])
# fmt: on
# Calibration of MESH_TO_IBUG68 (477 real faces): mean error 0.053 inter-ocular distances, 99th
# percentile of a face's mean error 0.137. Thresholds: a frame set's mean under 0.08, each face
# under 0.15; the mirrored order (a wrong table) scores about 0.6.
AGREE_MEAN, AGREE_FACE = 0.08, 0.15


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _rgb(sample_path("astronaut"))


@pytest.fixture(scope="module")
def carphone() -> np.ndarray:
    reader = VideoReader(sample_path("carphone_pristine"))
    return reader.read(sample_indices(reader.num_frames, 8))


@pytest.fixture(scope="module")
def non_faces() -> list[np.ndarray]:
    """The 100 LFW non-face patches (25x25 grey) upscaled to 200x200 RGB, a solid image, and 4
    frames of vtest.avi where there is one (pedestrians far away: no usable face)."""
    patches = np.load(sample_path("lfw_subset"))[100:]
    images = [
        cv2.cvtColor(
            cv2.resize((p * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC),
            cv2.COLOR_GRAY2RGB,
        )
        for p in patches
    ]
    images.append(np.full((256, 320, 3), 128, np.uint8))
    try:
        reader = VideoReader(sample_path("vtest"))
        images.extend(reader.read(sample_indices(reader.num_frames, 4)))
    except FetchError:
        pass  # Debian media unavailable: the LFW patches still test this
    return images


@pytest.fixture(scope="module")
def mediapipe_backend() -> MediaPipeBackend:
    return get_backend("mediapipe")


def assert_plausible_face(faces: Faces, k: int = 0) -> None:
    """The box holds the landmarks and the landmarks sit in iBUG order on an upright frontal face."""
    box, pts = faces.boxes[k], faces.landmarks[k]
    assert pts.shape == (68, 2) and np.isfinite(pts).all()
    size = box[2:] - box[:2]
    assert size.min() > 0
    inside = ((pts >= box[:2]) & (pts <= box[2:])).all(axis=1)
    assert inside.mean() >= 0.7  # detector boxes are tight: the chin and jaw may stick out a little
    assert ((pts >= box[:2] - 0.3 * size) & (pts <= box[2:] + 0.3 * size)).all()
    y = pts[:, 1]
    brows, eyes, nose_tip, mouth, chin = y[17:27].mean(), y[36:48].mean(), y[30], y[48:68].mean(), y[8]
    assert brows < eyes < nose_tip < mouth < chin
    x = pts[:, 0]
    # iBUG 36-41 is the subject's right eye: image left on a frontal face. Likewise jaw, brows, mouth.
    assert x[36:42].mean() < x[42:48].mean()
    assert x[0] < x[16] and x[17] < x[26] and x[48] < x[54]


def test_registry_lists_the_backends():
    assert {"dlib", "fan", "mediapipe"} <= set(list_backends())
    assert list(describe_backends()) == list_backends() and all(describe_backends().values())
    assert isinstance(get_backend("mediapipe", model_selection=0), MediaPipeBackend)
    with pytest.raises(KeyError, match=r"known: .*mediapipe"):
        get_backend("no-such-backend")
    assert FACE_BACKENDS.get("fan") is FanBackend


@pytest.mark.parametrize("name", ["mediapipe", "dlib"])
def test_one_face_on_astronaut(request, astronaut, name):
    backend = request.getfixturevalue(f"{name}_backend")
    if name == "dlib":  # at upsample 1 dlib's HOG also fires on the mission patch (see DlibBackend)
        backend = get_backend("dlib", upsample=0)
    faces = backend.analyse(astronaut)
    assert len(faces) == 1
    assert faces.boxes.dtype == np.float32 and faces.landmarks.dtype == np.float32
    assert 0.5 <= faces.scores[0] <= 1
    cx, cy = (faces.boxes[0, :2] + faces.boxes[0, 2:]) / 2
    assert 190 < cx < 260 and 90 < cy < 170  # Eileen Collins' face, not the helmet or the patches
    assert_plausible_face(faces)


def test_dlib_upsample_keeps_the_face_first(dlib_backend, astronaut):
    faces = dlib_backend.analyse(astronaut)  # upsample 1, as DeepfakeBench
    best = int(np.argmax(faces.scores))
    cx, cy = (faces.boxes[best, :2] + faces.boxes[best, 2:]) / 2
    assert 190 < cx < 260 and 90 < cy < 170
    assert_plausible_face(faces, best)


@pytest.mark.parametrize(("name", "misses"), [("mediapipe", 0), ("dlib", 1)])
def test_one_face_per_carphone_frame(request, carphone, name, misses):
    """One face per frame; dlib's HOG at its default threshold misses the face on 1 of the 8 frames
    (31/32 over 32 frames; it is found at ``threshold=-0.5``)."""
    backend = request.getfixturevalue(f"{name}_backend")
    found = [backend.analyse(frame) for frame in carphone]
    assert [len(faces) for faces in found].count(0) == misses
    for faces in found:
        assert len(faces) <= 1
        if len(faces):
            assert_plausible_face(faces)


@pytest.mark.parametrize("name", ["mediapipe", "dlib"])
def test_no_face_on_non_faces(request, non_faces, name):
    backend = request.getfixturevalue(f"{name}_backend")
    found = [len(backend.analyse(image)) for image in non_faces]
    if name == "mediapipe":
        # BlazeFace alone boxes 1 of the 100 LFW non-face patches (the mesh then rejects it, see the
        # cascade tests); nothing else
        assert sum(found) <= 1
    else:
        assert sum(found) == 0


def test_mediapipe_agrees_with_dlib(dlib_backend, mediapipe_backend, astronaut, carphone):
    errors, mirrored = [], []
    for frame in [astronaut, *carphone]:
        ref, got = dlib_backend.analyse(frame), mediapipe_backend.analyse(frame)
        assert len(got) == 1
        if not len(ref):
            continue  # the carphone frame dlib misses
        ref_pts = ref.landmarks[int(np.argmax(ref.scores))]
        iod = np.linalg.norm(ref_pts[36] - ref_pts[45])
        errors.append(np.linalg.norm(got.landmarks[0] - ref_pts, axis=1).mean() / iod)
        mirrored.append(np.linalg.norm(got.landmarks[0][IBUG_MIRROR] - ref_pts, axis=1).mean() / iod)
    assert len(errors) == 8
    assert np.mean(errors) < AGREE_MEAN and max(errors) < AGREE_FACE
    assert min(mirrored) > 3 * AGREE_FACE  # the metric tells a wrong point order apart


def test_mediapipe_dense_mesh(mediapipe_backend, astronaut):
    backend = mediapipe_backend
    faces = backend.detect(astronaut)
    mesh = backend.mesh(astronaut, faces.boxes)
    assert mesh.shape == (1, 468, 2) and mesh.dtype == np.float32 and np.isfinite(mesh).all()
    assert np.array_equal(backend.landmarks(astronaut, faces.boxes), mesh[:, MESH_TO_IBUG68])
    assert np.array_equal(backend.last_mesh, mesh)
    assert len(set(MESH_TO_IBUG68.tolist())) == 68 and MESH_TO_IBUG68.max() < 468
    # a box on the flag holds no face: the mesh says so with NaN, and no boxes give no rows
    assert np.isnan(backend.mesh(astronaut, np.array([[0, 0, 90, 90]], np.float32))).all()
    assert backend.landmarks(astronaut, np.zeros((0, 4), np.float32)).shape == (0, 68, 2)


def test_mediapipe_model_selection(astronaut):
    with pytest.raises(ValueError, match="model_selection"):
        MediaPipeBackend(model_selection=2)
    for selection in (0, 1, (1, 0)):
        assert len(MediaPipeBackend(model_selection=selection).detect(astronaut)) == 1


def test_dlib_scores_are_the_logistic_of_the_margin(dlib_backend, astronaut):
    import dlib

    faces = dlib_backend.detect(astronaut)
    _, margins, _ = dlib.get_frontal_face_detector().run(astronaut, 1, 0.0)
    assert np.allclose(np.sort(faces.scores), np.sort(1 / (1 + np.exp(-np.asarray(margins)))), atol=1e-6)
    assert (faces.scores >= 0.5).all()  # threshold 0 keeps only margins >= 0


# -- FAN ------------------------------------------------------------------------------------------


def test_fan_missing_weights_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError) as info:
        FanBackend()
    message = str(info.value)
    assert S3FD_WEIGHTS in message and FAN_WEIGHTS in message and str(checkpoints) in message
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # nothing was downloaded
    checkpoints.mkdir(parents=True)
    (checkpoints / S3FD_WEIGHTS).write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        get_backend("fan")
    assert FAN_WEIGHTS in str(info.value) and S3FD_WEIGHTS not in str(info.value)
    elsewhere = tmp_path / "mine"
    with pytest.raises(FileNotFoundError, match=str(elsewhere)):
        FanBackend(weights_dir=elsewhere)


class _FakeDetector:
    def __init__(self, rows):
        self.rows = rows

    def detect_from_image(self, image):
        assert image.ndim == 3 and image.dtype == np.uint8
        return self.rows


class _FakeFaceAlignment:
    """Stands in for face_alignment.FaceAlignment: known boxes (x0, y0, x1, y1, score) and points."""

    rows: ClassVar[list[np.ndarray]] = []
    points: ClassVar[list[np.ndarray]] = []

    def __init__(self, landmarks_type, **kwargs):
        self.landmarks_type, self.kwargs = landmarks_type, kwargs
        self.face_detector = _FakeDetector(self.rows)

    def get_landmarks_from_image(self, image, detected_faces=None):
        self.asked = detected_faces
        return [p.copy() for p in self.points[: len(detected_faces)]]


def test_fan_converts_results(tmp_path, monkeypatch, astronaut):
    import face_alignment

    for name in (S3FD_WEIGHTS, FAN_WEIGHTS):
        (tmp_path / name).write_bytes(b"")
    points = [np.arange(136, dtype=np.float64).reshape(68, 2), np.full((68, 2), 7.5)]
    monkeypatch.setattr(
        _FakeFaceAlignment, "rows", [np.array([10.0, 20, 110, 140, 0.98]), np.array([-5.0, 30, 600, 90, 0.6])]
    )
    monkeypatch.setattr(_FakeFaceAlignment, "points", points)
    monkeypatch.setattr(face_alignment, "FaceAlignment", _FakeFaceAlignment)
    backend = FanBackend(weights_dir=tmp_path, device="cpu")
    assert backend._fa.landmarks_type == face_alignment.LandmarksType.TWO_D
    assert backend._fa.kwargs["face_detector_kwargs"] == {"path_to_detector": str(tmp_path / S3FD_WEIGHTS)}
    assert backend._fa.kwargs["device"] == "cpu" and backend._fa.kwargs["compile"] is False

    faces = backend.analyse(astronaut)
    assert faces.boxes.dtype == np.float32 and faces.scores.dtype == np.float32
    assert faces.landmarks.dtype == np.float32 and faces.landmarks.shape == (2, 68, 2)
    np.testing.assert_allclose(faces.boxes, [[10, 20, 110, 140], [0, 30, 512, 90]])  # clipped to 512x512
    np.testing.assert_allclose(faces.scores, [0.98, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(faces.landmarks, np.stack(points))
    assert backend._fa.asked == [[10, 20, 110, 140], [0, 30, 512, 90]]
    assert all(type(v) is float for box in backend._fa.asked for v in box)  # FAN's crop needs plain floats

    monkeypatch.setattr(backend._fa.face_detector, "rows", [])
    empty = backend.analyse(astronaut)
    assert len(empty) == 0 and empty.landmarks.shape == (0, 68, 2) and empty.boxes.shape == (0, 4)


def test_fan_real_weights(astronaut):
    try:
        fan_weights()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    faces = FanBackend().analyse(astronaut)
    assert len(faces) == 1
    assert_plausible_face(faces)


@pytest.mark.slow
def test_fan_loads_checkpoints_from_weights_dir(tmp_path, astronaut):
    """The real face_alignment code path on checkpoints written here (untrained: shapes, not faces)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), tmp_path / S3FD_WEIGHTS)
    torch.save(FAN(4).state_dict(), tmp_path / FAN_WEIGHTS)
    backend = FanBackend(weights_dir=tmp_path)
    faces = backend.detect(astronaut[::2, ::2])
    assert faces.boxes.shape == (len(faces), 4) and ((faces.scores >= 0) & (faces.scores <= 1)).all()
    points = backend.landmarks(astronaut, np.array([[170, 60, 280, 190]], np.float32))
    assert points.shape == (1, 68, 2) and points.dtype == np.float32 and np.isfinite(points).all()
    # FAN's heatmaps cover a square crop of about 1.9x the box around its centre: every point lies
    # within the box enlarged 2.5x, i.e. in image pixels, not crop pixels
    assert ((points > [87.5, -37.5]) & (points < [362.5, 287.5])).all()
