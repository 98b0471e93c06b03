"""Hostile inputs and faults (issue 12, defects 5, 7, 8 and 10): one-line errors naming the culprit,
metrics that fail on their own, every failure kept, and unreadable reals named in the build report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_checkpoints import _Exploit
from test_corpus_ffpp import make_ffpp
from trees import tiny_video, write_text
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.corpora import CorpusError, index_corpus
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoReader, VideoWriter

DEEP = "[" * 10_000 + "]" * 10_000  # json.loads: RecursionError


def _one_line_error(result) -> str:
    """The command's stderr, checked to be a single ``error: ...`` line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# -- corpus trees and metadata ---------------------------------------------------------------------


def test_symlink_loops_are_named_not_followed(tmp_path):
    """``real/up -> ..`` and a link to itself: index fails in one line naming the link; validate
    reports every other folder and lists each loop as a problem (exit 1)."""
    root = tmp_path / "corpus"
    tiny_video(root / "real" / "a.mp4")
    tiny_video(root / "fake" / "Deepfakes" / "b.mp4")
    (root / "real" / "up").symlink_to("..")
    (root / "fake" / "self").symlink_to("self")
    runner = CliRunner()
    index = runner.invoke(app, ["index", "folder", str(root), "-o", str(tmp_path / "m.parquet")])
    assert index.exit_code == 2
    line = _one_line_error(index)
    assert f"{root}/" in line and "symlink" in line
    assert not (tmp_path / "m.parquet").exists()

    validate = runner.invoke(app, ["validate", "folder", str(root), "--json", str(tmp_path / "v.json")])
    assert validate.exit_code == 1, validate.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert sorted(report["problems"]) == [
        f"{root}/fake/self: a symlink that cannot be followed (Too many levels of symbolic links); "
        "not followed",
        f"{root}/real/up: symlink loop (it leads back to {root}, a folder it is in); not followed",
    ]
    assert {f["folder"]: f["found"] for f in report["folders"]} == {"real": 1, "fake": 1}


def test_deeply_nested_json_metadata_is_a_corpus_error(tmp_path):
    dfdc = tmp_path / "dfdc"
    write_text(dfdc / "dfdc_train_part_0" / "metadata.json", DEEP)
    with pytest.raises(CorpusError, match=r"dfdc_train_part_0/metadata\.json: JSON nested too deeply"):
        index_corpus("dfdc", dfdc)
    ffpp = make_ffpp(tmp_path / "ffpp")
    write_text(ffpp / "splits" / "val.json", DEEP)
    with pytest.raises(CorpusError, match=r"splits/val\.json: JSON nested too deeply"):
        index_corpus("ffpp", ffpp)
    validate = CliRunner().invoke(app, ["validate", "ffpp", str(ffpp), "--json", str(tmp_path / "v.json")])
    assert validate.exit_code == 1
    (problem,) = json.loads((tmp_path / "v.json").read_text())["problems"]
    assert problem.startswith(f"{ffpp}/splits/val.json: JSON nested too deeply")


# -- generate: options and unreadable reals --------------------------------------------------------


@pytest.fixture(scope="module")
def short_reals(sample, tmp_path_factory) -> Manifest:
    """The first 20 frames of two people (carphone, jesper), lossless: fast to track and swap."""
    root = tmp_path_factory.mktemp("reals")
    records = []
    for name in ("carphone_pristine", "jesper_webcam"):
        with VideoWriter(root / f"{name}.mp4", lossless=True) as writer:
            writer.write_many(VideoReader(sample(name)).read(np.arange(20)))
        records.append(VideoRecord("short", name, f"{name}.mp4", 0))
    return Manifest(records, root=root)


def test_generate_unknown_option_fails_before_any_work(short_reals, tmp_path):
    path = tmp_path / "reals.parquet"
    short_reals.write_parquet(path)
    out = tmp_path / "out"
    for setting, listed in (("feather.nosuch=3", "its options: width, unit"), ("nosuch.width=3", "blends: ")):
        result = CliRunner().invoke(app, ["generate", str(path), "--out", str(out), "--set", setting])
        assert result.exit_code == 2, result.output
        assert listed in _one_line_error(result)
        assert not out.exists()


def test_unreadable_real_is_named_and_pairs_are_drawn_among_readable_ones(short_reals, tmp_path):
    from dftoolkit.generators import build_dataset, choose_pairs
    from dftoolkit.generators.builder import BuildReport

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    broken = Manifest([VideoRecord("bad", "broken", "broken.mp4", 0)], root=tmp_path)
    manifest = Manifest.concat([short_reals, broken])
    seed = 2  # drawn among all three reals, both readable ones get the broken one as their source
    drawn = {(p.target.video_id, p.source.video_id) for p in choose_pairs(manifest, seed)[0]}
    assert {("carphone_pristine", "broken"), ("jesper_webcam", "broken")} < drawn
    report = BuildReport(tmp_path / "out")
    corpus = build_dataset(
        manifest, tmp_path / "out", methods=["swap"], blends=["naive"], seed=seed, workers=1, report=report
    )
    assert {r.original_id for r in corpus.filter(label=1)} == {"carphone_pristine", "jesper_webcam"}
    assert report.failed.keys() == {"bad/broken"}
    why = report.failed["bad/broken"]
    assert str(tmp_path / "broken.mp4") in why and "cannot open as a video" in why


def test_fakes_of_a_real_whose_track_fails_name_the_real(short_reals, tmp_path, monkeypatch):
    """A real that opens but fails later (here: its face track): its fakes name it and why, not a
    cache file."""
    from dftoolkit.generators import build_dataset, builder
    from dftoolkit.video import VideoDecodeError

    jesper = str(short_reals.path_of(short_reals.filter(video_id="jesper_webcam")[0]))
    track = builder.face_track

    def failing(path, cascade):
        if str(path) == jesper:
            raise VideoDecodeError(f"{path}: cannot decode frame 7")
        return track(path, cascade)

    monkeypatch.setattr(builder, "face_track", failing)
    report = builder.BuildReport(tmp_path)
    build_dataset(short_reals, tmp_path, methods=["swap"], blends=["naive"], workers=1, report=report)
    fakes = {key: why for key, why in report.failed.items() if key.startswith("swap/")}
    assert fakes.keys() == {"swap/carphone_pristine_jesper_webcam", "swap/jesper_webcam_carphone_pristine"}
    for key, why in fakes.items():
        role = "source" if key.endswith("_jesper_webcam") else "target"
        assert why == (
            f"the face track of its {role} real {jesper} failed: "
            f"dftoolkit.video.probe.VideoDecodeError: {jesper}: cannot decode frame 7"
        )
        assert ".npz" not in why


# -- checkpoints: DoveNet resume and the fan backend -----------------------------------------------


def test_dovenet_resume_from_a_state_of_other_keys_is_one_line(tmp_path, monkeypatch):
    from dftoolkit.checkpoints import CheckpointError
    from dftoolkit.generators import harmonise_train

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 16:48, 16:48] = 255
    out = tmp_path / "g.pth"
    harmonise_train.train_dovenet(images, masks, out, steps=1, batch_size=2, config="small")
    state_file = harmonise_train.train_state_path(out)
    state = torch.load(state_file, weights_only=True)
    state["generator"] = {f"other.{k}": v for k, v in state["generator"].items()}
    torch.save(state, state_file)
    with pytest.raises(CheckpointError, match=r"g\.pth\.train: generator does not fit the architecture"):
        harmonise_train.train_dovenet(images, masks, out, steps=2, batch_size=2, config="small")

    monkeypatch.setattr(harmonise_train, "faces_from_store", lambda *args: (images, masks))
    args = ["train-dovenet", "store", "--out", str(out), "--steps", "2", "--batch-size", "2", "--size", "64"]
    result = CliRunner().invoke(app, [*args, "--config", "small"])
    assert result.exit_code == 2
    line = _one_line_error(result)
    assert str(state_file) in line and "unexpected: other." in line and "--fresh" in line


@pytest.mark.parametrize("which", ["s3fd", "fan"])
def test_fan_refuses_a_weights_file_that_would_run_code(tmp_path, which):
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from dftoolkit.checkpoints import CheckpointError
    from dftoolkit.faces.fan import FAN_WEIGHTS, S3FD_WEIGHTS, FanBackend

    marker = tmp_path / "ran"
    evil = {"weight": _Exploit(str(marker))}
    torch.save(evil if which == "s3fd" else s3fd().state_dict(), tmp_path / S3FD_WEIGHTS)
    torch.save(evil, tmp_path / FAN_WEIGHTS)  # with a bad S3FD, never reached
    path = tmp_path / (S3FD_WEIGHTS if which == "s3fd" else FAN_WEIGHTS)
    with pytest.raises(CheckpointError) as err:
        FanBackend(weights_dir=tmp_path)
    text = str(err.value)
    assert text.startswith(f"{path} is not a plain weights file") and "may run code" in text
    assert "weights_only` set to `False`" not in text and not marker.exists()


# -- the quality report: weights, independent metrics, every failure --------------------------------


@pytest.fixture(scope="module")
def pair(sample, tmp_path_factory) -> Manifest:
    """Dataset "pair": a real clip, a fake of it (the face box brightened) and its mask, 8 frames."""
    root = tmp_path_factory.mktemp("pair")
    real = VideoReader(sample("carphone_pristine")).read(np.arange(8))
    mask = np.zeros_like(real)
    mask[:, 30:110, 50:130] = 255
    fake = np.where(mask > 0, np.clip(real.astype(int) + 40, 0, 255), real).astype(np.uint8)
    for name, frames in (("real", real), ("fake", fake), ("mask", mask)):
        with VideoWriter(root / f"{name}.mp4", lossless=True) as writer:
            writer.write_many(frames)
    records = [
        VideoRecord("pair", "real", "real.mp4", 0),
        VideoRecord(
            "pair", "fake", "fake.mp4", 1, method="swap+naive", original_id="real", mask_relpath="mask.mp4"
        ),
    ]
    return Manifest(records, root=root)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty ``$TORCH_HOME/hub/checkpoints``."""
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return folder


@pytest.mark.parametrize("kind", ["refused", "unfit"])
def test_quality_weights_are_checked_before_any_video_is_read(pair, torch_home, tmp_path, kind):
    weights = tmp_path / "vgg16.pth"
    marker = tmp_path / "ran"
    torch.save({"weight": _Exploit(str(marker))} if kind == "refused" else {"x": torch.zeros(2)}, weights)
    path = tmp_path / "pair.parquet"
    pair.write_parquet(path)
    out = tmp_path / "q"
    args = ["quality", str(path), "--out", str(out), "--metrics", "mask-ssim,perceptual"]
    result = CliRunner().invoke(app, [*args, "--weights", f"vgg16={weights}", "--workers", "1"])
    assert result.exit_code == 2, result.output
    line = _one_line_error(result)
    assert str(weights) in line
    assert ("may run code" if kind == "refused" else "does not fit the architecture") in line
    assert not marker.exists() and not (out / "cache").exists() and not (out / "report.json").exists()


def test_mask_ssim_is_scored_when_the_perceptual_backbone_cannot_load(pair, torch_home, tmp_path):
    from dftoolkit.quality import QualityConfig, quality_report

    (torch_home / "vgg16-397923af.pth").write_bytes(b"not a checkpoint")  # found, fails to load
    config = QualityConfig(metrics=("mask-ssim", "perceptual"), frames=4, size=64)
    report = quality_report([pair], tmp_path / "q", config, workers=1)
    fake = report.per_video.set_index("video_id").loc["fake"]
    assert 0 < fake.mask_ssim < 1 and np.isnan(fake.perceptual)
    assert list(report.skipped) == ["pair/fake"] and list(report.skipped["pair/fake"]) == ["perceptual"]
    assert report.skipped["pair/fake"]["perceptual"].startswith(
        f"dftoolkit.checkpoints.CheckpointError: {torch_home / 'vgg16-397923af.pth'} "
    )


def test_every_failed_metric_of_a_video_is_kept(pair, torch_home, tmp_path):
    from dftoolkit.quality import QualityConfig, quality_report

    root = tmp_path / "broken"
    root.mkdir()
    for name in ("real", "mask"):
        shutil.copy(pair.root / f"{name}.mp4", root)
    (root / "fake.mp4").write_bytes(b"not a video")
    broken = Manifest(list(pair), root=root)
    metrics = ("mask-ssim", "ewarp", "tsne", "jitter")
    config = QualityConfig(metrics=metrics, frames=4, temporal_frames=4, size=64)
    report = quality_report([broken], tmp_path / "q", config, workers=1)
    reasons = report.skipped["pair/fake"]
    assert sorted(reasons) == sorted(metrics)
    assert all("fake.mp4" in why for why in reasons.values()), reasons
    assert json.loads((tmp_path / "q" / "report.json").read_text())["skipped"] == report.skipped
    markdown = (tmp_path / "q" / "report.md").read_text()
    for metric in metrics:
        assert f"- pair/fake ({metric}): " in markdown
