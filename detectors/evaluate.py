"""Scoring a detector on a dataset of :class:`~dftoolkit.detectors.base.ClipItem`\\ s: a logit per clip
(:func:`predict`), then the metrics of :mod:`.metrics` written beside the scores (:func:`evaluate`).

Both run in one process or, under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), on every
rank (:func:`runtime` joins the process group: gloo on a CPU, NCCL on CUDA): each rank scores its
share of the clips (a :class:`~torch.utils.data.DistributedSampler`) and the scores of all ranks are
gathered by clip index, the sampler's padding (clips it repeats so every rank gets as many) dropped,
so every rank gets the rows, in dataset order, that one process gives; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dftoolkit.detectors.base import Detector
from dftoolkit.detectors.metrics import MetricsReport, evaluate_scores, write_metrics
from dftoolkit.fileio import atomic_path
from dftoolkit.progress import progress

__all__ = [
    "SCORES_FILE",
    "SCORE_COLUMNS",
    "Runtime",
    "batch_to",
    "clip_memory_format",
    "evaluate",
    "predict",
    "runtime",
]

SCORE_COLUMNS = ("dataset", "video_id", "label", "method", "logit", "frames")
"""The columns of :func:`predict`'s table (``frames``: the clip's frame indices, space-separated)."""
SCORES_FILE = "scores.csv"
"""What :func:`evaluate` writes beside :data:`~dftoolkit.detectors.metrics.METRICS_FILES`."""


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def runtime(device: str | torch.device | None = None) -> Runtime:
    """This process's :class:`Runtime`; under ``torchrun`` (``WORLD_SIZE`` > 1) it first joins the
    default process group unless it is up (gloo on a CPU, NCCL on CUDA; left up for the process's
    life, ``torch.distributed.destroy_process_group()`` ends it).

    Args:
        device: where the model runs; None: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return Runtime(dist.get_rank(), dist.get_world_size(), device)
    return Runtime(0, 1, device)


class _Indexed(Dataset):
    """``dataset``'s items with their index under ``"index"``: scores gathered from ranks are matched
    to clips by it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}


def batch_to(
    batch: dict[str, Any], device: torch.device, memory_format: torch.memory_format
) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (non-blocking from pinned memory), the clips in
    ``memory_format``; other values as they are."""
    return {
        key: value.to(device, non_blocking=True, memory_format=memory_format)
        if key == "clip"
        else value.to(device, non_blocking=True)
        if isinstance(value, Tensor)
        else value
        for key, value in batch.items()
    }


def clip_memory_format(model: Detector, rt: Runtime, channels_last: bool) -> torch.memory_format:
    """``channels_last`` (``channels_last_3d`` for ``NCTHW`` clips) on CUDA when asked, else contiguous."""
    if not (channels_last and rt.device.type == "cuda"):
        return torch.contiguous_format
    return torch.channels_last_3d if model.spec.layout == "NCTHW" else torch.channels_last


def _gather(rows: dict[str, list], rt: Runtime) -> dict[str, list]:
    """Every rank's ``rows`` joined, one row per clip index (the sampler's repeats dropped), by index."""
    if rt.distributed:
        parts: list[dict[str, list] | None] = [None] * rt.world
        dist.all_gather_object(parts, rows)
        rows = {key: [v for part in parts for v in part[key]] for key in rows}  # type: ignore[index]
    first: dict[int, int] = {}
    for position, index in enumerate(rows["index"]):
        first.setdefault(index, position)
    keep = [first[index] for index in sorted(first)]
    return {key: [values[i] for i in keep] for key, values in rows.items()}


@torch.no_grad()
def predict(
    model: Detector,
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int = 0,
    device: str | torch.device | None = None,
    channels_last: bool = False,
) -> pd.DataFrame:
    """The fake logit of every clip of ``dataset``, the model in eval mode (its mode is restored).

    Args:
        model: the detector, moved to the device.
        dataset: a map-style dataset of :class:`~dftoolkit.detectors.base.ClipItem`.
        batch_size: clips per forward pass.
        workers: DataLoader worker processes (0: load in this process).
        device: as :func:`runtime` takes it.
        channels_last: channels-last memory format (CUDA only; ignored on a CPU).

    Returns:
        One row per clip in dataset order, :data:`SCORE_COLUMNS`: ``label`` int, ``logit`` float64,
        ``frames`` the clip's frame indices as space-separated text. Under ``torchrun`` every rank
        scores its share and gets the whole table.
    """
    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    rt = runtime(device)
    indexed = _Indexed(dataset)
    sampler = DistributedSampler(indexed, rt.world, rt.rank, shuffle=False) if rt.distributed else None
    loader = DataLoader(
        indexed,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=rt.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # the global RNG stays untouched
    )
    fmt = clip_memory_format(model, rt, channels_last)
    was_training = model.training
    model.to(rt.device).eval()
    rows: dict[str, list] = {key: [] for key in ("index", *SCORE_COLUMNS)}
    batches = (
        progress(loader, "scoring", count=lambda b: len(b["label"]), unit="clips") if rt.is_main else loader
    )
    try:
        for batch in batches:
            logits = model.fake_logit(model(model.model_input(batch_to(batch, rt.device, fmt)))).float().cpu()
            rows["index"] += batch["index"].tolist()
            rows["logit"] += logits.double().tolist()
            rows["label"] += batch["label"].tolist()
            rows["frames"] += [" ".join(map(str, f)) for f in batch["frames"].tolist()]
            for key in ("dataset", "video_id", "method"):
                rows[key] += list(batch[key])
    finally:
        model.train(was_training)
    rows = _gather(rows, rt)
    table = pd.DataFrame({key: rows[key] for key in SCORE_COLUMNS})
    return table.astype({"label": "int64", "logit": "float64"})


def evaluate(
    model: Detector,
    dataset: Dataset,
    out_dir: str | os.PathLike[str],
    *,
    initialisation: str,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> MetricsReport:
    """Score ``dataset`` (:func:`predict`) and write its metrics into ``out_dir``.

    The metrics are :func:`~dftoolkit.detectors.metrics.evaluate_scores`'s with the detector's
    ``spec.video_score`` rule; rank 0 writes ``metrics.json`` (with ``initialisation``), ``roc.png``,
    ``scores.png`` (:func:`~dftoolkit.detectors.metrics.write_metrics`) and :data:`SCORES_FILE`.

    Args:
        initialisation: where the weights came from, ``"random"`` or ``"<path> sha256:<hex>"``.
        bootstrap, seed: the resamplings of the AUC intervals and their seed.

    Returns:
        The report (on every rank).
    """
    if not isinstance(initialisation, str) or not initialisation.strip():
        raise ValueError(f"initialisation must name where the weights came from, got {initialisation!r}")
    table = predict(model, dataset, batch_size=batch_size, workers=workers, device=device)
    report = evaluate_scores(table, model.spec.video_score, bootstrap=bootstrap, seed=seed)
    if runtime(device).is_main:
        out = Path(out_dir)
        write_metrics(report, out, initialisation=initialisation)
        with atomic_path(out / SCORES_FILE) as tmp:
            table.to_csv(tmp, index=False)
    return report
