"""Progress bars for long loops, silenced by ``--quiet`` or ``DFTOOLKIT_QUIET=1``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["is_quiet", "progress", "set_quiet"]

T = TypeVar("T")
_quiet: bool | None = None  # set by set_quiet; None: DFTOOLKIT_QUIET decides


def set_quiet(quiet: bool | None) -> None:
    """Turn progress bars (and other chatter) off or on for this process; None: as ``DFTOOLKIT_QUIET``
    says (set and not ``0``: quiet)."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether progress bars and chatter are off: :func:`set_quiet`'s choice, else the environment's."""
    if _quiet is not None:
        return _quiet
    return os.environ.get("DFTOOLKIT_QUIET", "") not in ("", "0")


def progress(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    count: Callable[[T], int] | None = None,
    unit: str = "frames",
) -> Iterator[T]:
    """Iterate over ``items`` showing a progress bar on stderr unless quiet.

    With ``count`` (e.g. frames per finished video), the bar also shows the running total of
    ``unit`` and their rate per second.
    """
    if is_quiet():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    start, done = time.perf_counter(), 0
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            if count is not None:
                done += count(item)
                rate = done / max(time.perf_counter() - start, 1e-9)
                bar.update(task, description=f"{description} ({done} {unit}, {rate:.1f} {unit}/s)")
            bar.advance(task)
