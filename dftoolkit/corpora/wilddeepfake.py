"""WildDeepfake: face sequences (cropped frames) collected from the internet, shipped as tar archives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    examples,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord

__all__ = ["WildDeepfake"]

# subset folder -> (label, split)
SUBSETS = {
    "real_train": (0, "train"),
    "real_test": (0, "test"),
    "fake_train": (1, "train"),
    "fake_test": (1, "test"),
}
FRAME_SUFFIXES = (".png", ".jpg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def _unextracted(root: Path, subset: str) -> list[tuple[str, str]]:
    """``(archive, folder)`` for each archive in ``subset`` whose folder (``1.tar.gz`` -> ``1``) is absent."""
    with os.scandir(root / subset) as entries:
        names = {entry.name: entry.is_dir() for entry in entries}
    pending = []
    for name, is_dir in sorted(names.items()):
        suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)
        if suffix and not is_dir and not names.get(name[: -len(suffix)]):
            pending.append((f"{subset}/{name}", f"{subset}/{name[: -len(suffix)]}"))
    return pending


def _scan(root: Path, subset: str) -> tuple[list[tuple[tuple[str, ...], int]], list[str], list[str]]:
    """Walk one subset folder: ``(sequence parts, frame count)`` of each sequence, folders holding frames
    outside a sequence position, and leaf folders without frames."""
    sequences, misplaced, empty = [], [], []
    stack: list[tuple[str, ...]] = [(subset,)]
    while stack:
        parts = stack.pop()
        frames, subdirs, files = 0, [], 0
        with os.scandir(root.joinpath(*parts)) as entries:
            for entry in entries:
                if entry.is_dir():
                    subdirs.append(entry.name)
                else:
                    files += 1
                    frames += int(entry.name.lower().endswith(FRAME_SUFFIXES))
        # <subset>/<tar>/<seq>/, or <subset>/<tar>/{real,fake}/<seq>/ as some archives unpack
        in_place = len(parts) == 3 or (len(parts) == 4 and parts[2] in ("real", "fake"))
        if frames and in_place:
            sequences.append((parts, frames))
        elif frames:
            misplaced.append("/".join(parts))
        elif not subdirs and not (len(parts) == 1 and files):
            empty.append("/".join(parts))
        stack.extend((*parts, name) for name in subdirs)
    return sorted(sequences), sorted(misplaced), sorted(empty)


@register_corpus
class WildDeepfake(Corpus):
    """WildDeepfake after extracting its archives: ``{real,fake}_{train,test}/<tar>/<seq>/*.png``.

    Each archive ``real_train/1.tar.gz`` must be extracted in place into ``real_train/1/`` (keeping
    the archive is fine; an archive without its folder is an error). One record per face
    sequence: ``relpath`` the sequence folder, ``video_id`` ``"{subset}-{tar}-{seq}"``, ``frames``
    the number of ``.png``/``.jpg`` files, method ``"WildDeepfake"`` for fakes and ``"real"`` for
    reals, split ``train``/``test`` from the subset (no val). Archives that unpack as
    ``<tar>/{real,fake}/<seq>/`` are accepted too. Frames outside a sequence folder and empty
    folders raise CorpusError.
    """

    name: ClassVar[str] = "wilddeepfake"
    description: ClassVar[str] = (
        "WildDeepfake: real and fake face sequences (cropped frames) from internet videos"
    )

    def index(self, root: Path) -> Manifest:
        missing = [subset for subset in SUBSETS if not (root / subset).is_dir()]
        if missing:
            raise CorpusError(
                f"{root}: missing folder(s) {', '.join(missing)}; "
                f"see `dftoolkit validate wilddeepfake {root}`"
            )
        pending = [archive for subset in SUBSETS for archive, _ in _unextracted(root, subset)]
        if pending:
            raise CorpusError(
                f"{root}: {len(pending)} archive(s) not extracted: {examples(pending)}; "
                "extract each in place (real_train/1.tar.gz -> real_train/1/<sequence>/*.png)"
            )
        records, misplaced, empty = [], [], []
        for subset, (label, split) in SUBSETS.items():
            sequences, wrong, hollow = _scan(root, subset)
            misplaced += wrong
            empty += hollow
            for parts, frames in sequences:
                records.append(
                    VideoRecord(
                        "wilddeepfake",
                        f"{subset}-{parts[1]}-{parts[-1]}",
                        "/".join(parts),
                        label,
                        method="WildDeepfake" if label else "real",
                        split=split,
                        frames=frames,
                        frames_exact=True,
                    )
                )
        problems = []
        if misplaced:
            problems.append(
                f"{len(misplaced)} folder(s) hold frames outside <subset>/<tar>/<sequence>/: "
                f"{examples(misplaced)}"
            )
        if empty:
            problems.append(f"{len(empty)} folder(s) hold no frames: {examples(empty)}")
        if problems:
            raise CorpusError(f"{root}: {'; '.join(problems)}")
        return build_manifest(records, root)

    def layout(self, root: Path) -> list[ExpectedFolder]:
        folders = [
            ExpectedFolder(
                subset, suffixes=FRAME_SUFFIXES, recursive=True, description=f"{subset} face sequences"
            )
            for subset in SUBSETS
        ]
        for subset in SUBSETS:
            if (root / subset).is_dir():
                folders += [
                    ExpectedFolder(
                        folder, suffixes=FRAME_SUFFIXES, recursive=True, description=f"extract {archive}"
                    )
                    for archive, folder in _unextracted(root, subset)
                ]
        return folders
