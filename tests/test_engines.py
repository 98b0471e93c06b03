"""Every per-video stage gives the local result on Ray (``engine="ray"``, ``--engine ray``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.quality import QualityConfig, quality_report
from dftoolkit.video import VideoReader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for the module; the stages join it instead of starting their own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_local_pool(monkeypatch):
    """The local engine's process pool is out of reach: a run that fell back to it fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("the local process pool was used")

    monkeypatch.setattr("dftoolkit.workers.ProcessPoolExecutor", refuse)


@pytest.fixture(scope="module")
def reals(samples_manifest):
    return samples_manifest.filter(lambda r: r.video_id in ("carphone_pristine", "jesper_webcam"))


def test_preprocess_on_ray_gives_the_local_store(reals, tmp_path, ray_cluster):
    config = PreprocessConfig(crops=("face", "mouth"), frames=4)
    local = preprocess(reals, tmp_path / "local", config, workers=1)
    on_ray = preprocess(reals, tmp_path / "ray", config, workers=2, engine="ray")
    assert on_ray.processed == local.processed == 2 and not on_ray.failed
    order = ["video_id", "frame_index"]
    a = local.store.frames().sort_values(order).reset_index(drop=True)
    b = on_ray.store.frames().sort_values(order).reset_index(drop=True)
    assert a[[*order, "status", "reason"]].equals(b[[*order, "status", "reason"]])
    assert all(np.allclose(x, y) for x, y in zip(a.box.dropna(), b.box.dropna(), strict=True))
    for kind in ("face", "mouth"):
        for x, y in zip(a[f"crop_path_{kind}"].dropna(), b[f"crop_path_{kind}"].dropna(), strict=True):
            assert np.array_equal(cv2.imread(str(local.store.path(x))), cv2.imread(str(on_ray.store.path(y))))


def test_build_on_ray_gives_the_local_corpus(reals, tmp_path, ray_cluster):
    from dftoolkit.generators import build_dataset

    settings = {"methods": ["swap"], "blends": ["naive"], "crf": None, "perturb_reals": False}
    local = build_dataset(reals, tmp_path / "local", **settings, workers=1)
    on_ray = build_dataset(reals, tmp_path / "ray", **settings, workers=2, engine="ray")
    assert [r.video_id for r in on_ray] == [r.video_id for r in local] and len(local) == 4
    for a, b in zip(local, on_ray, strict=True):
        frames = [0, a.frames - 1]
        assert np.array_equal(
            VideoReader(local.path_of(a)).read(frames), VideoReader(on_ray.path_of(b)).read(frames)
        )


def test_quality_on_ray_gives_the_local_scores(reals, tmp_path, ray_cluster):
    config = QualityConfig(metrics=("ewarp", "jitter"), frames=4, temporal_frames=6, size=64)
    local = quality_report([reals], tmp_path / "local", config, workers=1)
    on_ray = quality_report([reals], tmp_path / "ray", config, workers=2, engine="ray")
    columns = ["video_id", "ewarp", "jitter"]
    assert local.per_video[columns].equals(on_ray.per_video[columns])
    assert local.per_video.ewarp.notna().all()


def test_the_cli_runs_a_stage_on_ray(reals, tmp_path, ray_cluster):
    manifest = tmp_path / "m.parquet"
    reals.write_parquet(manifest)
    out = tmp_path / "store"
    result = CliRunner().invoke(
        app, ["preprocess", str(manifest), "-o", str(out), "--frames", "2", "--engine", "ray"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "videos").rglob("frames.parquet"))) == 2
