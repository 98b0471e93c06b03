"""UADFV: 49 real and 49 face-swapped videos in ``UADFV/{real,fake}/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from dftoolkit.corpora.base import (
    VIDEO_SUFFIXES,
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

__all__ = ["UADFV"]

FAKE_STEM = re.compile(r"^(?P<real>.+)_fake$")


def _base(root: Path) -> str:
    """``""`` when ``root`` is the UADFV folder itself, ``"UADFV"`` when it is the folder holding it."""
    if not any((root / part).is_dir() for part in ("real", "fake")) and (root / "UADFV").is_dir():
        return "UADFV"
    return ""


@register_corpus
class UADFV(Corpus):
    """UADFV: ``real/0000.mp4`` ... and ``fake/0000_fake.mp4`` ... (49 + 49 videos).

    ``root`` is either the ``UADFV`` folder or the folder that holds it. ``video_id`` is the file
    stem; a fake ``<n>_fake`` has ``original_id`` and ``target_id`` ``<n>`` (a real's target_id is
    its own stem). A fake whose real is absent is still indexed, with ``original_id`` set. Method
    ``"UADFV"`` for fakes, ``"real"`` for reals; no official split. Other names (a fake without
    ``_fake``, a real with it, files in sub-folders) raise CorpusError.
    """

    name: ClassVar[str] = "uadfv"
    description: ClassVar[str] = "UADFV: 49 real and 49 face-swapped videos (real/, fake/)"

    def index(self, root: Path) -> Manifest:
        base = _base(root)
        missing = [part for part in ("real", "fake") if not (root / base / part).is_dir()]
        if missing:
            where = root / base
            raise CorpusError(
                f"{where}: missing folder(s) {', '.join(p + '/' for p in missing)} (root may be the UADFV "
                f"folder or the one holding it); see `dftoolkit validate uadfv {root}`"
            )
        records = []
        misnamed = []
        for part, label in (("real", 0), ("fake", 1)):
            folder = f"{base}/{part}" if base else part
            for name in list_files(root / folder, VIDEO_SUFFIXES, recursive=True):
                stem = Path(name).stem
                match = FAKE_STEM.match(stem)
                if "/" in name or bool(match) != bool(label):
                    misnamed.append(f"{folder}/{name}")
                    continue
                original = match["real"] if match else None
                records.append(
                    VideoRecord(
                        "uadfv",
                        stem,
                        f"{folder}/{name}",
                        label,
                        method="UADFV" if label else "real",
                        target_id=original or stem,
                        original_id=original,
                    )
                )
        if misnamed:
            raise CorpusError(
                f"{root}: {len(misnamed)} file(s) do not follow UADFV naming "
                f"(real/<n>.mp4, fake/<n>_fake.mp4): {examples(misnamed)}"
            )
        return build_manifest(records, root)

    def layout(self, root: Path) -> list[ExpectedFolder]:
        base = _base(root)
        return [
            ExpectedFolder(f"{base}/{part}" if base else part, description=f"{part} videos")
            for part in ("real", "fake")
        ]
