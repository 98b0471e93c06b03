"""The shortcut audit: can cheap nuisance features tell a dataset's reals from its fakes?

A detector learns whatever separates the classes. When a dataset's fakes were encoded otherwise
than its reals (another codec, pixel format or bit rate), cut to another size or length, or their
faces sit elsewhere or are blurrier than the rest of the frame, a classifier on those features
alone separates them, and a detector's score on that dataset measures the shortcut, not the
manipulation. :func:`audit` measures it, feature by feature.

Per video (:data:`AUDIT_FEATURES`, in :data:`FEATURES` order): how the file is encoded and its
geometry (``metadata``, always), and, given a FaceStore, the face box and image statistics inside
and outside it (``face``: up to ``frames`` of the store's ok frames, read from the video at their
frame index, the statistics' median over them).

Per feature, plus every metadata feature together (``all metadata``) and every feature together
(``all features``, with a store), per dataset and over all datasets (scope ``all``, when there
are several): scikit-learn's
HistGradientBoostingClassifier (small, trees: units and monotone transforms do not matter, and a
missing value, e.g. a container that states no bit rate, is a value of its own) is trained with
grouped k-fold cross-validation, and the AUC of its out-of-fold scores for the label is reported
with a 95 % bootstrap interval. 0.5 is chance; an AUC at or above ``flag`` flags the feature.

- **Groups** (:func:`audit_groups`): a fake is linked to its original (``original_id``, matched
  as :mod:`dftoolkit.splits` matches it, across datasets when needed), every video to its target
  identity (``target_id``), and a file given twice (the same path, a hard link such as a generated
  corpus's ``originals/``, or an identical copy) to itself; a group is a connected set of linked
  videos. A swap's *source* identity is not a link: every feature audited describes the
  file, or the frame the face sits in, and both come from the target video; linking sources too
  would join most swap corpora into one group (everybody is somebody's source) and leave nothing
  to cross-validate.
- **Folds**: one assignment for every scope, StratifiedGroupKFold over (dataset, label) strata,
  ``k = min(5, groups)`` (and at most the largest stratum's videos), seeded: a group is never
  split across folds.
- **AUC** over the (real, fake) pairs that share a test fold. Each fold's model has its own offset
  (e.g. its training prevalence); pooling out-of-fold scores would compare those offsets across
  folds and give even a constant feature an AUC away from 0.5. Within a fold it cannot.
- **Interval**: groups resampled with replacement (``bootstrap`` draws, seeded), the pair AUC of
  each draw, percentiles 2.5 and 97.5. It covers which videos were drawn, given the out-of-fold
  scores (the models are not refitted).
- **Not computed**, with the reason and never a number: a scope with one class, with fewer than
  :data:`MIN_GROUPS` groups, or where no test fold holds both classes while its training part does.

A video whose file cannot be probed is left out and listed in ``skipped`` with the reason; one
without face statistics (not in the store, no ok frame, undecodable frames) is left out of the
face rows and of ``all features`` only, and listed too.
"""

from __future__ import annotations

import json
import math
import os
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from dftoolkit.bootstrap import percentile_interval, resample_counts
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.registry import Registry
from dftoolkit.workers import Stage, run_stage

if TYPE_CHECKING:
    from dftoolkit.preprocess.store import FaceStore

__all__ = [
    "ALL_FEATURES",
    "ALL_METADATA",
    "AUDIT_FEATURES",
    "AUDIT_FILES",
    "FEATURES",
    "FLAG",
    "MIN_GROUPS",
    "AuditFeature",
    "AuditReport",
    "audit",
    "audit_groups",
    "audit_markdown",
    "describe_audit_features",
    "get_audit_feature",
    "list_audit_features",
    "write_audit",
]

FLAG = 0.65
"""Default AUC at or above which a feature is flagged as a shortcut."""
MIN_GROUPS = 3
"""Fewest groups of linked videos a scope needs for grouped cross-validation."""
ALL_METADATA = "all metadata"
ALL_FEATURES = "all features"
_FOLDS = 5
_MIN_DCT_BLOCKS = 16  # 8x8 blocks the face box must hold for a DCT step estimate
_DCT_POSITIONS = ((0, 1), (1, 0), (2, 0), (1, 1), (0, 2))  # the lowest-frequency AC coefficients
_DCT_STEPS = np.arange(2, 65)
_DCT_PERIODIC = 0.6  # mean cos(2 pi c / q) above which coefficients c sit on multiples of q
_DCT_MIN_VALUES = 20  # coefficients away from zero needed to judge a step
# Immerkær (1996): this kernel cancels image structure up to second order; the mean absolute
# response times sqrt(pi / 2) / 6 estimates the standard deviation of white noise.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass(frozen=True)
class AuditFeature:
    """A nuisance feature audited by :func:`audit`.

    Attributes:
        kind: ``"metadata"`` (read from the file) or ``"face"`` (needs a FaceStore).
        columns: its per-video columns (one classifier sees them together).
        categorical: the columns are names (one-hot encoded), not numbers.
    """

    kind: str
    columns: tuple[str, ...]
    categorical: bool = False


AUDIT_FEATURES: Registry[AuditFeature] = Registry("audit feature")
_TABLE = (
    ("container", AuditFeature("metadata", ("container",), True), "FFmpeg demuxer name (mp4, avi, ...)"),
    ("codec", AuditFeature("metadata", ("codec", "profile"), True), "decoder name and profile"),
    ("pix_fmt", AuditFeature("metadata", ("pix_fmt",), True), "pixel format (yuv420p, gbrp, ...)"),
    (
        "rate_control",
        AuditFeature("metadata", ("crf", "qp")),
        "x264's crf and qp from the stream's settings (missing for other encoders)",
    ),
    ("bit_rate", AuditFeature("metadata", ("bit_rate",)), "bits per second the file states (or missing)"),
    ("bytes_per_frame", AuditFeature("metadata", ("bytes_per_frame",)), "file size / frames, bytes"),
    ("resolution", AuditFeature("metadata", ("width", "height")), "frame width and height, pixels"),
    ("fps", AuditFeature("metadata", ("fps",)), "average frame rate, Hz"),
    ("frames", AuditFeature("metadata", ("frames",)), "frame count (exact where the packets allow)"),
    ("duration", AuditFeature("metadata", ("duration",)), "seconds (the container's, else frames / fps)"),
    ("face_size", AuditFeature("face", ("face_size",)), "sqrt(face box area / frame area), 0-1"),
    (
        "face_position",
        AuditFeature("face", ("face_x", "face_y")),
        "face box centre / frame width and height, 0-1",
    ),
    (
        "sharpness",
        AuditFeature("face", ("sharpness_face", "sharpness_ratio")),
        "variance of the Laplacian of the grey frame inside the face box (grey levels^2), and its "
        "ratio to the variance outside",
    ),
    (
        "noise",
        AuditFeature("face", ("noise_face", "noise_ratio")),
        "Immerkaer noise sigma inside the face box (grey levels), and its ratio to outside",
    ),
    (
        "dct_step",
        AuditFeature("face", ("dct_step",)),
        "JPEG-style quantisation step of the 8x8 block DCT (frame grid) inside the face box, the "
        "median over the 5 lowest AC frequencies; 0: none found (steps under ~4 read as none)",
    ),
)
for _name, _feature, _description in _TABLE:
    AUDIT_FEATURES.register(_name, _description)(_feature)
FEATURES = tuple(name for name, _, _ in _TABLE)
"""Every feature, in report order (:data:`AUDIT_FEATURES` describes each)."""


def list_audit_features() -> list[str]:
    """The registered audit feature names, sorted (:data:`FEATURES` has the report order)."""
    return AUDIT_FEATURES.names()


def describe_audit_features() -> dict[str, str]:
    """Audit feature name -> one-line description."""
    return AUDIT_FEATURES.describe()


def get_audit_feature(name: str) -> AuditFeature:
    """The audit feature registered as ``name``."""
    return AUDIT_FEATURES.get(name)


_FACE_COLUMNS = tuple(c for _, f, _ in _TABLE if f.kind == "face" for c in f.columns)
_ROW_COLUMNS = (
    "scope",
    "feature",
    "kind",
    "auc",
    "ci_low",
    "ci_high",
    "videos",
    "reals",
    "fakes",
    "groups",
    "folds",
    "flagged",
    "note",
)


@dataclass
class AuditReport:
    """What :func:`audit` found.

    Attributes:
        rows: one row per scope and feature: ``scope`` (a dataset, or ``"all"`` over several),
            ``feature`` (a :data:`FEATURES` name, :data:`ALL_METADATA` or :data:`ALL_FEATURES`),
            ``kind``, ``auc`` with ``ci_low``/``ci_high`` (NaN when not computed), ``videos``,
            ``reals``, ``fakes``, ``groups``, ``folds`` (test folds that gave pairs), ``flagged``
            and ``note`` (why it was not computed, else empty).
        per_video: dataset, video_id, label, method, group, fold, face (has face statistics) and
            every feature column.
        skipped: ``"dataset/video_id"`` -> why the video, or its face statistics, are left out.
        flag: the AUC at or above which a row is flagged.
        settings: frames, folds (k), min_groups, bootstrap, seed, the classifier and the store.
        files: name -> path of each file :func:`write_audit` wrote.
    """

    rows: pd.DataFrame
    per_video: pd.DataFrame
    skipped: dict[str, str]
    flag: float
    settings: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def flagged(self) -> pd.DataFrame:
        """The flagged rows."""
        return self.rows[self.rows.flagged]

    @property
    def scopes(self) -> list[str]:
        """The scopes, overall first."""
        return list(dict.fromkeys(self.rows.scope))

    def auc(self, feature: str, scope: str | None = None) -> float | None:
        """The AUC of ``feature`` in ``scope`` (default: the first, overall); None if not computed."""
        scope = self.scopes[0] if scope is None else scope
        row = self.rows[(self.rows.scope == scope) & (self.rows.feature == feature)]
        if row.empty:
            raise KeyError(f"no audit row for feature {feature!r} in scope {scope!r}")
        value = row.auc.iloc[0]
        return None if pd.isna(value) else float(value)

    def table(self) -> pd.DataFrame:
        """The rows as text: scope, feature, kind, AUC, 95% CI, reals, fakes, groups, flagged, note."""
        rows = self.rows
        return pd.DataFrame(
            {
                "scope": rows.scope,
                "feature": rows.feature,
                "kind": rows.kind,
                "AUC": ["n/a" if pd.isna(v) else f"{v:.3f}" for v in rows.auc],
                "95% CI": [
                    "-" if pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"
                    for lo, hi in zip(rows.ci_low, rows.ci_high, strict=True)
                ],
                "reals": rows.reals,
                "fakes": rows.fakes,
                "groups": rows.groups,
                "flagged": ["FLAG" if f else "" for f in rows.flagged],
                "note": rows.note,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, flag, feature descriptions, rows, per_video, skipped (NaN as None)."""
        return {
            "settings": self.settings,
            "flag": self.flag,
            "features": {
                name: {"kind": spec.kind, "columns": list(spec.columns), "description": description}
                for name, spec, description in _TABLE
            },
            "rows": _records(self.rows),
            "per_video": _records(self.per_video),
            "skipped": self.skipped,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


# -- groups and folds ------------------------------------------------------------------------------


def audit_groups(manifest: Manifest) -> np.ndarray:
    """``(N,)`` int64 group number of each record: connected components of the links named in
    the module docstring (original, target identity, one file: the same path, a hard link or an
    identical copy); numbered in record order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from dftoolkit.fileio import file_identities
    from dftoolkit.splits import linked_rows

    records = manifest.records
    links = linked_rows(records, manifest.roots, identities=False, originals=True)
    paths = [str(manifest.path_of(record)) for record in records]
    ids = file_identities(set(paths))
    for i, record in enumerate(records):
        links[("file", ids[paths[i]])].append(i)
        if record.target_id is not None:
            links[("target", f"{record.dataset}:{record.target_id}")].append(i)
    edges = np.array([(m[0], other) for m in links.values() for other in m[1:]], np.int64).reshape(-1, 2)
    n = len(records)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.empty(len(first), np.int64)
    order[np.argsort(first)] = np.arange(len(first))  # renumber by first appearance
    return order[labels]


def _folds(groups: np.ndarray, strata: np.ndarray, seed: int) -> np.ndarray:
    """Fold of each video: StratifiedGroupKFold, ``k = min(5, groups, largest stratum)``; all 0 if k < 2."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(_FOLDS, len(np.unique(groups)), int(np.bincount(strata).max()) if len(strata) else 0)
    folds = np.zeros(len(groups), np.int64)
    if k < 2:
        return folds
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), strata, groups)):
            folds[test] = fold
    return folds


# -- per video (worker side) -----------------------------------------------------------------------


@dataclass(frozen=True)
class _AuditJob:
    """One video to describe: its file and, with a store, its faces (:func:`_store_faces`)."""

    key: tuple[str, str]
    path: str
    faces: list | None = None


class _AuditStage(Stage[_AuditJob, dict[str, Any]]):
    """The metadata columns of one video (its probe failing fails the job), and its face columns
    when the job lists faces (their failure recorded as ``face_error``)."""

    name = "audit: per-video features"

    def setup(self) -> None:
        cv2.setNumThreads(1)

    def run(self, job: _AuditJob) -> dict[str, Any]:
        result = _metadata(job.path)
        if job.faces:
            try:
                result.update(_face_columns(job.path, job.faces))
            except Exception as err:  # recorded with the video, never dropped silently
                result["face_error"] = traceback.format_exception_only(err)[-1].strip()
        return result


def _metadata(path: str) -> dict[str, Any]:
    from dftoolkit.video import probe, probe_encoding

    info = probe(path)
    encoding = probe_encoding(path)
    duration = info.duration or (info.frames / info.fps if info.fps else None)
    return {
        "container": encoding.container,
        "codec": encoding.codec,
        "profile": encoding.profile,
        "pix_fmt": encoding.pix_fmt,
        "crf": encoding.crf,
        "qp": encoding.qp,
        "bit_rate": encoding.bit_rate,
        "bytes_per_frame": encoding.file_bytes / info.frames if info.frames else None,
        "width": info.width,
        "height": info.height,
        "fps": info.fps or None,
        "frames": info.frames,
        "duration": duration,
    }


def _face_columns(path: str, faces: list[tuple[int, list[float]]]) -> dict[str, float]:
    """Median over the frames of :func:`_frame_stats`; an error when no listed frame decodes."""
    from dftoolkit.video import VideoReader

    boxes = dict(faces)
    read = VideoReader(path).read_partial([index for index, _ in faces])
    if not len(read.indices):
        reasons = "; ".join(sorted(set(read.failed.values())))
        raise ValueError(f"none of the {len(faces)} face frames decodes ({reasons})")
    stats = pd.DataFrame(
        [
            _frame_stats(frame, np.asarray(boxes[int(i)]))
            for frame, i in zip(read.frames, read.indices, strict=True)
        ]
    )
    return {name: float(value) for name, value in stats.median(skipna=True).items()}


def _frame_stats(frame: np.ndarray, box: np.ndarray) -> dict[str, float]:
    """Face geometry and image statistics of one ``(H, W, 3)`` RGB frame, ``box`` = x0, y0, x1, y1."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    stats = {
        "face_size": math.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0) / (width * height)),
        "face_x": (x0 + x1) / 2 / width,
        "face_y": (y0 + y1) / 2 / height,
    }
    c0, r0 = max(round(x0), 0), max(round(y0), 0)
    c1, r1 = min(round(x1), width), min(round(y1), height)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    inside = np.zeros((height, width), bool)
    inside[r0:r1, c0:c1] = True
    valid = np.zeros((height, width), bool)  # the filters' 3x3 support stays within the frame
    valid[1:-1, 1:-1] = True
    laplacian = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    noise = np.abs(cv2.filter2D(grey, cv2.CV_32F, _NOISE_KERNEL)) * (math.sqrt(math.pi / 2) / 6)
    face, rest = inside & valid, ~inside & valid
    sharp_face = float(laplacian[face].var()) if face.any() else math.nan
    sharp_rest = float(laplacian[rest].var()) if rest.any() else math.nan
    noise_face = float(noise[face].mean()) if face.any() else math.nan
    noise_rest = float(noise[rest].mean()) if rest.any() else math.nan
    stats.update(
        sharpness_face=sharp_face,
        sharpness_ratio=sharp_face / sharp_rest if sharp_rest > 0 else math.nan,
        noise_face=noise_face,
        noise_ratio=noise_face / noise_rest if noise_rest > 0 else math.nan,
        dct_step=_dct_step(grey, c0, r0, c1, r1),
    )
    return stats


def _dct_step(grey: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    """Quantisation step of the 8x8 block DCT (JPEG scaling) in the box, on the frame's 8x8 grid.

    Per low-frequency AC position, the largest step q in 2..64 whose multiples the coefficients
    away from zero sit on (mean cos(2 pi c / q) >= 0.6; 0 when none); the median over positions.
    NaN when the box holds fewer than 16 whole blocks.
    """
    from scipy.fft import dctn

    gx0, gy0, gx1, gy1 = -(-x0 // 8) * 8, -(-y0 // 8) * 8, x1 // 8 * 8, y1 // 8 * 8
    rows, cols = max(gy1 - gy0, 0) // 8, max(gx1 - gx0, 0) // 8
    if rows * cols < _MIN_DCT_BLOCKS:
        return math.nan
    region = grey[gy0:gy1, gx0:gx1].astype(np.float64) - 128
    blocks = region.reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    coefficients = dctn(blocks, axes=(1, 2), norm="ortho")
    steps = []
    for u, v in _DCT_POSITIONS:
        values = coefficients[:, u, v]
        step = 0
        for q in _DCT_STEPS:
            away = values[np.abs(values) >= q / 2]
            if len(away) < _DCT_MIN_VALUES:
                break
            if np.cos(2 * np.pi * away / q).mean() >= _DCT_PERIODIC:
                step = int(q)
        steps.append(step)
    return float(np.median(steps))


# -- the classifier and the AUC --------------------------------------------------------------------


def _classifier():
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=50, max_leaf_nodes=8, min_samples_leaf=3, early_stopping=False, random_state=0
    )


def _design(per_video: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The ``(N, D)`` float matrix of ``features``: categories one-hot, numbers as they are (NaN kept)."""
    parts = []
    for name in features:
        spec = AUDIT_FEATURES.get(name)
        values = per_video[list(spec.columns)]
        if spec.categorical:
            parts.append(pd.get_dummies(values.astype("string").fillna("none")).to_numpy(np.float64))
        else:
            parts.append(values.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64))
    return np.concatenate(parts, axis=1)


def _out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Score of each video from a model fitted on the other folds; NaN where a fold's training
    part lacks a class."""
    from threadpoolctl import threadpool_limits

    scores = np.full(len(y), np.nan)
    with threadpool_limits(1):  # tiny fits: OpenMP threads only add overhead (and contention)
        for fold in np.unique(folds):
            test = folds == fold
            if len(np.unique(y[~test])) < 2:
                continue
            # a column missing in every training video carries nothing (and the trees reject it)
            fold_x = np.where(np.isnan(x[~test]).all(axis=0), 0.0, x)
            model = _classifier().fit(fold_x[~test], y[~test])
            scores[test] = model.predict_proba(fold_x[test])[:, 1]
    return scores


def _pair_matrices(
    scores: np.ndarray, y: np.ndarray, folds: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per (fake's group, real's group): concordant pairs (ties count 1/2) and all pairs, over the
    pairs in the same test fold; and how many folds gave pairs."""
    concordant = np.zeros((n_groups, n_groups))
    pairs = np.zeros((n_groups, n_groups))
    used = 0
    scored = ~np.isnan(scores)
    for fold in np.unique(folds[scored]):
        fake = scored & (folds == fold) & (y == 1)
        real = scored & (folds == fold) & (y == 0)
        if not fake.any() or not real.any():
            continue
        used += 1
        diff = scores[fake][:, None] - scores[real][None, :]
        wins = (diff > 0) + 0.5 * (diff == 0)
        of_fake = np.eye(n_groups)[groups[fake]]  # (fakes, groups) one-hot
        of_real = np.eye(n_groups)[groups[real]]
        concordant += of_fake.T @ wins @ of_real
        pairs += np.outer(of_fake.sum(axis=0), of_real.sum(axis=0))
    return concordant, pairs, used


def _bootstrap(
    concordant: np.ndarray, pairs: np.ndarray, draws: int, seed: int
) -> tuple[float, float] | None:
    """2.5 and 97.5 percentiles of the pair AUC over ``draws`` resamplings of the groups."""
    weights = resample_counts(np.random.default_rng(seed), len(pairs), draws)
    numerator = ((weights @ concordant) * weights).sum(axis=1)
    denominator = ((weights @ pairs) * weights).sum(axis=1)
    ok = denominator > 0
    return percentile_interval(np.divide(numerator, denominator, out=np.full(draws, np.nan), where=ok))


def _row(
    scope: str,
    feature: str,
    kind: str,
    per_video: pd.DataFrame,
    features: Sequence[str],
    flag: float,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """One row of the report: ``features`` together on the videos of ``per_video`` (one scope)."""
    y = per_video.label.to_numpy()
    codes, groups = np.unique(per_video.group.to_numpy(), return_inverse=True)
    row: dict[str, Any] = {
        "scope": scope,
        "feature": feature,
        "kind": kind,
        "auc": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "videos": len(y),
        "reals": int((y == 0).sum()),
        "fakes": int((y == 1).sum()),
        "groups": len(codes),
        "folds": 0,
        "flagged": False,
        "note": "",
    }
    if row["reals"] == 0 or row["fakes"] == 0:
        row["note"] = f"one class only ({row['reals']} reals, {row['fakes']} fakes)"
        return row
    if len(codes) < MIN_GROUPS:
        row["note"] = (
            f"{len(codes)} group(s) of linked videos; grouped cross-validation needs at least {MIN_GROUPS}"
        )
        return row
    folds = per_video.fold.to_numpy()
    scores = _out_of_fold(_design(per_video, features), y, folds)
    concordant, pairs, row["folds"] = _pair_matrices(scores, y, folds, groups, len(codes))
    if pairs.sum() == 0:
        row["note"] = "no test fold holds both classes while its training part does"
        return row
    row["auc"] = float(concordant.sum() / pairs.sum())
    interval = _bootstrap(concordant, pairs, bootstrap, seed)
    if interval is not None:
        row["ci_low"], row["ci_high"] = interval
    row["flagged"] = row["auc"] >= flag
    return row


# -- the audit -------------------------------------------------------------------------------------


def _store_faces(store: FaceStore, frames: int) -> tuple[dict[tuple[str, str], list], dict[tuple, str]]:
    """Per video of the store: up to ``frames`` of its ok frames (evenly spread) as
    ``(frame_index, box)``; and why a stored video has none."""
    from dftoolkit.video import sample_indices

    table = store.frames()
    faces, why = {}, {}
    for (dataset, video_id), rows in table.groupby(["dataset", "video_id"], sort=False):
        ok = rows[(rows.status == "ok") & rows.box.notna() & (rows.frame_index >= 0)]
        if ok.empty:
            counts = rows.status.value_counts().to_dict()
            why[(dataset, video_id)] = f"no ok frame in the store ({len(rows)} sampled; statuses {counts})"
            continue
        picked = ok.iloc[sample_indices(len(ok), frames)]
        faces[(dataset, video_id)] = [
            (int(i), [float(v) for v in box]) for i, box in zip(picked.frame_index, picked.box, strict=True)
        ]
    return faces, why


def audit(
    manifest: Manifest | str | os.PathLike[str],
    store: FaceStore | str | os.PathLike[str] | None = None,
    *,
    flag: float = FLAG,
    frames: int = 8,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> AuditReport:
    """Audit ``manifest`` for shortcuts: the label-prediction AUC of each nuisance feature.

    Args:
        manifest: a Manifest, a manifest file, a toolkit corpus folder or a FaceStore folder.
        store: a FaceStore (or its folder) holding the manifest's videos: adds the face features.
        flag: rows with an AUC at or above it are flagged (0.5 is chance, 1 a perfect shortcut).
        frames: ok frames per video read for the face features (evenly spread over the store's).
        bootstrap: resamplings of the groups for the 95 % interval.
        seed: seeds the folds and the bootstrap.
        workers: processes for the per-video features (default one per core, at most one per 8 videos).
        log_path: where worker processes' stderr goes (default: discarded).

    Example:
        >>> report = audit("demo-out/srdf")  # doctest: +SKIP
        >>> report.auc("all metadata"), report.flagged[["scope", "feature", "auc"]]  # doctest: +SKIP
    """
    if not 0.5 <= flag <= 1:
        raise ValueError(f"flag must be an AUC in [0.5, 1], got {flag}")
    if frames < 1 or bootstrap < 1:
        raise ValueError(f"frames and bootstrap must be >= 1, got {frames} and {bootstrap}")
    if not isinstance(manifest, Manifest):
        from dftoolkit.quality.report import load_sources

        manifest = load_sources([manifest])
    if not len(manifest):
        raise ValueError("the manifest holds no videos")
    faces: dict[tuple[str, str], list] = {}
    no_faces: dict[tuple, str] = {}
    if store is not None:
        from dftoolkit.preprocess.store import FaceStore

        store = store if isinstance(store, FaceStore) else FaceStore(store)
        faces, no_faces = _store_faces(store, frames)
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    jobs = [_AuditJob(r.key, str(manifest.path_of(r)), faces.get(r.key)) for r in manifest]
    workers = min(workers or os.cpu_count() or 1, max(1, -(-len(jobs) // 8)))
    outcomes = run_stage(_AuditStage(), [jobs], workers=workers, log_path=log_path or os.devnull)
    results = {}
    for outcome in progress(outcomes, _AuditStage.name, total=len(jobs)):
        error = outcome.error and outcome.error.strip().splitlines()[-1]
        results[outcome.job.key] = {"error": error} if error else outcome.result
    per_video, skipped = _per_video(manifest, results, no_faces, store is not None)
    per_video["fold"] = _folds(
        per_video.group.to_numpy(),
        np.unique(per_video.dataset + "/" + per_video.label.astype(str), return_inverse=True)[1],
        seed,
    )
    metadata = [n for n in FEATURES if AUDIT_FEATURES.get(n).kind == "metadata"]
    names = list(FEATURES) if store is not None else metadata
    sets = [(n, AUDIT_FEATURES.get(n).kind, [n]) for n in names] + [(ALL_METADATA, "metadata", metadata)]
    if store is not None:
        sets.append((ALL_FEATURES, "all", names))
    datasets = sorted(per_video.dataset.unique())
    scopes = [(d, per_video[per_video.dataset == d]) for d in datasets]
    if len(datasets) > 1:
        scopes.insert(0, ("all", per_video))
    rows = []
    for scope, videos in scopes:
        for feature, kind, members in sets:
            subset = videos if kind == "metadata" else videos[videos.face]  # face rows: videos with them
            rows.append(_row(scope, feature, kind, subset, members, flag, bootstrap, seed))
    settings = {
        "frames": frames,
        "folds": int(per_video.fold.max()) + 1,  # k = min(5, groups, largest stratum)
        "min_groups": MIN_GROUPS,
        "bootstrap": bootstrap,
        "seed": seed,
        "classifier": " ".join(repr(_classifier()).split()) + ", categories one-hot",
        "store": str(store.root) if store is not None else None,
    }
    return AuditReport(pd.DataFrame(rows, columns=_ROW_COLUMNS), per_video, skipped, flag, settings)


def _per_video(
    manifest: Manifest,
    results: dict[tuple, dict[str, Any]],
    no_faces: dict[tuple, str],
    with_store: bool,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The per-video table of the videos that could be probed, and why others (or their face
    statistics) are left out."""
    groups = audit_groups(manifest)
    kinds = ("metadata", "face") if with_store else ("metadata",)
    specs = [AUDIT_FEATURES.get(name) for name in FEATURES if AUDIT_FEATURES.get(name).kind in kinds]
    columns = [c for spec in specs for c in spec.columns]
    rows, skipped = [], {}
    for record, group in zip(manifest, groups, strict=True):
        result = results[record.key]
        name = "/".join(record.key)
        if "error" in result:
            skipped[name] = f"not audited: {result['error']}"
            continue
        has_face = with_store and all(c in result for c in _FACE_COLUMNS)
        if with_store and not has_face:
            why = result.get("face_error") or no_faces.get(record.key, "not in the store")
            skipped[name] = f"no face features: {why}"
        rows.append(
            {
                "dataset": record.dataset,
                "video_id": record.video_id,
                "label": record.label,
                "method": record.method,
                "group": int(group),
                "face": has_face,
                **{c: result.get(c) for c in columns},
            }
        )
    if not rows:
        raise ValueError(f"no video of the manifest could be probed; first: {next(iter(skipped.items()))}")
    table = pd.DataFrame(rows)
    for spec in specs:
        if not spec.categorical:
            table[list(spec.columns)] = table[list(spec.columns)].apply(pd.to_numeric, errors="coerce")
    return table, skipped


# -- files -----------------------------------------------------------------------------------------

AUDIT_FILES = ("audit.json", "audit.md", "audit.png")
"""What :func:`write_audit` writes."""


def write_audit(report: AuditReport, out_dir: str | os.PathLike[str]) -> AuditReport:
    """Write ``audit.json``, ``audit.md`` and ``audit.png`` (AUC bars with their intervals and the
    flag line) into ``out_dir`` atomically; list them in ``report.files``."""
    from dftoolkit import __version__
    from dftoolkit.quality.report_files import json_value

    out = Path(out_dir)
    report.files = {"json": out / "audit.json", "markdown": out / "audit.md", "plot": out / "audit.png"}
    _plot(report, report.files["plot"])
    data = {"tool": f"dftoolkit {__version__}", **report.to_dict()}
    atomic_write_text(report.files["json"], json.dumps(data, indent=1, default=json_value))
    atomic_write_text(report.files["markdown"], audit_markdown(report, heading="#"))
    return report


def audit_markdown(report: AuditReport, heading: str = "#") -> str:
    """The audit as Markdown under a ``heading``-level title (``"##"`` inside another report)."""
    settings = report.settings
    lines = [
        f"{heading} Shortcut audit",
        "",
        "Can cheap nuisance features predict real vs fake? Per feature, the AUC of a small "
        f"classifier ({settings['classifier']}) under grouped {settings['folds']}-fold "
        "cross-validation (a fake, its original and its target identity share a group), over the "
        "(real, fake) pairs of each test fold, with a 95% interval from "
        f"{settings['bootstrap']} resamplings of the groups (seed {settings['seed']}). "
        f"0.5 is chance; an AUC of {report.flag:g} or more is flagged. "
        + (
            "Face features from the store " + f"`{settings['store']}`."
            if settings["store"]
            else "No FaceStore given: metadata features only."
        ),
        "",
    ]
    flagged = report.flagged
    if report.rows.auc.isna().all():
        lines.append("**No AUC computed**: see the notes.")
    elif flagged.empty:
        lines.append("**Nothing flagged.**")
    else:
        lines.append(
            "**Flagged**: "
            + ", ".join(f"{r.scope} / {r.feature} ({r.auc:.3f})" for r in flagged.itertuples())
        )
    table = report.table()
    for scope in report.scopes:
        shown = table[table.scope == scope].drop(columns="scope")
        lines += ["", f"{heading}# {scope}", "", _md_table(shown)]
    lines += ["", f"{heading}# Features", ""]
    lines += [f"- `{name}` ({spec.kind}): {description}" for name, spec, description in _TABLE]
    if report.skipped:
        lines += ["", f"{heading}# Left out", ""]
        lines += [f"- {key}: {why}" for key, why in sorted(report.skipped.items())]
    return "\n".join(lines) + "\n"


def _md_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _plot(report: AuditReport, path: Path) -> None:
    """Horizontal AUC bars with 95% whiskers, one panel per scope; chance and flag lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scopes = report.scopes
    features = list(dict.fromkeys(report.rows.feature))
    fig = Figure(figsize=(4.5 * len(scopes) + 1.5, 0.32 * len(features) + 1.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(scopes), sharey=True, squeeze=False)[0]
    positions = np.arange(len(features))[::-1]
    for ax, scope in zip(axes, scopes, strict=True):
        rows = report.rows[report.rows.scope == scope].set_index("feature").reindex(features)
        auc = rows.auc.to_numpy(float)
        whiskers = np.stack([auc - rows.ci_low.to_numpy(float), rows.ci_high.to_numpy(float) - auc])
        colours = ["tab:red" if f is True else "tab:blue" for f in rows.flagged]
        ax.barh(positions, np.nan_to_num(auc), xerr=np.nan_to_num(whiskers), color=colours, capsize=2)
        for y, value in zip(positions, auc, strict=True):
            if np.isnan(value):
                ax.text(0.02, y, "not computed", va="center", fontsize=7, color="grey")
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.axvline(report.flag, color="tab:red", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_title(scope, fontsize=10)
        ax.set_xlabel("label-prediction AUC")
    axes[0].set_yticks(positions, features, fontsize=8)
    fig.suptitle(f"Shortcut audit: grouped-CV AUC, 95% CI (chance 0.5, flag {report.flag:g})", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
