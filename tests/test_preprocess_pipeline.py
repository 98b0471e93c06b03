"""Preprocessing end to end on the real sample media: crops, statuses, resume, kill, track reuse."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from dftoolkit import Manifest, VideoRecord
from dftoolkit.faces.geometry import transform_points
from dftoolkit.preprocess import FaceStore, PreprocessConfig, preprocess, process_video
from dftoolkit.video import VideoReader, VideoWriter

ALL_CROPS = ("face", "aligned", "ffhq", "mouth")


@pytest.fixture
def corpus(tmp_path, sample):
    """A small corpus: the carphone talking head, a recoloured 'fake' of it with a mask video, a
    faceless clip, and a corrupt file."""
    root = tmp_path / "corpus"
    (root / "real").mkdir(parents=True)
    shutil.copy(sample("carphone_pristine"), root / "real" / "carphone.mp4")
    frames = VideoReader(root / "real" / "carphone.mp4").read(range(120))
    with VideoWriter(root / "fake" / "carphone_fake.mp4", fps=29.97, crf=18) as writer:
        shift = np.array([30, -20, 0], np.int16)  # a colour change: same geometry, other pixels
        writer.write_many(np.clip(frames.astype(np.int16) + shift, 0, 255).astype(np.uint8))
    mask = np.zeros((144, 176, 3), np.uint8)
    cv2.ellipse(mask, (88, 60), (30, 40), 0, 0, 360, (255, 255, 255), -1)
    with VideoWriter(root / "fake" / "carphone_fake_mask.mp4", fps=29.97, lossless=True) as writer:
        writer.write_many(np.repeat(mask[None], 120, axis=0))
    coffee = cv2.resize(_coffee(), (176, 144))  # a real photo without a face
    with VideoWriter(root / "real" / "coffee.mp4", fps=25) as writer:
        writer.write_many(np.repeat(coffee[None], 12, axis=0))
    (root / "real" / "broken.mp4").write_bytes(os.urandom(5000))
    records = [
        VideoRecord("t", "carphone", "real/carphone.mp4", 0, target_id="carphone"),
        VideoRecord(
            "t",
            "carphone_fake",
            "fake/carphone_fake.mp4",
            1,
            original_id="carphone",
            mask_relpath="fake/carphone_fake_mask.mp4",
        ),
        VideoRecord("t", "coffee", "real/coffee.mp4", 0),
        VideoRecord("t", "broken", "real/broken.mp4", 0),
    ]
    return Manifest(records, root=root)


def test_scale_sets_the_face_crops_enlargement(sample, cascade):
    """The detected box's longer side spans ``size / scale`` pixels of the face crop."""
    record = VideoRecord("t", "carphone", "carphone.mp4", 0)
    made = {
        scale: process_video(
            record, sample("carphone_pristine"), None, PreprocessConfig(frames=2, scale=scale), cascade
        )
        for scale in (1.3, 2.6)
    }
    for scale, faces in made.items():
        assert faces.status == ["ok", "ok"]
        corners = faces.boxes.reshape(-1, 2, 2)  # (x0, y0), (x1, y1)
        ends = transform_points(corners, faces.matrices["face"])
        np.testing.assert_allclose(np.abs(ends[:, 1] - ends[:, 0]).max(1), 256 / scale, rtol=1e-5)
    np.testing.assert_array_equal(made[1.3].boxes, made[2.6].boxes)
    assert not np.array_equal(made[1.3].crops["face"][0], made[2.6].crops["face"][0])


def _coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def test_every_crop_kind_and_every_frame_accounted_for(corpus, tmp_path):
    config = PreprocessConfig(crops=ALL_CROPS, frames=8)
    report = preprocess(corpus, tmp_path / "store", config, workers=1)
    assert report.processed == 4 and not report.failed
    store = FaceStore(tmp_path / "store")
    table = store.frames()
    per_video = table.groupby("video_id")["status"].agg(list).to_dict()
    assert per_video["carphone"].count("ok") >= 7 and len(per_video["carphone"]) == 8
    assert set(per_video["coffee"]) == {"no_face"} and len(per_video["coffee"]) == 8
    assert per_video["broken"] == ["decode_error"]  # one row: the file cannot be opened
    reasons = table.loc[table.status != "ok", "reason"]
    assert reasons.notna().all() and (reasons.str.len() > 5).all()
    ok = table[(table.video_id == "carphone") & (table.status == "ok")].iloc[0]
    for kind, shape in {
        "face": (256, 256, 3),
        "aligned": (256, 256, 3),
        "ffhq": (256, 256, 3),
        "mouth": (96, 96),
    }.items():
        image = cv2.imread(str(store.path(ok[f"crop_path_{kind}"])), cv2.IMREAD_UNCHANGED)
        assert image.shape == shape, kind
        assert cv2.imread(str(store.path(ok[f"mask_path_{kind}"])), cv2.IMREAD_UNCHANGED).max() == 255
    assert store.clip("carphone", crop="face", frames=4).shape == (4, 3, 256, 256)
    assert store.clip("carphone", crop="mouth", frames=4).shape == (4, 1, 88, 88)


def test_fake_reuses_its_originals_track_and_its_mask(corpus, tmp_path):
    store = preprocess(
        corpus, tmp_path / "store", PreprocessConfig(crops=("face",), frames=8), workers=2
    ).store
    table = store.frames().set_index(["video_id", "frame_index"])
    real, fake = table.loc["carphone"], table.loc["carphone_fake"]
    assert (real.status == "ok").sum() >= 7 and list(real.status) == list(fake.status)
    for a, b in zip(real.box, fake.box, strict=True):
        assert (a is None and b is None) or np.allclose(a, b)  # the same crop window, frame by frame
    # The fake's masks come from its mask video (an ellipse), not the landmark hull.
    row = fake[fake.status == "ok"].iloc[0]
    crop_mask = cv2.imread(str(store.path(row.mask_path_face)), cv2.IMREAD_GRAYSCALE)
    real_mask = cv2.imread(str(store.path(real.loc[row.name].mask_path_face)), cv2.IMREAD_GRAYSCALE)
    assert crop_mask.max() == 255 and not np.array_equal(crop_mask > 0, real_mask > 0)


def test_resume_skips_finished_and_redoes_missing(corpus, tmp_path):
    config = PreprocessConfig(crops=("face",), frames=4)
    preprocess(corpus, tmp_path / "store", config, workers=1)
    folder = tmp_path / "store" / "videos" / "t" / "carphone"
    stamp = (folder / "frames.parquet").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "store" / "videos" / "t" / "coffee")
    again = preprocess(corpus, tmp_path / "store", config, workers=1)
    assert (again.processed, again.skipped) == (1, 3)
    assert (folder / "frames.parquet").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="frames"):
        preprocess(corpus, tmp_path / "store", PreprocessConfig(crops=("face",), frames=8), workers=1)


@pytest.mark.slow
def test_killed_run_loses_nothing_committed(tmp_path, sample):
    root = tmp_path / "corpus"
    root.mkdir()
    records = []
    for k in range(8):
        shutil.copy(sample("carphone_pristine"), root / f"v{k}.mp4")
        records.append(VideoRecord("t", f"v{k}", f"v{k}.mp4", 0))
    Manifest(records, root=root).write_parquet(tmp_path / "m.parquet")
    store_dir = tmp_path / "store"
    manifest = str(tmp_path / "m.parquet")
    command = [
        sys.executable,
        "-m",
        "dftoolkit",
        "-q",
        "preprocess",
        manifest,
        "-o",
        str(store_dir),
        "--workers",
        "1",
    ]
    command += ["--frames", "16"]
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store_dir / "videos" / "t").glob("v*/frames.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = {
        p.parent.name: p.stat().st_mtime_ns for p in (store_dir / "videos" / "t").glob("v*/frames.parquet")
    }
    assert 2 <= len(committed) < 8, "the run was not interrupted midway"
    store = FaceStore(store_dir)
    assert set(store.frames().video_id) == set(committed)  # partial folders are never read
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = FaceStore(store_dir).frames()
    assert set(final.video_id) == {f"v{k}" for k in range(8)} and len(final) == 8 * 16
    for name, stamp in committed.items():
        assert (store_dir / "videos" / "t" / name / "frames.parquet").stat().st_mtime_ns == stamp
    assert not [p for p in (store_dir / "videos" / "t").iterdir() if p.name.startswith(".")]


def test_frame_table_says_which_frames_of_a_fake_are_manipulated(corpus, tmp_path):
    """Issue 11: a frame detector must never see a real frame labelled fake. The fake's mask is empty
    in every third frame; a fake without a mask is unknown (None); every frame of a real is False."""
    root = corpus.roots["t"]
    masks = VideoReader(root / "fake" / "carphone_fake_mask.mp4").read(range(120))
    masks[::3] = 0
    with VideoWriter(root / "fake" / "partial_mask.mp4", fps=29.97, lossless=True) as writer:
        writer.write_many(masks)
    fake = corpus.filter(video_id="carphone_fake")[0]
    records = [
        corpus.filter(video_id="carphone")[0],
        fake.replace(video_id="partial", mask_relpath="fake/partial_mask.mp4"),
        fake.replace(video_id="maskless", mask_relpath=None),
    ]
    preprocess(Manifest(records, root=root), tmp_path / "store", PreprocessConfig(frames=9), workers=1)
    table = FaceStore(tmp_path / "store").frames().set_index("video_id")
    partial = table.loc["partial"]
    assert partial["manipulated"].tolist() == (partial["frame_index"] % 3 != 0).tolist()
    assert (partial["frame_index"] % 3 == 0).any() and (partial["frame_index"] % 3 != 0).any()
    assert table.loc["carphone", "manipulated"].tolist() == [False] * 9
    assert table.loc["maskless", "manipulated"].isna().all()
    # where each frame's masks come from: the corpus's mask video, or the landmark hull
    ok = table[table.status == "ok"]
    assert set(ok.loc["partial", "mask_source"]) == {"corpus"}
    assert set(ok.loc["maskless", "mask_source"]) == set(ok.loc["carphone", "mask_source"]) == {"hull"}
    assert table[table.status != "ok"].mask_source.isna().all()
