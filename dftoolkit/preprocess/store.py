"""``FaceStore``: the on-disk result of face preprocessing, one atomically committed folder per video.

Layout::

    STORE/
      store.json                          {"schema_version": 1, "config": {...}}: the preprocessing
                                          settings; resuming into a store needs the same settings
      manifest.parquet                    optional copy of the input manifest (set_manifest)
      videos/<dataset>/<video_id>/        one folder per video, committed atomically
          frames.parquet                  one row per SAMPLED frame, whatever happened to it
          <crop>/<frame_index:06d>.png    crops per kind: "face", "aligned", "ffhq" (RGB), "mouth" (grey)
          masks/<crop>/<frame_index:06d>.png   the mask in that crop's geometry (grey 0/255, always PNG)

A video folder is written to a temporary folder beside it (``.<video_id>.XXXXXXXX``) and renamed
into place once complete, so a killed run never leaves a partial folder under a video's name (an
older committed folder is replaced only by a complete new one). Names starting with ``.`` are
temporary: never read, and removed by :meth:`FaceStore.clean_partial`. Dataset names and video ids
must therefore not start with ``.``.

Frame table (``frames.parquet``; :meth:`FaceStore.frames` concatenates all videos'):

    ================  ===================================================================
    dataset           str
    video_id          str
    frame_index       int64, position of the frame in the video; -1: the video as a whole (unreadable)
    status            str, see :data:`STATUSES` (other values allowed; a reason is required)
    reason            str for every non-ok row (a human sentence), else None
    face_index        int64, which detected face was kept; -1 when none
    score             float32 detection score, NaN when none
    box               4 float32 ``x0, y0, x1, y1`` pixels of the original frame, or None
    landmarks         136 float32: 68 ``x, y`` pixels of the original frame (iBUG order), or None
    manipulated       bool: the frame is manipulated (its corpus mask has a pixel above 127); False
                      for every frame of a real video; None when unknown (a fake without a mask)
    mask_source       str, where the frame's masks come from (:data:`MASK_SOURCES`), or None when
                      it has none (a non-ok frame; stores written before this column)
    crop_path_<kind>  POSIX path of the crop relative to the store root, or None
    mask_path_<kind>  POSIX path of the mask relative to the store root, or None
    matrix_<kind>     6 float32: the 2x3 affine map from frame pixels to crop pixels, or None
    ================  ===================================================================

None is a Parquet null; in pandas it reads as a missing value (NaN in string columns, None in list
columns): test it with ``isna()``/``notna()``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dftoolkit.faces.geometry import centre_crop
from dftoolkit.fileio import atomic_dir, atomic_write_text
from dftoolkit.manifest import Manifest
from dftoolkit.paths import normalise_relpath
from dftoolkit.records import LABELS, check_name
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video.sampling import sample_indices

__all__ = [
    "GRAY_CROPS",
    "MASK_SOURCES",
    "MOUTH_TEST_SIZE",
    "SCHEMA_VERSION",
    "STATUSES",
    "FaceStore",
    "StoredTrack",
    "VideoFaces",
    "read_image",
]

SCHEMA_VERSION = 1
"""Version of the store layout written by this module."""

MASK_SOURCES = {
    "corpus": "the corpus's own manipulation mask video",
    "generated": "the mask the toolkit's generator wrote with the fake",
    "hull": "the convex hull of the face landmarks (no mask video): the face, not the manipulation",
}
"""Where a frame's masks come from; only ``corpus`` and ``generated`` masks say what was manipulated."""

STATUSES = {
    "ok": "a face was kept and every crop made",
    "no_face": "the detector found no face in the frame",
    "decode_error": "the frame could not be decoded",
    "low_score": "the best face scored below the detection threshold",
    "corrupt_packet": "the frame's packet is damaged in the container",
}
"""The usual frame statuses; other values are allowed (a non-ok frame always carries a reason)."""

GRAY_CROPS = frozenset({"mouth"})
"""Crop kinds stored as ``(S, S)`` grey images; every other kind is ``(S, S, 3)`` RGB."""

MOUTH_TEST_SIZE = 88
"""LipForensics' test-time centre crop of its 96x96 mouth crops, applied by :meth:`FaceStore.clip`."""

FRAMES_FILE = "frames.parquet"
_STORE_FILE = "store.json"
_MANIFEST_FILE = "manifest.parquet"
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_MISSING = object()
_BASE_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("face_index", pa.int64()),
        ("score", pa.float32()),
        ("box", pa.list_(pa.float32(), 4)),
        ("landmarks", pa.list_(pa.float32(), 136)),
        ("manipulated", pa.bool_()),
        ("mask_source", pa.string()),
    ]
)


def _check_kind(kind: object) -> None:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind) or kind == "masks":
        raise ValueError(f"crop kind {kind!r} must match [a-z][a-z0-9_]* and not be 'masks'")


def _array(where: str, name: str, value: Any, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """``value`` as a ``dtype`` array of ``shape``; ValueError naming ``name`` otherwise."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{where}: {name} must have shape {shape}, got {arr.shape}")
    if np.issubdtype(dtype, np.integer) and arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: {name} must be integers, got dtype {arr.dtype}")
    return arr.astype(dtype)


def _check_nan_rows(where: str, name: str, arr: np.ndarray) -> None:
    """Each row of ``arr`` (first axis) must be all finite or all NaN."""
    flat = arr.reshape(len(arr), -1)
    finite = np.isfinite(flat)
    mixed = np.flatnonzero(finite.any(axis=1) & ~finite.all(axis=1))
    if len(mixed):
        raise ValueError(f"{where}: {name} rows {mixed.tolist()[:5]} mix numbers and NaN")


@dataclass
class VideoFaces:
    """What preprocessing found in one video: N sampled frames, in frame order.

    Attributes:
        dataset, video_id: the video's key (folder names; must not start with ``.``).
        frame_indices: ``(N,)`` int64, strictly increasing; -1 marks a row about the whole video
            (one that could not be read at all), never ok.
        status: N strings (``"ok"`` or a failure, see :data:`STATUSES`).
        reason: N entries: a sentence for every non-ok frame, None (or a note) for ok ones.
        face_index: ``(N,)`` int, the kept face; -1 when none.
        scores: ``(N,)`` float32, NaN when no face.
        boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1`` frame pixels; NaN rows when no face.
        landmarks: ``(N, 68, 2)`` float32 ``x, y`` frame pixels; NaN rows when none.
        crops: kind -> N images: ``(S, S, 3)`` uint8 RGB (``(S, S)`` uint8 for :data:`GRAY_CROPS`);
            None exactly on the non-ok frames. All crops of a kind have the same shape.
        masks: kind (one of ``crops``) -> N ``(S, S)`` uint8 masks (0/255) or None; None on non-ok frames.
        matrices: kind (one of ``crops``) -> ``(N, 2, 3)`` float32 frame-to-crop affine maps, NaN rows
            when none.
        manipulated: N entries, whether each frame is manipulated (False for reals; None: unknown,
            e.g. a fake without a mask video); default all None.
        mask_source: N entries, where each frame's masks come from (:data:`MASK_SOURCES`), None
            where it has no mask; default all None.
    """

    dataset: str
    video_id: str
    frame_indices: np.ndarray
    status: list[str]
    reason: list[str | None]
    face_index: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    crops: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    masks: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    manipulated: list[bool | None] | None = None
    mask_source: list[str | None] | None = None

    def __post_init__(self) -> None:
        check_name("dataset", self.dataset)
        check_name("video_id", self.video_id)
        where = f"{self.dataset}/{self.video_id}"
        indices = np.asarray(self.frame_indices)
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(
                f"{where}: frame_indices must be a 1-D integer array, got {indices.shape} {indices.dtype}"
            )
        self.frame_indices = indices = indices.astype(np.int64)
        n = len(indices)
        if n and (indices[0] < -1 or np.any(np.diff(indices) <= 0)):
            raise ValueError(f"{where}: frame_indices must be >= -1 and strictly increasing")
        self.status, self.reason = list(self.status), list(self.reason)
        self.manipulated = [None] * n if self.manipulated is None else list(self.manipulated)
        self.mask_source = [None] * n if self.mask_source is None else list(self.mask_source)
        for name in ("status", "reason", "manipulated", "mask_source"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{where}: {name} has {len(getattr(self, name))} entries for {n} frames")
        self.face_index = _array(where, "face_index", self.face_index, (n,), np.int64)
        self.scores = _array(where, "scores", self.scores, (n,), np.float32)
        self.boxes = _array(where, "boxes", self.boxes, (n, 4), np.float32)
        self.landmarks = _array(where, "landmarks", self.landmarks, (n, 68, 2), np.float32)
        _check_nan_rows(where, "boxes", self.boxes)
        _check_nan_rows(where, "landmarks", self.landmarks)
        for index, status, reason in zip(indices.tolist(), self.status, self.reason, strict=True):
            if not isinstance(status, str) or not status:
                raise ValueError(f"{where}: frame {index} has status {status!r}; expected a non-empty string")
            if reason is not None and not isinstance(reason, str):
                raise ValueError(f"{where}: frame {index} has reason {reason!r}; expected a string or None")
            if index == -1 and status == "ok":
                raise ValueError(f"{where}: frame -1 stands for the whole video and cannot be 'ok'")
            if status != "ok" and (reason is None or not reason.strip()):
                raise ValueError(
                    f"{where}: frame {index} has status {status!r} but no reason; non-ok frames need one"
                )
        unknown = sorted({m for m in self.mask_source if m is not None} - set(MASK_SOURCES))
        if unknown:
            raise ValueError(f"{where}: mask_source {unknown} not in {sorted(MASK_SOURCES)}")
        ok = [status == "ok" for status in self.status]
        for kind, images in self.crops.items():
            self._check_images(where, kind, images, ok, None)
        for kind, masks in self.masks.items():
            if kind not in self.crops:
                raise ValueError(f"{where}: masks for {kind!r} but no {kind!r} crops")
            self._check_images(where, kind, masks, ok, self.crops[kind])
        for kind, matrices in self.matrices.items():
            if kind not in self.crops:
                raise ValueError(f"{where}: matrices for {kind!r} but no {kind!r} crops")
            self.matrices[kind] = _array(where, f"matrices[{kind!r}]", matrices, (n, 2, 3), np.float32)
            _check_nan_rows(where, f"matrices[{kind!r}]", self.matrices[kind])

    def _check_images(
        self,
        where: str,
        kind: str,
        images: list[np.ndarray | None],
        ok: list[bool],
        crops: list[np.ndarray | None] | None,
    ) -> None:
        """Crops (``crops`` None) or masks (``crops`` = the kind's crops) of one kind."""
        _check_kind(kind)
        what = f"{kind!r} {'crop' if crops is None else 'mask'}"
        if len(images) != len(ok):
            raise ValueError(f"{where}: {len(images)} {what}s for {len(ok)} frames")
        shape = None
        for i, image in enumerate(images):
            index = int(self.frame_indices[i])
            if image is None:
                if ok[i] and crops is None:
                    raise ValueError(f"{where}: ok frame {index} has no {what}")
                continue
            if not ok[i]:
                raise ValueError(
                    f"{where}: frame {index} has status {self.status[i]!r} but a {what}; "
                    "only ok frames have one"
                )
            gray = crops is not None or kind in GRAY_CROPS
            expected = "(S, S) uint8" if gray else "(S, S, 3) uint8 RGB"
            if (
                not isinstance(image, np.ndarray)
                or image.dtype != np.uint8
                or image.ndim != (2 if gray else 3)
                or (not gray and image.shape[2] != 3)
            ):
                raise ValueError(
                    f"{where}: frame {index}: {what} must be {expected}, "
                    f"got {np.shape(image)} {getattr(image, 'dtype', type(image).__name__)}"
                )
            if crops is not None and image.shape != crops[i].shape[:2]:  # type: ignore[union-attr]
                raise ValueError(f"{where}: frame {index}: {what} {image.shape} does not match its crop")
            if shape is None:
                shape = image.shape
            elif image.shape != shape:
                raise ValueError(f"{where}: frame {index}: {what} has shape {image.shape}, others {shape}")


@dataclass(frozen=True)
class StoredTrack:
    """The face a FaceStore kept in each sampled frame of one video (N rows, in frame order).

    A frame has a face where its status is ``ok``; every other row is NaN (and ``face_index`` -1).

    Attributes:
        frame_indices: ``(N,)`` int64 frame positions in the video; -1: a row about the whole video.
        status: N frame statuses (see :data:`STATUSES`).
        face_index: ``(N,)`` int64 which detection of the frame was kept; -1 where no face.
        scores: ``(N,)`` float32 detection scores in [0, 1]; NaN where no face.
        boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1`` frame pixels; NaN rows where no face.
        landmarks: ``(N, 68, 2)`` float32 ``x, y`` frame pixels (iBUG order); NaN rows where no face.
    """

    frame_indices: np.ndarray
    status: list[str]
    face_index: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_indices)

    @property
    def found(self) -> np.ndarray:
        """``(N,)`` bool: frames with a face."""
        return np.isfinite(self.boxes).all(axis=1)


def _encoding(image_format: str, jpeg_quality: int) -> tuple[str, list[int]]:
    """File extension and OpenCV encoder parameters for a crop format."""
    if image_format == "png":
        return ".png", []
    if image_format in ("jpg", "jpeg"):
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [0, 100], got {jpeg_quality}")
        return ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")


def _write_image(path: Path, image: np.ndarray, params: list[int]) -> None:
    """Encode an RGB or grey uint8 image by ``path``'s extension and write it."""
    image = np.ascontiguousarray(image)
    ok, data = cv2.imencode(
        path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image, params
    )
    if not ok:
        raise OSError(f"{path}: could not encode the image")
    path.write_bytes(data.tobytes())


def read_image(path: Path, gray: bool) -> np.ndarray:
    """``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 from an image file (non-ASCII paths too)."""
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return image if gray else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _rows(arr: np.ndarray) -> list[list[float] | None]:
    """Per row (first axis): the flattened values, or None for a NaN row."""
    flat = arr.reshape(len(arr), -1)
    finite = np.isfinite(flat).all(axis=1)
    return [row if keep else None for row, keep in zip(flat.tolist(), finite.tolist(), strict=True)]


def _frame_table(result: VideoFaces, paths: dict[str, list[str | None]]) -> pa.Table:
    """The frame table of ``result``; ``paths`` holds the ``crop_path_*``/``mask_path_*`` columns."""
    n = len(result.frame_indices)
    values = {
        "dataset": [result.dataset] * n,
        "video_id": [result.video_id] * n,
        "frame_index": result.frame_indices,
        "status": result.status,
        "reason": result.reason,
        "face_index": result.face_index,
        "score": result.scores,
        "box": _rows(result.boxes),
        "landmarks": _rows(result.landmarks),
        "manipulated": result.manipulated,
        "mask_source": result.mask_source,
    }
    columns = {f.name: pa.array(values[f.name], f.type) for f in _BASE_SCHEMA}
    for kind in sorted(result.crops):
        columns[f"crop_path_{kind}"] = pa.array(paths[f"crop_path_{kind}"], pa.string())
        columns[f"mask_path_{kind}"] = pa.array(paths.get(f"mask_path_{kind}", [None] * n), pa.string())
        matrices = result.matrices.get(kind, np.full((n, 2, 3), np.nan, np.float32))
        columns[f"matrix_{kind}"] = pa.array(_rows(matrices), pa.list_(pa.float32(), 6))
    return pa.table(columns)


class FaceStore:
    """A folder of preprocessed faces (see the module docstring for the layout).

    ``FaceStore(path)`` opens an existing store: FileNotFoundError if it has no ``store.json``,
    ValueError if that file is not valid JSON or has a newer schema version. Make a new one (or
    reopen one for resuming) with :meth:`create`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).absolute()
        meta = self.root / _STORE_FILE
        if not meta.is_file():
            raise FileNotFoundError(f"no face store at {self.root} (no {_STORE_FILE})")
        try:
            data = json.loads(meta.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{meta}: not valid JSON ({err})") from None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("schema_version"), int)
            or not isinstance(data.get("config"), dict)
        ):
            raise ValueError(f'{meta}: expected {{"schema_version": <int>, "config": {{...}}}}')
        if data["schema_version"] > SCHEMA_VERSION:
            raise ValueError(
                f"{meta}: schema version {data['schema_version']} is newer than this dftoolkit "
                f"supports ({SCHEMA_VERSION})"
            )
        self.config: dict[str, Any] = data["config"]

    def __repr__(self) -> str:
        return f"FaceStore({str(self.root)!r})"

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any]) -> FaceStore:
        """Make a store with the preprocessing settings ``config`` (JSON-serialisable), or reopen one.

        Reopening (resuming) needs the same settings: a store made with another config raises
        ValueError listing the keys that differ.
        """
        try:
            wanted = json.loads(json.dumps(config))  # as it will read back: tuples become lists
        except (TypeError, ValueError) as err:
            raise TypeError(f"config must be JSON-serialisable: {err}") from None
        if not isinstance(wanted, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        root = Path(path)
        if (root / _STORE_FILE).exists():
            store = cls(root)
            keys = sorted(store.config.keys() | wanted.keys())
            differ = [k for k in keys if store.config.get(k, _MISSING) != wanted.get(k, _MISSING)]
            if differ:

                def show(value: Any) -> str:
                    return "<absent>" if value is _MISSING else repr(value)

                stored, given = store.config, wanted
                details = "; ".join(
                    f"{k}: stored {show(stored.get(k, _MISSING))}, given {show(given.get(k, _MISSING))}"
                    for k in differ
                )
                raise ValueError(
                    f"{store.root} was made with other settings; resuming needs the same settings "
                    f"(or a new store). Differing keys: {details}"
                )
            return store
        payload = {"schema_version": SCHEMA_VERSION, "config": wanted}
        atomic_write_text(root / _STORE_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return cls(root)

    # -- paths and listing ---------------------------------------------------------------------

    def path(self, relpath: str) -> Path:
        """The file a ``crop_path_*``/``mask_path_*`` entry (relative to the store root) names."""
        return self.root / normalise_relpath(relpath)

    def _video_dir(self, dataset: str, video_id: str) -> Path:
        check_name("dataset", dataset)
        check_name("video_id", video_id)
        return self.root / "videos" / dataset / video_id

    def has(self, dataset: str, video_id: str) -> bool:
        """Whether the video is committed."""
        return (self._video_dir(dataset, video_id) / FRAMES_FILE).is_file()

    def _dataset_dirs(self) -> list[Path]:
        base = self.root / "videos"
        if not base.is_dir():
            return []
        return sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))

    def videos(self) -> list[tuple[str, str]]:
        """Committed ``(dataset, video_id)`` pairs, sorted."""
        return [
            (folder.name, video.name)
            for folder in self._dataset_dirs()
            for video in sorted(folder.iterdir())
            if not video.name.startswith(".") and (video / FRAMES_FILE).is_file()
        ]

    def _dataset_of(self, video_id: str, dataset: str | None) -> str:
        """The dataset holding committed ``video_id``: LookupError if none, ValueError if ambiguous."""
        if dataset is not None:
            if not self.has(dataset, video_id):
                raise LookupError(
                    f"video {video_id!r} of dataset {dataset!r} is not in the store {self.root}"
                )
            return dataset
        check_name("video_id", video_id)
        found = [d.name for d in self._dataset_dirs() if (d / video_id / FRAMES_FILE).is_file()]
        if not found:
            raise LookupError(f"video {video_id!r} is not in the store {self.root}")
        if len(found) > 1:
            raise ValueError(f"video {video_id!r} is in several datasets {found}; pass dataset=")
        return found[0]

    # -- writing -------------------------------------------------------------------------------

    def commit(self, result: VideoFaces, image_format: str = "png", jpeg_quality: int = 95) -> Path:
        """Write one video's crops, masks and frame table; return its folder.

        Crops are written as ``image_format`` (``"png"`` lossless, or ``"jpg"`` at ``jpeg_quality``),
        masks always as PNG. Everything goes to a temporary folder that is renamed into place at
        the end, replacing an older committed folder of the same video only then.
        """
        ext, params = _encoding(image_format, jpeg_quality)
        dest = self._video_dir(result.dataset, result.video_id)
        relative = dest.relative_to(self.root).as_posix()
        indices = result.frame_indices.tolist()
        paths: dict[str, list[str | None]] = {}
        with atomic_dir(dest) as tmp:
            for column, sub, images, suffix, options in [
                *((f"crop_path_{k}", k, v, ext, params) for k, v in result.crops.items()),
                *((f"mask_path_{k}", f"masks/{k}", v, ".png", []) for k, v in result.masks.items()),
            ]:
                (tmp / sub).mkdir(parents=True)
                paths[column] = []
                for index, image in zip(indices, images, strict=True):
                    name = None if image is None else f"{sub}/{index:06d}{suffix}"
                    if name is not None:
                        _write_image(tmp / name, image, options)
                    paths[column].append(None if name is None else f"{relative}/{name}")
            pq.write_table(_frame_table(result, paths), tmp / FRAMES_FILE)
        return dest

    def clean_partial(self) -> list[Path]:
        """Remove the temporary folders and files a killed run left behind; return what was removed.

        Call it only while holding the store's lock (:func:`dftoolkit.locks.output_lock`; the
        pipeline does at start): another run's in-flight folders look exactly like leftovers.
        """
        leftovers = [p for d in self._dataset_dirs() for p in d.iterdir() if p.name.startswith(".")]
        if self.root.is_dir():
            prefixes = (f".{_STORE_FILE}.", f".{_MANIFEST_FILE}.")
            leftovers += [p for p in self.root.iterdir() if p.name.startswith(prefixes)]
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        return leftovers

    def set_manifest(self, manifest: Manifest) -> None:
        """Keep a copy of the input manifest (``manifest.parquet``) so summaries can group by record fields.

        The roots are stored relative to the store folder (as :meth:`Manifest.write_parquet` does),
        so they resolve while the store and the corpora keep their relative place.
        """
        manifest.write_parquet(self.root / _MANIFEST_FILE)

    def manifest(self) -> Manifest | None:
        """The manifest kept by :meth:`set_manifest`, or None."""
        path = self.root / _MANIFEST_FILE
        return Manifest.read_parquet(path) if path.is_file() else None

    # -- reading -------------------------------------------------------------------------------

    def _read_tables(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All committed frame tables, concatenated in ``videos()`` order.

        Videos lacking a column other videos have (a crop kind) read null there.
        """
        files = [str(self.root / "videos" / d / v / FRAMES_FILE) for d, v in self.videos()]
        if not files:
            empty = _BASE_SCHEMA.empty_table()
            return empty if columns is None else empty.select(list(columns))
        schema = None
        if columns is None:  # unify the schemas of all files (cheap: footers only)
            factory = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), files, ds.ParquetFileFormat())
            schema = factory.inspect()
        table = ds.dataset(files, schema=schema, format="parquet").to_table(columns=columns)
        keys = [name for name in ("dataset", "video_id", "frame_index") if name in table.column_names]
        return table.sort_by([(name, "ascending") for name in keys])

    def frames(self, crop: str | None = None) -> pd.DataFrame:
        """Every committed video's frame table, concatenated (sorted by dataset, video_id, frame_index).

        With ``crop``, a ``crop_path`` column (= ``crop_path_<crop>``) is added; resolve its entries
        with :meth:`path`.
        """
        table = self._read_tables().to_pandas()
        if crop is not None:
            column = f"crop_path_{crop}"
            if column not in table:
                kinds = sorted(c.removeprefix("crop_path_") for c in table if c.startswith("crop_path_"))
                raise ValueError(f"no {crop!r} crops in {self.root}; crop kinds: {kinds}")
            table["crop_path"] = table[column]
        return table

    def frames_of(self, dataset: str | None, video_id: str) -> pd.DataFrame:
        """One committed video's frame table; ``dataset=None`` finds the one dataset holding ``video_id``.

        LookupError for a video not in the store, ValueError for a video_id in several datasets.
        """
        dataset = self._dataset_of(video_id, dataset)
        return pq.read_table(self._video_dir(dataset, video_id) / FRAMES_FILE).to_pandas()

    def track(self, dataset: str, video_id: str) -> StoredTrack:
        """The kept face of one committed video, frame by frame, from its frame table.

        KeyError naming the video when the store does not hold it.
        """
        if not self.has(dataset, video_id):
            raise KeyError(f"video {dataset}/{video_id} is not in the store {self.root}")
        table = self.frames_of(dataset, video_id)
        n = len(table)
        found = (table["status"] == "ok") & table["box"].notna() & table["landmarks"].notna()
        rows = np.flatnonzero(found.to_numpy())
        boxes = np.full((n, 4), np.nan, np.float32)
        landmarks = np.full((n, 68, 2), np.nan, np.float32)
        if len(rows):
            boxes[rows] = np.stack(table["box"].to_numpy()[rows])
            landmarks[rows] = np.stack(table["landmarks"].to_numpy()[rows]).reshape(-1, 68, 2)
        return StoredTrack(
            frame_indices=table["frame_index"].to_numpy(np.int64),
            status=table["status"].tolist(),
            face_index=np.where(found, table["face_index"].to_numpy(np.int64), -1),
            scores=np.where(found, table["score"].to_numpy(np.float32), np.nan).astype(np.float32),
            boxes=boxes,
            landmarks=landmarks,
        )

    def _ok_rows(self, video_id: str, crop: str, dataset: str | None) -> pd.DataFrame:
        """The video's ok frames (ValueError if there are none or it has no ``crop`` crops)."""
        table = self.frames_of(dataset, video_id)
        where = f"{table.dataset.iloc[0]}/{video_id}" if len(table) else video_id
        if f"crop_path_{crop}" not in table:
            kinds = sorted(c.removeprefix("crop_path_") for c in table if c.startswith("crop_path_"))
            raise ValueError(f"video {where} has no {crop!r} crops; crop kinds: {kinds}")
        ok = table[table.status == "ok"]
        if ok.empty:
            counts = table.status.value_counts().to_dict()
            raise ValueError(f"video {where} has no ok frames ({len(table)} sampled; statuses {counts})")
        return ok

    def _load(self, rows: pd.DataFrame, column: str, crop: str, gray: bool) -> np.ndarray:
        """Stacked ``(T, C, S, S)`` uint8 images of ``rows[column]``; mouth ones centre-cropped."""
        missing = rows.frame_index[rows[column].isna()].tolist()
        if missing:
            raise ValueError(f"video {rows.video_id.iloc[0]}: no {column} for frame(s) {missing[:10]}")
        images = np.stack([read_image(self.path(p), gray) for p in rows[column]])
        if crop == "mouth":
            images = centre_crop(images, MOUTH_TEST_SIZE)
        return np.ascontiguousarray(images[:, None] if gray else images.transpose(0, 3, 1, 2))

    def _picked(self, video_id: str, crop: str, frames: int | None, dataset: str | None) -> pd.DataFrame:
        ok = self._ok_rows(video_id, crop, dataset)
        return ok if frames is None else ok.iloc[sample_indices(len(ok), frames, "segments")]

    def clip(
        self, video_id: str, crop: str = "face", frames: int | None = None, dataset: str | None = None
    ) -> np.ndarray:
        """The video's ok-frame crops in frame order: ``(T, 3, S, S)`` uint8 RGB, mouth ``(T, 1, 88, 88)``.

        ``frames=None`` gives every ok frame. ``frames=T`` splits the K ok frames into T equal
        segments and takes the middle one of each (:func:`~dftoolkit.video.sample_indices`,
        ``"segments"``): evenly spaced when K >= T; when K < T each ok frame is repeated
        ``T // K`` or ``T // K + 1`` times, in order, so the clip always has T frames. Mouth crops
        (96x96 as stored) get LipForensics' 88x88 test centre crop. ValueError for a video without
        ok frames (naming its statuses) or a video_id in several datasets without ``dataset``;
        LookupError for an unknown video.
        """
        rows = self._picked(video_id, crop, frames, dataset)
        return self._load(rows, f"crop_path_{crop}", crop, crop in GRAY_CROPS)

    def masks(
        self, video_id: str, crop: str = "face", frames: int | None = None, dataset: str | None = None
    ) -> np.ndarray:
        """The masks matching :meth:`clip` (same frames): ``(T, 1, S, S)`` uint8 0/255.

        ValueError if a picked frame has no mask.
        """
        rows = self._picked(video_id, crop, frames, dataset)
        return self._load(rows, f"mask_path_{crop}", crop, gray=True)

    def summary(self, by: Sequence[str] = ("dataset",)) -> pd.DataFrame:
        """The yield table: per group of ``by``, committed videos, sampled frames, frames per status
        (``ok`` first), and ``yield`` = ok / sampled.

        ``by`` may name frame-table keys (``dataset``, ``video_id``) and, when the store keeps the
        input manifest (:meth:`set_manifest`), record fields such as ``method`` or ``label``
        (shown as real/fake; missing values as ``-``).
        """
        by = list(by)
        table = self._read_tables(["dataset", "video_id", "status"]).to_pandas()
        fields = [name for name in by if name not in ("dataset", "video_id")]
        if fields:
            manifest = self.manifest()
            if manifest is None:
                raise ValueError(
                    f"grouping by {fields} needs the input manifest; the store {self.root} has none "
                    "(FaceStore.set_manifest)"
                )
            records = manifest.to_pandas()
            unknown = sorted(set(fields) - set(records.columns))
            if unknown:
                raise ValueError(f"unknown field(s) {unknown}; fields are {list(records.columns)}")
            records = records[["dataset", "video_id", *fields]].astype(object)
            if "label" in fields:
                records["label"] = records["label"].map(LABELS.get)
            table = table.merge(records, on=["dataset", "video_id"], how="left")
            table[fields] = table[fields].astype(object).where(table[fields].notna(), "-")
        if table.empty:
            return pd.DataFrame(columns=[*by, "videos", "sampled", "ok", "yield"])
        counts = table.groupby([*by, "status"]).size().unstack("status", fill_value=0)
        statuses = ["ok", *sorted(s for s in counts.columns if s != "ok")]
        counts = counts.reindex(columns=statuses, fill_value=0)
        counts.columns.name = None
        result = pd.DataFrame(
            {
                "videos": table.drop_duplicates(["dataset", "video_id"]).groupby(by).size(),
                "sampled": table.groupby(by).size(),
            }
        ).join(counts)
        result["yield"] = (result["ok"] / result["sampled"]).round(4)
        return result.reset_index()

    def sheet(
        self,
        video_id: str,
        out_png: str | os.PathLike[str],
        crops: Sequence[str] = ("face",),
        max_frames: int = 8,
        dataset: str | None = None,
    ) -> Path:
        """Write a contact sheet of up to ``max_frames`` evenly spaced ok frames; return its path.

        Per crop kind: a row of crops with the 68 landmarks drawn (green; mapped through the stored
        ``matrix_<kind>``), then, where masks exist, a row with the mask overlaid in red.
        """
        rows = []
        for kind in crops:
            ok = self._ok_rows(video_id, kind, dataset)
            picked = ok.iloc[sample_indices(len(ok), max_frames, "even")].to_dict("records")
            drawn, overlaid = [], []
            for row in picked:
                image = read_image(self.path(row[f"crop_path_{kind}"]), kind in GRAY_CROPS)
                image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
                drawn.append(_draw_landmarks(image, row["landmarks"], row[f"matrix_{kind}"]))
                if pd.notna(row[f"mask_path_{kind}"]):
                    overlaid.append(_overlay(image, read_image(self.path(row[f"mask_path_{kind}"]), True)))
            first, last = picked[0]["frame_index"], picked[-1]["frame_index"]
            rows.append((f"{kind} f{first}-{last}", drawn))
            if overlaid:
                rows.append((f"{kind} mask", overlaid))
        out = Path(out_png)
        write_png(out, contact_sheet(rows))
        return out


def _draw_landmarks(image: np.ndarray, landmarks: np.ndarray | None, matrix: np.ndarray | None) -> np.ndarray:
    """A copy of ``(S, S, 3)`` ``image`` with the 136 frame-pixel ``landmarks`` drawn through ``matrix``."""
    out = image.copy()
    if landmarks is None or matrix is None:
        return out
    m = np.asarray(matrix, np.float64).reshape(2, 3)
    points = np.asarray(landmarks, np.float64).reshape(68, 2) @ m[:, :2].T + m[:, 2]
    radius = max(1, round(image.shape[0] / 100))
    for x, y in np.round(points).astype(int).tolist():
        cv2.circle(out, (x, y), radius, (0, 255, 0), -1, cv2.LINE_AA)
    return out


def _overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` with the pixels where ``mask`` > 127 tinted red."""
    out = image.astype(np.float32)
    on = mask > 127
    out[on] = (1 - alpha) * out[on] + alpha * np.array([255, 0, 0], np.float32)
    return out.round().astype(np.uint8)
