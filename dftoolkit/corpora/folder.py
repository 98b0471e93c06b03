"""Any tree of real and fake videos: ``real/`` and ``fake/`` folders, or a CSV listing the videos.

Also home of small helpers shared by the loaders that check listed files (``toolkit``, ``folder``).
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
    expected_folders,
    list_files,
    missing_files,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.paths import PathEscapeError, normalise_relpath
from dftoolkit.records import SPLITS, RecordError, VideoRecord

__all__ = ["FolderCorpus"]

TOPS = (("real", 0), ("fake", 1))
LABEL_VALUES = {"0": 0, "1": 1, "real": 0, "fake": 1}
# CSV column -> VideoRecord field; path and label are required, the rest optional.
CSV_COLUMNS = {
    "path": "relpath",
    "label": "label",
    "video_id": "video_id",
    "split": "split",
    "method": "method",
    "compression": "compression",
    "target_id": "target_id",
    "source_id": "source_id",
    "original_id": "original_id",
    "mask_path": "mask_relpath",
    "perturbation": "perturbation",
    "frames": "frames",
    "fps": "fps",
    "width": "width",
    "height": "height",
}
NUMBERS = {"frames": int, "width": int, "height": int, "fps": float}


def _default_id(relpath: str) -> str:
    """``fake/Deepfakes/x.mp4`` -> ``fake-Deepfakes-x``."""
    return os.path.splitext(relpath)[0].replace("/", "-")


def _safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "folder"


@register_corpus
class FolderCorpus(Corpus):
    """Any tree with ``real/`` and ``fake/`` folders, any videos listed in a CSV, or any folder of
    videos of one label.

    Folder mode: every video under ``real/`` and ``fake/`` (sub-folders included) is a record;
    ``video_id`` is the path without suffix, ``/`` replaced by ``-`` (``fake/Deepfakes/x.mp4`` ->
    ``fake-Deepfakes-x``); the method of a fake is its first sub-folder under ``fake/``
    (``Deepfakes``), else ``"fake"``; reals get ``"real"``. No split.

    CSV mode: a CSV with a header row and the columns ``path`` (relative to the root) and
    ``label`` (0/1/real/fake), plus optionally ``video_id``, ``split``, ``method``,
    ``compression``, ``target_id``, ``source_id``, ``original_id``, ``mask_path``,
    ``perturbation``, ``frames``, ``fps``, ``width``, ``height``. Empty cells are None; the
    video_id defaults as in folder mode, the method to ``"real"``/``"fake"``. Every listed file
    must exist and be a file (not a folder).

    Label mode (``label`` given): every video under the root (sub-folders included) gets that
    label; ids as in folder mode, the method ``"real"``/``"fake"``. For a folder of videos to score
    whose label is known as a whole (e.g. clips collected as fakes).

    Options:
        dataset: the dataset name (default: the root folder's name, made a safe id).
        csv: None for folder mode, else the CSV file (relative to the root, or absolute).
        label: None, or ``0``/``1``/``real``/``fake`` for label mode (not with ``csv``).
    """

    name: ClassVar[str] = "folder"
    description: ClassVar[str] = (
        "any tree with real/ and fake/ folders, or videos listed in a CSV (path,label,...)"
    )

    def index(
        self,
        root: Path,
        *,
        dataset: str | None = None,
        csv: str | os.PathLike[str] | None = None,
        label: str | int | None = None,
    ) -> Manifest:
        dataset = dataset or _safe_id(root.name)
        if label is not None:
            label = _label_of(label, csv)
            names = list(list_files(root, VIDEO_SUFFIXES, recursive=True))
            if not names:
                raise CorpusError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) under it")
            files = [(name, label, ("real", "fake")[label]) for name in names]
            return build_manifest(_tree_records(root, dataset, files), root)
        if csv is not None:
            csv_path, records = self._read_csv(root, csv, dataset)
            listed = [path for record in records for path in (record.relpath, record.mask_relpath) if path]
            missing = missing_files(root, listed)
            if missing:
                raise CorpusError(
                    f"{csv_path}: {len(missing)} listed file(s) missing under {root}: {examples(missing)}; "
                    f"see `dftoolkit validate folder {root} -O csv={csv}`"
                )
            return build_manifest(records, root)
        self._check_folders(root)
        files = [
            (
                f"{top}/{name}",
                label,
                ("fake" if "/" not in name else name.split("/", 1)[0]) if label else "real",
            )
            for top, label in TOPS
            for name in list_files(root / top, VIDEO_SUFFIXES, recursive=True)
        ]
        return build_manifest(_tree_records(root, dataset, files), root)

    def layout(
        self,
        root: Path,
        *,
        dataset: str | None = None,
        csv: str | os.PathLike[str] | None = None,
        label: str | int | None = None,
    ) -> list[ExpectedFolder]:
        if label is not None:
            kind = "fake" if _label_of(label, csv) else "real"
            return [ExpectedFolder("", required=True, recursive=True, description=f"{kind} videos")]
        if csv is not None:
            csv_path, records = self._read_csv(root, csv, dataset or _safe_id(root.name))
            listed = [path for record in records for path in (record.relpath, record.mask_relpath) if path]
            return expected_folders(listed, f"listed in {csv_path.name}")
        self._check_folders(root)
        return [
            ExpectedFolder(
                top, required=False, recursive=True, description=f"{top} videos (sub-folders allowed)"
            )
            for top, _ in TOPS
        ]

    @staticmethod
    def _check_folders(root: Path) -> None:
        if not any((root / top).is_dir() for top, _ in TOPS):
            raise CorpusError(
                f"{root}: neither real/ nor fake/ found. Either put the videos under real/ and fake/ "
                "(sub-folders of fake/ name the method, e.g. fake/Deepfakes/x.mp4), or list them in a CSV "
                "with columns path,label and pass csv=<file> (-O csv=videos.csv)"
            )

    @staticmethod
    def _read_csv(
        root: Path, csv_file: str | os.PathLike[str], dataset: str
    ) -> tuple[Path, list[VideoRecord]]:
        """Parse the CSV into records; CorpusError naming the file and line for every bad row
        (including one listing a folder)."""
        path = Path(csv_file) if os.path.isabs(csv_file) else root / csv_file
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh, strict=True)
                try:
                    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
                except csv.Error as err:
                    raise CorpusError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None
        except FileNotFoundError:
            raise CorpusError(f"{path}: CSV file not found") from None
        except UnicodeDecodeError as err:
            raise CorpusError(f"{path}: not a UTF-8 text file ({err})") from None
        if not rows:
            raise CorpusError(f"{path}: empty CSV; it needs a header row with at least path,label")
        header = [cell.strip().lower() for cell in rows[0][1]]
        lacking = [name for name in ("path", "label") if name not in header]
        unknown = [name for name in header if name not in CSV_COLUMNS]
        if lacking or unknown or len(set(header)) != len(header):
            raise CorpusError(
                f"{path}: line {rows[0][0]}: the header must name the columns path,label and optionally "
                f"{', '.join(list(CSV_COLUMNS)[2:])} (each once); got {','.join(header)}"
            )
        records = []
        first_line: dict[str, int] = {}
        for line, row in rows[1:]:
            if len(row) > len(header):
                raise CorpusError(f"{path}: line {line}: {len(row)} fields, but the header has {len(header)}")
            cells = dict(zip(header, (cell.strip() or None for cell in row), strict=False))
            try:
                record = _csv_record(cells, dataset)
            except (CorpusError, RecordError, PathEscapeError) as err:
                raise CorpusError(f"{path}: line {line}: {err}") from None
            for listed in (record.relpath, record.mask_relpath):
                if listed is not None and (root / listed).is_dir():
                    raise CorpusError(f"{path}: line {line}: {listed} is a folder, not a video file")
            if record.video_id in first_line:
                raise CorpusError(
                    f"{path}: line {line}: video_id {record.video_id!r} already used on line "
                    f"{first_line[record.video_id]}"
                )
            first_line[record.video_id] = line
            records.append(record)
        return path, records


def _tree_records(root: Path, dataset: str, files: list[tuple[str, int, str]]) -> list[VideoRecord]:
    """Records of ``(relpath, label, method)`` files, ids from their paths; CorpusError when two
    paths make one id or a record is invalid (naming the file)."""
    records = []
    seen: dict[str, str] = {}
    for relpath, label, method in files:
        video_id = _default_id(relpath)
        if video_id in seen:
            raise CorpusError(f"{root}: {seen[video_id]} and {relpath} both make video_id {video_id!r}")
        seen[video_id] = relpath
        try:
            records.append(VideoRecord(dataset, video_id, relpath, label, method=method))
        except RecordError as err:
            raise CorpusError(f"{root / relpath}: {err}") from None
    return records


def _label_of(value: str | int, csv: object) -> int:
    """The label option as 0/1; CorpusError when it is not a label or comes with a CSV."""
    if csv is not None:
        raise CorpusError("give label= or csv=, not both: a CSV lists each video's own label")
    label = LABEL_VALUES.get(str(value).strip().lower())
    if label is None:
        raise CorpusError(f"label must be 0, 1, real or fake, got {value!r}")
    return label


def _csv_record(cells: dict[str, str | None], dataset: str) -> VideoRecord:
    """One CSV row (column -> stripped cell or None) as a record; CorpusError/RecordError when bad."""
    if cells.get("path") is None:
        raise CorpusError("empty path")
    label = LABEL_VALUES.get((cells.get("label") or "").lower())
    if label is None:
        raise CorpusError(f"label must be 0, 1, real or fake, got {cells.get('label')!r}")
    fields: dict[str, Any] = {CSV_COLUMNS[name]: value for name, value in cells.items() if value is not None}
    fields["relpath"] = normalise_relpath(fields["relpath"])
    fields["label"] = label
    if "mask_relpath" in fields:
        fields["mask_relpath"] = normalise_relpath(fields["mask_relpath"])
    if "split" in fields:
        fields["split"] = fields["split"].lower()
        if fields["split"] not in SPLITS:
            raise CorpusError(f"split must be one of {', '.join(SPLITS)} or empty, got {cells['split']!r}")
    for name, kind in NUMBERS.items():
        if name in fields:
            try:
                fields[name] = kind(fields[name])
            except ValueError:
                kind_name = "an integer" if kind is int else "a number"
                raise CorpusError(f"{name} must be {kind_name}, got {fields[name]!r}") from None
    fields.setdefault("video_id", _default_id(fields["relpath"]))
    fields.setdefault("method", "fake" if label else "real")
    return VideoRecord(dataset=dataset, **fields)
