"""FaceForensics++ (FF++), with Google/Jigsaw's DeepFakeDetection (DFD) actors and fakes."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    counted,
    list_files,
    read_json,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.records import SPLITS, VideoRecord

__all__ = ["COMPRESSIONS", "METHODS", "FaceForensics", "PairSplits", "read_pair_splits", "real_video_id"]

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
COMPRESSIONS = ("raw", "c23", "c40")
DFD = "DeepFakeDetection"
UNMASKED = frozenset({"FaceShifter"})

_YOUTUBE = re.compile(r"\d{3}")
_PAIR_FAKE = re.compile(r"(?P<target>\d{3})_(?P<source>\d{3})")
_SCENE = r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*"
_ACTOR = re.compile(rf"(?P<actor>\d+)__(?P<scene>{_SCENE})")
_DFD_FAKE = re.compile(rf"(?P<target>\d+)_(?P<source>\d+)__(?P<scene>{_SCENE})__(?P<uid>[A-Za-z0-9]{{8}})")


def real_video_id(source: str, compression: str, stem: str) -> str:
    """The ``video_id`` of an FF++ original: ``youtube-c23-000``, ``actors-c23-01__kitchen_pan``."""
    return f"{source}-{compression}-{stem}"


@dataclass(frozen=True)
class PairSplits:
    """The official FF++ pair splits: ``ids`` maps each YouTube id to its split, ``fakes`` maps
    both fake stems of each pair (``953_974`` and ``974_953``) to the pair's split."""

    ids: dict[str, str]
    fakes: dict[str, str]

    def stems(self, group: str) -> frozenset[str] | None:
        """The stems a video folder of ``group`` must hold: the pair ids for ``youtube``, both fakes of
        every pair for a YouTube method; None for ``actors`` and DFD (no pair split)."""
        if group in ("actors", DFD):
            return None
        return frozenset(self.ids if group == "youtube" else self.fakes)


def read_pair_splits(folder: Path) -> PairSplits:
    """Read ``train/val/test.json`` (lists of id pairs) from ``folder``.

    CorpusError naming the file for a missing or malformed file (not a list of 2-string lists)
    and for an id listed in two split files (a leak between splits).
    """
    ids: dict[str, str] = {}
    where: dict[str, Path] = {}
    fakes: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        pairs = read_json(path)
        if not isinstance(pairs, list):
            raise CorpusError(f"{path}: expected a list of id pairs, got {type(pairs).__name__}")
        for n, pair in enumerate(pairs):
            valid = isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, str) and i for i in pair)
            if not valid:
                raise CorpusError(f"{path}: entry {n} is not a pair of two id strings: {pair!r}")
            for video in pair:
                if ids.setdefault(video, split) != split:
                    raise CorpusError(
                        f"{path}: id {video!r} is also in {where[video]} (split {ids[video]!r}); "
                        "an id in two splits leaks between them"
                    )
                where[video] = path
            a, b = pair
            fakes[f"{a}_{b}"] = fakes[f"{b}_{a}"] = split
    return PairSplits(ids, fakes)


def _compressions(compression: str | Sequence[str]) -> tuple[str, ...]:
    if compression == "all":
        return COMPRESSIONS
    chosen = (compression,) if isinstance(compression, str) else tuple(compression)
    if not chosen or any(c not in COMPRESSIONS for c in chosen):
        valid = ", ".join(COMPRESSIONS)
        raise ValueError(f"compression must be one of {valid}, a list of them or 'all'; got {compression!r}")
    return tuple(dict.fromkeys(chosen))


def _methods(methods: str | Sequence[str] | None) -> tuple[str, ...]:
    if methods is None:
        return METHODS
    chosen = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown FF++ method(s) {unknown}; valid: {', '.join(METHODS)}")
    return tuple(dict.fromkeys(chosen))


def _video_folders(
    compressions: tuple[str, ...], methods: tuple[str, ...], originals: bool
) -> list[tuple[str, str, str]]:
    """``(relpath, group, compression)`` of each video folder to index (group: youtube, actors, a method)."""
    groups = (["youtube"] + (["actors"] if DFD in methods else [])) if originals else []
    folders = []
    for c in compressions:
        folders += [(f"original_sequences/{group}/{c}/videos", group, c) for group in groups]
        folders += [(f"manipulated_sequences/{method}/{c}/videos", method, c) for method in methods]
    return folders


def _mask_folder(method: str) -> str:
    return f"manipulated_sequences/{method}/masks/videos"


def _splits_folder(root: Path, splits_dir: str | os.PathLike[str] | None) -> Path:
    return root / "splits" if splits_dir is None else Path(splits_dir).absolute()


@register_corpus
class FaceForensics(Corpus):
    """FaceForensics++ (1,000 YouTube originals, five methods) plus DeepFakeDetection (DFD).

    Layout::

        original_sequences/{youtube,actors}/{raw,c23,c40}/videos/*.mp4
        manipulated_sequences/<method>/{raw,c23,c40}/videos/*.mp4
        manipulated_sequences/<method>/masks/videos/*.mp4     (no compression level; none for FaceShifter)
        splits/{train,val,test}.json                          (lists of id pairs, e.g. ["953", "974"])

    Methods: Deepfakes, Face2Face, FaceSwap, NeuralTextures, FaceShifter, DeepFakeDetection.

    Names and ids: YouTube originals ``000.mp4`` -> ``youtube-c23-000`` (method ``youtube``,
    target_id ``000``); fakes ``<target>_<source>.mp4`` -> ``Deepfakes-c23-000_003`` (original_id
    ``youtube-c23-000``). DFD originals ``actors/<c>/videos/<actor>__<scene>.mp4`` ->
    ``actors-c23-01__kitchen_pan`` (method ``actors``, target_id the actor); DFD fakes
    ``<target>_<source>__<scene>__<8-char id>.mp4``, original_id ``actors-<c>-<target>__<scene>``.
    A fake's ``mask_relpath`` is set when its mask video exists.

    Splits: a fake ``a_b`` (either order) and both originals ``a`` and ``b`` take the split of the
    pair ``[a, b]``; videos in no pair, and all of DFD, have split None. Without a splits folder
    every split is None. With one, a YouTube original or non-DFD fake that a pair implies but that
    is absent raises CorpusError (a partial download; check with ``dftoolkit validate ffpp ROOT``).

    Options:
        compression: ``"c23"`` (default), ``"raw"``, ``"c40"``, a list of them, or ``"all"``; each
            video is indexed once per chosen compression (ids include it).
        methods: the manipulation methods to index (default all six; a name or a list; ``[]`` for
            originals only).
        originals: index the real videos: the YouTube originals, and the DFD actors when
            DeepFakeDetection is chosen.
        splits_dir: folder of ``train/val/test.json`` (default ``ROOT/splits``, which may be absent;
            a folder given here must exist). A relative path is relative to the current directory.
    """

    name = "ffpp"
    description = "FaceForensics++ and DeepFakeDetection: YouTube/actor originals, six methods, c23/c40/raw"

    def index(
        self,
        root: Path,
        *,
        compression: str | Sequence[str] = "c23",
        methods: str | Sequence[str] | None = None,
        originals: bool = True,
        splits_dir: str | os.PathLike[str] | None = None,
    ) -> Manifest:
        """Records for the chosen compressions and methods (see the class docstring)."""
        chosen = _methods(methods)
        folders = _video_folders(_compressions(compression), chosen, originals)
        hint = f"check the tree with `dftoolkit validate ffpp {root}`"
        absent = [relpath for relpath, _, _ in folders if not (root / relpath).is_dir()]
        if absent:
            raise CorpusError(
                f"{root}: missing folder(s) {counted(absent)}; pass methods=[...] / compression=... to index "
                f"less, or {hint}"
            )
        splits = self._splits(root, splits_dir)
        masks = {
            method: {name.rsplit(".", 1)[0]: name for name in list_files(root / _mask_folder(method))}
            for method in chosen
            if method not in UNMASKED
        }
        records: list[VideoRecord] = []
        misnamed: list[str] = []
        missing: list[str] = []
        for relpath, group, c in folders:
            stems = set()
            for name in list_files(root / relpath):
                stem = name.rsplit(".", 1)[0]
                record = self._record(group, c, f"{relpath}/{name}", stem, splits)
                if record is None:
                    misnamed.append(f"{relpath}/{name}")
                    continue
                if stem in masks.get(group, ()):
                    record = record.replace(mask_relpath=f"{_mask_folder(group)}/{masks[group][stem]}")
                records.append(record)
                stems.add(stem)
            implied = splits.stems(group) if splits else None
            if implied is not None:
                missing += [f"{relpath}/{stem}.mp4" for stem in sorted(implied - stems)]
        if misnamed:
            raise CorpusError(
                f"{root}: file name(s) not following the FF++ naming convention ({counted(misnamed)}); {hint}"
            )
        if missing:
            raise CorpusError(
                f"{root}: video(s) listed by the splits are absent ({counted(missing)}); {hint}"
            )
        return build_manifest(records, root)

    def layout(
        self,
        root: Path,
        *,
        compression: str | Sequence[str] = "c23",
        methods: str | Sequence[str] | None = None,
        originals: bool = True,
        splits_dir: str | os.PathLike[str] | None = None,
    ) -> list[ExpectedFolder]:
        """Video folders per chosen compression (required), masks (optional) and the splits folder;
        with complete splits, the YouTube originals and non-DFD fakes each pair implies."""
        chosen = _methods(methods)
        folders = _video_folders(_compressions(compression), chosen, originals)
        split_folder = _splits_folder(root, splits_dir)
        split_names = frozenset(f"{split}.json" for split in SPLITS)
        splits = None
        if all((split_folder / name).is_file() for name in split_names):
            splits = read_pair_splits(split_folder)
        spec = []
        for relpath, group, c in folders:
            implied = splits.stems(group) if splits else None
            expected = None if implied is None else frozenset(f"{stem}.mp4" for stem in implied)
            spec.append(ExpectedFolder(relpath, expected=expected, description=f"FF++ {group} videos ({c})"))
        spec += [
            ExpectedFolder(_mask_folder(m), required=False, description=f"FF++ {m} manipulation masks")
            for m in chosen
            if m not in UNMASKED
        ]
        inside = split_folder == root or root in split_folder.parents
        spec.append(
            ExpectedFolder(
                split_folder.relative_to(root).as_posix() if inside else str(split_folder),
                required=splits_dir is not None,
                suffixes=(".json",),
                expected=split_names,
                description="FF++ official pair splits",
            )
        )
        return spec

    @staticmethod
    def _splits(root: Path, splits_dir: str | os.PathLike[str] | None) -> PairSplits | None:
        folder = _splits_folder(root, splits_dir)
        if folder.is_dir():
            return read_pair_splits(folder)
        if splits_dir is not None:
            raise CorpusError(f"{folder}: splits_dir is not a folder")
        return None

    @staticmethod
    def _record(group: str, c: str, relpath: str, stem: str, splits: PairSplits | None) -> VideoRecord | None:
        """The record of one video file, or None when its name breaks the convention of ``group``."""
        if group == "youtube":
            if not _YOUTUBE.fullmatch(stem):
                return None
            split = splits.ids.get(stem) if splits else None
            return VideoRecord("ffpp", real_video_id("youtube", c, stem), relpath, 0, method="youtube",
                               compression=c, split=split, target_id=stem)  # fmt: skip
        if group == "actors":
            match = _ACTOR.fullmatch(stem)
            if match is None:
                return None
            return VideoRecord("ffpp", real_video_id("actors", c, stem), relpath, 0, method="actors",
                               compression=c, target_id=match["actor"])  # fmt: skip
        if group == DFD:
            match = _DFD_FAKE.fullmatch(stem)
            if match is None:
                return None
            original = real_video_id("actors", c, f"{match['target']}__{match['scene']}")
            split = None
        else:
            match = _PAIR_FAKE.fullmatch(stem)
            if match is None:
                return None
            original = real_video_id("youtube", c, match["target"])
            split = splits.fakes.get(stem) if splits else None
        return VideoRecord(
            "ffpp", f"{group}-{c}-{stem}", relpath, 1, method=group, compression=c, split=split,
            target_id=match["target"], source_id=match["source"], original_id=original,
        )  # fmt: skip
