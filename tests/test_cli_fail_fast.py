"""The command line fails fast and speaks plainly: bad settings stop before any work, one line each."""

from __future__ import annotations

import pytest
from test_splits import celebdf, manifest_of
from typer.testing import CliRunner

from dftoolkit import progress as progress_module
from dftoolkit.cli import app
from dftoolkit.cli import corpora as corpora_cli
from dftoolkit.preprocess import FaceStore, PreprocessConfig, preprocess

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
