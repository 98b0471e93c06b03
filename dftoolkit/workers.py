"""Process pools for per-video work: one model load per worker, phases, native chatter to a log file.

Workers die with their parent: if the parent is killed (``kill -9``, the OOM killer) its workers do
not go on as orphans writing into an output folder that a rerun may be cleaning.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

__all__ = ["redirect_stderr", "run_phases", "stderr_to"]

R = TypeVar("R")


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
    the parent's thread that started this process ends: the one iterating :func:`run_phases`, which
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


def _start_worker(parent: int, log_path: str, initializer: Callable[..., None], initargs: tuple) -> None:
    _die_with_parent(parent)
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
    ``workers`` defaults to one per core; with 1, everything runs in this process, its stderr sent
    to ``log_path`` while ``initializer`` and each ``fn`` run (:func:`stderr_to`). Workers end
    when this process ends, however it ends (:func:`_die_with_parent`).
    Workers are spawned, not forked: the parent may hold threaded native libraries
    (mediapipe, protobuf, ffmpeg) whose locks a forked child would inherit half-taken.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        with stderr_to(log_path):
            initializer(*initargs)
        for phase in phases:
            for args in phase:
                with stderr_to(log_path):
                    result = fn(*args)
                yield result
        return
    context = multiprocessing.get_context("spawn")
    setup = (os.getpid(), str(log_path), initializer, initargs)
    with ProcessPoolExecutor(workers, context, _start_worker, setup) as pool:
        for phase in phases:
            futures = [pool.submit(fn, *args) for args in phase]
            for future in as_completed(futures):
                yield future.result()
