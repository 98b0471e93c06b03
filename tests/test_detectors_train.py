"""Detector training and evaluation on synthetic clips whose label is learnable (fakes are brighter),
in the small LipForensics layout: the loss falls, a run interrupted mid-epoch resumes to the weights of
an uninterrupted one bit for bit, the best epoch is the validation AUC's, evaluation writes its
metrics with the initialisation, two gloo processes score as one, and bad settings are all named."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from dftoolkit.config import load_config
from dftoolkit.detectors import build_detector
from dftoolkit.detectors.evaluate import SCORE_COLUMNS, SCORES_FILE, evaluate, predict
from dftoolkit.detectors.metrics import METRICS_FILES
from dftoolkit.detectors.train import (
    CHECKPOINT_DIR,
    LOG_FILE,
    TRAIN_FILE,
    TrainConfig,
    load_trained,
    lr_factor,
    train,
)

FRAMES, SIZE = 8, 16  # LipForensics small takes any T and side: (1, 8, 16, 16) clips keep it fast
CONFIG = TrainConfig(  # every moving part: warm-up, cosine, accumulation (5 batches: groups 2, 2, 1)
    epochs=3,
    batch_size=2,
    lr=3e-3,
    optimizer="adamw",
    scheduler="cosine",
    warmup_epochs=1,
    grad_accum=2,
    clip_grad=1.0,
    log_every=1,
)
TIMINGS = ("clips_per_s", "data_wait_s", "seconds")


class SyntheticClips(Dataset):
    """``videos`` videos of ``clips`` clips ``(1, FRAMES, SIZE, SIZE)`` of noise, odd videos fake and
    ``shift`` brighter; each item is seeded by ``seed`` and its index."""

    def __init__(self, videos: int, *, seed: int, clips: int = 2, shift: float = 0.5) -> None:
        self.videos, self.seed, self.clips, self.shift = videos, seed, clips, shift

    def __len__(self) -> int:
        return self.videos * self.clips

    def __getitem__(self, index: int) -> dict:
        video, part = divmod(index, self.clips)
        label = video % 2
        noise = torch.randn(
            (1, FRAMES, SIZE, SIZE), generator=torch.Generator().manual_seed(self.seed * 1000 + index)
        )
        return {
            "clip": noise + self.shift * label,
            "label": torch.tensor(label),
            "frame_labels": torch.full((FRAMES,), float(label)),
            "frames": torch.arange(part * FRAMES, (part + 1) * FRAMES),
            "dataset": "synth",
            "video_id": f"v{video:02d}",
            "method": "brighten" if label else "-",
        }


class Interrupted(Exception):
    pass


class Interrupting(Dataset):
    """``dataset`` that raises :class:`Interrupted` on its ``after + 1``-th item: a crash mid-run."""

    def __init__(self, dataset: Dataset, after: int) -> None:
        self.dataset, self.left = dataset, after

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.left == 0:
            raise Interrupted
        self.left -= 1
        return self.dataset[index]


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_detector("lipforensics", "small")


def _train_set() -> SyntheticClips:
    return SyntheticClips(5, seed=1)  # 10 clips: 5 batches of 2


def _val_set() -> SyntheticClips:
    return SyntheticClips(8, seed=2, shift=0.2)


def _test_set() -> SyntheticClips:
    return SyntheticClips(5, seed=3, clips=3)  # 15 clips: two processes pad theirs to 16


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / LOG_FILE).read_text().splitlines()]


def _untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in records]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: ten times faster on these tiny tensors than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run of CONFIG: (its folder, its result, the model after it)."""
    folder = tmp_path_factory.mktemp("straight")
    model = _model()
    result = train(model, _train_set(), _val_set(), CONFIG, folder, initialisation="random")
    return folder, result, model


def test_training_lowers_the_loss_and_records_the_run(straight):
    folder, result, _ = straight
    records = _log(folder)
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert result.validations[-1]["auc"] > 0.8
    assert len(steps) == result.steps == 9  # 3 optimiser steps an epoch: 5 batches in groups of 2
    assert {"epoch", "step", "loss", "loss_bce", "lr", "clips_per_s", "data_wait_s"} <= set(steps[0])
    assert steps[0]["lr"] == pytest.approx(CONFIG.lr / 3)  # the first of 3 warm-up steps
    assert all(math.isfinite(r["loss"]) and r["data_wait_s"] >= 0 for r in steps)
    recorded = json.loads((folder / TRAIN_FILE).read_text())
    assert recorded["initialisation"] == "random" and recorded["status"] == "finished"
    assert recorded["best_epoch"] == result.best_epoch
    assert load_config(TrainConfig, folder) == CONFIG
    names = {p.name for p in (folder / CHECKPOINT_DIR).iterdir()}
    assert names == {"last.pt", "best.pt", "epoch_1.pt", "epoch_2.pt", "epoch_3.pt"}


def test_an_interrupted_run_resumes_to_identical_weights(straight, tmp_path):
    folder, result, model = straight
    items_per_epoch = 10
    with pytest.raises(Interrupted):
        train(
            _model(),
            Interrupting(_train_set(), 2 * items_per_epoch + 6),
            _val_set(),
            CONFIG,
            tmp_path,
            initialisation="random",
        )
    assert load_trained(_model(), tmp_path / CHECKPOINT_DIR / "last.pt")["epoch"] == 2
    resumed_model = _model(seed=5)  # its own weights are replaced by the checkpoint's
    resumed = train(resumed_model, _train_set(), _val_set(), CONFIG, tmp_path, initialisation="random")
    assert resumed.resumed_from == 2
    assert (resumed.epochs, resumed.steps, resumed.best_epoch) == (
        result.epochs,
        result.steps,
        result.best_epoch,
    )
    for (name, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _untimed(_log(tmp_path)) == _untimed(_log(folder))  # the interrupted epoch's lines dropped
    again = train(resumed_model, _train_set(), _val_set(), CONFIG, tmp_path, initialisation="random")
    assert again.resumed_from == 3 and again.steps == result.steps  # finished: nothing left to do


def test_more_epochs_continue_a_run_exactly_with_loader_workers(tmp_path):
    config = TrainConfig(**{**vars(CONFIG), "scheduler": "step", "step_size": 1, "gamma": 0.5, "workers": 1})
    model, continued = _model(), _model(seed=5)
    train(model, _train_set(), _val_set(), config, tmp_path / "straight", initialisation="random")
    shorter = TrainConfig(**{**vars(config), "epochs": 2})
    train(_model(), _train_set(), _val_set(), shorter, tmp_path / "two", initialisation="random")
    result = train(continued, _train_set(), _val_set(), config, tmp_path / "two", initialisation="random")
    assert result.resumed_from == 2 and result.epochs == 3
    for (name, a), b in zip(model.state_dict().items(), continued.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_other_settings(straight, tmp_path):
    shutil.copytree(straight[0], tmp_path, dirs_exist_ok=True)
    other = TrainConfig(**{**vars(CONFIG), "lr": 0.1, "epochs": 4})
    with pytest.raises(
        ValueError, match=r"lr \(0.003 -> 0.1\).*epochs \(3 -> 4\) of the cosine.*initialisation"
    ):
        train(_model(), _train_set(), _val_set(), other, tmp_path, initialisation="x.pt sha256:00")


def test_the_best_epoch_is_the_validation_auc_argmax(straight):
    folder, result, _ = straight
    aucs = [r["auc"] for r in _log(folder) if r["kind"] == "val"]
    assert [v["auc"] for v in result.validations] == aucs and len(aucs) == CONFIG.epochs
    assert result.best_epoch == aucs.index(max(aucs)) + 1  # the first epoch on a tie
    assert result.best_auc == max(aucs)
    best = load_trained(_model(), result.best_checkpoint)
    assert best["epoch"] == result.best_epoch
    assert os.path.samefile(result.best_checkpoint, folder / CHECKPOINT_DIR / f"epoch_{result.best_epoch}.pt")


def test_evaluate_writes_metrics_scores_and_the_initialisation(straight, tmp_path):
    model = straight[2]
    test_set = _test_set()
    report = evaluate(model, test_set, tmp_path, initialisation="best.pt sha256:abc", batch_size=4)
    assert {p.name for p in tmp_path.iterdir()} == {*METRICS_FILES, SCORES_FILE}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["initialisation"] == "best.pt sha256:abc"
    assert written["settings"]["rule"] == model.spec.video_score == "mean_logit"
    assert written["video"]["n"] == 5 and report.video["auc"] == written["video"]["auc"]
    scores = pd.read_csv(tmp_path / SCORES_FILE, dtype={"frames": str})
    table = predict(model, test_set, batch_size=5)
    assert tuple(scores.columns) == tuple(table.columns) == SCORE_COLUMNS
    assert len(table) == 15 and table.frames[1] == " ".join(map(str, range(FRAMES, 2 * FRAMES)))
    pd.testing.assert_frame_equal(scores, table, check_exact=False, rtol=1e-5)  # batches of 4 and 5
    with pytest.raises(ValueError, match="initialisation"):
        evaluate(model, test_set, tmp_path, initialisation=" ")


def test_bad_settings_are_all_named():
    with pytest.raises(ValueError) as err:
        TrainConfig(
            epochs=0,
            batch_size=0,
            lr=0,
            optimizer="lamb",
            scheduler="poly",
            momentum=1,
            gamma=0,
            grad_accum=0,
            clip_grad=-1,
            workers=-1,
            eval_every=0,
            log_every=0,
            warmup_epochs=-1,
            weight_decay=-1,
            step_size=0,
            seed=-1,
        )
    message = str(err.value)
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "scheduler",
        "momentum",
        "gamma",
        "grad_accum",
        "clip_grad",
        "workers",
        "eval_every",
        "log_every",
        "warmup_epochs",
        "weight_decay",
        "step_size",
        "seed",
    ):
        assert f"{name} must" in message, name
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0 and < epochs"):
        TrainConfig(epochs=2, warmup_epochs=2)


def test_learning_rate_schedules():
    def factors(**settings) -> list[float]:
        factor = lr_factor(TrainConfig(**settings), steps_per_epoch=2)
        return [factor(step) for step in range(8)]

    assert factors(epochs=4) == [1.0] * 8
    assert factors(epochs=4, warmup_epochs=1) == [0.5, 1.0, *[1.0] * 6]
    assert factors(epochs=4, scheduler="step", step_size=1, gamma=0.5) == [
        1,
        1,
        0.5,
        0.5,
        0.25,
        0.25,
        0.125,
        0.125,
    ]
    cosine = factors(epochs=4, warmup_epochs=2, scheduler="cosine")
    assert cosine[:4] == [0.25, 0.5, 0.75, 1.0]
    assert cosine[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)])


def test_a_training_set_without_a_full_batch_is_refused(tmp_path):
    config = TrainConfig(batch_size=4)
    with pytest.raises(ValueError, match="3 clips make no full batch of 4"):
        train(
            _model(),
            SyntheticClips(3, seed=1, clips=1),
            _val_set(),
            config,
            tmp_path,
            initialisation="random",
        )


_DDP_SCRIPT = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, {tests!r})
from test_detectors_train import SyntheticClips, _model, _test_set, _val_set

from dftoolkit.detectors.evaluate import evaluate
from dftoolkit.detectors.train import TrainConfig, train

out = Path(sys.argv[1])
model = _model()
model.load_state_dict(torch.load(out / "weights.pt"))
evaluate(model, _test_set(), out / "ddp", initialisation="random", batch_size=1)
config = TrainConfig(epochs=2, batch_size=2, log_every=1)
train(model, SyntheticClips(5, seed=1), _val_set(), config, out / "train", initialisation="random")
dist.destroy_process_group()
"""


def test_two_gloo_processes_score_as_one(straight, tmp_path):
    model = straight[2]
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "DFTOOLKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # one clip a batch: batches of other clips change float32 logits in their last bits (oneDNN)
    single = evaluate(model, _test_set(), tmp_path / "single", initialisation="random", batch_size=1)
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp == json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["video"]["auc"] == single.video["auc"] and ddp["frame"]["n"] == 15  # the padding dropped
    trained = json.loads((tmp_path / "train" / TRAIN_FILE).read_text())
    assert trained["processes"] == 2 and trained["status"] == "finished"
    steps = [json.loads(line) for line in (tmp_path / "train" / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in steps if r["kind"] == "step"] == [
        1,
        2,
        3,
        4,
    ]  # 10 clips: 2 batches of 2 a rank


def test_forward_gets_what_model_input_makes(tmp_path):
    """Training and scoring call ``forward(model.model_input(batch))`` with the whole batch."""
    model, seen = _model(), []

    def blank(batch: dict) -> torch.Tensor:  # in training as given: a constant clip makes NaN gradients
        seen.append(set(batch))
        return batch["clip"] if model.training else torch.zeros_like(batch["clip"])

    model.model_input = blank
    assert predict(model, _test_set(), batch_size=4).logit.nunique() == 1  # every clip looked blank
    train(
        model,
        _train_set(),
        _val_set(),
        TrainConfig(epochs=1, batch_size=2),
        tmp_path,
        initialisation="random",
    )
    assert len(seen) == 4 + 5 + 8  # scoring batches, training batches, validation batches
    assert all({"clip", "label", "frames", "video_id"} <= keys for keys in seen)
