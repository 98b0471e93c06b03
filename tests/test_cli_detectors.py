"""``dftoolkit train`` and ``evaluate`` end to end on a real FaceStore, and their bad inputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def splits(swap_store, tmp_path_factory):
    """The store's corpus split by target: carphone and the fake made on it train, jesper and its
    fake validate (both classes in each)."""
    split = {"carphone_pristine": "train", "jesper_webcam": "val"}
    manifest = swap_store.manifest().map_records(
        lambda r: r.replace(split=split[r.original_id or r.video_id])
    )
    path = tmp_path_factory.mktemp("splits") / "split.parquet"
    manifest.write_parquet(path)
    return path


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0]


def test_train_then_evaluate_a_small_lipforensics(swap_store, splits, tmp_path):
    run = tmp_path / "run"
    common = [str(swap_store.root), "-d", "lipforensics", "--size", "small", "--manifest", str(splits)]
    trained = runner.invoke(
        app,
        ["-q", "train", *common, "-o", str(run), "--epochs", "2", "--batch-size", "2", "--set", "workers=0"],
    )
    assert trained.exit_code == 0, trained.output
    assert "best epoch" in trained.output and "random (seed 0)" in trained.output
    record = json.loads((run / "train.json").read_text())
    assert record["initialisation"] == "random (seed 0)"
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "config.yaml").is_file()
    skipped = json.loads((run / "skipped.json").read_text())
    assert set(skipped) == {"train", "val"}  # only videos no manifest names are left out
    assert all(
        why == "not in the manifest (no label)" for split in skipped.values() for why in split.values()
    )

    out = tmp_path / "eval"
    best = run / "checkpoints" / "best.pt"
    scored = runner.invoke(
        app, ["-q", "evaluate", *common, "-o", str(out), "--checkpoint", str(best), "--split", "val"]
    )
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["initialisation"].startswith(f"{best} (epoch ")
        and "trained from random (seed 0)" in (metrics["initialisation"])
    )
    assert metrics["video"]["n"] == 2 and (out / "scores.csv").is_file() and (out / "roc.png").is_file()


def test_bad_detector_inputs_exit_2_with_one_line(swap_store, splits, tmp_path):
    store = str(swap_store.root)
    out = str(tmp_path / "run")
    for args, named in [
        (["train", store, "-o", out, "-d", "nope"], "unknown detector 'nope'"),
        (["train", store, "-o", out, "-d", "stil", "--size", "medium"], "config must be one of"),
        (["train", store, "-o", out, "-d", "stil", "--val-split", "train"], "both 'train'"),
        (["train", store, "-o", out, "-d", "stil", "--set", "lr=-1"], "lr"),
        (["train", str(tmp_path / "none"), "-o", out, "-d", "stil"], "none"),
        (["evaluate", store, "-o", out, "-d", "stil", "--weights", str(tmp_path / "w.pth")], "not found"),
        (["evaluate", store, "-o", out, "-d", "stil", "--size", "small", "--split", "nosuch",
          "--manifest", str(splits)], "no usable video in split 'nosuch'"),
    ]:  # fmt: skip
        assert named in _one_line(runner.invoke(app, args)), args
    assert not (tmp_path / "run").exists()


def test_training_from_the_authors_lip_reading_file_follows_the_papers_recipe(swap_store, splits, tmp_path):
    """--weights with an LRW-style file: the 500-word head is dropped, the front-end and trunk stay
    frozen (their weights unchanged after training), and train.json names the file and its sha256."""
    import torch

    from dftoolkit.detectors import build_detector
    from dftoolkit.detectors.train import load_trained
    from dftoolkit.fileio import sha256_file

    lrw = build_detector("lipforensics", "small").state_dict()
    lrw["tcn.tcn_output.weight"] = torch.zeros(500, lrw["tcn.tcn_output.weight"].shape[1])
    lrw["tcn.tcn_output.bias"] = torch.zeros(500)
    path = tmp_path / "lrw.pth"
    torch.save({"model_state_dict": lrw}, path)
    run = tmp_path / "run"
    args = [str(swap_store.root), "-d", "lipforensics", "--size", "small", "--manifest", str(splits)]
    result = runner.invoke(
        app,
        ["-q", "train", *args, "-o", str(run), "--weights", str(path), "--epochs", "1", "--batch-size", "2"],
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads((run / "train.json").read_text())["initialisation"] == f"{path} sha256:{sha256_file(path)}"
    )
    trained = build_detector("lipforensics", "small")
    load_trained(trained, run / "checkpoints" / "last.pt")
    after = trained.state_dict()
    frozen = [k for k in after if k.startswith(("frontend3D.", "trunk."))]
    assert frozen and all(torch.equal(after[k], lrw[k]) for k in frozen)
    assert not all(torch.equal(after[k], lrw[k]) for k in after if k.startswith("tcn.mb_ms_tcn."))


def test_evaluate_a_folder_of_videos_preprocesses_them_first(swap_store, tmp_path):
    """real/ and fake/ (the folder loader), then one label for a whole folder; resumable."""
    import shutil

    manifest = swap_store.manifest()
    folder = tmp_path / "videos"
    for record in manifest:
        link = folder / ("fake" if record.label else "real") / f"{record.video_id}.mp4"
        link.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest.path_of(record), link)  # a link out of the folder would be refused
    out = tmp_path / "eval"
    common = ["-q", "evaluate", "-d", "stil", "--size", "small", "--workers", "1", "-o", str(out)]
    scored = runner.invoke(app, [*common, str(folder)])
    assert scored.exit_code == 0, scored.output
    assert "4 video(s)" in scored.output and "4 new" in scored.output
    assert "untrained: the scores are chance" in scored.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["video"]["n"] == 4 and metrics["video"]["auc"] is not None
    table = json.loads((out / "faces" / "store.json").read_text())["config"]
    assert table["crops"] == ["face"] and table["scale"] == 1.3  # what the detector's test clips need

    fakes = runner.invoke(app, [*common, str(folder / "fake"), "--label", "fake"])
    assert fakes.exit_code == 0, fakes.output
    assert "2 video(s)" in fakes.output and "video AUC n/a (one class)" in fakes.output
    again = runner.invoke(app, [*common, str(folder / "fake"), "--label", "fake"])
    assert "0 new, 2 already there" in again.output

    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, [*common, str(tmp_path / "empty"), "--label", "fake"])
    assert "no video files" in _one_line(empty)
    flat = runner.invoke(app, [*common, str(tmp_path / "empty")])
    assert "neither real/ nor fake/" in _one_line(flat)


@pytest.mark.parametrize("name", ["ddl", "lipforensics", "m2tr", "stil", "styleflow"])
def test_every_detector_trains_and_evaluates_through_the_cli(name, swap_store, splits, tmp_path):
    """The small recipe for one epoch, then the best checkpoint scored on the validation split."""
    common = [str(swap_store.root), "-d", name, "--manifest", str(splits), "--frames-per-video", "4"]
    run = tmp_path / "run"
    trained = runner.invoke(
        app,
        ["-q", "train", *common, "-o", str(run), "--recipe", "small", "--epochs", "1", "--batch-size", "2"],
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads((run / "train.json").read_text())["initialisation"] == "random (seed 0)"
    out = tmp_path / "eval"
    best = str(run / "checkpoints" / "best.pt")
    scored = runner.invoke(
        app,
        [
            "-q",
            "evaluate",
            *common,
            "--size",
            "small",
            "-o",
            str(out),
            "--checkpoint",
            best,
            "--split",
            "val",
        ],
    )
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["video"]["n"] == 2 and "trained from random (seed 0)" in metrics["initialisation"]
