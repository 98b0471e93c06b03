"""Training a detector on a dataset of :class:`~dftoolkit.detectors.base.ClipItem`\\ s, the model
chosen on a validation split.

:func:`train` minimises the sum of :meth:`~dftoolkit.detectors.base.Detector.losses` with the
optimiser and schedule of a :class:`TrainConfig` (a per-step warm-up, then constant, step or cosine),
accumulating gradients over ``grad_accum`` batches. Mixed precision (float16 autocast with a
gradient scaler) and the channels-last layout of the clips apply on CUDA only: on a CPU both settings
are ignored. It writes into its output folder:

- ``config.yaml`` (the :class:`TrainConfig`, :func:`~dftoolkit.config.write_config`) and
  ``train.json`` (the ``initialisation`` of the weights, the detector, the device, the processes,
  and when finished the best epoch);
- ``log.jsonl``, one JSON object a line: ``kind`` ``"step"`` every ``log_every`` optimiser steps
  (``epoch``, ``step``, ``loss``, ``loss_<name>`` of each named loss, ``lr``, ``clips_per_s`` of all
  processes, ``data_wait_s`` per process: the time spent waiting for batches since the last line),
  ``"epoch"`` after each epoch (its mean ``loss``, ``seconds``), ``"val"`` after each validation
  (video ``auc``, ``auc_ci``, ``ap``, ``eer``, ``acc@0.5``, ``log_loss``, ``frame_auc``, ``videos``);
- ``checkpoints/epoch_<e>.pt`` after each epoch (model, optimiser, scheduler, scaler, epoch, global
  step, the RNG states of torch, numpy, random and the data order of every process, the best epoch so
  far and the validations), ``last.pt`` the latest of them and ``best.pt`` the one with the highest
  validation video AUC (:func:`~dftoolkit.detectors.metrics.evaluate_scores` with the detector's
  ``spec.video_score`` rule; on a tie the earlier epoch). Each is written atomically; ``last.pt`` and
  ``best.pt`` are hard links (copies where links fail). :func:`load_trained` loads their weights.

``train`` sees only the training and validation sets: a test set is scored afterwards
(:func:`~dftoolkit.detectors.evaluate.evaluate`). A run resumes from ``last.pt``: with zero DataLoader
workers or not, on a CPU it gives the weights of an uninterrupted run bit for bit (CUDA kernels need
not be deterministic).

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains a
:class:`~torch.nn.parallel.DistributedDataParallel` replica on its share of each epoch (a
:class:`~torch.utils.data.DistributedSampler`; ``batch_size`` is per process), validation scores are
gathered from all processes (:func:`~dftoolkit.detectors.evaluate.predict`) and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dftoolkit import __version__
from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.config import config_to_dict, normalise, setting, write_config
from dftoolkit.detectors.base import Detector
from dftoolkit.detectors.evaluate import Runtime, batch_to, clip_memory_format, predict, runtime
from dftoolkit.detectors.metrics import evaluate_scores
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.progress import progress

__all__ = [
    "CHECKPOINT_DIR",
    "LOG_FILE",
    "OPTIMIZERS",
    "SCHEDULERS",
    "TRAIN_FILE",
    "TrainConfig",
    "TrainResult",
    "load_trained",
    "lr_factor",
    "train",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "cosine")
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "log.jsonl"
TRAIN_FILE = "train.json"
_RESUMABLE = ("epochs", "workers", "eval_every", "log_every")  # settings a resumed run may change
_VAL_KEYS = ("auc", "auc_ci", "ap", "eer", "acc@0.5", "log_loss")
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")
_HINT = "a checkpoint written by dftoolkit.detectors.train"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (each field's help in its metadata); a ValueError names every bad
    value."""

    epochs: int = setting(10, "Passes over the training set.")
    batch_size: int = setting(16, "Clips per batch on each process.")
    lr: float = setting(1e-4, "Learning rate after the warm-up.")
    weight_decay: float = setting(0.0, "Weight decay (decoupled for adamw, L2 for adam and sgd).")
    optimizer: str = setting("adam", "Optimiser.", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "Momentum of sgd.")
    scheduler: str = setting(
        "none",
        "Learning rate after the warm-up: constant (none), times gamma every step_size epochs (step), "
        "or a cosine to 0 at the end of the last epoch (cosine).",
        choices=SCHEDULERS,
    )
    step_size: int = setting(10, "Epochs between the step schedule's drops.")
    gamma: float = setting(0.1, "Factor of each of the step schedule's drops.")
    warmup_epochs: int = setting(0, "Epochs of linear warm-up to lr, raised every optimiser step.")
    grad_accum: int = setting(1, "Batches whose gradients make one optimiser step.")
    amp: bool = setting(True, "Mixed precision (float16 autocast, gradient scaler); CUDA only.")
    channels_last: bool = setting(False, "Channels-last memory format of the clips; CUDA only.")
    clip_grad: float | None = setting(None, "Largest gradient norm (clipped to it); none: no clipping.")
    seed: int = setting(0, "Seeds torch, numpy, random and the data order (each process adds its rank).")
    workers: int = setting(0, "DataLoader worker processes per process (0: load in the main one).")
    eval_every: int = setting(1, "Epochs between validations (the last epoch is always validated).")
    log_every: int = setting(10, "Optimiser steps between log lines.")

    def __post_init__(self) -> None:
        normalise(self)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"),
            (self.step_size >= 1, f"step_size must be >= 1, got {self.step_size}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"warmup_epochs must be >= 0 and < epochs ({self.epochs}), got {self.warmup_epochs}",
            ),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (
                self.clip_grad is None or self.clip_grad > 0,
                f"clip_grad must be > 0 or none, got {self.clip_grad}",
            ),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"bad training settings: {'; '.join(problems)}")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did.

    Attributes:
        out_dir: its output folder.
        epochs: epochs trained in all (those of resumed runs included).
        steps: optimiser steps in all.
        best_epoch: the epoch of ``best.pt``: highest validation video AUC, the earlier on a tie.
        best_auc: its validation video AUC.
        validations: the ``"val"`` log records of every validation, in order.
        resumed_from: epochs done when this call started (0: a fresh run).
    """

    out_dir: Path
    epochs: int
    steps: int
    best_epoch: int
    best_auc: float
    validations: tuple[dict[str, Any], ...]
    resumed_from: int

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR / "last.pt"


@dataclass
class _State:
    """What a checkpoint carries besides the modules' states."""

    epoch: int = 0
    step: int = 0
    best_epoch: int | None = None
    best_auc: float | None = None
    validations: list[dict[str, Any]] = field(default_factory=list)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate over ``config.lr`` at optimiser step ``s`` (from 0): ``(s + 1) / W`` in the
    warm-up's W steps, then 1 (``none``), ``gamma ** (epoch // step_size)`` (``step``) or a cosine from
    1 to 0 over the steps after the warm-up (``cosine``)."""
    warm = config.warmup_epochs * steps_per_epoch
    after = config.epochs * steps_per_epoch - warm

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.scheduler == "step":
            return config.gamma ** (step // steps_per_epoch // config.step_size)
        if config.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step - warm, after) / after))
        return 1.0

    return factor


def _optimizer(model: Detector, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{model.name}: no parameter requires a gradient; nothing to train")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, config.lr, weight_decay=config.weight_decay)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _rng_state(generator: torch.Generator, rt: Runtime) -> dict[str, Any]:
    """The RNG states of this process, as plain tensors and values (a weights-only file holds them)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
        "loader": generator.get_state(),
    }
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, rt: Runtime) -> None:
    name, key, pos, has_gauss, gauss = state["numpy"]
    torch.set_rng_state(state["torch"])
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    generator.set_state(state["loader"])
    if rt.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], rt.device)


def _link(source: Path, dest: Path) -> None:
    """``dest`` becomes a hard link to ``source`` (a copy where links fail), atomically."""
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _epoch_files(folder: Path) -> dict[int, Path]:
    files = (p for p in folder.glob("epoch_*.pt") if _EPOCH_FILE.fullmatch(p.name))
    return {int(_EPOCH_FILE.fullmatch(p.name)[1]): p for p in files}  # type: ignore[index]


def _tidy(folder: Path, state: _State) -> None:
    """Drop the files of epochs after ``state``'s (an interrupted or replaced run's) and point
    ``best.pt`` at the state's best epoch."""
    for epoch, path in _epoch_files(folder).items():
        if epoch > state.epoch:
            path.unlink()
    if state.epoch == 0:
        for name in ("last.pt", "best.pt"):
            (folder / name).unlink(missing_ok=True)
    elif state.best_epoch is not None and (folder / f"epoch_{state.best_epoch}.pt").exists():
        _link(folder / f"epoch_{state.best_epoch}.pt", folder / "best.pt")


def _read_log(path: Path, through: int) -> list[str]:
    """The lines of the log at ``path`` of epochs up to ``through``."""
    if not path.exists():
        return []
    lines = path.read_text("utf-8").splitlines()
    return [line for line in lines if line.strip() and json.loads(line)["epoch"] <= through]


class _Log:
    """``log.jsonl``, kept to the epochs a resumed run has (rank 0 only writes)."""

    def __init__(self, path: Path, active: bool, through: int) -> None:
        self.path, self.active = path, active
        if active:
            kept = _read_log(path, through)
            atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.active:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, allow_nan=False) + "\n")


def _restore(
    path: Path,
    model: Detector,
    parts: dict[str, Any],
    generator: torch.Generator,
    config: TrainConfig,
    initialisation: str,
    rt: Runtime,
) -> _State:
    """Load ``last.pt`` into the model, optimiser, scheduler, scaler and RNGs; the run's state."""
    saved = load_weights(path, what="training checkpoint", hint=f"resume=False starts afresh; {_HINT}")
    ours = config_to_dict(config)
    changed = [
        f"{key} ({saved['config'].get(key)!r} -> {value!r})"
        for key, value in ours.items()
        if saved["config"].get(key) != value and key not in _RESUMABLE
    ]
    if config.scheduler == "cosine" and saved["config"]["epochs"] != config.epochs:
        changed.append(f"epochs ({saved['config']['epochs']} -> {config.epochs}) of the cosine schedule")
    if saved["initialisation"] != initialisation:
        changed.append(f"initialisation ({saved['initialisation']!r} -> {initialisation!r})")
    if changed:
        raise ValueError(f"{path}: cannot resume with other settings: {'; '.join(changed)}")
    fit_state_dict(model, saved["model"], where=f"{path}: model", strip_prefix=None)
    parts["optimizer"].load_state_dict(saved["optimizer"])
    parts["scheduler"].load_state_dict(saved["scheduler"])
    if parts["scaler"].is_enabled() and saved["scaler"]:
        parts["scaler"].load_state_dict(saved["scaler"])
    rng = saved["rng"]
    _set_rng_state(rng[rt.rank % len(rng)], generator, rt)
    return _State(
        saved["epoch"], saved["step"], saved["best_epoch"], saved["best_auc"], list(saved["validations"])
    )


def _save(
    folder: Path,
    model: Detector,
    parts: dict[str, Any],
    generator: torch.Generator,
    state: _State,
    config: TrainConfig,
    initialisation: str,
    rt: Runtime,
) -> None:
    """Write ``epoch_<e>.pt``, link ``last.pt`` (and ``best.pt`` when this epoch is best) to it."""
    rng = _rng_state(generator, rt)
    rngs: list[Any] = [rng]
    if rt.distributed:
        rngs = [None] * rt.world
        dist.all_gather_object(rngs, rng)
    if not rt.is_main:
        return
    checkpoint = {
        "detector": model.name,
        "config": config_to_dict(config),
        "initialisation": initialisation,
        "model": model.state_dict(),
        **{name: part.state_dict() for name, part in parts.items()},
        "epoch": state.epoch,
        "step": state.step,
        "rng": rngs,
        "best_epoch": state.best_epoch,
        "best_auc": state.best_auc,
        "validations": state.validations,
    }
    path = folder / f"epoch_{state.epoch}.pt"
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    _link(path, folder / "last.pt")
    if state.best_epoch == state.epoch:
        _link(path, folder / "best.pt")


def _reduce(values: list[Tensor | float], rt: Runtime) -> list[float]:
    """The sums of ``values`` over the processes."""
    total = torch.stack([torch.as_tensor(v, dtype=torch.float64).cpu() for v in values])
    if rt.distributed:
        total = total.to(rt.device)
        dist.all_reduce(total)
    return total.tolist()


class _Meter:
    """Sums of the losses, batches, clips and data waits since it was reset."""

    def __init__(self) -> None:
        self.losses: dict[str, Tensor] = {}
        self.batches = self.clips = 0
        self.wait = 0.0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, Tensor], clips: int, wait: float) -> None:
        for name, value in losses.items():
            self.losses[name] = self.losses.get(name, 0) + value.detach().float()
        self.batches += 1
        self.clips += clips
        self.wait += wait

    def summary(self, rt: Runtime, where: str) -> dict[str, float]:
        """Mean losses over every process's batches, clips per second, data wait per process."""
        names = list(self.losses)
        sums = _reduce([*self.losses.values(), self.batches, self.clips, self.wait], rt)
        *losses, batches, clips, wait = sums
        mean = {f"loss_{name}": value / batches for name, value in zip(names, losses, strict=True)}
        loss = sum(mean.values())
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} at {where}; try a lower lr or clip_grad")
        seconds = time.perf_counter() - self.start
        return {"loss": loss, **mean, "clips_per_s": clips / seconds, "data_wait_s": wait / rt.world}


def _train_epoch(
    net: torch.nn.Module,
    model: Detector,
    loader: DataLoader,
    parts: dict[str, Any],
    config: TrainConfig,
    state: _State,
    epoch: int,
    rt: Runtime,
    log: _Log,
) -> dict[str, Any]:
    """One pass over ``loader``; advances ``state.step``; returns the epoch's log record."""
    optimizer, scheduler, scaler = parts["optimizer"], parts["scheduler"], parts["scaler"]
    amp = config.amp and rt.device.type == "cuda"
    fmt = clip_memory_format(model, rt, config.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    n = len(loader)
    model.train()
    batches: Iterable[dict[str, Any]] = loader
    if rt.is_main:
        description = f"epoch {epoch}/{config.epochs}"
        batches = progress(loader, description, total=n, count=lambda b: len(b["label"]), unit="clips")
    window, whole = _Meter(), _Meter()
    tick = time.perf_counter()
    for i, batch in enumerate(batches):
        wait = time.perf_counter() - tick
        start = i - i % config.grad_accum
        group = min(config.grad_accum, n - start)  # the epoch's last group may be shorter
        stepping = i - start == group - 1
        on_device = batch_to(batch, rt.device, fmt)
        sync = net.no_sync() if rt.distributed and not stepping else contextlib.nullcontext()
        with sync:
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                output = net(model.model_input(on_device))
                losses = model.losses(output, on_device["label"], on_device)
            scaler.scale(sum(losses.values()) / group).backward()
        for meter in (window, whole):
            meter.add(losses, len(batch["label"]), wait)
        if stepping:
            if config.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            state.step += 1
            if state.step % config.log_every == 0:
                where = f"epoch {epoch}, step {state.step}"
                log.write(
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": state.step,
                        **window.summary(rt, where),
                        "lr": lr,
                    }
                )
                window = _Meter()
        tick = time.perf_counter()
    summary = whole.summary(rt, f"the end of epoch {epoch}")
    seconds = time.perf_counter() - whole.start
    return {"kind": "epoch", "epoch": epoch, "step": state.step, "loss": summary["loss"], "seconds": seconds}


def _validate(
    model: Detector, val_set: Dataset, config: TrainConfig, state: _State, epoch: int, rt: Runtime
) -> dict[str, Any]:
    """The ``"val"`` record of the model on ``val_set`` (rank 0's batch-norm statistics everywhere)."""
    if rt.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    table = predict(
        model,
        val_set,
        batch_size=config.batch_size,
        workers=config.workers,
        device=rt.device,
        channels_last=config.channels_last,
    )
    report = evaluate_scores(table, model.spec.video_score)
    if report.video["auc"] is None:
        raise ValueError(
            f"the validation set needs real and fake videos to choose a model; "
            f"{report.video['undefined']['auc']}"
        )
    return {
        "kind": "val",
        "epoch": epoch,
        "step": state.step,
        **{key: report.video[key] for key in _VAL_KEYS},
        "frame_auc": report.frame["auc"],
        "videos": report.video["n"],
    }


def _train_loader(
    dataset: Dataset, config: TrainConfig, rt: Runtime, generator: torch.Generator
) -> DataLoader:
    """Shuffled full batches; each process's share under ``torchrun``."""
    sampler = (
        DistributedSampler(dataset, rt.world, rt.rank, shuffle=True, seed=config.seed, drop_last=True)
        if rt.distributed
        else None
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=rt.device.type == "cuda",
        drop_last=True,
        generator=generator,
    )
    if not len(loader):
        raise ValueError(
            f"the training set's {len(dataset)} clips make no full batch of {config.batch_size} "  # type: ignore[arg-type]
            f"on each of {rt.world} process(es)"
        )
    return loader


def train(
    model: Detector,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    initialisation: str,
    resume: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_set``, choosing the epoch by its video AUC on ``val_set``.

    Args:
        model: the detector, as initialised (its weights end as the last epoch's, not the best's).
        train_set, val_set: map-style datasets of :class:`~dftoolkit.detectors.base.ClipItem`; the
            validation set must hold real and fake videos.
        config: the settings.
        out_dir: the output folder (see the module for its files).
        initialisation: where the initial weights came from, ``"random"`` or
            ``"<path> sha256:<hex>"``; recorded in ``train.json`` and the checkpoints.
        resume: continue from ``checkpoints/last.pt`` when there is one (the settings must be the
            same but for ``epochs`` outside a cosine schedule, ``workers``, ``eval_every`` and
            ``log_every``, and ``initialisation`` too); False starts afresh, dropping the folder's
            checkpoints and log.
        device: where to train; None: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    Raises:
        ValueError: no full batch, no trainable parameter, a validation set of one class, or a
            checkpoint with other settings; FloatingPointError when the loss is not finite.
    """
    if not isinstance(initialisation, str) or not initialisation.strip():
        raise ValueError(f"initialisation must name where the weights came from, got {initialisation!r}")
    rt = runtime(device)
    out = Path(out_dir)
    folder = out / CHECKPOINT_DIR
    _seed(config.seed + rt.rank)
    generator = torch.Generator().manual_seed(config.seed + rt.rank)
    loader = _train_loader(train_set, config, rt, generator)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    model.to(rt.device)
    optimizer = _optimizer(model, config)
    parts = {
        "optimizer": optimizer,
        "scheduler": LambdaLR(optimizer, lr_factor(config, steps_per_epoch)),
        "scaler": torch.amp.GradScaler("cuda", enabled=config.amp and rt.device.type == "cuda"),
    }
    state = _State()
    if resume and (folder / "last.pt").exists():
        state = _restore(folder / "last.pt", model, parts, generator, config, initialisation, rt)
    resumed_from = state.epoch
    if rt.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        _tidy(folder, state)
        write_config(out, config)
    log = _Log(out / LOG_FILE, rt.is_main, state.epoch)
    record = {
        "initialisation": initialisation,
        "tool": f"dftoolkit {__version__}",
        "detector": model.name,
        "device": str(rt.device),
        "processes": rt.world,
        "train_clips": len(train_set),  # type: ignore[arg-type]
        "val_clips": len(val_set),  # type: ignore[arg-type]
        "resumed_from": resumed_from,
    }
    if rt.is_main:
        atomic_write_text(out / TRAIN_FILE, json.dumps({**record, "status": "running"}, indent=1))
    net = model
    if rt.distributed:
        net = DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        log.write(_train_epoch(net, model, loader, parts, config, state, epoch, rt, log))
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            val = _validate(model, val_set, config, state, epoch, rt)
            state.validations.append(val)
            log.write(val)
            if state.best_auc is None or val["auc"] > state.best_auc:
                state.best_epoch, state.best_auc = epoch, val["auc"]
        state.epoch = epoch
        _save(folder, model, parts, generator, state, config, initialisation, rt)
    if rt.distributed:
        dist.barrier()
    if state.best_epoch is None or state.best_auc is None:
        raise ValueError(f"{folder / 'last.pt'}: the run was never validated")
    result = TrainResult(
        out, state.epoch, state.step, state.best_epoch, state.best_auc, tuple(state.validations), resumed_from
    )
    if rt.is_main:
        finished = {**record, "status": "finished", "epochs": state.epoch, "steps": state.step}
        finished |= {"best_epoch": state.best_epoch, "best_auc": state.best_auc}
        atomic_write_text(out / TRAIN_FILE, json.dumps(finished, indent=1))
    return result


def load_trained(model: Detector, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load the weights of a :func:`train` checkpoint (``best.pt``, ``last.pt``, ``epoch_<e>.pt``)
    into ``model``, checked name by name; returns its ``epoch``, ``step``, ``initialisation`` and
    ``validations``."""
    saved = load_weights(path, what="training checkpoint", hint=_HINT)
    if not isinstance(saved, dict) or "model" not in saved:
        raise CheckpointError(f"{path} is not {_HINT} (a dict with the weights under 'model')")
    fit_state_dict(model, saved["model"], where=f"{path}: model", strip_prefix=None)
    return {key: saved[key] for key in ("epoch", "step", "initialisation", "validations")}
