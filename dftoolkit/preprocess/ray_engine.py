"""The ``ray`` engine: the same per-video work as the local engine, on a Ray cluster.

``ray.data`` streams the Manifest rows to actors; each actor loads the face models once
(:func:`~dftoolkit.preprocess.pipeline._init_worker`) and commits its videos to the shared store,
so the store must be on storage every node can write (NFS, a mounted bucket). Without a running
cluster (``RAY_ADDRESS`` unset) a local Ray instance is started with ``workers`` CPUs and shut down
afterwards. GPU backends (``fan``) get an equal share of the GPUs per actor when there are any.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dftoolkit.manifest import Manifest
from dftoolkit.preprocess.pipeline import PreprocessConfig, _init_worker, _paths, _run_one, worker_log
from dftoolkit.records import VideoRecord
from dftoolkit.workers import redirect_stderr

__all__ = ["run_ray"]

GPU_BACKENDS = frozenset({"fan"})


class _Worker:
    """A Ray actor: face models loaded once, then one video per row."""

    def __init__(self, config: PreprocessConfig, store_root: str) -> None:
        redirect_stderr(worker_log(store_root))
        _init_worker(config, store_root)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        record = VideoRecord(**json.loads(row["record"]))
        outcome = _run_one(record, row["path"], row["mask"] or None)
        outcome["key"] = list(outcome["key"])
        if "statuses" in outcome:
            outcome["statuses"] = dict(outcome["statuses"])
        return {"outcome": json.dumps(outcome)}


def run_ray(
    manifest: Manifest,
    phases: Sequence[Sequence[VideoRecord]],
    config: PreprocessConfig,
    store_root: str | Path,
    workers: int | None,
) -> Iterator[dict[str, Any]]:
    """Process each phase's records with Ray actors; yields the same outcomes as the local engine."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        actors = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        gpus = ray.available_resources().get("GPU", 0)
        per_actor_gpu = gpus / actors if gpus and config.backend in GPU_BACKENDS else 0
        for phase in phases:  # fakes wait for their originals' tracks
            if not phase:
                continue
            rows = []
            for record in phase:
                path, mask = _paths(manifest, record)
                rows.append({"record": json.dumps(record.to_dict()), "path": path, "mask": mask or ""})
            dataset = ray.data.from_items(rows).map(
                _Worker,
                fn_constructor_args=(config, str(store_root)),
                concurrency=min(actors, len(rows)),
                num_cpus=1,
                num_gpus=per_actor_gpu,
            )
            for row in dataset.iter_rows():
                outcome = json.loads(row["outcome"])
                outcome["key"] = tuple(outcome["key"])
                if "statuses" in outcome:
                    outcome["statuses"] = Counter(outcome["statuses"])
                yield outcome
    finally:
        if started_here:
            ray.shutdown()
