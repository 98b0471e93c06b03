"""Export a manifest for other tools: a Hugging Face dataset folder, Parquet and CSV.

:func:`export_manifest` writes, under ``out_dir``:

- ``hf/``: a Hugging Face dataset (read it with ``datasets.load_from_disk``). A
  ``DatasetDict`` with one entry per split present (``train``, ``val``, ``test``) when every
  record has a split, else a single ``Dataset`` of all records.
- ``manifest.parquet``: the manifest as :meth:`~dftoolkit.manifest.Manifest.write_parquet`
  stores it (read back with ``Manifest.read_parquet``; dataset roots kept relative to the file).
- ``manifest.csv``: UTF-8, comma-separated, a header row, missing values as empty cells.

Every format has the record columns, one row per video:

=================  ===========  ==========================================================================
column             type         meaning
=================  ===========  ==========================================================================
``dataset``        string       corpus name, e.g. ``ffpp``
``video_id``       string       id of the video, unique within ``dataset``
``relpath``        string       POSIX path of the video relative to the dataset's root folder
``label``          int          0 real, 1 fake; in ``hf`` a ``ClassLabel(names=["real", "fake"])``
``method``         string       manipulation method (``Deepfakes``, ``FaceSwap``...); for reals the
                                source kind, or missing
``compression``    string       e.g. ``raw``, ``c23``, ``c40``
``split``          string       ``train``, ``val``, ``test`` or missing (val is the only split for
                                model selection; test is for the final report only)
``target_id``      string       identity (or original video id) whose video is shown
``source_id``      string       identity (or video id) giving the face or expression of a fake
``original_id``    string       for fakes, ``video_id`` of the real video that was modified
``mask_relpath``   string       relative path of the manipulation-mask video, when there is one
``perturbation``   string       post-processing chain such as ``CS:3 GB:2``
``frames``         int64        number of frames (missing until probed)
``fps``            float64      frames per second (missing until probed)
``width``          int64        frame width in pixels (missing until probed)
``height``         int64        frame height in pixels (missing until probed)
=================  ===========  ==========================================================================

The CSV has two more columns: ``path`` (absolute path of the video file: the dataset root
joined with ``relpath``) and ``label_name`` (``real`` or ``fake``). In ``hf``, string and
number columns are ``datasets.Value("string" | "int64" | "float64")`` and missing values are
None. Each output is written atomically: it appears under its final name complete or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dftoolkit.fileio import atomic_dir, atomic_path
from dftoolkit.manifest import Manifest
from dftoolkit.progress import is_quiet
from dftoolkit.records import LABELS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXPORT_FORMATS", "export_manifest"]

EXPORT_FORMATS = ("hf", "parquet", "csv")
"""Formats :func:`export_manifest` can write."""

_TARGETS = {"hf": "hf", "parquet": "manifest.parquet", "csv": "manifest.csv"}


def _csv_table(manifest: Manifest) -> pd.DataFrame:
    """The record columns plus ``path`` (absolute file path) and ``label_name`` (real/fake)."""
    table = manifest.to_pandas()
    table["path"] = [str(manifest.path_of(r)) for r in manifest]
    table["label_name"] = [LABELS[r.label] for r in manifest]
    return table


def _save_hf(manifest: Manifest, dest: Path) -> None:
    """``DatasetDict`` by split (every record has one) or ``Dataset``, saved atomically at ``dest``."""
    import datasets

    by_split = len(manifest) > 0 and all(r.split is not None for r in manifest)
    dataset = manifest.to_hf(by_split=by_split)
    shown = datasets.is_progress_bar_enabled()
    if is_quiet():
        datasets.disable_progress_bars()
    try:
        with atomic_dir(dest) as tmp:
            # an empty Dataset needs one (empty) shard, or load_from_disk cannot read it back
            dataset.save_to_disk(str(tmp), **({} if len(manifest) else {"num_shards": 1}))
    finally:
        if shown:
            datasets.enable_progress_bars()


def export_manifest(
    manifest: Manifest,
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = EXPORT_FORMATS,
) -> dict[str, Path]:
    """Write ``manifest`` under ``out_dir`` in ``formats`` (see the module docstring).

    Returns format -> path written. Raises ValueError before anything is written for unknown
    formats, and (as ``ManifestError``) for a dataset without a root when CSV, whose ``path``
    column needs it, is asked for. An existing output of the same name is replaced; progress
    bars of ``datasets`` are hidden when dftoolkit is quiet.
    """
    chosen = list(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    unknown = [name for name in chosen if name not in _TARGETS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(EXPORT_FORMATS)}")
    out = Path(out_dir)
    table = _csv_table(manifest) if "csv" in chosen else None  # first: a missing root fails early
    written: dict[str, Path] = {}
    for name in chosen:
        dest = out / _TARGETS[name]
        if name == "hf":
            _save_hf(manifest, dest)
        elif name == "parquet":
            manifest.write_parquet(dest)
        elif table is not None:
            with atomic_path(dest) as tmp:
                table.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
        written[name] = dest
    return written
