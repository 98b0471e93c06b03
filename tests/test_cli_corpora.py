"""The corpus commands end to end: corpora, index (with --probe), validate, split, export."""

from __future__ import annotations

import json

import datasets
import pytest
from test_corpus_ffpp import make_ffpp
from typer.testing import CliRunner

from dftoolkit import Manifest
from dftoolkit.cli import app

runner = CliRunner()


@pytest.fixture
def ffpp(tmp_path):
    return make_ffpp(tmp_path / "FaceForensics++")


def test_corpora_lists_and_describes_loaders():
    listing = runner.invoke(app, ["corpora"])
    assert listing.exit_code == 0 and "ffpp" in listing.stdout and "celebdf-v2" in listing.stdout
    one = runner.invoke(app, ["corpora", "ffpp"])
    assert one.exit_code == 0 and "compression" in one.stdout and "'c23'" in one.stdout
    assert runner.invoke(app, ["corpora", "nope"]).exit_code == 2


def test_index_probe_validate_split_export(ffpp, tmp_path):
    out = tmp_path / "ffpp.parquet"
    result = runner.invoke(
        app, ["-q", "index", "ffpp", str(ffpp), "-o", str(out), "-O", "methods=Deepfakes,FaceSwap", "--probe"]
    )
    assert result.exit_code == 0, result.output
    manifest = Manifest.read_parquet(out)
    assert {r.method for r in manifest} == {"youtube", "Deepfakes", "FaceSwap"}
    assert all(r.frames == 8 and r.width == 64 for r in manifest)  # probed
    assert {r.split for r in manifest} == {"train", "val", "test", None}  # official pairs; 999 is in none

    assert runner.invoke(app, ["validate", "ffpp", str(ffpp), "--probe"]).exit_code == 0
    (ffpp / "original_sequences/youtube/c23/videos/003.mp4").unlink()
    report_file = tmp_path / "report.json"
    failed = runner.invoke(app, ["validate", "ffpp", str(ffpp), "--json", str(report_file)])
    assert failed.exit_code == 1 and "layout incomplete" in failed.stdout
    folders = {f["folder"]: f for f in json.loads(report_file.read_text())["folders"]}
    assert folders["original_sequences/youtube/c23/videos"]["missing"] == ["003.mp4"]

    assert runner.invoke(app, ["split", str(out), "--check"]).exit_code == 0  # official FF++ pairs: no leak
    regrouped = tmp_path / "grouped.parquet"
    result = runner.invoke(
        app, ["split", str(out), "-o", str(regrouped), "--ratios", "0.6,0.2,0.2", "--no-keep-test"]
    )
    assert result.exit_code == 0 and "no leaks" in result.stdout
    assert {r.split for r in Manifest.read_parquet(regrouped)} <= {"train", "val", "test"}

    exported = tmp_path / "export"
    result = runner.invoke(app, ["-q", "export", str(out), "--out", str(exported), "--formats", "hf,csv"])
    assert result.exit_code == 0, result.output
    # 999 is in no official pair, so not every record has a split: a plain Dataset, not a DatasetDict.
    loaded = datasets.load_from_disk(str(exported / "hf"))
    assert isinstance(loaded, datasets.Dataset) and len(loaded) == len(manifest)
    assert (exported / "manifest.csv").is_file() and not (exported / "manifest.parquet").exists()
    result = runner.invoke(
        app, ["-q", "export", str(regrouped), "--out", str(tmp_path / "e2"), "--formats", "hf"]
    )
    by_split = datasets.load_from_disk(str(tmp_path / "e2" / "hf"))
    assert result.exit_code == 0 and sum(len(s) for s in by_split.values()) == len(manifest)


def test_split_check_fails_on_a_leak(tmp_path, ffpp):
    manifest = Manifest.read_parquet(_index(ffpp, tmp_path))
    leaky = manifest.map_records(lambda r: r.replace(split="test") if r.video_id == "youtube-c23-000" else r)
    path = tmp_path / "leaky.parquet"
    leaky.write_parquet(path)
    result = runner.invoke(app, ["split", str(path), "--check"])
    assert result.exit_code == 1 and "original" in result.stdout and "leak" in result.stdout


def test_bad_options_and_roots_are_one_line_errors(tmp_path, ffpp):
    bad = runner.invoke(
        app, ["index", "ffpp", str(ffpp), "-o", str(tmp_path / "m.parquet"), "-O", "methods=Nope"]
    )
    assert bad.exit_code == 2 and "Nope" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(app, ["validate", "ffpp", str(ffpp), "-O", "methods=Nope"]).exit_code == 2
    missing = runner.invoke(app, ["index", "ffpp", str(tmp_path / "nope"), "-o", str(tmp_path / "m.parquet")])
    assert missing.exit_code == 2 and "not a folder" in missing.output
    assert runner.invoke(app, ["index", "ffpp", str(ffpp), "-o", "x.parquet", "-O", "oops"]).exit_code == 2


def _index(root, tmp_path):
    out = tmp_path / "m.parquet"
    assert runner.invoke(app, ["-q", "index", "ffpp", str(root), "-o", str(out)]).exit_code == 0
    return out
