"""DFDC (the Deepfake Detection Challenge corpus, about 119,000 videos) and its 5,000-video preview.

Full corpus::

    dfdc_train_part_0/metadata.json  {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}}
    dfdc_train_part_0/abc.mp4        ... parts 0..49 (or nested: dfdc_train_part_00/dfdc_train_part_0/)
    test/labels.csv                  optional public test set: "filename,label" (1 = fake), its videos

Preview::

    original_videos/<subject>/...mp4  real
    method_A/<subject>/...mp4         fake (method A); method_B/ likewise
    dataset.json                      {"method_A/643049/643049_A/1955256_A_001.mp4":
                                          {"label": "fake", "set": "train"}, ...}
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from dftoolkit.corpora.base import (
    VIDEO_SUFFIXES,
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    examples,
    list_files,
    read_json,
    read_lines,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.paths import PathEscapeError, normalise_relpath
from dftoolkit.records import SPLITS, RecordError, VideoRecord

__all__ = ["DFDC", "PARTS", "PREVIEW_FOLDERS", "DFDCPreview"]

PARTS = 50
"""The full corpus ships parts 0..49."""

METADATA = "metadata.json"
TEST_LABELS = "labels.csv"
_PART = re.compile(r"dfdc_train_part_(\d+)")
_METHODS = {0: "real", 1: "DFDC"}

PREVIEW_FOLDERS = {"original_videos": 0, "method_A": 1, "method_B": 1}
"""Preview folder -> label (0 real, 1 fake)."""

PREVIEW_METADATA = "dataset.json"
_PREVIEW_LABELS = {"real": 0, "fake": 1}
_PREVIEW_SETS = ("train", "test")


def _check_files(root: Path, name: str, missing: list[str], extra: list[str], source: str) -> None:
    """CorpusError (counts, examples, validate hint) when metadata and disk disagree."""
    found = []
    if missing:
        found.append(
            f"{len(missing)} file(s) listed in {source} are not on disk: {examples(sorted(missing))}"
        )
    if extra:
        found.append(f"{len(extra)} video(s) on disk are not in {source}: {examples(sorted(extra))}")
    if found:
        raise CorpusError(
            f"{root}: {'; '.join(found)} (partial download or stray files?); "
            f"run `dftoolkit validate {name} {root}`"
        )


def _compare(listed: dict[str, Any], on_disk: set[str], folder: str = "") -> tuple[list[str], list[str]]:
    """Names listed but absent, and present but unlisted (prefixed with ``folder/`` when given)."""
    prefix = f"{folder}/" if folder else ""
    return (
        [prefix + n for n in listed if n not in on_disk],
        [prefix + n for n in on_disk if n not in listed],
    )


def _no_duplicates(root: Path, records: list[VideoRecord]) -> None:
    """CorpusError naming both files when a video id occurs twice (the same video in two parts)."""
    seen: dict[str, str] = {}
    twice = []
    for record in records:
        first = seen.setdefault(record.video_id, record.relpath)
        if first != record.relpath:
            twice.append(f"{record.video_id} ({first} and {record.relpath})")
    if twice:
        raise CorpusError(f"{root}: {len(twice)} video id(s) occur twice: {examples(twice)}")


def _find_parts(root: Path) -> dict[int, str]:
    """Part number -> folder (relative to ``root``) that holds its metadata.json and videos.

    ``dfdc_train_part_7`` and ``dfdc_train_part_07`` both count as part 7; when the part folder
    has no metadata.json but exactly one ``dfdc_train_part_*`` sub-folder, that one is used.
    """
    parts: dict[int, str] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            match = _PART.fullmatch(entry.name)
            if match is None or not entry.is_dir():
                continue
            folder = entry.name
            if not os.path.isfile(os.path.join(entry.path, METADATA)):
                with os.scandir(entry.path) as inner:
                    nested = [e.name for e in inner if e.is_dir() and _PART.fullmatch(e.name)]
                if len(nested) == 1:
                    folder = f"{entry.name}/{nested[0]}"
            number = int(match[1])
            if number in parts:
                raise CorpusError(f"{root}: part {number} occurs twice: {parts[number]}/ and {folder}/")
            parts[number] = folder
    return dict(sorted(parts.items()))


def _read_metadata(path: Path) -> dict[str, tuple[int, str | None, str | None]]:
    """A part's metadata.json as file name -> (label, split, original video id)."""
    metadata = read_json(path)
    if not isinstance(metadata, dict):
        raise CorpusError(f"{path}: expected an object mapping video file names to entries")
    entries = {}
    for name, entry in metadata.items():
        if not isinstance(entry, dict):
            raise CorpusError(f"{path}: {name!r}: expected an object with 'label', got {entry!r}")
        label = entry.get("label")
        if label not in ("REAL", "FAKE"):
            raise CorpusError(f"{path}: {name!r}: label must be 'FAKE' or 'REAL', got {label!r}")
        split = entry.get("split")
        if split is not None and split not in SPLITS:
            raise CorpusError(f"{path}: {name!r}: split must be one of {SPLITS}, got {split!r}")
        original = entry.get("original")
        if label == "REAL":
            entries[name] = (0, split, None)
        elif isinstance(original, str) and original:
            entries[name] = (1, split, os.path.splitext(original)[0])
        else:
            raise CorpusError(f"{path}: {name!r}: a FAKE needs its 'original' video, got {original!r}")
    return entries


def _test_folder(root: Path, test_dir: str | os.PathLike[str] | None) -> str | None:
    """The test set's folder relative to ``root``: ``test_dir``, or ``test`` when present."""
    if test_dir is None:
        return "test" if (root / "test").is_dir() else None
    path = Path(os.path.normpath(root / test_dir))
    if not path.is_dir():
        raise CorpusError(f"{path}: test_dir is not a folder")
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise CorpusError(f"{path}: test_dir must be inside the corpus root {root}") from None


def _read_test_labels(path: Path) -> dict[str, int]:
    """labels.csv (``filename,label``, 1 = fake) as file name -> label."""
    rows = list(csv.reader(read_lines(path)))
    header = [cell.strip() for cell in rows[0]] if rows else []
    if "filename" not in header or "label" not in header:
        raise CorpusError(f"{path}: line 1: expected the header 'filename,label', got {','.join(header)!r}")
    name_at, label_at = header.index("filename"), header.index("label")
    labels: dict[str, int] = {}
    for number, row in enumerate(rows[1:], 2):
        cells = [cell.strip() for cell in row]
        if len(cells) != len(header) or cells[label_at] not in ("0", "1"):
            raise CorpusError(
                f"{path}: line {number}: expected '<file>,<0 real | 1 fake>', got {','.join(row)!r}"
            )
        if cells[name_at] in labels:
            raise CorpusError(f"{path}: line {number}: {cells[name_at]!r} is listed twice")
        labels[cells[name_at]] = int(cells[label_at])
    return labels


@register_corpus
class DFDC(Corpus):
    """DFDC full release: ``dfdc_train_part_{0..49}/`` with ``metadata.json``, plus the public test set.

    Part folders may be zero-padded and may nest one folder more
    (``dfdc_train_part_00/dfdc_train_part_0/``); both are found. A subset of the parts indexes
    (``validate`` lists the absent ones as optional).

    Records: ``video_id`` is the file stem; ``method`` ``"DFDC"`` for fakes and ``"real"`` for
    reals; a fake's ``original_id`` is the stem of its ``original`` (kept even when that video
    is in a part not downloaded); ``target_id`` is the ``original_id`` for fakes and the own id
    for reals (DFDC ships no identities: grouping by it keeps each fake with its original);
    ``split`` from metadata (``"train"``). Test-set videos get ``split="test"``, ``target_id``
    their own id and no ``original_id``.

    Every file that metadata lists must be on disk and every video on disk must be listed.

    Options:
        test_dir: folder of the public test set (``labels.csv`` and the videos), relative to
            the root or absolute but inside it; default ``test`` when that folder exists.
    """

    name: ClassVar[str] = "dfdc"
    description: ClassVar[str] = "DFDC: ~119k videos in 50 parts with metadata.json, optional test set"

    def index(self, root: Path, *, test_dir: str | os.PathLike[str] | None = None) -> Manifest:
        parts, test = self._sources(root, test_dir)
        records: list[VideoRecord] = []
        missing: list[str] = []
        extra: list[str] = []
        for folder in parts.values():
            path = root / folder / METADATA
            metadata = _read_metadata(path)
            on_disk = set(list_files(root / folder))
            absent, unlisted = _compare(metadata, on_disk, folder)
            missing += absent
            extra += unlisted
            try:
                for name in sorted(metadata.keys() & on_disk):
                    label, split, original_id = metadata[name]
                    video_id = os.path.splitext(name)[0]
                    records.append(
                        VideoRecord(
                            self.name,
                            video_id,
                            f"{folder}/{name}",
                            label,
                            method=_METHODS[label],
                            split=split,
                            target_id=original_id or video_id,
                            original_id=original_id,
                        )
                    )
            except RecordError as err:
                raise CorpusError(f"{path}: {err}") from None
        if test is not None:
            path = root / test / TEST_LABELS
            labels = _read_test_labels(path)
            on_disk = set(list_files(root / test))
            absent, unlisted = _compare(labels, on_disk, test)
            missing += absent
            extra += unlisted
            try:
                for name in sorted(labels.keys() & on_disk):
                    video_id = os.path.splitext(name)[0]
                    records.append(
                        VideoRecord(
                            self.name,
                            video_id,
                            f"{test}/{name}",
                            labels[name],
                            method=_METHODS[labels[name]],
                            split="test",
                            target_id=video_id,
                        )
                    )
            except RecordError as err:
                raise CorpusError(f"{path}: {err}") from None
        _check_files(root, self.name, missing, extra, "metadata.json / labels.csv")
        _no_duplicates(root, records)
        return build_manifest(records, root)

    def layout(self, root: Path, *, test_dir: str | os.PathLike[str] | None = None) -> list[ExpectedFolder]:
        """Each part found (its videos and metadata.json), the absent parts as optional, the test set."""
        parts, test = self._sources(root, test_dir)
        folders = []
        for number in range(max([PARTS, *(n + 1 for n in parts)])):
            if number not in parts:
                folders.append(
                    ExpectedFolder(
                        f"dfdc_train_part_{number}", required=False, description="part not downloaded"
                    )
                )
                continue
            path = root / parts[number] / METADATA
            names = set(_read_metadata(path)) if path.is_file() else set()
            folders.append(
                ExpectedFolder(
                    parts[number],
                    suffixes=(*VIDEO_SUFFIXES, ".json"),
                    expected=frozenset(names | {METADATA}),
                    description=f"part {number}",
                )
            )
        if test is not None:
            path = root / test / TEST_LABELS
            names = set(_read_test_labels(path)) if path.is_file() else set()
            folders.append(
                ExpectedFolder(
                    test,
                    required=test_dir is not None,
                    suffixes=(*VIDEO_SUFFIXES, ".csv"),
                    expected=frozenset(names | {TEST_LABELS}),
                    description="public test set",
                )
            )
        return folders

    def _sources(
        self, root: Path, test_dir: str | os.PathLike[str] | None
    ) -> tuple[dict[int, str], str | None]:
        """The part folders and the test folder; CorpusError when there is neither."""
        parts, test = _find_parts(root), _test_folder(root, test_dir)
        if not parts and test is None:
            raise CorpusError(f"{root}: no dfdc_train_part_* folders and no test set: is this the DFDC root?")
        return parts, test


@register_corpus
class DFDCPreview(Corpus):
    """DFDC preview: ``original_videos/``, ``method_A/``, ``method_B/`` and ``dataset.json``.

    Records: ``video_id`` is the relative path without suffix, ``/`` replaced by ``-``
    (``method_A-643049-643049_A-1955256_A_001``); ``method`` ``"method_A"``/``"method_B"`` for
    fakes, ``"real"`` for ``original_videos``; ``target_id`` is the subject (the first folder
    under the top folder, e.g. ``643049``) when there is one; ``split`` from ``set``
    (train/test). A label must agree with its folder (reals in ``original_videos/``). Every file
    of ``dataset.json`` must be on disk and every video on disk listed. No options.
    """

    name: ClassVar[str] = "dfdc-preview"
    description: ClassVar[str] = "DFDC preview: ~5k videos in original_videos/, method_A/, method_B/"

    def index(self, root: Path) -> Manifest:
        absent = [folder for folder in PREVIEW_FOLDERS if not (root / folder).is_dir()]
        if absent:
            raise CorpusError(
                f"{root}: missing folder(s) {', '.join(f + '/' for f in absent)}; "
                f"run `dftoolkit validate {self.name} {root}` to see what is missing"
            )
        path = root / PREVIEW_METADATA
        metadata = self._read(path)
        on_disk = {
            f"{folder}/{name}"
            for folder in PREVIEW_FOLDERS
            for name in list_files(root / folder, recursive=True)
        }
        _check_files(root, self.name, *_compare(metadata, on_disk), PREVIEW_METADATA)
        records = []
        try:
            for relpath in sorted(metadata):
                label, split = metadata[relpath]
                parts = relpath.split("/")
                records.append(
                    VideoRecord(
                        self.name,
                        os.path.splitext(relpath)[0].replace("/", "-"),
                        relpath,
                        label,
                        method=parts[0] if label else "real",
                        split=split,
                        target_id=parts[1] if len(parts) > 2 else None,
                    )
                )
        except RecordError as err:
            raise CorpusError(f"{path}: {err}") from None
        return build_manifest(records, root)

    def layout(self, root: Path) -> list[ExpectedFolder]:
        """The three folders (with the files dataset.json lists) and dataset.json itself."""
        path = root / PREVIEW_METADATA
        expected: dict[str, set[str]] | None = None
        if path.is_file():
            expected = {folder: set() for folder in PREVIEW_FOLDERS}
            for relpath in self._read(path):
                folder, name = relpath.split("/", 1)
                expected[folder].add(name)
        folders = [
            ExpectedFolder(
                folder,
                recursive=True,
                expected=None if expected is None else frozenset(expected[folder]),
                description="real videos" if folder == "original_videos" else f"fakes of {folder}",
            )
            for folder in PREVIEW_FOLDERS
        ]
        return [
            *folders,
            ExpectedFolder(
                "", suffixes=(".json",), expected=frozenset({PREVIEW_METADATA}), description="metadata"
            ),
        ]

    @staticmethod
    def _read(path: Path) -> dict[str, tuple[int, str]]:
        """dataset.json as relative path -> (label, split); CorpusError naming the file and key."""
        metadata = read_json(path)
        if not isinstance(metadata, dict):
            raise CorpusError(f"{path}: expected an object mapping relative paths to entries")
        entries = {}
        for key, entry in metadata.items():
            try:
                relpath = normalise_relpath(key)
            except PathEscapeError as err:
                raise CorpusError(f"{path}: {key!r}: {err}") from None
            folder = relpath.split("/", 1)[0]
            if folder not in PREVIEW_FOLDERS or "/" not in relpath:
                raise CorpusError(
                    f"{path}: {key!r}: not a video of {', '.join(f + '/' for f in PREVIEW_FOLDERS)}"
                )
            if not isinstance(entry, dict):
                raise CorpusError(
                    f"{path}: {key!r}: expected an object with 'label' and 'set', got {entry!r}"
                )
            label, split = entry.get("label"), entry.get("set")
            if label not in ("real", "fake"):
                raise CorpusError(f"{path}: {key!r}: label must be 'real' or 'fake', got {label!r}")
            if _PREVIEW_LABELS[label] != PREVIEW_FOLDERS[folder]:
                raise CorpusError(f"{path}: {key!r}: label {label!r} disagrees with its folder {folder}/")
            if split not in _PREVIEW_SETS:
                raise CorpusError(f"{path}: {key!r}: set must be 'train' or 'test', got {split!r}")
            entries[relpath] = (_PREVIEW_LABELS[label], split)
        return entries
