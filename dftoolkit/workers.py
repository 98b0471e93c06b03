"""Process pools for per-video work: one model load per worker, phases, native chatter to a log file."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

__all__ = ["redirect_stderr", "run_phases"]

R = TypeVar("R")


def redirect_stderr(log_path: str | os.PathLike[str]) -> None:
    """Send this process's stderr (file descriptor 2) to ``log_path``, appending.

    For worker processes: native libraries (mediapipe's absl/glog, TFLite, ffmpeg) print warnings
    there that no Python setting silences, and they would tear through the parent's progress bar.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _start_worker(log_path: str, initializer: Callable[..., None], initargs: tuple) -> None:
    redirect_stderr(log_path)
    initializer(*initargs)


def run_phases(
    fn: Callable[..., R],
    phases: Iterable[Sequence[tuple[Any, ...]]],
    *,
    workers: int | None,
    initializer: Callable[..., None],
    initargs: tuple = (),
    log_path: str | os.PathLike[str],
) -> Iterator[R]:
    """``fn(*args)`` for every ``args`` of every phase, in worker processes; results as they finish.

    A phase starts when the one before has finished (e.g. fakes after the originals whose face
    tracks they reuse); ``phases`` may be a generator that plans a phase from what the ones before
    did: it is advanced only after every result of the previous phase has been yielded.
    ``initializer(*initargs)`` runs once per worker (load models there).
    ``workers`` defaults to one per core; with 1, everything runs in this process (no stderr
    redirection). Workers are spawned, not forked: the parent may hold threaded native libraries
    (mediapipe, protobuf, ffmpeg) whose locks a forked child would inherit half-taken.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        initializer(*initargs)
        for phase in phases:
            for args in phase:
                yield fn(*args)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _start_worker, (str(log_path), initializer, initargs)) as pool:
        for phase in phases:
            futures = [pool.submit(fn, *args) for args in phase]
            for future in as_completed(futures):
                yield future.result()
