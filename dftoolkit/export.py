"""Export a manifest for other tools: a Hugging Face dataset folder, Parquet, CSV and DeepfakeBench JSON.

:func:`export_manifest` writes, under ``out_dir``:

- ``hf/``: a Hugging Face dataset (read it with ``datasets.load_from_disk``). A
  ``DatasetDict`` with one entry per split present (``train``, ``val``, ``test``) when every
  record has a split, else a single ``Dataset`` of all records. ``hf/README.md`` is its dataset
  card: counts by split, dataset, label and method, provenance, and how to load it.
- ``manifest.parquet``: the manifest as :meth:`~dftoolkit.manifest.Manifest.write_parquet`
  stores it (read back with ``Manifest.read_parquet``; dataset roots kept relative to the file).
- ``manifest.csv``: UTF-8, comma-separated, a header row, missing values as empty cells.
- ``dfb/`` (only when asked for, with a face store): DeepfakeBench's dataset JSON, see below.

Every format but ``dfb`` has the record columns, one row per video:

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
``original_id``    string       ``video_id`` of the real video a fake (or a perturbed real) was made from
``mask_relpath``   string       relative path of the manipulation-mask video, when there is one
``perturbation``   string       post-processing chain such as ``CS:3 GB:2``
``frames``         int64        number of frames (missing until probed)
``fps``            float64      frames per second (missing until probed)
``width``          int64        frame width in pixels (missing until probed)
``height``         int64        frame height in pixels (missing until probed)
=================  ===========  ==========================================================================

``hf`` has two more columns: ``root`` (absolute root folder of the record's dataset) and ``path``
(absolute path of the video file: ``root`` joined with ``relpath``), so its rows open their videos
alone; if the corpus moves, join its new root with ``relpath``. The CSV has ``path`` and
``label_name`` (``real`` or ``fake``). In ``hf``, string and number columns are
``datasets.Value("string" | "int64" | "float64")`` and missing values are None.

``dfb/<dataset>.json`` is DeepfakeBench's dataset JSON, one file per dataset (point its
``dataset_json_folder`` here): ``{dataset: {label_name: {split: {video_id: {"label": label_name,
"frames": [...]}}}}}`` with label names ``<dataset>-real`` and ``<dataset>-<method>`` (``-fake``
when a fake has no method), all three splits under every label. DeepfakeBench trains on frame
images, so the frames are the absolute paths of a :class:`~dftoolkit.preprocess.store.FaceStore`'s
face crops of ok frames, in frame order; videos without one are left out and listed in
``dfb/README.md``, which also gives the ``label_dict`` to put in DeepfakeBench's config.

Each output is written atomically: it appears under its final name complete or not at all.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dftoolkit
from dftoolkit.fileio import atomic_dir, atomic_path
from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.progress import is_quiet
from dftoolkit.records import LABELS, SPLITS, VideoRecord

if TYPE_CHECKING:
    import datasets
    import pandas as pd

__all__ = ["DEFAULT_FORMATS", "EXPORT_FORMATS", "export_manifest"]

EXPORT_FORMATS = ("hf", "parquet", "csv", "dfb")
"""Formats :func:`export_manifest` can write."""

DEFAULT_FORMATS = ("hf", "parquet", "csv")
"""Formats written when none are named (``dfb`` needs a face store)."""

_TARGETS = {"hf": "hf", "parquet": "manifest.parquet", "csv": "manifest.csv", "dfb": "dfb"}
_DFB_CROP = "face"


def _csv_table(manifest: Manifest, paths: list[str]) -> pd.DataFrame:
    """The record columns plus ``path`` (absolute file path) and ``label_name`` (real/fake)."""
    table = manifest.to_pandas()
    table["path"] = paths
    table["label_name"] = [LABELS[r.label] for r in manifest]
    return table


def _markdown(table: pd.DataFrame) -> str:
    """``table`` as a Markdown table."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _provenance(manifest: Manifest, source: str | os.PathLike[str] | None, stamp: str) -> str:
    """Markdown lines naming the source manifest, the corpus roots, the toolkit version and ``stamp``."""
    where = f"`{os.path.abspath(source)}`" if source is not None else "none (a Manifest in memory)"
    roots = "; ".join(f"`{name}`: `{root}`" for name, root in sorted(manifest.roots.items())) or "none"
    return (
        f"- source manifest: {where}\n- corpus roots: {roots}\n"
        f"- written by dftoolkit {dftoolkit.__version__} on {stamp}"
    )


def _hf_card(
    manifest: Manifest, dataset: datasets.Dataset | datasets.DatasetDict, dest: Path, provenance: str
) -> str:
    """The dataset card (``README.md``): YAML metadata, how to load it, counts and provenance."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    parts = dict(dataset) if isinstance(dataset, datasets.DatasetDict) else {"unsplit": dataset}
    first = next(iter(parts))
    files = "{}/data-*.arrow" if isinstance(dataset, datasets.DatasetDict) else "data-*.arrow"
    card = DatasetCardData(
        pretty_name=f"dftoolkit export: {', '.join(manifest.datasets) or 'no videos'}",
        tags=["deepfake-detection", "video"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": files.format(name)} for name in parts],
            }
        ],
    )
    info = datasets.DatasetInfo(
        features=parts[first].features,
        splits=[
            {"name": name, "num_bytes": part.data.nbytes, "num_examples": len(part)}
            for name, part in parts.items()
        ],
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card)
    row = f'ds["{first}"][0]' if isinstance(dataset, datasets.DatasetDict) else "ds[0]"
    counts = "\n\n".join(
        f"### By {field}\n\n{_markdown(manifest.summary(by=[field]))}"
        for field in ("split", "dataset", "label", "method")
    )
    fakes = sum(r.label for r in manifest)
    return f"""---
{card.to_yaml()}
---

# {card.pretty_name}

{len(manifest)} videos ({len(manifest) - fakes} real, {fakes} fake), one row per video: its metadata
and where its file is, not the video itself.

## Loading

```python
import datasets
from dftoolkit.video import VideoReader

ds = datasets.load_from_disk("{dest.absolute()}")
row = {row}
frames = VideoReader(row["path"]).read([0])  # "path": the video file, absolute
```

`label` is a `ClassLabel` (0 `real`, 1 `fake`). `path` is `root` joined with `relpath` where the
corpus was at export time; if the corpus moves, join its new root with `relpath`.
`datasets.load_dataset("<this folder>")` reads it too (the `configs` above). Select checkpoints on
`val`; `test` is for the final report only.

## Counts

{counts}

## Provenance

{provenance}
"""


def _save_hf(manifest: Manifest, dest: Path, paths: list[str], provenance: str) -> None:
    """``DatasetDict`` by split (every record has one) or ``Dataset``, with its card, saved atomically."""
    import datasets

    by_split = len(manifest) > 0 and all(r.split is not None for r in manifest)
    roots = manifest.roots
    extra = {"root": [str(roots[r.dataset]) for r in manifest], "path": paths}
    try:
        version = datasets.Version(dftoolkit.__version__)
    except ValueError:  # not MAJOR.MINOR.PATCH, e.g. a source tree's "0+unknown"
        version = None

    def complete(part: datasets.Dataset, rows: list[int]) -> datasets.Dataset:
        for name, values in extra.items():
            part = part.add_column(name, [values[i] for i in rows], feature=datasets.Value("string"))
        part.info.description = (
            f"dftoolkit export of {', '.join(manifest.datasets) or 'no videos'}; see README.md"
        )
        part.info.version = version
        return part

    dataset = manifest.to_hf(by_split=by_split)
    if isinstance(dataset, datasets.DatasetDict):
        dataset = datasets.DatasetDict(
            {
                split: complete(part, [i for i, r in enumerate(manifest) if r.split == split])
                for split, part in dataset.items()
            }
        )
    else:
        dataset = complete(dataset, list(range(len(manifest))))
    shown = datasets.is_progress_bar_enabled()
    if is_quiet():
        datasets.disable_progress_bars()
    try:
        with atomic_dir(dest) as tmp:
            # an empty Dataset needs one (empty) shard, or load_from_disk cannot read it back
            dataset.save_to_disk(str(tmp), **({} if len(manifest) else {"num_shards": 1}))
            (tmp / "README.md").write_text(_hf_card(manifest, dataset, dest, provenance), encoding="utf-8")
    finally:
        if shown:
            datasets.enable_progress_bars()


def _dfb_label(record: VideoRecord) -> str:
    """DeepfakeBench label name: ``<dataset>-real``, ``<dataset>-<method>`` (``-fake`` without one)."""
    return f"{record.dataset}-{'real' if record.label == 0 else record.method or 'fake'}"


def _dfb_frames(
    manifest: Manifest, store_dir: str | os.PathLike[str]
) -> tuple[Path, dict[tuple[str, str], list[str]]]:
    """The store's root and (dataset, video_id) -> absolute face-crop paths of its ok frames, in order.

    ValueError before anything is written when a record has no split or a video is not in the store.
    """
    from dftoolkit.preprocess.store import FaceStore

    unsplit = sum(r.split is None for r in manifest)
    if unsplit:
        raise ManifestError(
            f"{unsplit} of {len(manifest)} rows have no split; assign splits first (DeepfakeBench needs them)"
        )
    store = FaceStore(store_dir)
    committed = set(store.videos())
    absent = [r for r in manifest if r.key not in committed]
    if absent:
        raise ValueError(
            f"{len(absent)} of {len(manifest)} videos are not in the face store {store.root} "
            f"(e.g. {absent[0].dataset}/{absent[0].video_id}); preprocess them into it first"
        )
    table = store.frames(crop=_DFB_CROP)
    ok = table[(table.status == "ok") & table.crop_path.notna()].sort_values(
        ["dataset", "video_id", "frame_index"]
    )
    frames: dict[tuple[str, str], list[str]] = {}
    for dataset, video_id, relpath in zip(ok.dataset, ok.video_id, ok.crop_path, strict=True):
        frames.setdefault((dataset, video_id), []).append(str(store.path(relpath)))
    return store.root, frames


def _save_dfb(
    manifest: Manifest,
    dest: Path,
    store_root: Path,
    frames: dict[tuple[str, str], list[str]],
    provenance: str,
) -> None:
    """One DeepfakeBench JSON per dataset and a README (label_dict, counts, videos left out), atomically."""
    tables: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    labels: dict[str, int] = {}
    left_out: list[VideoRecord] = []
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in manifest:
        label = _dfb_label(record)
        labels[label] = record.label
        splits = tables.setdefault(record.dataset, {}).setdefault(label, {s: {} for s in SPLITS})
        paths = frames.get(record.key)
        if not paths:
            left_out.append(record)
            continue
        splits[record.split][record.video_id] = {"label": label, "frames": paths}
        counts[(label, record.split, "videos")] += 1
        counts[(label, record.split, "frames")] += len(paths)
    label_dict = "\n".join(f"  {label}: {value}" for label, value in labels.items())
    rows = "\n".join(
        f"| {label} | {split} | {counts[(label, split, 'videos')]} | {counts[(label, split, 'frames')]} |"
        for label in labels
        for split in SPLITS
    )
    missing = "\n".join(f"- {r.dataset}/{r.video_id} ({r.split})" for r in left_out) or "none"
    readme = f"""# DeepfakeBench dataset JSON

One JSON per dataset ({", ".join(f"`{name}.json`" for name in tables) or "none"}): set DeepfakeBench's
`dataset_json_folder` to this folder and name the datasets in `train_dataset` / `test_dataset`.
Frames are the `{_DFB_CROP}` crops of ok frames in the face store `{store_root}`, as absolute paths
in frame order. Masks and landmarks are not written: set `with_mask` and `with_landmark` to false.

Add the labels to the detector config:

```yaml
label_dict:
{label_dict}
```

| label | split | videos | frames |
|---|---|---|---|
{rows}

## Left out: no ok face crop ({len(left_out)})

{missing}

## Provenance

{provenance}
- face store: `{store_root}`
"""
    with atomic_dir(dest) as tmp:
        for name, table in tables.items():
            (tmp / f"{name}.json").write_text(json.dumps({name: table}, indent=1) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(readme, encoding="utf-8")


def export_manifest(
    manifest: Manifest,
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    store: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write ``manifest`` under ``out_dir`` in ``formats`` (see the module docstring).

    ``store`` is the :class:`~dftoolkit.preprocess.store.FaceStore` whose face crops ``dfb``
    lists; ``source`` is the manifest's file, named in the provenance of the cards. Returns
    format -> path written. Raises ValueError before anything is written for unknown formats,
    ``dfb`` without a store, with records lacking a split or videos missing from the store, and
    (as ``ManifestError``) for a dataset without a root when ``hf`` or ``csv``, whose ``path``
    column needs it, is asked for. An existing output of the same name is replaced; progress
    bars of ``datasets`` are hidden when dftoolkit is quiet.
    """
    chosen = list(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    unknown = [name for name in chosen if name not in _TARGETS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(EXPORT_FORMATS)}")
    if "dfb" in chosen and store is None:
        raise ValueError(
            "the dfb format needs a face store (store=..., --store): DeepfakeBench trains on frames"
        )
    # everything that can fail on the input is checked before the first write
    paths = [str(manifest.path_of(r)) for r in manifest] if {"hf", "csv"} & set(chosen) else []
    dfb = _dfb_frames(manifest, store) if "dfb" in chosen and store is not None else None
    provenance = _provenance(manifest, source, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for name in chosen:
        dest = out / _TARGETS[name]
        if name == "hf":
            _save_hf(manifest, dest, paths, provenance)
        elif name == "parquet":
            manifest.write_parquet(dest)
        elif name == "csv":
            with atomic_path(dest) as tmp:
                _csv_table(manifest, paths).to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
        elif dfb is not None:
            _save_dfb(manifest, dest, *dfb, provenance)
        written[name] = dest
    return written
