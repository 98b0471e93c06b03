"""The one stage runner: per-video work in a process pool or on Ray, models loaded once per worker.

Workers die with their parent: if the parent is killed (``kill -9``, the OOM killer) its workers do
not go on as orphans writing into an output folder that a rerun may be cleaning.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from dftoolkit.fileio import atomic_write_text

__all__ = [
    "ENGINES",
    "Outcome",
    "Stage",
    "check_engine",
    "redirect_stderr",
    "run_stage",
    "runs_dir",
    "stderr_to",
    "write_run",
]

ENGINES = ("local", "ray")

J = TypeVar("J")
R = TypeVar("R")


class Stage(ABC, Generic[J, R]):
    """The per-item work of a pipeline stage (preprocess, generate, quality, audit), for :func:`run_stage`.

    An instance is built in the calling process with everything a job needs besides the job (the
    config, the output folder) and must pickle: each worker gets a copy, calls :meth:`setup` once
    (load models there, as attributes: they stay in that worker), then :meth:`run` once per job.
    """

    #: what the stage does, for progress bars and logs
    name: ClassVar[str]

    def setup(self) -> None:
        """Load what every job needs (face models, networks); runs once per worker."""

    @abstractmethod
    def run(self, job: J) -> R:
        """Do one job; an exception fails that job only (:attr:`Outcome.error`)."""

    def gpus(self) -> float:
        """GPUs one worker wants when the Ray cluster has some (0: CPU only)."""
        return 0.0


@dataclass(frozen=True)
class Outcome(Generic[J, R]):
    """What became of one job: its ``result``, or the ``error`` (the traceback's last frames)."""

    job: J
    result: R | None = None
    error: str | None = None
    seconds: float = 0.0


def _execute(stage: Stage[J, R], job: J) -> Outcome[J, R]:
    start = time.perf_counter()
    try:
        result = stage.run(job)
    except Exception:  # a bug or an unexpected input: reported with the job, never dropped
        return Outcome(job, error=traceback.format_exc(limit=4), seconds=time.perf_counter() - start)
    return Outcome(job, result, seconds=time.perf_counter() - start)


def check_engine(engine: str) -> None:
    """ValueError unless ``engine`` is one of :data:`ENGINES` (stages check before writing anything)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def run_stage(
    stage: Stage[J, R],
    phases: Iterable[Sequence[J]],
    *,
    workers: int | None = None,
    engine: str = "local",
    log_path: str | os.PathLike[str],
) -> Iterator[Outcome[J, R]]:
    """Run ``stage`` on every job of every phase; one :class:`Outcome` per job, as they finish.

    A phase starts when the one before has finished (e.g. fakes after the originals whose face
    tracks they reuse); ``phases`` may be a generator that plans a phase from what the ones before
    did: it is advanced only after every outcome of the previous phase has been yielded.

    Engines (:data:`ENGINES`):
        ``local``: ``workers`` processes (default: one per core), spawned, not forked (the parent may
        hold threaded native libraries whose locks a forked child would inherit half-taken); they
        end when this process ends, however it ends. With 1 worker everything runs in this process.
        ``ray``: a pool of ``workers`` Ray actors (default: the cluster's CPUs; a share of its GPUs
        when the stage wants them, :meth:`Stage.gpus`), each holding one set-up copy of the stage,
        takes the jobs of each phase as actors free up; outputs must then be on storage every node
        can write. Without a running Ray (``RAY_ADDRESS`` unset and no ``ray.init``
        before) a local instance is started with ``workers`` CPUs and shut down afterwards.

    Workers' stderr (native libraries' chatter: mediapipe, TFLite, ffmpeg) goes to ``log_path``.
    """
    check_engine(engine)
    if engine == "ray":
        yield from _run_ray(stage, phases, workers, str(log_path))
        return
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        with stderr_to(log_path):
            stage.setup()
        for phase in phases:
            for job in phase:
                with stderr_to(log_path):
                    outcome = _execute(stage, job)
                yield outcome
        return
    context = multiprocessing.get_context("spawn")
    setup = (os.getpid(), str(log_path), stage)
    with ProcessPoolExecutor(workers, context, _start_worker, setup) as pool:
        for phase in phases:
            futures = [pool.submit(_run_job, job) for job in phase]
            for future in as_completed(futures):
                yield future.result()


_STAGE: list[Stage] = []  # the set-up stage of this worker process


def _start_worker(parent: int, log_path: str, stage: Stage) -> None:
    _die_with_parent(parent)
    redirect_stderr(log_path)
    stage.setup()
    _STAGE.append(stage)


def _run_job(job: Any) -> Outcome:
    return _execute(_STAGE[0], job)


class _StageActor:
    """A Ray actor: one set-up copy of the stage, then one job per call."""

    def __init__(self, stage: Stage, log_path: str) -> None:
        redirect_stderr(log_path)
        self.stage = stage
        stage.setup()

    def run(self, job: Any) -> Outcome:
        return _execute(self.stage, job)


def _run_ray(
    stage: Stage, phases: Iterable[Sequence[Any]], workers: int | None, log_path: str
) -> Iterator[Outcome]:
    import ray
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        local = {"num_cpus": workers or os.cpu_count(), "include_dashboard": False}
        local = {} if os.environ.get("RAY_ADDRESS") else local  # joining a cluster: its settings
        disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)  # Ray's start-up notes (e.g. on token authentication)
        try:
            ray.init(**local, log_to_driver=False, logging_level=logging.ERROR)
        finally:
            logging.disable(disabled)
    try:
        resources = ray.available_resources()
        size = workers or max(1, int(resources.get("CPU", 1)))
        gpus = min(stage.gpus(), resources.get("GPU", 0) / size)
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_StageActor)
        pool = ActorPool([actor.remote(stage, log_path) for _ in range(size)])
        for phase in phases:
            yield from pool.map_unordered(lambda a, job: a.run.remote(job), phase)
    finally:
        if started_here:
            ray.shutdown()


def runs_dir(out: str | os.PathLike[str]) -> Path:
    """``OUT/runs``, created: where every stage keeps its run summaries and ``workers.log``."""
    path = Path(out) / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_run(out: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Record one run of a stage: ``OUT/runs/<YYYYmmdd-HHMMSS>.json``, ``summary`` plus the tool version."""
    from dftoolkit import __version__

    path = runs_dir(out) / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(path, json.dumps({**summary, "tool": f"dftoolkit {__version__}"}, indent=1))
    return path


def redirect_stderr(log_path: str | os.PathLike[str]) -> None:
    """Send this process's stderr (file descriptor 2) to ``log_path``, appending.

    For worker processes: native libraries (mediapipe's absl/glog, TFLite, ffmpeg) print warnings
    there that no Python setting silences, and they would tear through the parent's progress bar.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


@contextlib.contextmanager
def stderr_to(log_path: str | os.PathLike[str]) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2) to ``log_path`` inside, then give it back.

    For in-process runs: the native chatter :func:`redirect_stderr` keeps out of the terminal in a
    worker goes to the same log, while the caller's own lines (progress, errors) still reach the
    terminal outside the block.
    """
    if sys.stderr is not None:
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        redirect_stderr(log_path)
        yield
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """End this process when its parent ``parent`` (a pid) ends, however it ends.

    Linux: the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``; strictly, when
    the parent's thread that started this process ends: the one iterating :func:`run_stage`, which
    outlives the pool); elsewhere, or if that call fails, a daemon thread checks every second whether
    the parent is still there. multiprocessing's resource tracker then ends by itself: it exits when
    the last process holding its pipe (the parent and the workers) is gone.
    """
    armed = False
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
