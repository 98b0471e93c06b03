"""The progress bar passes items through and counts units per item."""

from __future__ import annotations

from dftoolkit import progress as progress_module
from dftoolkit.progress import progress


def test_progress_yields_every_item_and_counts_units(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "_quiet", False)
    seen: list[int] = []

    def frames(item: int) -> int:
        seen.append(item)
        return item * 2

    assert list(progress(iter([1, 2, 3]), "work", total=3, count=frames)) == [1, 2, 3]
    assert seen == [1, 2, 3]


def test_quiet_progress_does_not_count(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "_quiet", True)
    assert list(progress(range(4), "work", count=lambda item: 1 / 0)) == [0, 1, 2, 3]
