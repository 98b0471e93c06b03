"""DeeperForensics-1.0: eleven variants of 1,000 DF-VAE face swaps onto FF++ YouTube videos."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    counted,
    list_files,
    read_lines,
    register_corpus,
)
from dftoolkit.corpora.ffpp import FaceForensics, real_video_id
from dftoolkit.manifest import Manifest
from dftoolkit.records import SPLITS, VideoRecord

__all__ = ["VARIANTS", "DeeperForensics"]

VARIANTS = (
    "end_to_end",
    "reenact_postprocess",
    *(f"end_to_end_level_{level}" for level in range(1, 6)),
    "end_to_end_random_level",
    *(f"end_to_end_mix_{n}_distortions" for n in range(2, 5)),
)
MANIPULATED = "manipulated_videos"
SPLITS_DIR = "lists/splits"
META_DIR = "lists/manipulated_videos_distortions_meta"

_FAKE = re.compile(r"(?P<target>\d{3})_(?P<source>[A-Z]\d{3})")
_DISTORTION = re.compile(r"[A-Za-z]+:\d+")


def _variants(variants: str | Sequence[str] | None) -> tuple[str, ...]:
    if variants is None:
        return VARIANTS
    chosen = (variants,) if isinstance(variants, str) else tuple(variants)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise ValueError(f"unknown or no DeeperForensics variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    return tuple(dict.fromkeys(chosen))


def _stem(name: str) -> str:
    """``000_M101.mp4`` or ``end_to_end/000_M101.mp4`` -> ``000_M101``."""
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _read_splits(folder: Path) -> dict[str, str] | None:
    """Fake stem -> split from ``train/val/test.txt``; None when ``folder`` is absent.

    Lines are fake file names, optionally with a variant folder (``end_to_end/000_M101.mp4``); a
    name stands for that video in every variant. CorpusError for a missing file, a line that is
    not a fake name, or a name in two split files.
    """
    if not folder.is_dir():
        return None
    splits: dict[str, str] = {}
    where: dict[str, Path] = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        for line in read_lines(path):
            stem = _stem(line)
            if not _FAKE.fullmatch(stem):
                raise CorpusError(f"{path}: line {line!r} is not a fake video name like 000_M101.mp4")
            if splits.setdefault(stem, split) != split:
                raise CorpusError(
                    f"{path}: {line!r} is also in {where[stem]} (split {splits[stem]!r}); "
                    "a video in two splits leaks between them"
                )
            where[stem] = path
    return splits


def _read_meta(folder: Path) -> dict[tuple[str, str], str]:
    """``(variant, stem)`` -> distortion chain (``"CS:2 JPEG:4"``) from every ``.txt`` in ``folder``.

    Lines are ``<variant>/<name> <TYPE>:<level> ...``; a line naming no distortion adds nothing.
    CorpusError naming the file and line for anything else, or for two chains of one video.
    """
    chains: dict[tuple[str, str], str] = {}
    for name in list_files(folder, (".txt",)):
        path = folder / name
        for line in read_lines(path):
            video, *distortions = line.split()
            variant = video.rsplit("/", 2)[-2] if "/" in video else ""
            stem = _stem(video)
            valid = (
                variant in VARIANTS and _FAKE.fullmatch(stem) and all(map(_DISTORTION.fullmatch, distortions))
            )
            if not valid:
                raise CorpusError(
                    f"{path}: malformed line {line!r}; expected '<variant>/000_M101.mp4 <TYPE>:<level> ...'"
                )
            if not distortions:
                continue
            chain = " ".join(distortions)
            if chains.setdefault((variant, stem), chain) != chain:
                raise CorpusError(f"{path}: line {line!r} contradicts the chain {chains[variant, stem]!r}")
    return chains


@register_corpus
class DeeperForensics(Corpus):
    """DeeperForensics-1.0 face swaps (fakes), optionally with their FF++ c23 YouTube targets (reals).

    Layout::

        manipulated_videos/<variant>/<target 3 digits>_<source actor>.mp4   (e.g. 000_M101.mp4)
        lists/splits/{train,val,test}.txt                  fake names, 703:96:201 of 1,000
        lists/manipulated_videos_distortions_meta/*.txt    '<variant>/<name> <TYPE>:<level> ...'
        source_videos/<actor>/...                          not indexed

    Variants: end_to_end, reenact_postprocess, end_to_end_level_{1..5}, end_to_end_random_level,
    end_to_end_mix_{2,3,4}_distortions.

    Fakes: dataset ``deeperforensics``, video_id ``<variant>-<stem>`` (``end_to_end-000_M101``),
    method = variant, target_id the FF++ id, source_id the actor, original_id the FF++ video id
    ``youtube-c23-<target>``, perturbation the distortion chain from the meta files (``"GB:3"``,
    ``"CS:2 JPEG:4"``; None where no meta line names the video). A name's split is the same in
    every variant; with no ``lists/splits`` folder every split is None. Listed names absent from a
    variant folder, and files there that no list names, raise CorpusError.

    The dataset's README makes the FF++ c23 target videos the real class (not ``source_videos``):
    with ``ffpp_root`` they are indexed by the ``ffpp`` loader (dataset ``ffpp``, ids like
    ``youtube-c23-000``, paths under ``ffpp_root``), each taking the split of its fakes.

    Options:
        variants: the variants to index (default all eleven; a name or a list).
        ffpp_root: the FaceForensics++ folder; when given, add the FF++ c23 YouTube originals the
            indexed fakes modify as reals (an absent one raises CorpusError). Not checked by
            ``layout``: validate it with ``dftoolkit validate ffpp``.
    """

    name = "deeperforensics"
    description = "DeeperForensics-1.0: 11 variants of 1,000 perturbed face swaps; reals from FF++ c23"

    def index(
        self,
        root: Path,
        *,
        variants: str | Sequence[str] | None = None,
        ffpp_root: str | os.PathLike[str] | None = None,
    ) -> Manifest:
        """Records of the chosen variants' fakes, plus their FF++ originals with ``ffpp_root``."""
        chosen = _variants(variants)
        hint = f"check the tree with `dftoolkit validate deeperforensics {root}`"
        absent = [f"{MANIPULATED}/{v}" for v in chosen if not (root / MANIPULATED / v).is_dir()]
        if absent:
            raise CorpusError(f"{root}: missing folder(s) {counted(absent)}; pass variants=[...] or {hint}")
        splits = _read_splits(root / SPLITS_DIR)
        chains = _read_meta(root / META_DIR)
        records: list[VideoRecord] = []
        misnamed: list[str] = []
        unlisted: list[str] = []
        missing: list[str] = []
        for variant in chosen:
            folder = f"{MANIPULATED}/{variant}"
            stems = set()
            for name in list_files(root / folder):
                stem = _stem(name)
                match = _FAKE.fullmatch(stem)
                if match is None:
                    misnamed.append(f"{folder}/{name}")
                    continue
                if splits is not None and stem not in splits:
                    unlisted.append(f"{folder}/{name}")
                stems.add(stem)
                records.append(
                    VideoRecord(
                        "deeperforensics", f"{variant}-{stem}", f"{folder}/{name}", 1, method=variant,
                        split=splits.get(stem) if splits else None, target_id=match["target"],
                        source_id=match["source"], perturbation=chains.get((variant, stem)),
                        original_id=real_video_id("youtube", "c23", match["target"]),
                    )
                )  # fmt: skip
            if splits is not None:
                missing += [f"{folder}/{stem}.mp4" for stem in sorted(splits.keys() - stems)]
        if misnamed:
            raise CorpusError(f"{root}: file name(s) not like 000_M101.mp4 ({counted(misnamed)}); {hint}")
        if missing:
            raise CorpusError(f"{root}: video(s) listed in {SPLITS_DIR} absent ({counted(missing)}); {hint}")
        if unlisted:
            raise CorpusError(f"{root}: video(s) in no list of {SPLITS_DIR} ({counted(unlisted)}); {hint}")
        if ffpp_root is None:
            return build_manifest(records, root)
        ffpp_root = Path(ffpp_root).absolute()
        reals = self._reals(root, ffpp_root, records)
        return build_manifest(records + reals, root, roots={"deeperforensics": root, "ffpp": ffpp_root})

    def layout(
        self,
        root: Path,
        *,
        variants: str | Sequence[str] | None = None,
        ffpp_root: str | os.PathLike[str] | None = None,
    ) -> list[ExpectedFolder]:
        """Each chosen variant folder (required; the listed names when the splits are complete),
        ``lists/splits`` and the distortion meta folder (optional). ``ffpp_root`` is not checked."""
        chosen = _variants(variants)
        split_folder = root / SPLITS_DIR
        split_names = frozenset(f"{split}.txt" for split in SPLITS)
        expected = None
        if all((split_folder / name).is_file() for name in split_names):
            expected = frozenset(f"{stem}.mp4" for stem in _read_splits(split_folder) or ())
        spec = [
            ExpectedFolder(f"{MANIPULATED}/{v}", expected=expected, description=f"{v} fakes") for v in chosen
        ]
        return [
            *spec,
            ExpectedFolder(SPLITS_DIR, False, (".txt",), split_names, description="official fake splits"),
            ExpectedFolder(META_DIR, False, (".txt",), description="distortion chains of fakes"),
        ]

    @staticmethod
    def _reals(root: Path, ffpp_root: Path, fakes: list[VideoRecord]) -> list[VideoRecord]:
        """The FF++ c23 YouTube originals of ``fakes`` as the ffpp loader makes them, split as their fakes."""
        wanted: dict[str, set[str | None]] = {}
        for fake in fakes:
            wanted.setdefault(fake.original_id, set()).add(fake.split)
        conflicting = sorted(video for video, splits in wanted.items() if len(splits) > 1)
        if conflicting:
            raise CorpusError(
                f"{root / SPLITS_DIR}: the fakes of FF++ original(s) {counted(conflicting)} are in different "
                "splits; their real video cannot take one split"
            )
        if not ffpp_root.is_dir():
            raise CorpusError(f"{ffpp_root}: ffpp_root is not a folder")
        ffpp = FaceForensics().index(ffpp_root, compression="c23", methods=[])
        originals = {real.video_id: real for real in ffpp}
        absent = sorted(wanted.keys() - originals.keys())
        if absent:
            raise CorpusError(
                f"{ffpp_root}: FF++ c23 original(s) of DeeperForensics fakes absent ({counted(absent)}); "
                f"check with `dftoolkit validate ffpp {ffpp_root}`"
            )
        return [originals[video].replace(split=wanted[video].pop()) for video in sorted(wanted)]
