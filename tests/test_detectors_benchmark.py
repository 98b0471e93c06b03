"""``run_benchmark`` and ``dftoolkit benchmark`` end to end on a real FaceStore: the files, the matrix,
the robustness suite, reuse on a rerun, only new pairs scored, bad specs named; training under
``torchrun`` (2 gloo processes) reused like one trained in process, and the default processes."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.config import load_config, parse_pairs, parse_value
from dftoolkit.detectors import build_detector, detector_recipe
from dftoolkit.detectors.base import on_meta
from dftoolkit.detectors.benchmark import (
    DataSet,
    ModelSpec,
    default_processes,
    load_spec,
    robustness_store_config,
    run_benchmark,
    torchrun_command,
)
from dftoolkit.detectors.train import TrainConfig

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


def _split_store(swap_store, folder) -> None:
    """In ``folder``: ``split.parquet``, the store's corpus split by target (carphone and its fake
    train, jesper and its fake validate and test), and ``store``, a link to the store."""
    split = {"carphone_pristine": "train", "jesper_webcam": "val"}
    manifest = swap_store.manifest().map_records(
        lambda r: r.replace(split=split[r.original_id or r.video_id])
    )
    manifest.write_parquet(folder / "split.parquet")
    (folder / "store").symlink_to(swap_store.root)


@pytest.fixture(scope="module")
def bench(swap_store, tmp_path_factory):
    """The split store (:func:`_split_store`), a spec beside it (relative paths), and one benchmark
    run."""
    folder = tmp_path_factory.mktemp("bench")
    _split_store(swap_store, folder)
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
    spec["extra"], spec["processes"] = 1, 0
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
        "processes: expected a whole number >= 1",
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


def test_two_torchrun_processes_train_a_model_that_a_rerun_reuses(swap_store, tmp_path):
    _split_store(swap_store, tmp_path)
    spec = _spec(tmp_path, {"srdf-val": {"store": "store", "manifest": "split.parquet", "split": "val"}})
    spec |= {"detectors": {"m2tr": MODELS["m2tr"]}, "robustness": None, "processes": 2}
    path, out = tmp_path / "spec.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(spec))
    report = run_benchmark(path, out, workers=1, bootstrap=100)
    assert not report.failed and report.processes == 2
    assert report.computed["trainings"] == ["srdf/m2tr"] and report.computed["scorings"] == [
        "srdf/m2tr/srdf-val"
    ]
    folder = out / "models" / "srdf" / "m2tr"
    trained = json.loads((folder / "train.json").read_text())
    assert trained["processes"] == 2 and trained["device"] == "cpu" and trained["status"] == "finished"
    assert trained["initialisation"] == "random (seed 0)"
    assert "checkpoint:" in (folder / "torchrun.log").read_text()  # the CLI's last line
    recipe = detector_recipe("m2tr", "small")
    recipe.pop("config")
    wanted = load_config(TrainConfig, None, {**recipe, **MODELS["m2tr"]["settings"]})
    assert load_config(TrainConfig, folder) == wanted  # the settings the fingerprint names
    assert set(json.loads((folder / "skipped.json").read_text())) == {"train", "val"}
    metrics = json.loads((out / "scores" / "srdf" / "m2tr" / "srdf-val" / "metrics.json").read_text())
    assert "trained from random (seed 0)" in metrics["initialisation"]
    _auc_or_reason(report.cross_dataset.iloc[0].to_dict())
    assert json.loads((out / "benchmark.json").read_text())["processes"] == 2

    for processes in (2, 1):  # however many processes trained it, the model is the same
        path.write_text(yaml.safe_dump({**spec, "processes": processes}))
        again = run_benchmark(path, out, workers=1, bootstrap=100)
        assert not any(again.computed.values()) and again.reused["trainings"] == ["srdf/m2tr"], processes
        assert again.processes == processes and not again.failed
        pd.testing.assert_frame_equal(again.cross_dataset, report.cross_dataset)


def test_a_failed_torchrun_training_is_recorded_with_its_error(swap_store, tmp_path):
    _split_store(swap_store, tmp_path)
    spec = _spec(tmp_path, {"srdf-val": {"store": "store", "manifest": "split.parquet", "split": "val"}})
    too_big = {**MODELS["m2tr"], "settings": {"epochs": 1, "batch_size": 500}}
    spec |= {"detectors": {"m2tr": too_big}, "robustness": None, "processes": 2}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    report = run_benchmark(path, tmp_path / "out", workers=1, bootstrap=100)
    why = report.failed["srdf/m2tr"]
    assert why.startswith("training failed: ValueError: the training set's") and "no full batch of 500" in why
    assert "2 processes under torchrun" in why and "torchrun.log" in why
    assert report.cross_dataset.reason.tolist() == [why]


def test_the_default_is_a_process_per_gpu_from_two_and_the_command_trains_the_same_model(
    monkeypatch, tmp_path
):
    import torch

    if not torch.cuda.is_available():
        assert default_processes() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gpus, wanted in ((4, 4), (2, 2), (1, 1), (0, 1)):
        monkeypatch.setattr(torch.cuda, "device_count", lambda gpus=gpus: gpus)
        assert default_processes() == wanted, gpus
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    model = ModelSpec(
        "stil", "small", {"epochs": 2, "lr": 3e-4, "amp": False, "clip_grad": None}, {"width": [8, "x"]}, None
    )
    data_set = DataSet(tmp_path / "faces", tmp_path / "split.parquet", "fold1", "fold2")
    command = torchrun_command(data_set, model, tmp_path / "run", default_processes(), resume=False)
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"]
    assert command[:6] == head
    assert command[6:11] == ["-m", "dftoolkit", "-q", "train", str(tmp_path / "faces")]
    pairs = dict(zip(command[11:-1:2], command[12::2], strict=False))
    assert pairs["--out"] == str(tmp_path / "run") and pairs["--recipe"] == "small"
    assert pairs["--manifest"] == str(tmp_path / "split.parquet") and pairs["--detector"] == "stil"
    splits = (pairs["--train-split"], pairs["--val-split"])
    assert splits == ("fold1", "fold2") and pairs["--frames-per-video"] == "0"  # none: every frame
    assert command[-1] == "--restart" and "--restart" not in torchrun_command(
        data_set, model, tmp_path / "run", 4, resume=True
    )
    options = [command[i + 1] for i, word in enumerate(command) if word == "--option"]
    assert {k: parse_value(v) for k, v in parse_pairs(options)} == {"width": [8, "x"]}
    settings = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    recipe = detector_recipe("stil", "small")
    recipe.pop("config")
    assert load_config(TrainConfig, None, recipe, settings) == load_config(
        TrainConfig, None, {**recipe, **model.settings}
    )
    assert len(settings) == 4
    with pytest.raises(ValueError, match="named split"):
        torchrun_command(DataSet(tmp_path, None, None, "val"), model, tmp_path / "run", 4, resume=True)


def test_difficulty_is_the_mean_auc_of_models_trained_on_other_datasets():
    """FF++-trained models score Celeb-DF 0.6 and 0.7, SR-DF-trained ones 0.9: Celeb-DF's difficulty is
    the mean of the four models that never saw it; a set every model saw gets no value, and says why."""
    from dftoolkit.detectors.benchmark import difficulty

    rows = [
        ("ffpp", "stil", "celebdf", 0.6),
        ("ffpp", "m2tr", "celebdf", 0.7),
        ("srdf", "stil", "celebdf", 0.9),
        ("srdf", "m2tr", "celebdf", None),  # e.g. one class: not counted
        ("both", "stil", "celebdf", 0.9),
        ("ffpp", "stil", "ffpp-test", 0.99),
        ("both", "stil", "ffpp-test", 0.98),
    ]
    table = pd.DataFrame(rows, columns=["train", "model", "test", "auc"])
    train = {"ffpp": {"ffpp"}, "srdf": {"srdf"}, "both": {"ffpp", "celebdf"}}
    result = difficulty(table, train, {"celebdf": {"celebdf"}, "ffpp-test": {"ffpp"}})
    assert result["celebdf"]["mean_auc"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert result["celebdf"]["models"] == 3 and "both/stil" not in result["celebdf"]["counted"]
    assert result["ffpp-test"]["mean_auc"] is None and "sharing no dataset" in result["ffpp-test"]["reason"]
