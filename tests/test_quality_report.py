"""The quality report on the real sample corpus plus a generated SR-DF-style fake set."""

from __future__ import annotations

import filecmp
import inspect
import json
import os
import shutil
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.manifest import Manifest
from dftoolkit.quality import QualityConfig, quality_report
from dftoolkit.quality import spread as spread_module
from dftoolkit.records import VideoRecord, method_kind
from dftoolkit.video import VideoReader, VideoWriter, sample_indices

PNG = b"\x89PNG\r\n\x1a\n"
FAST = QualityConfig(frames=6, temporal_frames=8, size=128)


@pytest.fixture(scope="module")
def reals(samples_manifest):
    return samples_manifest.filter(lambda r: r.video_id in ("carphone_pristine", "jesper_webcam"))


@pytest.fixture(scope="module")
def fakes(reals, tmp_path_factory):
    """A toolkit corpus: the two reals, a swap and a reenactment each way (lossless, pasted)."""
    from dftoolkit.generators import build_dataset

    out = tmp_path_factory.mktemp("srdf") / "srdf"
    build_dataset(reals, out, methods=["swap", "reenact"], blends=["naive"], crf=None, workers=1)
    return out


@pytest.fixture(scope="module")
def no_torch_weights(tmp_path_factory):
    """An empty $TORCH_HOME: VGG-16, AlexNet and ResNet-18 weights are missing, as on a fresh machine."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def report(reals, fakes, no_torch_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    return quality_report([reals, fakes], out, FAST, workers=2)


def _valid_png(path) -> bool:
    return path.read_bytes()[:8] == PNG and cv2.imread(str(path)) is not None


def _repeated(reals, fakes) -> set[str]:
    """The corpus's originals that are the reals' own files (links or copies): scored once, as samples/."""
    corpus = Manifest.read_parquet(fakes / "manifest.parquet")
    paths = {r.video_id: reals.path_of(r) for r in reals}
    return {
        f"srdf/{r.video_id}"
        for r in corpus
        if r.video_id in paths and filecmp.cmp(corpus.path_of(r), paths[r.video_id], shallow=False)
    }


@pytest.fixture
def plotted(monkeypatch) -> list[dict[str, Any]]:
    """The arguments, by name, of every ``plot_spread`` call (it still draws)."""
    calls = []
    draw = spread_module.plot_spread

    def record(*args, **kwargs):
        calls.append(inspect.signature(draw).bind(*args, **kwargs).arguments)
        return draw(*args, **kwargs)

    monkeypatch.setattr(spread_module, "plot_spread", record)
    return calls


def test_report_files_and_tables(report, reals, fakes):
    out = report.out_dir
    for name in (
        "report.json",
        "report.md",
        "per_video.csv",
        "tsne.png",
        "distributions.png",
        "worst_mask_ssim.png",
    ):
        assert (out / name).is_file(), name
    for name in ("tsne.png", "distributions.png", "worst_mask_ssim.png"):
        assert _valid_png(out / name), name
    # one row per dataset and class, one per dataset and method
    assert sorted(zip(report.datasets.dataset, report.datasets.kind, strict=True)) == [
        ("samples", "real"),
        ("srdf", "fake"),
        ("srdf", "real"),
    ]
    assert sorted(report.methods.method) == ["reenact+naive", "swap+naive"]
    assert report.methods.videos.tolist() == [2, 2]
    written = json.loads((out / "report.json").read_text())
    assert len(written["datasets"]) == 3 and len(written["methods"]) == 2
    assert len(report.per_video) == len(Manifest.read_parquet(fakes / "manifest.parquet")) + 2
    assert set(report.skipped) == _repeated(reals, fakes), report.skipped  # no failures


def test_scores_land_where_they_apply(report):
    v = report.per_video.set_index(["dataset", "video_id"])
    fakes = v[v.label == 1]
    reals = v[v.label == 0]
    assert fakes.mask_ssim.between(0, 1).all() and fakes.perceptual.gt(0).all()
    assert reals[["mask_ssim", "perceptual", "identity_to_source", "expression_to_source"]].isna().all().all()
    assert v.ewarp.gt(0).all() and v.jitter.notna().all()
    swaps = fakes[fakes.method == "swap+naive"]
    reenacts = fakes[fakes.method == "reenact+naive"]
    assert swaps.identity_to_source.between(-1, 1).all() and swaps.expression_to_source.isna().all()
    assert reenacts.expression_to_source.ge(0).all() and reenacts.identity_to_source.isna().all()
    # the same real video scores the same in both datasets (same file, same settings)
    assert v.loc[("samples", "carphone_pristine"), "ewarp"] == v.loc[("srdf", "carphone_pristine"), "ewarp"]


def test_missing_weights_are_reported_not_faked(report):
    # LPIPS needs AlexNet's ImageNet trunk: not computed, and the reason names the file
    assert "alexnet-owt-7be5be79.pth" in report.unavailable["lpips"]
    assert report.per_video.lpips.isna().all()
    # perceptual and t-SNE fall back to the offline ImageNet MobileNetV2, flagged everywhere
    for metric in ("perceptual", "tsne"):
        info = report.backbones[metric]
        assert info["name"] == "mobilenet_v2" and info["fallback"] and info["imagenet"]
    markdown = (report.out_dir / "report.md").read_text()
    assert "offline fallback" in markdown and "lpips not computed" in markdown
    assert json.loads((report.out_dir / "report.json").read_text())["backbones"]["tsne"]["fallback"] is True


def test_rerun_reads_the_cache(report, reals, fakes, no_torch_weights):
    n = len(report.per_video) - len(_repeated(reals, fakes))  # videos scored
    cache = sorted((report.out_dir / "cache").rglob("*.json"))
    assert len(cache) == n
    cache[0].unlink()
    again = quality_report([reals, fakes], report.out_dir, FAST, workers=1)
    assert again.cached == n - 1
    columns = ["mask_ssim", "ewarp", "jitter", "identity_to_source"]
    np.testing.assert_allclose(again.per_video[columns].to_numpy(), report.per_video[columns].to_numpy())


def test_failures_are_recorded_per_video_and_metric(fakes, reals, no_torch_weights, tmp_path):
    broken = tmp_path / "srdf"
    shutil.copytree(fakes, broken)
    manifest = Manifest.read_parquet(broken / "manifest.parquet")
    victim = next(r for r in manifest if r.method == "swap+naive")
    manifest.path_of(victim).write_bytes(b"not a video")
    config = QualityConfig(metrics=("mask-ssim", "ewarp"), frames=4, temporal_frames=4, size=64)
    result = quality_report([broken], tmp_path / "q", config, workers=1)
    reasons = result.skipped[f"srdf/{victim.video_id}"]
    assert set(reasons) == {"mask-ssim", "ewarp"} and victim.video_id in reasons["mask-ssim"]
    row = result.per_video.set_index("video_id").loc[victim.video_id]
    assert np.isnan(row.mask_ssim) and np.isnan(row.ewarp)
    assert result.per_video.mask_ssim.notna().sum() == 3  # the other fakes are scored
    # the failure is cached with the file's fingerprint: unchanged, it is not retried; repaired, it is
    assert quality_report([broken], tmp_path / "q", config, workers=1).cached == len(manifest)
    shutil.copy(Manifest.read_parquet(fakes / "manifest.parquet").path_of(victim), manifest.path_of(victim))
    repaired = quality_report([broken], tmp_path / "q", config, workers=1)
    assert repaired.cached == len(manifest) - 1 and not repaired.skipped
    assert repaired.per_video.mask_ssim.notna().sum() == 4


def test_method_kinds():
    assert method_kind("swap+rct") == "swap"
    assert method_kind("reenact+feather") == "reenact"
    assert method_kind("fomm+naive") == "reenact"
    assert method_kind("Face2Face") == "reenact" and method_kind("Deepfakes") == "swap"
    assert method_kind("mystery") is None and method_kind(None) is None


def test_bad_config_and_sources(tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        QualityConfig(metrics=("mask-ssim", "fid"))
    with pytest.raises(ValueError, match="protocol"):
        QualityConfig(protocol="outside")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        quality_report([tmp_path / "nowhere"], tmp_path / "q")


def test_cli(fakes, no_torch_weights, tmp_path):
    runner = CliRunner()
    out = tmp_path / "q"
    args = ["quality", str(fakes), "--out", str(out), "--metrics", "mask-ssim,ewarp", "--frames", "4"]
    done = runner.invoke(app, [*args, "--temporal-frames", "4", "--size", "64", "--workers", "1"])
    assert done.exit_code == 0, done.output
    assert "quality per dataset" in done.output and (out / "report.md").is_file()
    (out / "tsne.png").write_bytes(PNG)  # as if an earlier run with t-SNE had written it
    again = runner.invoke(app, [*args, "--temporal-frames", "4", "--size", "64", "--workers", "1"])
    assert again.exit_code == 0 and "(6 videos from the cache)" in " ".join(again.output.split())
    assert not (out / "tsne.png").exists()  # a plot this run did not make is not left behind
    bad = runner.invoke(app, ["quality", str(fakes), "--out", str(out), "--metrics", "fid"])
    assert bad.exit_code == 2 and "unknown metric" in bad.output


def test_sources_can_be_a_facestore(reals, tmp_path):
    from dftoolkit.preprocess import PreprocessConfig, preprocess
    from dftoolkit.quality.report import load_sources

    store = preprocess(
        reals, tmp_path / "faces", PreprocessConfig(crops=("face",), frames=2), workers=1
    ).store
    loaded = load_sources([store.root])
    assert sorted(r.key for r in loaded) == sorted(r.key for r in reals)
    assert all(loaded.path_of(r).is_file() for r in loaded)
    with pytest.raises(ValueError, match=r"no manifest\.parquet, and not a FaceStore"):
        load_sources([tmp_path])


def test_weight_files_by_path_are_used_and_reported(fakes, no_torch_weights, plotted, tmp_path):
    """Random (not ImageNet) ResNet-18 and RAFT weights given as files: used, and reported as such."""
    import torch
    import torchvision

    resnet = tmp_path / "my_resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    fast = {"frames": 2, "temporal_frames": 3, "size": 64}
    config = QualityConfig(
        metrics=("tsne", "ewarp"), flow="raft", weights=(("resnet18", str(resnet)),), **fast
    )
    report = quality_report([fakes], tmp_path / "q1", config, workers=1)
    info = report.backbones["tsne"]
    assert (info["name"], info["weights_path"], info["fallback"], info["imagenet"]) == (
        "resnet18",
        str(resnet),
        False,
        False,
    )
    assert "NOT torchvision's ImageNet release" in (tmp_path / "q1" / "report.md").read_text()
    # the t-SNE plot names the backbone and flags its weights
    assert plotted[0]["title"].startswith(
        "t-SNE of resnet18 face features (weights NOT torchvision's ImageNet release)"
    )
    # no RAFT weights anywhere: E_warp is not computed, and the reason names the file
    assert "raft_small" in report.unavailable["ewarp"] and report.per_video.ewarp.isna().all()

    raft = tmp_path / "my_raft.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.optical_flow.raft_small(weights=None).state_dict(), raft)
    config = QualityConfig(metrics=("ewarp",), flow="raft", weights=(("raft_small", str(raft)),), **fast)
    report = quality_report([fakes], tmp_path / "q2", config, workers=1)
    assert not report.unavailable and not report.skipped
    assert report.per_video.ewarp.notna().all() and (report.per_video.ewarp >= 0).all()


def test_weight_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown network 'vgg99'"):
        QualityConfig(weights=(("vgg99", str(tmp_path)),))
    with pytest.raises(FileNotFoundError, match=r"gone\.pth"):
        QualityConfig(weights=(("vgg16", str(tmp_path / "gone.pth")),))
    done = CliRunner().invoke(
        app, ["quality", str(tmp_path), "--out", str(tmp_path / "q"), "--weights", "vgg16"]
    )
    assert done.exit_code == 2 and "expected KEY=VALUE, e.g. vgg16=" in done.output


TSNE_FAST = QualityConfig(metrics=("tsne",), frames=10)


@pytest.fixture(scope="module")
def clips(sample, tmp_path_factory) -> Manifest:
    """Dataset "clips": the first 12 frames of carphone_pristine, re-encoded: ``gap`` (fake) with its
    middle sampled frame (of ``TSNE_FAST.frames``) black, ``blank`` (real) all black, ``whole`` (real)."""
    root = tmp_path_factory.mktemp("clips")
    frames = VideoReader(sample("carphone_pristine")).read(np.arange(12))
    gap = frames.copy()
    gap[sample_indices(12, TSNE_FAST.frames)[TSNE_FAST.frames // 2]] = 0
    records = []
    for name, label, video in (("gap", 1, gap), ("blank", 0, np.zeros_like(frames)), ("whole", 0, frames)):
        with VideoWriter(root / f"{name}.mp4") as writer:
            writer.write_many(video)
        records.append(VideoRecord("clips", name, f"{name}.mp4", label))
    return Manifest(records, root=root)


def test_tsne_averages_face_frames_and_keeps_a_video_with_a_faceless_middle(
    reals, clips, no_torch_weights, plotted, tmp_path
):
    """Up to 8 sampled frames with a face per video; the old protocol (the middle frame) dropped ``gap``."""
    sources = [reals, clips.filter(lambda r: r.video_id != "whole")]
    report = quality_report(sources, tmp_path, TSNE_FAST, workers=1)
    assert report.skipped == {"clips/blank": {"tsne": "ValueError: no face in any of the 10 sampled frames"}}
    sampled = sample_indices(12, TSNE_FAST.frames)
    used = json.loads(next((tmp_path / "cache").rglob("gap.json")).read_text())["feature_frames"]
    assert len(used) == 8 and set(used) < set(sampled) - {sampled[TSNE_FAST.frames // 2]}
    assert report.spread["n_samples"] == 3  # one point per video: carphone, jesper, gap

    plot = plotted[0]
    assert plot["title"].startswith(
        "t-SNE of mobilenet_v2 face features (offline fallback: not the paper's ResNet-18)"
    )
    # what plot_spread drew: the legend counts are the points of each (dataset, class)
    path = plot.pop("path")
    ax = spread_module.spread_figure(**plot).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "clips fake (1 video)",
        "samples real (2 videos)",
    ]
    assert [len(points.get_offsets()) for points in ax.collections] == [1, 2]
    assert ax.get_title() == plot["title"] and _valid_png(path)


def test_a_video_given_twice_is_scored_once(reals, clips, no_torch_weights, plotted, tmp_path):
    """A corpus's originals that are the reals' files (hard link, copy) are scored once, as the reals;
    a re-encoded original is another video."""
    originals = tmp_path / "srdf" / "originals"
    originals.mkdir(parents=True)
    paths = {r.video_id: reals.path_of(r) for r in reals}
    try:
        os.link(paths["carphone_pristine"], originals / "carphone_pristine.mp4")
    except OSError as err:
        pytest.skip(f"no hard links from the sample cache to {tmp_path}: {err}")
    shutil.copyfile(paths["jesper_webcam"], originals / "jesper_webcam.avi")
    shutil.copyfile(clips.path_of(clips.filter(video_id="whole")[0]), originals / "recoded.mp4")
    corpus = Manifest(
        [VideoRecord("srdf", p.stem, f"originals/{p.name}", 0) for p in sorted(originals.iterdir())],
        root=originals.parent,
    )
    config = QualityConfig(metrics=("ewarp", "tsne"), frames=4, temporal_frames=3, size=64)
    report = quality_report([reals, corpus], tmp_path / "q", config, workers=1)

    assert set(report.skipped) == {"srdf/carphone_pristine", "srdf/jesper_webcam"}
    assert (
        "samples/carphone_pristine (same file: a hard link" in report.skipped["srdf/carphone_pristine"]["all"]
    )
    assert "samples/jesper_webcam (identical copy" in report.skipped["srdf/jesper_webcam"]["all"]
    assert "srdf/jesper_webcam (all): the same video as" in (tmp_path / "q" / "report.md").read_text()
    assert len(list((tmp_path / "q" / "cache").rglob("*.json"))) == 3  # each file scored once
    ewarp = report.per_video.set_index(["dataset", "video_id"]).ewarp
    assert ewarp.notna().all()
    assert ewarp["srdf", "carphone_pristine"] == ewarp["samples", "carphone_pristine"]
    # the t-SNE draws each video once
    assert sorted(plotted[0]["groups"]) == ["samples", "samples", "srdf"] and report.spread["n_samples"] == 3


def test_with_a_store_the_face_metrics_score_the_face_it_tracked(sample, cascade, tmp_path):
    """Two people in every frame: carphone (small, left) beside an upscaled jesper (right). The
    store tracked carphone; quality follows that track, not the larger face it would pick alone."""
    from dftoolkit.preprocess.store import FaceStore, VideoFaces
    from dftoolkit.quality.expression import frame_landmarks
    from dftoolkit.quality.temporal import landmark_jitter

    carphone = VideoReader(sample("carphone_pristine")).read(range(12))
    frames = np.zeros((12, 240, 176 + 320, 3), np.uint8)
    frames[:, :144, :176] = carphone
    frames[:, :, 176:] = [
        cv2.resize(f, (320, 240)) for f in VideoReader(sample("jesper_webcam")).read(range(12))
    ]
    with VideoWriter(tmp_path / "duo.mp4", fps=25, lossless=True) as writer:
        writer.write_many(frames)
    manifest = Manifest([VideoRecord("t", "duo", "duo.mp4", 0)], root=tmp_path)
    alone = [cascade.detect(image) for image in carphone]  # carphone's face, found without jesper
    assert all(len(faces) == 1 for faces in alone)
    boxes = np.stack([faces.boxes[0] for faces in alone])
    store = FaceStore.create(tmp_path / "store", {})
    store.commit(
        VideoFaces(
            "t", "duo", np.arange(12), ["ok"] * 12, [None] * 12, np.zeros(12, np.int64),
            np.ones(12, np.float32), boxes, np.stack([faces.landmarks[0] for faces in alone]),
        )
    )  # fmt: skip
    store.set_manifest(manifest)

    config = QualityConfig(metrics=("jitter", "tsne"), frames=12, temporal_frames=12, size=64)
    largest = quality_report([manifest], tmp_path / "alone", config, workers=1).per_video.jitter.iloc[0]
    tracked = quality_report([manifest], tmp_path / "tracked", config, store=store.root, workers=1)
    expected = landmark_jitter(
        frame_landmarks(VideoReader(tmp_path / "duo.mp4").read(range(12)), cascade, boxes)
    )
    assert tracked.per_video.jitter.iloc[0] == pytest.approx(expected)
    assert largest != pytest.approx(expected)  # on its own, quality scores jesper
    # a FaceStore folder given as a source is followed the same way
    from_source = quality_report([store.root], tmp_path / "source", config, workers=1)
    assert from_source.per_video.jitter.iloc[0] == pytest.approx(expected)
