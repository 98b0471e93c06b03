"""The dftoolkit command line: version, help on every command, samples and demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from dftoolkit import __version__
from dftoolkit.cli import app

runner = CliRunner()


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():  # groups have sub-commands
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"dftoolkit {__version__}"


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "dftoolkit")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_commands_registered():
    names = {" ".join(p) for p in _all_command_paths()}
    assert {"samples fetch", "samples list", "info", "demo"} <= names


def test_samples_list_and_info(samples_manifest):
    listing = runner.invoke(app, ["samples", "list"])
    assert listing.exit_code == 0 and "carphone_pristine.mp4" in listing.stdout
    info = runner.invoke(app, ["info", str(samples_manifest.root / "manifest.parquet"), "--by", "target_id"])
    assert info.exit_code == 0 and "carphone" in info.stdout


@pytest.mark.slow
def test_demo_runs_every_stage(samples_manifest, tmp_path):
    import cv2
    import pandas as pd

    from dftoolkit.corpora import index_corpus
    from dftoolkit.fetch import debian_available
    from dftoolkit.manifest import Manifest
    from dftoolkit.preprocess import FaceStore
    from dftoolkit.splits import check_leaks

    result = runner.invoke(app, ["--quiet", "demo", "--out", str(tmp_path), "--frames", "8"])
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(tmp_path / "samples_sheet.png"))
    assert sheet is not None and sheet.shape[0] >= 96 * len(samples_manifest)
    assert (tmp_path / "export" / "hf").is_dir() and (tmp_path / "export" / "manifest.csv").is_file()
    store = FaceStore(tmp_path / "faces")
    table = store.frames()
    assert len(table) == 8 * len(samples_manifest)  # every sampled frame has a row
    assert (table[table.video_id == "carphone_pristine"].status == "ok").all()
    faces_sheet = next(tmp_path.glob("faces_*.png"))
    assert cv2.imread(str(faces_sheet)) is not None
    if debian_available():  # the generator pairs different people: carphone, jesper, the presenter
        corpus = index_corpus("toolkit", tmp_path / "srdf")
        fakes = corpus.filter(label=1)
        assert {r.method for r in fakes} == {"swap+feather", "swap+rct", "reenact+feather", "reenact+rct"}
        originals = corpus.filter(label=0, perturbation=None)
        assert len(fakes) == 2 * len(originals) * 4
        assert len(corpus.filter(label=0)) == 2 * len(originals)  # each with a perturbed copy
        assert {r.perturbation is None for r in fakes} == {True, False}
        assert len(list((tmp_path / "srdf" / "sheets").glob("*.png"))) == len(fakes.filter(perturbation=None))
        assert all(r.coverage >= 0.9 for r in fakes)
        # issue 11's done-when: file properties alone do not tell the built corpus's reals from its fakes
        audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
        (everything,) = [r for r in audit["rows"] if r["scope"] == "srdf" and r["feature"] == "all metadata"]
        assert everything["auc"] <= 0.65 and not everything["flagged"]
        # step 11: both small detectors trained on the corpus's split, tested on its held-out part and
        # on perturbed copies of it (the benchmark)
        split = Manifest.read_parquet(tmp_path / "detectors" / "manifest.parquet")
        for part in ("train", "val", "test"):
            assert {r.label for r in split if r.split == part} == {0, 1}
        assert not [leak for leak in check_leaks(split) if leak.kind != "identity"]
        bench = tmp_path / "detectors" / "benchmark"
        for name in ("lipforensics", "stil"):
            scores = bench / "scores" / "srdf" / name / "srdf-test"
            metrics = json.loads((scores / "metrics.json").read_text())
            assert "random (seed 0)" in metrics["initialisation"]
            assert metrics["video"]["n"] == len([r for r in split if r.split == "test"])
            assert metrics["video"]["auc"] is not None
        robustness = pd.read_csv(bench / "robustness.csv")
        assert set(robustness.chain) == {"clean", "GB:2", "GB:4", "JPEG:2", "JPEG:4", "c40"}
        assert robustness.auc.notna().any() and robustness[robustness.auc.isna()].reason.notna().all()
        assert "trained from random weights" in result.output
        # the report: every section, its images beside it, the wall time of each step
        page = (tmp_path / "report.html").read_text()
        for title in ("Corpus", "Faces", "Fakes", "Shortcut audit", "Quality", "Detectors", "Wall time"):
            assert f">{title}" in page
        images = list((tmp_path / "report_files").iterdir())
        assert len(images) >= 8 and all(f"report_files/{p.name}" in page for p in images)
        steps = [row["step"] for row in json.loads((tmp_path / "stages.json").read_text())]
        assert steps[0].startswith("1-5") and steps[-1] == "11 detectors"


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "dftoolkit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and __version__ in done.stdout
