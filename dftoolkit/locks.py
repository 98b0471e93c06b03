"""One writer per output folder: an OS file lock held for a whole run, and the cleanup it allows.

A stage that writes an output folder (preprocess, generate, quality; train and benchmark to come)
holds an exclusive ``flock`` on ``<folder>/.dftoolkit.lock`` while it runs
(:func:`output_lock`, or :func:`locks_output` on the stage function). A second run on the same
folder fails at once with :class:`FolderLockedError` naming the holder. The kernel drops the lock
when the holder's process ends, however it ends (``kill -9`` included), so a lock is never stale.
Worker processes never take it: their parent holds it for them.

Only the lock holder may remove temporary files (:func:`remove_temporaries`): another run's
in-flight files look exactly like a killed run's leftovers.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from dftoolkit.errors import DftoolkitError

__all__ = ["LOCK_FILE", "FolderLockedError", "locks_output", "output_lock", "remove_temporaries"]

LOCK_FILE = ".dftoolkit.lock"
"""The lock file's name inside an output folder; it holds the holder's pid, command and start time."""

_TEMPORARY = re.compile(r"\.(?:.+\.|perturb-)[a-z0-9_]{8}(?:\.\w+)?")
"""Names of temporary files and folders: ``fileio.atomic_path``/``atomic_dir`` (``.NAME.XXXXXXXX[.ext]``,
``tempfile``'s 8 random characters) and the perturbation scratch files (``.perturb-XXXXXXXX.mp4``)."""

P = ParamSpec("P")
R = TypeVar("R")


class FolderLockedError(DftoolkitError, RuntimeError):
    """Another live process is writing the output folder; ``holder`` is what it wrote in the lock file."""

    def __init__(self, folder: Path, holder: dict[str, Any] | None) -> None:
        if holder:
            who = (
                f"a {holder.get('what')} run (pid {holder.get('pid')} on {holder.get('host')}, "
                f"started {holder.get('started')}: {holder.get('command')})"
            )
        else:
            who = "another process (it has not written its pid yet)"
        super().__init__(
            f"{folder} is in use by {who}; one run at a time may write it: wait for that run to end, "
            "stop it, or choose another output folder"
        )
        self.folder, self.holder = folder, holder


def _holder(path: Path) -> dict[str, Any] | None:
    """What the lock's holder wrote in the lock file; waits briefly while it is still writing it
    (until then the file is empty, or names a dead earlier holder)."""
    data = None
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text("utf-8"))
        if isinstance(data, dict) and (data.get("host") != socket.gethostname() or _alive(data.get("pid"))):
            return data  # a pid on another host (a shared file system) cannot be checked from here
        time.sleep(0.05)
    return data if isinstance(data, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (``what``, e.g. ``"preprocess"``, names the run); creates ``folder``.

    Raises :class:`FolderLockedError` at once, without waiting, when another process holds it.
    Yields the lock file's path.
    """
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLockedError(folder, _holder(path)) from None
        holder = {
            "what": what,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([Path(sys.orig_argv[0]).name, *sys.orig_argv[1:]]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def locks_output(parameter: str, what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a stage function to run holding :func:`output_lock` on its argument ``parameter``."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            with output_lock(signature.bind(*args, **kwargs).arguments[parameter], what):
                return function(*args, **kwargs)

        return locked

    return decorate


def remove_temporaries(folder: str | os.PathLike[str], subfolders: Iterable[str]) -> list[Path]:
    """Remove the temporary files and folders a killed run left in ``folder`` (not recursing) and
    anywhere under its ``subfolders``; return what was removed.

    Call it only while holding ``folder``'s lock.
    """
    folder = Path(folder)
    found = [p for p in folder.iterdir() if _TEMPORARY.fullmatch(p.name)] if folder.is_dir() else []
    for sub in subfolders:
        for parent, dirs, files in os.walk(folder / sub):
            for name in [*dirs, *files]:
                if _TEMPORARY.fullmatch(name):
                    found.append(Path(parent, name))
            dirs[:] = [d for d in dirs if not _TEMPORARY.fullmatch(d)]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return found
