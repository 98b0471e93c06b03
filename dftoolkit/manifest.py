"""``Manifest``: an immutable table of :class:`~dftoolkit.records.VideoRecord`, stored as Parquet.

A manifest may hold several datasets (concatenated corpora); each dataset has its own root
folder, the folder its records' ``relpath`` and ``mask_relpath`` are relative to. Use
:meth:`Manifest.path_of` to get a record's file. Row numbers in error messages are 0-based
positions in the table.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dftoolkit.errors import DftoolkitError
from dftoolkit.fileio import atomic_path
from dftoolkit.paths import resolve_within
from dftoolkit.records import LABELS, SPLITS, RecordError, VideoRecord

if TYPE_CHECKING:
    import datasets
    import pandas as pd

__all__ = ["SCHEMA_VERSION", "Manifest", "ManifestError"]

SCHEMA_VERSION = 2
"""Version of the Parquet layout written by :meth:`Manifest.write_parquet` (2 added
``frames_exact``, ``manipulated_frames`` and ``coverage``; version 1 files read with them None)."""

FIELDS = VideoRecord.field_names()
REQUIRED = ("dataset", "video_id", "relpath", "label")
_INT_FIELDS = frozenset({"label", "frames", "width", "height", "manipulated_frames"})
_TYPES = {
    "label": pa.int8(),
    "frames": pa.int64(),
    "fps": pa.float64(),
    "width": pa.int64(),
    "height": pa.int64(),
    "frames_exact": pa.bool_(),
    "manipulated_frames": pa.int64(),
    "coverage": pa.float64(),
}
SCHEMA = pa.schema(
    [pa.field(name, _TYPES.get(name, pa.string()), nullable=name not in REQUIRED) for name in FIELDS]
)
_META_VERSION = b"dftoolkit.schema_version"
_META_ROOTS = b"dftoolkit.roots"


def _whole_floats_to_int(values: list[Any]) -> list[Any]:
    """Whole-number floats as ints (integer columns with gaps arrive as floats); other values unchanged."""
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]


class ManifestError(DftoolkitError, ValueError):
    """A manifest is malformed: bad rows, duplicate ids, unreadable file, missing or conflicting roots."""


class Manifest:
    """An immutable, validated table of :class:`VideoRecord` with one root folder per dataset.

    Args:
        records: the rows; ``(dataset, video_id)`` must be unique.
        root: shorthand giving every dataset in ``records`` this root folder.
        roots: dataset name -> root folder. Give ``root`` or ``roots``, not both.

    Roots are stored as absolute paths. Raises :class:`ManifestError` for a non-record item
    or a duplicate key (the message names both rows).
    """

    __slots__ = ("_records", "_roots")

    def __init__(
        self,
        records: Iterable[VideoRecord] = (),
        root: str | os.PathLike[str] | None = None,
        *,
        roots: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        if root is not None and roots is not None:
            raise ManifestError("pass root= or roots=, not both")
        self._records = tuple(records)
        first_row: dict[tuple[str, str], int] = {}
        for row, record in enumerate(self._records):
            if not isinstance(record, VideoRecord):
                raise ManifestError(f"row {row}: expected a VideoRecord, got {type(record).__name__}")
            first = first_row.setdefault(record.key, row)
            if first != row:
                raise ManifestError(
                    f"row {row}: duplicate video_id {record.video_id!r} in dataset {record.dataset!r} "
                    f"(first at row {first})"
                )
        if root is not None:
            roots = dict.fromkeys({r.dataset for r in self._records}, root)
        self._roots = {name: Path(os.path.abspath(path)) for name, path in (roots or {}).items()}

    # -- table access ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self._records)

    def __getitem__(self, index: int) -> VideoRecord:
        return self._records[index]

    def __repr__(self) -> str:
        return f"Manifest({len(self)} videos, datasets={self.datasets})"

    @property
    def records(self) -> tuple[VideoRecord, ...]:
        return self._records

    @property
    def datasets(self) -> list[str]:
        """Sorted names of the datasets that have records."""
        return sorted({r.dataset for r in self._records})

    # -- roots and paths ---------------------------------------------------------------------

    @property
    def roots(self) -> dict[str, Path]:
        """A copy of dataset name -> absolute root folder."""
        return dict(self._roots)

    @property
    def root(self) -> Path:
        """The root folder shared by all datasets; :class:`ManifestError` if there is none or several."""
        names = set(self.datasets) | set(self._roots)
        if not self._roots:
            raise ManifestError("manifest has no root; pass root=...")
        missing = sorted(names - set(self._roots))
        if missing:
            raise ManifestError(f"manifest has no root for dataset(s) {missing}; pass root=... or roots=...")
        distinct = set(self._roots.values())
        if len(distinct) > 1:
            raise ManifestError(
                f"datasets have different roots ({len(distinct)}); use path_of(record) or the roots mapping"
            )
        return distinct.pop()

    def _root_of(self, dataset: str) -> Path:
        try:
            return self._roots[dataset]
        except KeyError:
            raise ManifestError(f"manifest has no root for dataset {dataset!r}; pass root=...") from None

    def path_of(self, record: VideoRecord) -> Path:
        """Absolute path of ``record``'s file under its dataset's root.

        Raises :class:`~dftoolkit.paths.PathEscapeError` if a symlink leads outside the root.
        """
        return resolve_within(self._root_of(record.dataset), record.relpath)

    def mask_path_of(self, record: VideoRecord) -> Path | None:
        """Absolute path of ``record``'s mask video (checked like :meth:`path_of`); None if it has none."""
        if record.mask_relpath is None:
            return None
        return resolve_within(self._root_of(record.dataset), record.mask_relpath)

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def _from_columns(
        cls,
        columns: Mapping[str, list[Any]],
        source: str,
        root: str | os.PathLike[str] | None,
        roots: Mapping[str, str | os.PathLike[str]] | None,
    ) -> Manifest:
        """Build from column lists (one per present field); ``source`` prefixes error messages."""
        missing = [name for name in REQUIRED if name not in columns]
        if missing:
            raise ManifestError(f"{source}: missing required column(s): {', '.join(missing)}")
        length = len(columns["dataset"])
        blank = [None] * length
        records = []
        for row, values in enumerate(zip(*(columns.get(name, blank) for name in FIELDS), strict=True)):
            try:
                records.append(VideoRecord(*values))
            except (RecordError, TypeError) as err:  # TypeError: an unhashable label
                dataset, video_id = values[0], values[1]
                readable = isinstance(dataset, str) and isinstance(video_id, str)
                where = f" (dataset {dataset!r}, video_id {video_id!r})" if readable else ""
                raise ManifestError(f"{source}: row {row}{where}: {err}") from None
        try:
            return cls(records, root, roots=roots)
        except ManifestError as err:
            raise ManifestError(f"{source}: {err}") from None

    @classmethod
    def concat(cls, manifests: Iterable[Manifest]) -> Manifest:
        """All records and roots in one manifest; a dataset with two roots or a repeated key is an error."""
        records: list[VideoRecord] = []
        roots: dict[str, Path] = {}
        for manifest in manifests:
            for name, path in manifest._roots.items():
                if roots.setdefault(name, path) != path:
                    raise ManifestError(f"dataset {name!r} has two roots: {roots[name]} and {path}")
            records.extend(manifest._records)
        return cls(records, roots=roots)

    def filter(self, predicate: Callable[[VideoRecord], bool] | None = None, **equals: Any) -> Manifest:
        """Records for which ``predicate`` is true and each ``field == value``.

        A list, tuple, set or frozenset value means "field is one of these". Roots are kept.
        """
        unknown = sorted(set(equals) - set(FIELDS))
        if unknown:
            raise ManifestError(f"unknown field(s) {unknown}; fields are {list(FIELDS)}")
        tests = [
            (name, set(value) if isinstance(value, (list, tuple, set, frozenset)) else {value})
            for name, value in equals.items()
        ]
        kept = (
            r
            for r in self._records
            if all(getattr(r, name) in allowed for name, allowed in tests)
            and (predicate is None or predicate(r))
        )
        return Manifest(kept, roots=self._roots)

    def map_records(self, fn: Callable[[VideoRecord], VideoRecord]) -> Manifest:
        """A new manifest (same roots) with ``fn`` applied to every record."""
        return Manifest((fn(r) for r in self._records), roots=self._roots)

    # -- columns, pandas, Hugging Face -------------------------------------------------------

    def _table(self, records: Sequence[VideoRecord] | None = None) -> pa.Table:
        """The records (default: all) as an Arrow table with :data:`SCHEMA`."""
        rows = self._records if records is None else records
        columns = {name: [getattr(r, name) for r in rows] for name in FIELDS}
        return pa.Table.from_pydict(columns, schema=SCHEMA)

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with one column per record field, in field order, using nullable dtypes."""
        import pandas as pd

        mapping = {
            pa.string(): pd.StringDtype(),
            pa.int8(): pd.Int8Dtype(),
            pa.int64(): pd.Int64Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
        }
        return self._table().to_pandas(types_mapper=mapping.get)

    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        root: str | os.PathLike[str] | None = None,
        roots: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> Manifest:
        """Build from a DataFrame with record-field columns (optional ones may be absent; extras ignored).

        Missing values (None, NaN, ``pd.NA``) become None; whole-number floats in integer columns
        become ints. A bad row raises :class:`ManifestError` naming its position.
        """
        columns: dict[str, list[Any]] = {}
        for name in FIELDS:
            if name not in df.columns:
                continue
            series = df[name]
            values = series.astype(object).where(series.notna(), None).tolist()
            if name in _INT_FIELDS and series.dtype.kind == "f":
                values = _whole_floats_to_int(values)
            columns[name] = values
        return cls._from_columns(columns, "DataFrame", root, roots)

    def features(self) -> datasets.Features:
        """Hugging Face features of the record columns (label as ``ClassLabel(['real', 'fake'])``)."""
        import datasets

        numeric = {
            "frames": "int64",
            "width": "int64",
            "height": "int64",
            "fps": "float64",
            "frames_exact": "bool",
            "manipulated_frames": "int64",
            "coverage": "float64",
        }
        features = {name: datasets.Value(numeric.get(name, "string")) for name in FIELDS}
        features["label"] = datasets.ClassLabel(names=[LABELS[0], LABELS[1]])
        return datasets.Features(features)

    def to_hf(self, by_split: bool = False) -> datasets.Dataset | datasets.DatasetDict:
        """A ``datasets.Dataset`` of the records (columns = record fields; files via :meth:`path_of`).

        With ``by_split=True``, a ``DatasetDict`` keyed by the splits present; every row must
        have a split.
        """
        import datasets

        features = self.features()

        def dataset(records: Sequence[VideoRecord] | None = None) -> datasets.Dataset:
            table = self._table(records).cast(features.arrow_schema)
            return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))

        if not by_split:
            return dataset()
        unsplit = sum(r.split is None for r in self._records)
        if unsplit:
            raise ManifestError(f"{unsplit} of {len(self)} rows have no split; assign splits first")
        groups: dict[str, list[VideoRecord]] = {split: [] for split in SPLITS}
        for record in self._records:
            groups[record.split].append(record)
        return datasets.DatasetDict({split: dataset(rows) for split, rows in groups.items() if rows})

    def summary(self, by: Sequence[str] = ("dataset", "label", "method", "split")) -> pd.DataFrame:
        """Video counts per group of ``by`` fields: one row per group, a ``videos`` column, sorted.

        Labels are shown as ``real``/``fake`` and missing values as ``-``.
        """
        import pandas as pd

        by = list(by)
        unknown = sorted(set(by) - set(FIELDS))
        if unknown:
            raise ManifestError(f"unknown field(s) {unknown}; fields are {list(FIELDS)}")
        counts = Counter(tuple(getattr(r, name) for name in by) for r in self._records)
        groups = sorted(counts, key=lambda key: [(value is None, value) for value in key])

        def show(name: str, value: Any) -> Any:
            if value is None:
                return "-"
            return LABELS[value] if name == "label" else value

        rows = [
            [*(show(name, value) for name, value in zip(by, key, strict=True)), counts[key]] for key in groups
        ]
        return pd.DataFrame(rows, columns=[*by, "videos"])

    # -- Parquet -----------------------------------------------------------------------------

    def write_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest to ``path`` atomically.

        Roots are stored in the schema metadata relative to ``path``'s folder, so a corpus moved
        together with its manifest still resolves.
        """
        folder = os.path.dirname(os.path.abspath(path))
        stored = {}
        for name, root in sorted(self._roots.items()):
            try:
                stored[name] = Path(os.path.relpath(root, folder)).as_posix()
            except ValueError:  # another drive on Windows: no relative path exists
                stored[name] = root.as_posix()
        metadata = {_META_VERSION: str(SCHEMA_VERSION).encode(), _META_ROOTS: json.dumps(stored).encode()}
        table = self._table().replace_schema_metadata(metadata)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def read_parquet(
        cls, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
    ) -> Manifest:
        """Read a manifest written by :meth:`write_parquet` (or any Parquet file with the record columns).

        Stored roots are resolved against the file's folder; ``root`` overrides them all. Unknown
        columns are ignored, missing optional columns read as None.

        Raises FileNotFoundError if ``path`` does not exist and :class:`ManifestError` for a file
        that is not Parquet, has a schema version below 1 or newer than :data:`SCHEMA_VERSION`,
        lacks required columns or has a bad row (e.g. a ``dataset`` that is no safe file name).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"manifest not found: {path}")
        try:
            with pq.ParquetFile(path) as parquet:
                schema = parquet.schema_arrow
                present = [name for name in FIELDS if name in schema.names]
                table = parquet.read(columns=present)
        except (pa.ArrowException, OSError) as err:
            raise ManifestError(f"{path}: not a readable Parquet file ({err})") from None
        metadata = schema.metadata or {}
        try:
            version = int(metadata.get(_META_VERSION, b"1"))
            stored = json.loads(metadata.get(_META_ROOTS, b"{}"))
        except ValueError as err:
            raise ManifestError(f"{path}: bad dftoolkit metadata ({err})") from None
        if version > SCHEMA_VERSION:
            raise ManifestError(
                f"{path}: schema version {version} is newer than this dftoolkit supports ({SCHEMA_VERSION})"
            )
        if version < 1:
            raise ManifestError(f"{path}: schema version {version} is not a dftoolkit version (1 or later)")
        if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
            raise ManifestError(f"{path}: bad dftoolkit.roots metadata {stored!r}")
        columns = {}
        for name in present:
            column = table.column(name)
            values = column.to_pylist()
            if name in _INT_FIELDS and pa.types.is_floating(column.type):
                values = _whole_floats_to_int(values)
            columns[name] = values
        roots = None
        if root is None:
            folder = path.absolute().parent
            roots = {name: folder / stored_root for name, stored_root in stored.items()}
        return cls._from_columns(columns, str(path), root, roots)
