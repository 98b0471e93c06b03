"""``run_benchmark`` and ``dftoolkit benchmark`` end to end on a real FaceStore: the files, the matrix,
the robustness suite, reuse on a rerun, only new pairs scored, bad specs named."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.detectors import build_detector
from dftoolkit.detectors.base import on_meta
from dftoolkit.detectors.benchmark import load_spec, robustness_store_config, run_benchmark

MODELS = {
    "stil": {"detector": "stil", "recipe": "small", "settings": {"epochs": 1, "batch_size": 2}},
    "m2tr": {
        "detector": "m2tr",
        "recipe": "small",
        "settings": {"epochs": 1, "batch_size": 2},
        "frames_per_video": 2,
    },
}


def _spec(folder, tests: dict) -> dict:
    return {
        "train": {
            "srdf": {"store": "store", "manifest": "split.parquet", "split": "train", "val_split": "val"}
        },
        "detectors": MODELS,
        "tests": tests,
        "robustness": {"test": "srdf-val", "types": ["GB"], "levels": [1, 4], "compressions": []},
    }


@pytest.fixture(scope="module")
def bench(swap_store, tmp_path_factory):
    """The store's corpus split by target (carphone and its fake train, jesper and its fake validate
    and test), a spec beside it (relative paths), and one benchmark run."""
    folder = tmp_path_factory.mktemp("bench")
    split = {"carphone_pristine": "train", "jesper_webcam": "val"}
    manifest = swap_store.manifest().map_records(
        lambda r: r.replace(split=split[r.original_id or r.video_id])
    )
    manifest.write_parquet(folder / "split.parquet")
    (folder / "store").symlink_to(swap_store.root)
    tests = {"srdf-val": {"store": "store", "manifest": "split.parquet", "split": "val"}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(folder, tests)))
    out = folder / "out"
    return folder, path, out, run_benchmark(path, out, workers=1, bootstrap=100)


def _auc_or_reason(row) -> None:
    if row["auc"] is None or (isinstance(row["auc"], float) and math.isnan(row["auc"])):
        assert isinstance(row["reason"], str) and row["reason"], row
    else:
        assert 0.0 <= row["auc"] <= 1.0 and (row["reason"] is None or pd.isna(row["reason"])), row


def test_the_first_run_trains_scores_and_writes_every_file(bench):
    _, _, out, report = bench
    for name in ("cross_dataset.csv", "cross_dataset.json", "cross_dataset.png", "per_method.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("robustness.csv", "robustness.png", "difficulty.json", "benchmark.json"):
        assert (out / name).stat().st_size > 0, name
    assert (
        sorted(report.computed["trainings"]) == ["srdf/m2tr", "srdf/stil"] and not report.reused["trainings"]
    )
    assert sorted(report.computed["perturbed"]) == ["srdf-val@GB-1", "srdf-val@GB-4"]
    assert len(report.computed["scorings"]) == 2 * 3 and not report.failed  # 2 models x (clean + 2 levels)
    unscored = report.robustness[report.robustness.auc.isna()]  # a blur that hides every face, e.g.
    assert all("no usable video" in why for why in unscored.reason)

    crossed = json.loads((out / "cross_dataset.json").read_text())
    assert crossed["matrix"]["rows"] == ["srdf/m2tr", "srdf/stil"] and crossed["matrix"]["columns"] == [
        "srdf-val"
    ]
    assert report.matrix.shape == (2, 1)
    for row in crossed["rows"]:
        _auc_or_reason(row)
        assert row["n"] == 2 and set(row) >= {"auc_low", "auc_high", "eer", "ap"}
    table = pd.read_csv(out / "cross_dataset.csv")
    assert len(table) == 2 and set(table.test) == {"srdf-val"}

    per_method = pd.read_csv(out / "per_method.csv")
    assert set(per_method.method) == {"swap+naive"} and len(per_method) == 2

    robust = pd.read_csv(out / "robustness.csv")
    assert len(robust) == 2 * 3
    assert sorted(robust[robust.model == "stil"].level.tolist()) == [0, 1, 4]
    assert set(robust.panel) == {"clean", "GB"} and set(robust.chain) == {"clean", "GB:1", "GB:4"}
    for row in robust.to_dict(orient="records"):
        _auc_or_reason(row)
    perturbed = pd.read_parquet(out / "perturbed" / "srdf-val" / "GB-4" / "corpus" / "manifest.parquet")
    assert set(perturbed.split) == {"val"} and sorted(perturbed.label) == [0, 1]  # labels and split kept
    assert set(perturbed.perturbation) == {"GB:4"}
    faces = json.loads((out / "perturbed" / "srdf-val" / "GB-4" / "faces" / "store.json").read_text())
    assert faces["config"]["crops"] == ["face"] and faces["config"]["scale"] == 1.3

    difficulty = json.loads((out / "difficulty.json").read_text())  # every set is "srdf": no model qualifies
    assert difficulty["srdf-val"]["mean_auc"] is None and difficulty["srdf-val"]["models"] == 0
    assert "sharing no dataset" in difficulty["srdf-val"]["reason"]

    record = json.loads((out / "benchmark.json").read_text())
    assert record["initialisations"] == {"srdf/stil": "random (seed 0)", "srdf/m2tr": "random (seed 0)"}
    trained = json.loads((out / "models" / "srdf" / "stil" / "train.json").read_text())
    assert trained["initialisation"] == "random (seed 0)" and trained["status"] == "finished"
    metrics = json.loads((out / "scores" / "srdf" / "stil" / "srdf-val" / "metrics.json").read_text())
    assert "trained from random (seed 0)" in metrics["initialisation"]


def test_a_rerun_recomputes_nothing_and_the_cli_says_so(bench):
    _, path, out, first = bench
    again = run_benchmark(path, out, workers=1, bootstrap=100)
    assert not any(again.computed.values())
    assert len(again.reused["trainings"]) == 2 and len(again.reused["scorings"]) == 6
    pd.testing.assert_frame_equal(again.cross_dataset, first.cross_dataset)

    result = CliRunner().invoke(
        app, ["-q", "benchmark", str(path), "--out", str(out), "--workers", "1", "--bootstrap", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "trainings: 0 computed, 2 reused" in result.output and "scorings: 0 computed" in result.output
    assert "random (seed 0)" in result.output and "srdf/stil" in result.output


def test_a_bad_spec_names_every_bad_key_before_any_work(bench, tmp_path):
    folder = bench[0]
    spec = _spec(folder, {"x": {"store": str(folder / "nostore"), "split": "test"}})
    spec["detectors"] = {"a": {"detector": "stil", "recpie": "small"}, "b": {"detector": "nosuch"}}
    spec["robustness"] = {"test": "x", "levels": [7]}
    spec["extra"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError) as caught:
        load_spec(path)
    message = str(caught.value)
    for named in (
        "spec.extra",
        "detectors.a.recpie",
        "detectors.b.detector",
        "tests.x.store",
        "robustness.levels",
    ):
        assert named in message, named
    result = CliRunner().invoke(app, ["benchmark", str(path), "--out", str(tmp_path / "out")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "detectors.a.recpie" in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_the_robustness_store_serves_every_detector():
    specs = [on_meta(lambda n=n: build_detector(n, "small")).spec for n in ("stil", "lipforensics", "m2tr")]
    config = robustness_store_config(specs)
    assert config.crops == ("face", "mouth") and config.policy == "all"  # LipForensics: consecutive frames
    assert dict(config.sizes) == {"face": 64} and config.scale == 1.3


def test_adding_a_test_set_scores_only_it(bench):
    folder, path, out, _ = bench
    tests = {
        "srdf-val": {"store": "store", "manifest": "split.parquet", "split": "val"},
        "srdf-train": {"store": "store", "manifest": "split.parquet", "split": "train"},
    }
    path.write_text(yaml.safe_dump(_spec(folder, tests)))
    report = run_benchmark(path, out, workers=1, bootstrap=100)
    assert sorted(report.computed["scorings"]) == ["srdf/m2tr/srdf-train", "srdf/stil/srdf-train"]
    assert not report.computed["trainings"] and not report.computed["perturbed"]
    assert len(report.reused["scorings"]) == 6
    assert report.matrix.shape == (2, 2)
