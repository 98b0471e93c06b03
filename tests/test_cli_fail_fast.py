"""The command line fails fast and speaks plainly: bad settings stop before any work, one line each."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from test_splits import celebdf, manifest_of
from typer.testing import CliRunner

from dftoolkit import Manifest, VideoRecord
from dftoolkit import progress as progress_module
from dftoolkit.cli import app
from dftoolkit.cli import corpora as corpora_cli
from dftoolkit.config import load_config
from dftoolkit.generators import BuildConfig
from dftoolkit.preprocess import FaceStore, PreprocessConfig, preprocess
from dftoolkit.quality import QualityConfig
from dftoolkit.video import VideoReader, VideoWriter

runner = CliRunner()


@pytest.mark.parametrize(
    "settings",
    [
        {"crops": ("face", "nose")},
        {"frames": 0},
        {"backend": "nope"},
        {"sizes": (("face", 0),)},
        {"sizes": (("mouth", 512),)},
        {"scale": 0.0},
        {"policy": "random"},
        {"image_format": "gif"},
    ],
)
def test_config_refuses_settings_every_video_would_fail_with(settings):
    with pytest.raises(ValueError, match="bad preprocessing settings"):
        PreprocessConfig(**settings)


def test_preprocess_bad_settings_exit_2_and_write_nothing(samples_manifest, tmp_path):
    manifest = tmp_path / "m.parquet"
    samples_manifest.filter(lambda r: r.video_id == "carphone_pristine").write_parquet(manifest)
    out = tmp_path / "faces"
    command = ["-q", "preprocess", str(manifest), "-o", str(out), "--workers", "1"]
    for bad, named in [(["--crops", "face,nose"], "'nose'"), (["--frames", "0"], "frames must be >= 1")]:
        result = runner.invoke(app, [*command, *bad])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and named in lines[0], result.output
        assert not out.exists()
    result = runner.invoke(app, [*command, "--crops", "face", "--frames", "2"])
    assert result.exit_code == 0, result.output
    assert FaceStore(out).has("samples", "carphone_pristine")


def _one_line(result, code: int = 2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_preprocess_bad_set_or_config_exits_2_and_a_corrected_rerun_succeeds(samples_manifest, tmp_path):
    """``--set frames=0``, an unknown key, a malformed pair, a config file with a bad value: one line
    each, nothing written; ``--set frames=2`` then runs, and the store records the resolved settings."""
    manifest = tmp_path / "m.parquet"
    samples_manifest.filter(lambda r: r.video_id == "carphone_pristine").write_parquet(manifest)
    out = tmp_path / "faces"
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("frames: lots\n")
    command = ["-q", "preprocess", str(manifest), "-o", str(out), "--workers", "1"]
    for bad, named in [
        (["--set", "frames=0"], "frames must be >= 1, got 0"),
        (["--set", "framez=2"], "unknown PreprocessConfig setting 'framez'; settings: crops,"),
        (["--set", "frames"], "--set 'frames': expected KEY=VALUE, e.g. min_score=0.7"),
        (["--config", str(bad_file)], "bad.yaml: frames: expected a whole number, got 'lots'"),
    ]:
        assert named in _one_line(runner.invoke(app, [*command, *bad]))
        assert not out.exists()
    result = runner.invoke(app, [*command, "--set", "frames=2", "--set", "min_score=0.4"])
    assert result.exit_code == 0, result.output
    config = PreprocessConfig(frames=2, min_score=0.4)
    assert FaceStore(out).config == config.to_dict()  # store.json: the same mapping as config.yaml's
    assert load_config(PreprocessConfig, overrides=FaceStore(out).config) == config


@pytest.fixture(scope="module")
def two_people(sample, tmp_path_factory):
    """A manifest file of 12 frames of two people (fast to track and swap)."""
    root = tmp_path_factory.mktemp("reals")
    records = []
    for name in ("carphone_pristine", "jesper_webcam"):
        with VideoWriter(root / f"{name}.mp4", fps=25, lossless=True) as writer:
            writer.write_many(VideoReader(sample(name)).read(np.arange(12)))
        records.append(VideoRecord("s", name, f"{name}.mp4", 0, target_id=name.split("_")[0]))
    Manifest(records, root=root).write_parquet(root / "reals.parquet")
    return root / "reals.parquet"


def test_generate_bad_set_exits_2_and_a_corrected_rerun_records_its_config(two_people, tmp_path):
    out = tmp_path / "srdf"
    command = ["-q", "generate", str(two_people), "-o", str(out), "--methods", "swap", "--workers", "1"]
    for bad, named in [
        (["--set", "per_target=0"], "per_target must be >= 1, got 0"),
        (["--set", "crf=99", "--set", "originals=copy"], "crf must be in [0, 51] or none, got 99; originals"),
        (["--set", "feather.nosuch=1"], "blend 'feather' has no option 'nosuch'"),
        (["--set", "nosuch.width=1"], "'nosuch' is no setting, method or blend"),
    ]:
        assert named in _one_line(runner.invoke(app, [*command, *bad]))
        assert not out.exists()
    result = runner.invoke(app, [*command, "--blends", "naive", "--set", "per_target=1", "--set", "crf=none"])
    assert result.exit_code == 0, result.output
    config = BuildConfig(methods=("swap",), blends=("naive",), crf=None)
    assert load_config(BuildConfig, out) == config
    rerun = runner.invoke(app, ["-q", "generate", str(two_people), "-o", str(out), "--config", str(out)])
    assert rerun.exit_code == 0 and "0 fake(s) and 0 real(s) made, 4 already done" in rerun.stdout


def test_quiet_environment_is_honoured(monkeypatch):
    """``DFTOOLKIT_QUIET=1`` silences progress without ``--quiet``; ``--quiet`` wins over ``0``."""
    monkeypatch.setattr(progress_module, "_quiet", None)
    seen: list[bool] = []
    listing = corpora_cli.describe_corpora
    monkeypatch.setattr(
        corpora_cli, "describe_corpora", lambda: seen.append(progress_module.is_quiet()) or listing()
    )
    for quiet, flags in [("1", []), ("0", []), ("0", ["--quiet"])]:
        result = runner.invoke(app, [*flags, "corpora"], env={"DFTOOLKIT_QUIET": quiet})
        assert result.exit_code == 0, result.output
    assert seen == [True, False, True]


def test_quality_bad_settings_exit_2_and_write_nothing(samples_manifest, tmp_path):
    manifest = tmp_path / "m.parquet"
    samples_manifest.filter(lambda r: r.video_id == "carphone_pristine").write_parquet(manifest)
    out = tmp_path / "q"
    command = ["-q", "quality", str(manifest), "-o", str(out), "--workers", "1"]
    for bad, named in [
        (["--set", "flow=nope"], "unknown flow backend 'nope'; choose from ['dis', 'farneback', 'raft']"),
        (["--frames", "0", "--set", "lpips_net=x"], "frames must be >= 1, got 0; lpips_net must be one of"),
        (["--weights", "vgg16=/nowhere/vgg16.pth"], "weights for vgg16: /nowhere/vgg16.pth does not exist"),
        (["--engine", "spark"], "--engine must be one of local, ray, got 'spark'"),
        ([str(tmp_path / "gone.parquet")], "gone.parquet: no such manifest, corpus folder or FaceStore"),
    ]:
        assert named in _one_line(runner.invoke(app, [*command, *bad]))
        assert not out.exists()
    result = runner.invoke(app, [*command, "--metrics", "mask-ssim", "--set", "frames=2"])
    assert result.exit_code == 0, result.output
    assert load_config(QualityConfig, out) == QualityConfig(metrics=("mask-ssim",), frames=2)


def test_warnings_and_logs_are_one_line_each(monkeypatch):
    """A Python warning loses its source line; other libraries' warnings are quiet, their errors are
    not; DFTOOLKIT_QUIET silences the toolkit's information but not its warnings."""
    listing = corpora_cli.describe_corpora

    def chatty():
        warnings.warn("a raw warning\nover two lines", UserWarning, stacklevel=1)
        logging.getLogger("urllib3.connectionpool").warning("third-party chatter")
        logging.getLogger("urllib3.connectionpool").error("third-party failure")
        logging.getLogger("dftoolkit.corpora").info("some information")
        logging.getLogger("dftoolkit.corpora").warning("a toolkit warning")
        return listing()

    monkeypatch.setattr(corpora_cli, "describe_corpora", chatty)
    for quiet, info in (("0", ["some information"]), ("1", [])):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            result = runner.invoke(app, ["corpora"], env={"DFTOOLKIT_QUIET": quiet})
        assert result.exit_code == 0, result.output
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("warning: ") and lines[0].endswith(
            "UserWarning: a raw warning over two lines"
        )
        assert lines[1:] == ["error: third-party failure", *info, "warning: a toolkit warning"]


def test_split_warning_is_one_line(tmp_path):
    """A split that gets no records is one ``warning:`` line, not Python's warning with its source."""
    manifest = tmp_path / "m.parquet"
    records = [r.replace(split=None, source_id="id0") for r in celebdf()]  # one indivisible component
    manifest_of(records, tmp_path).write_parquet(manifest)
    args = ["split", str(manifest), "-o", str(tmp_path / "split.parquet"), "--no-keep-test"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: grouped_split: split ") for line in lines)
    assert "UserWarning" not in result.output


def test_corpus_documentation_keeps_brackets():
    result = runner.invoke(app, ["corpora", "ffpp"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[a, b]" in result.stdout


@pytest.mark.parametrize("path", [[], ["preprocess"], ["faces"]])
def test_short_help_option(path):
    result = runner.invoke(app, [*path, "-h"])
    assert (
        result.exit_code == 0 and "Usage:" in result.stdout and "Show this message and exit" in result.stdout
    )


def test_sheet_without_video_id_is_a_usage_error(samples_manifest, tmp_path):
    carphone = samples_manifest.filter(lambda r: r.video_id == "carphone_pristine")
    store = preprocess(carphone, tmp_path / "faces", PreprocessConfig(frames=2), workers=1).root
    sheet = tmp_path / "x.png"
    result = runner.invoke(app, ["faces", str(store), "--sheet", str(sheet)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "--sheet needs a VIDEO_ID" in lines[0]
    assert not sheet.exists()


def test_demo_takes_workers_and_short_out():
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--workers" in result.stdout and "-o" in result.stdout


def test_demo_refuses_an_unknown_detector_before_any_work(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "-o", str(out), "--detectors", "stil,nope"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "unknown detector 'nope'" in lines[0]
    assert "ddl, lipforensics, m2tr, stil, styleflow" in lines[0] and not out.exists()
