"""DF-TIMIT (DeepfakeTIMIT): face swaps of 16 VidTIMIT pairs at two qualities, optionally VidTIMIT reals."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    examples,
    list_files,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord

__all__ = ["DFTIMIT"]

QUALITIES = {"LQ": "lower_quality", "HQ": "higher_quality"}
VIDEOS = (".avi", ".mp4")
# <sentence>-video-<source subject>, e.g. sa1-video-fram1
FAKE_STEM = re.compile(r"^(?P<sentence>[^-]+)-video-(?P<source>.+)$")


def _qualities(qualities: str | Sequence[str]) -> list[str]:
    chosen = list(
        dict.fromkeys(q.upper() for q in ([qualities] if isinstance(qualities, str) else qualities))
    )
    if not chosen or any(q not in QUALITIES for q in chosen):
        raise ValueError(f"qualities must be among {', '.join(QUALITIES)}, got {qualities!r}")
    return chosen


def _is_frame(name: str) -> bool:
    """VidTIMIT frames are numbered files without extension (``001``) or JPEGs."""
    return "." not in name or name.lower().endswith(".jpg")


def _subjects(vroot: Path) -> list[str]:
    if not vroot.is_dir():
        raise CorpusError(f"{vroot}: VidTIMIT root (vidtimit_root) is not a folder")
    with os.scandir(vroot) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir())


def _vidtimit_records(vroot: Path) -> list[VideoRecord]:
    """One real per sentence: frame folders ``<subject>/video/<sentence>/`` or ``<subject>/<name>.avi``."""
    records, empty, bare = [], [], []
    for subject in _subjects(vroot):
        video = vroot / subject / "video"
        if video.is_dir():
            with os.scandir(video) as entries:
                sentences = sorted(entry.name for entry in entries if entry.is_dir())
            items = []
            for sentence in sentences:
                with os.scandir(video / sentence) as entries:
                    frames = sum(1 for entry in entries if entry.is_file() and _is_frame(entry.name))
                if frames:
                    items.append((sentence, f"{subject}/video/{sentence}", frames))
                else:
                    empty.append(f"{subject}/video/{sentence}")
            if not sentences:
                bare.append(subject)
        else:
            items = [(Path(n).stem, f"{subject}/{n}", None) for n in list_files(vroot / subject, VIDEOS)]
            if not items:
                bare.append(subject)
        for sentence, relpath, frames in items:
            records.append(
                VideoRecord(
                    "vidtimit",
                    f"vidtimit-{subject}-{sentence}",
                    relpath,
                    0,
                    method="real",
                    target_id=subject,
                    frames=frames,
                    frames_exact=None if frames is None else True,  # frame folders count exactly
                )
            )
    problems = []
    if bare:
        problems.append(
            f"{len(bare)} subject folder(s) hold neither video/<sentence>/ nor videos: {examples(bare)}"
        )
    if empty:
        problems.append(f"{len(empty)} sentence folder(s) hold no frames: {examples(empty)}")
    if problems:
        raise CorpusError(f"{vroot}: {'; '.join(problems)}")
    return records


@register_corpus
class DFTIMIT(Corpus):
    """DF-TIMIT: ``{lower_quality,higher_quality}/<subject>/<sentence>-video-<source>.avi`` (.mp4 accepted).

    Fakes: ``video_id`` ``"{LQ|HQ}-{subject}-{stem}"``, compression and method ``LQ``/``HQ``
    (``DF-TIMIT-LQ``: 64x64 faces, ``DF-TIMIT-HQ``: 128x128), ``target_id`` the subject folder;
    when the name follows ``<sentence>-video-<source>``, ``source_id`` is the source subject and
    ``original_id`` ``"vidtimit-{subject}-{sentence}"`` (else both None). No official split.

    Options:
        qualities: which of ``"LQ"``, ``"HQ"`` to index (default both); their folders are required.
        vidtimit_root: the VidTIMIT folder for the reals (default None: fakes only). Layout
            ``<subject>/video/<sentence>/`` of numbered frames (``001`` or ``.jpg``) or
            ``<subject>/<sentence>.avi|.mp4``: one record per sentence, dataset ``"vidtimit"``
            (its own root), ``video_id`` ``"vidtimit-{subject}-{sentence}"``, method ``"real"``.
    """

    name: ClassVar[str] = "dftimit"
    description: ClassVar[str] = (
        "DF-TIMIT (DeepfakeTIMIT): 320 face swaps per quality (LQ, HQ); VidTIMIT reals"
    )

    def index(
        self,
        root: Path,
        *,
        qualities: str | Sequence[str] = ("LQ", "HQ"),
        vidtimit_root: str | os.PathLike[str] | None = None,
    ) -> Manifest:
        chosen = _qualities(qualities)
        missing = [QUALITIES[q] for q in chosen if not (root / QUALITIES[q]).is_dir()]
        if missing:
            raise CorpusError(
                f"{root}: missing folder(s) {', '.join(missing)} (index fewer with qualities=...); "
                f"see `dftoolkit validate dftimit {root}`"
            )
        records, misplaced, empty = [], [], []
        for quality in chosen:
            folder = QUALITIES[quality]
            names = list(list_files(root / folder, VIDEOS, recursive=True))
            if not names:
                empty.append(folder)
            for name in names:
                subject, _, filename = name.partition("/")
                if not filename or "/" in filename:
                    misplaced.append(f"{folder}/{name}")
                    continue
                stem = Path(filename).stem
                match = FAKE_STEM.match(stem)
                records.append(
                    VideoRecord(
                        "dftimit",
                        f"{quality}-{subject}-{stem}",
                        f"{folder}/{name}",
                        1,
                        method=f"DF-TIMIT-{quality}",
                        compression=quality,
                        target_id=subject,
                        source_id=match["source"] if match else None,
                        original_id=f"vidtimit-{subject}-{match['sentence']}" if match else None,
                    )
                )
        if empty:
            raise CorpusError(f"{root}: no videos in {', '.join(empty)} (index fewer with qualities=...)")
        if misplaced:
            raise CorpusError(
                f"{root}: {len(misplaced)} video(s) not in <quality>/<subject>/: {examples(misplaced)}"
            )
        if vidtimit_root is None:
            return build_manifest(records, root)
        vroot = Path(vidtimit_root).absolute()
        records += _vidtimit_records(vroot)
        return build_manifest(records, root, roots={"dftimit": root, "vidtimit": vroot})

    def layout(
        self,
        root: Path,
        *,
        qualities: str | Sequence[str] = ("LQ", "HQ"),
        vidtimit_root: str | os.PathLike[str] | None = None,
    ) -> list[ExpectedFolder]:
        folders = [
            ExpectedFolder(
                QUALITIES[q], suffixes=VIDEOS, recursive=True, description=f"{q} fakes per subject"
            )
            for q in _qualities(qualities)
        ]
        if vidtimit_root is None:
            return folders
        vroot = Path(vidtimit_root).absolute()
        try:
            rel = Path(os.path.relpath(vroot, root)).as_posix()
        except ValueError:  # another drive on Windows
            rel = vroot.as_posix()
        if not vroot.is_dir():
            return [*folders, ExpectedFolder(rel, description="VidTIMIT reals (vidtimit_root)")]
        for subject in _subjects(vroot):
            if (vroot / subject / "video").is_dir():
                # frames have no suffix: match every file of video/ (audio/ stays out)
                folders.append(
                    ExpectedFolder(
                        f"{rel}/{subject}/video", suffixes=("",), recursive=True, description="frames"
                    )
                )
            else:
                folders.append(
                    ExpectedFolder(f"{rel}/{subject}", suffixes=VIDEOS, description="VidTIMIT videos")
                )
        return folders
