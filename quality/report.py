"""The dataset quality report: several datasets side by side, as in the M2TR paper's Tables 2-3 and Fig. 6.

Per video, cached in ``out/cache/<key>/`` (the key covers the settings and the weights; each entry
holds the size and mtime of the files it read), so a rerun only scores videos that are new or changed.
A failure is recorded per video and metric, with its reason, and cached like a score.

- ``mask-ssim``: fakes with a mask and their original in the same dataset; ``frames`` evenly spaced
  frame pairs, the protocol named in the output; the mean over the frames with a non-empty mask.
- ``perceptual`` and ``lpips``: the same frame pairs, cut to the face region (the bounding square
  of the mask's union over the sampled frames, enlarged 1.3x, resized to ``size``).
- ``ewarp``: every video, its first ``temporal_frames`` consecutive frames resized to ``size`` x
  ``size``; the flow of a fake comes from its original (as in the reference code), a real's from
  itself.
- ``tsne``: up to 8 frames of every video, evenly spread over those of its ``frames`` sampled frames
  where the default face backend finds a face; the largest face cropped (box enlarged 1.3x) to 224,
  ImageNet features, averaged: one point per video (a video's frames are near-duplicates, so
  per-frame points would make the overlap and silhouette measure within-video similarity). A video
  without a face in any sampled frame is listed with the reason, not scored.
- ``identity`` (swaps): cosine of the fake's dlib face identity to its source's and to its target's
  (:mod:`dftoolkit.quality.identity`), over ``frames`` frames of each video.
- ``expression`` (reenactments): landmark-motion error of the fake against its driver and its
  target (:mod:`dftoolkit.quality.expression`), over ``frames`` frames.
- ``jitter``: landmark jitter of the main face over the first ``temporal_frames`` frames of every
  video (:mod:`dftoolkit.quality.temporal`); NaN when no 3 consecutive frames have a face.
- ``audit``: the shortcut audit (:mod:`dftoolkit.quality.audit`) of all the sources' videos,
  metadata features (not cached: it reads file headers only); ``audit.json``, ``audit.md`` and
  ``audit.png`` beside the report, and a section of it.

A fake's original is the real video of the same dataset whose ``video_id`` is its ``original_id``;
its source is the real video of that dataset whose identity (``target_id``, else ``video_id``) is
its ``source_id``. Whether a method swaps or reenacts comes from :func:`~dftoolkit.records.method_kind`.

A video given twice (e.g. a generated corpus's ``originals/``, hard links to or copies of reals
also given) is scored once, under the first source given: the other row shows the same scores,
``skipped`` says which video it repeats and why, and the t-SNE draws it once. Re-encoded copies
are different videos and are scored on their own.

Metrics whose weights are missing (no VGG-16 / AlexNet in ``$TORCH_HOME``, no face-recognition model)
are not computed and the report says why; the perceptual and t-SNE features fall back to the
offline ImageNet MobileNetV2 and every output names the backbone actually used. Weight files given
in ``QualityConfig.weights`` are loaded and fitted to their network once, before any video is read:
one that is refused or does not fit raises :class:`~dftoolkit.checkpoints.CheckpointError`. Each
metric fails on its own: Mask-SSIM needs no weights and is scored when a backbone fails to load.

Outputs: ``report.json``, ``report.md`` (one row per dataset and class, then per dataset and method),
``per_video.csv``, ``tsne.png``, ``distributions.png`` and ``worst_mask_ssim.png`` (the lowest-scoring
fakes as original | fake | mask strips).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dftoolkit.config import normalise, setting, write_config
from dftoolkit.fileio import file_identities
from dftoolkit.locks import locks_output
from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.quality.report_files import write_report
from dftoolkit.quality.scoring import (
    FILES,
    METRICS,
    PER_VIDEO,
    QUALITY_METRICS,
    TSNE_FRAMES,
    ScoreJob,
    ScoreStage,
)
from dftoolkit.records import VideoRecord, method_kind
from dftoolkit.workers import check_engine, run_stage, runs_dir

if TYPE_CHECKING:
    from dftoolkit.preprocess.store import FaceStore
    from dftoolkit.quality.audit import AuditReport
    from dftoolkit.quality.backbones import BackboneInfo

__all__ = ["QualityConfig", "QualityReport", "load_sources", "quality_report"]

_CACHE_FORMAT = 2  # part of the cache key; 2: every metric scored and failing on its own


@dataclass(frozen=True)
class QualityConfig:
    """Settings of a report; part of every cached score's key, so changing one rescores.

    Each field's help is in its metadata (:func:`dftoolkit.config.describe_config`). Raises
    ``ValueError`` naming every bad setting, or ``FileNotFoundError`` naming missing weight files.
    """

    metrics: tuple[str, ...] = setting(
        METRICS,
        "Metrics to compute (audit: the shortcut audit's metadata features; `dftoolkit audit --store` "
        "adds the face ones).",
        choices=METRICS,
    )
    protocol: str = setting("inside", "Mask-SSIM protocol.", choices="dftoolkit.quality.ssim:PROTOCOLS")
    frames: int = setting(16, "Frames per video for Mask-SSIM, perceptual, LPIPS, identity and expression.")
    temporal_frames: int = setting(32, "Consecutive frames per video for E_warp and landmark jitter (>= 3).")
    size: int = setting(256, "Side of the face crops and of the E_warp frames in pixels (>= 32).")
    flow: str = setting("dis", "Optical flow of E_warp.", choices="dftoolkit.quality.flow:FLOW_BACKENDS")
    perceptual_backbone: str = setting(
        "auto",
        "Perceptual backbone (vgg16 as the paper); auto: vgg16 when its weights exist, else the offline "
        "mobilenet_v2, reported as a fallback.",
        choices="dftoolkit.quality.backbones:BACKBONES",
    )
    lpips_net: str = setting("alex", "LPIPS trunk.", choices="dftoolkit.quality.perceptual:LPIPS_NETS")
    tsne_backbone: str = setting(
        "auto",
        "t-SNE features (resnet18 as the paper); auto: resnet18 when its weights exist, else mobilenet_v2.",
        choices="dftoolkit.quality.backbones:BACKBONES",
    )
    seed: int = setting(0, "Seed of the t-SNE and of the shortcut audit.")
    weights: tuple[tuple[str, str], ...] = setting(
        (),
        "Weight files to use instead of $TORCH_HOME's, NAME=PATH; NAME: a backbone, raft_small or "
        "raft_large.",
        choices="dftoolkit.quality.backbones:BACKBONES",
    )

    def __post_init__(self) -> None:
        normalise(self)
        from dftoolkit.quality.backbones import BACKBONES
        from dftoolkit.quality.flow import FLOW_BACKENDS
        from dftoolkit.quality.perceptual import LPIPS_NETS
        from dftoolkit.quality.ssim import PROTOCOLS

        backbones = ("auto", *BACKBONES.names())
        networks = (*BACKBONES.names(), "raft_small", "raft_large")
        unknown = sorted(set(self.metrics) - set(METRICS))
        checks = [
            (not unknown, f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}"),
            (
                self.protocol in PROTOCOLS,
                f"unknown Mask-SSIM protocol {self.protocol!r}; choose from {PROTOCOLS}",
            ),
            (
                self.flow in FLOW_BACKENDS,
                f"unknown flow backend {self.flow!r}; choose from {FLOW_BACKENDS.names()}",
            ),
            (self.frames >= 1, f"frames must be >= 1, got {self.frames}"),
            (self.temporal_frames >= 3, f"temporal_frames must be >= 3, got {self.temporal_frames}"),
            (self.size >= 32, f"size must be >= 32, got {self.size}"),
            *(
                (
                    getattr(self, name) in backbones,
                    f"{name} must be one of {backbones}, got {getattr(self, name)!r}",
                )
                for name in ("perceptual_backbone", "tsne_backbone")
            ),
            (
                self.lpips_net in LPIPS_NETS,
                f"lpips_net must be one of {tuple(LPIPS_NETS)}, got {self.lpips_net!r}",
            ),
            *(
                (name in networks, f"weights for unknown network {name!r}; known: {', '.join(networks)}")
                for name, _ in self.weights
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"bad quality settings: {'; '.join(problems)}")
        missing = [
            f"weights for {name}: {path} does not exist"
            for name, path in self.weights
            if not Path(path).is_file()
        ]
        if missing:
            raise FileNotFoundError("; ".join(missing))

    def weights_of(self, name: str) -> str | None:
        """The weight file given for network ``name``, or None (then ``$TORCH_HOME`` is searched)."""
        return dict(self.weights).get(name)


@dataclass
class QualityReport:
    """What :func:`quality_report` produced.

    Attributes:
        out_dir: the report folder.
        per_video: one row per video: dataset, video_id, label, method, kind and :data:`PER_VIDEO`.
        datasets: mean / std / count of each column per dataset and class (``real`` / ``fake``).
        methods: the same per dataset and method, fakes only.
        spread: :meth:`~dftoolkit.quality.spread.SpreadStats.to_dict` of the t-SNE features.
        backbones: per deep metric, the :class:`~dftoolkit.quality.backbones.BackboneInfo` used.
        unavailable: metrics not computed at all, and why (e.g. missing weights).
        skipped: ``"dataset/video_id"`` -> ``{metric: why its score is missing}``, every failed
            metric of the video; a video that repeats another (scored once, under the first
            source given) has the single entry ``{"all": which video it repeats}``.
        files: name -> path of every file written.
        cached: videos whose scores came from the cache (not recomputed).
        audit: the shortcut audit (metric ``audit``), else None.
    """

    out_dir: Path
    per_video: pd.DataFrame
    datasets: pd.DataFrame
    methods: pd.DataFrame
    spread: dict[str, Any] = field(default_factory=dict)
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    cached: int = 0
    audit: AuditReport | None = None


def load_sources(sources: Sequence[Manifest | str | os.PathLike[str]]) -> Manifest:
    """One Manifest from manifests, manifest Parquet files, toolkit corpus folders (with a
    ``manifest.parquet``) or FaceStore folders (their stored manifest)."""
    manifests = []
    for source in sources:
        if isinstance(source, Manifest):
            manifests.append(source)
            continue
        path = Path(source)
        if path.is_dir() and (path / "manifest.parquet").is_file():
            manifests.append(Manifest.read_parquet(path / "manifest.parquet"))
        elif path.is_dir():
            from dftoolkit.preprocess.store import FaceStore

            try:
                manifest = FaceStore(path).manifest()
            except FileNotFoundError as err:
                raise ValueError(f"{path}: no manifest.parquet, and not a FaceStore ({err})") from None
            if manifest is None:
                raise ValueError(
                    f"{path}: a FaceStore without a stored manifest (see FaceStore.set_manifest)"
                )
            manifests.append(manifest)
        elif path.is_file():
            manifests.append(Manifest.read_parquet(path))
        else:
            raise FileNotFoundError(f"{path}: no such manifest, corpus folder or FaceStore")
    return Manifest.concat(manifests)


# -- what can run here (main process) ------------------------------------------------------------


def _resolve(config: QualityConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The weights of each deep metric (BackboneInfo, or the model path) and the metrics that
    cannot run, with why. Decided once, here, so every worker uses the same files; every file of
    ``config.weights`` is first loaded into its network (CheckpointError naming a refused or unfit one)."""
    from dftoolkit.fetch import FetchError
    from dftoolkit.quality.backbones import find_weights, load_backbone, resolve_backbone
    from dftoolkit.quality.flow import load_raft
    from dftoolkit.quality.perceptual import LPIPS_NETS

    for name, path in config.weights:
        if name.startswith("raft_"):
            load_raft(name.removeprefix("raft_"), path)
        else:
            load_backbone(name, path)
    resolved: dict[str, Any] = {}
    unavailable: dict[str, str] = {}

    def backbone(choice: str, preferred: str):
        if choice != "auto":
            return find_weights(choice, config.weights_of(choice))
        # warn=False: the fallback is reported in every output instead
        return resolve_backbone(preferred, weights=config.weights_of(preferred), warn=False)

    def lpips_trunk():
        name = LPIPS_NETS[config.lpips_net]
        return find_weights(name, config.weights_of(name))

    wanted = {
        "perceptual": lambda: backbone(config.perceptual_backbone, "vgg16"),
        "lpips": lpips_trunk,
        "tsne": lambda: backbone(config.tsne_backbone, "resnet18"),
        "identity": _face_recognition_model,
    }
    if config.flow == "raft":
        wanted["ewarp"] = lambda: _raft_weights(config)
    for metric, find in wanted.items():
        if metric in config.metrics:
            try:
                resolved[metric] = find()
            except (FileNotFoundError, FetchError, KeyError) as err:
                unavailable[metric] = " ".join(str(err).split())
    return resolved, unavailable


def _raft_weights(config: QualityConfig) -> str:
    """The RAFT weight file E_warp will use (small unless only ``raft_large`` weights are given)."""
    from dftoolkit.quality.flow import raft_weights_path

    variant = "large" if config.weights_of("raft_large") and not config.weights_of("raft_small") else "small"
    path = Path(config.weights_of(f"raft_{variant}") or raft_weights_path(variant))
    if not path.is_file():
        raise FileNotFoundError(
            f"RAFT-{variant} weights not found: {path} (torchvision's cache, $TORCH_HOME/hub/checkpoints); "
            "pass weights raft_small=PATH or use the dis flow; nothing is downloaded here"
        )
    return str(path)


def _face_recognition_model() -> str:
    from dftoolkit.faces.assets import dlib_face_recognition_model

    return str(dlib_face_recognition_model())


def _cache_key(config: QualityConfig, resolved: dict[str, Any]) -> str:
    weights = {metric: getattr(value, "sha256", value) for metric, value in resolved.items()}
    settings = {
        "config": asdict(config),
        "weights": weights,
        "tsne_frames": TSNE_FRAMES,
        "format": _CACHE_FORMAT,
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- the report ----------------------------------------------------------------------------------


def _jobs(
    manifest: Manifest, config: QualityConfig, unavailable: dict[str, str], stores: Sequence[FaceStore] = ()
) -> dict[tuple, ScoreJob]:
    """Per video: its path, the paths of its original / mask / source, the faces ``stores`` tracked
    in them (the first store holding a video gives its track), and the scorers that apply."""
    reals = {r.key: r for r in manifest if r.label == 0}
    by_identity: dict[tuple[str, str], VideoRecord] = {}
    for record in sorted(reals.values(), key=lambda r: r.key):
        by_identity.setdefault((record.dataset, record.target_id or record.video_id), record)
    active = [m for m in config.metrics if m not in unavailable and m in QUALITY_METRICS]
    jobs = {}
    for record in manifest:
        job = ScoreJob(record.key, str(manifest.path_of(record)))
        if record.label == 1:
            original = reals.get((record.dataset, record.original_id)) if record.original_id else None
            source = by_identity.get((record.dataset, record.source_id)) if record.source_id else None
            mask = manifest.mask_path_of(record)
            if original is not None:
                job.original_path, job.original_key = str(manifest.path_of(original)), original.key
            if source is not None:
                job.source_path, job.source_key = str(manifest.path_of(source)), source.key
            if mask is not None:
                job.mask_path = str(mask)
            job.reenact = method_kind(record.method) == "reenact"
        job.metrics = [m for m in active if all(getattr(job, n) for n in QUALITY_METRICS.get(m).needs)]
        for file, key in (
            ("path", job.key),
            ("original_path", job.original_key),
            ("source_path", job.source_key),
        ):
            store = next((s for s in stores if key and s.has(*key)), None)
            if store is not None:
                track = store.track(*key)
                ok = track.found
                job.tracked[file] = (track.frame_indices[ok], track.boxes[ok])
        job.inputs = _fingerprint(job)
        jobs[record.key] = job
    # identity embeddings only of the swaps and the reals they were made from
    embedded = {
        key for swap in _swaps(jobs) for key in (swap, jobs[swap].source_key, jobs[swap].original_key)
    }
    for key, job in jobs.items():
        if key not in embedded and "identity" in job.metrics:
            job.metrics.remove("identity")
    return jobs


def _swaps(jobs: dict[tuple, ScoreJob]) -> list[tuple]:
    """Keys of the fakes that are not reenactments and have both a source and an original."""
    return [k for k, j in jobs.items() if not j.reenact and j.source_key and j.original_key]


def _fingerprint(job: ScoreJob) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of each file a job reads, and ``["tracked <name>", digest]`` of each
    tracked face it scores: a cached score is reused only while they hold."""
    prints = [
        [f"tracked {name}", hashlib.sha256(frames.tobytes() + boxes.tobytes()).hexdigest()[:16]]
        for name, (frames, boxes) in sorted(job.tracked.items())
    ]
    for name, path in job.files().items():
        try:
            stat = os.stat(path)
            prints.append([name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            prints.append([name, None, None])
    return prints


def _duplicates(jobs: dict[tuple, ScoreJob]) -> dict[tuple, tuple[tuple, str]]:
    """The jobs that read the same files as an earlier job: only the first (the first source given)
    is scored, and it takes on their metrics.

    Returns ``{duplicate key: (kept key, why)}``. Files are the same when they are one file (a hard
    link, e.g. a generated corpus's ``originals/``, or the same path) or identical copies (see
    :func:`~dftoolkit.fileio.file_identities`); a re-encoded copy is another video and is scored on its own.
    """
    ids = file_identities({path for job in jobs.values() for path in job.files().values()})
    kept: dict[tuple, tuple] = {}
    duplicates = {}
    for key, job in jobs.items():
        files = tuple(ids[getattr(job, name)] if getattr(job, name) else None for name in FILES)
        first = kept.setdefault((files, job.reenact), key)
        if first == key:
            continue
        target = jobs[first]
        target.metrics = [m for m in METRICS if m in target.metrics or m in job.metrics]
        if ids[job.path][0] == "path" or os.path.samefile(job.path, target.path):
            how = "same file: a hard link or the same path"
        else:
            how = "identical copy: same size and sha256"
        name = "/".join(first)
        why = f"the same video as {name} ({how}): scored once, as {name}; drawn once in the t-SNE"
        duplicates[key] = (first, why)
    return duplicates


@locks_output("out_dir", "quality")
def quality_report(
    sources: Sequence[Manifest | str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: QualityConfig | None = None,
    *,
    store: FaceStore | str | os.PathLike[str] | None = None,
    workers: int | None = None,
    engine: str = "local",
) -> QualityReport:
    """Score the datasets of ``sources`` side by side; resumable (cached per video). One run at a
    time per ``out_dir`` (:func:`~dftoolkit.locks.output_lock`).

    Args:
        sources: manifests, manifest files, toolkit corpus folders or FaceStore folders; each
            dataset in them becomes a row per class.
        out_dir: where the report and its cache go.
        config: what to compute (:class:`QualityConfig`).
        store: a FaceStore (or its folder) of the sources' videos. The face metrics (``tsne``,
            ``identity``, ``expression``, ``jitter``) then score the face it tracked in each video it
            holds, not the largest one; a FaceStore folder among ``sources`` counts as one too.
        workers: processes (default: one per core).
        engine: a :data:`~dftoolkit.workers.ENGINES` name (:func:`~dftoolkit.workers.run_stage`).

    Example:
        >>> report = quality_report(["demo-out/srdf"], "demo-out/quality")  # doctest: +SKIP
        >>> report.datasets[["dataset", "kind", "mask_ssim_mean", "ewarp_mean"]]  # doctest: +SKIP
    """
    config = config or QualityConfig()
    check_engine(engine)
    manifest = load_sources(sources)
    if not len(manifest):
        raise ValueError("the sources hold no videos")
    out = Path(out_dir)
    write_config(out, config)
    resolved, unavailable = _resolve(config)
    cache_dir = out / "cache" / _cache_key(config, resolved)
    jobs = _jobs(manifest, config, unavailable, _stores(sources, store))
    duplicates = _duplicates(jobs)
    todo, results, hits = [], {}, 0
    for key, job in jobs.items():
        if key in duplicates:
            continue
        job.cache = str(cache_dir / key[0] / f"{key[1]}.json")
        cached = _read_cache(Path(job.cache))
        if (
            cached is not None
            and cached.get("inputs") == job.inputs
            and set(job.metrics) <= set(cached.get("metrics", ()))
        ):
            results[key] = cached
            hits += 1
        elif job.metrics:
            todo.append(job)
    outcomes = run_stage(
        ScoreStage(config, resolved),
        [todo],
        workers=min(workers or os.cpu_count() or 1, max(1, len(todo))),
        engine=engine,
        log_path=runs_dir(out) / "workers.log",
    )
    for outcome in progress(outcomes, "scoring videos", total=len(todo)):
        if outcome.error is not None:  # the job itself failed (e.g. its cache could not be written)
            error = outcome.error.strip().splitlines()[-1]
            results[outcome.job.key] = {"errors": dict.fromkeys(outcome.job.metrics, error)}
        else:
            results[outcome.job.key] = outcome.result
    skipped = {
        "/".join(key): dict(sorted(r["errors"].items())) for key, r in results.items() if r.get("errors")
    }
    for key, (first, why) in duplicates.items():
        results[key] = results.get(first, {})
        skipped["/".join(key)] = {"all": why}
    report = _tables(out, manifest, jobs, results, config)
    report.skipped.update(skipped)
    report.unavailable = unavailable
    report.backbones = {m: asdict(v) for m, v in resolved.items() if hasattr(v, "weights_path")}
    if "tsne" in config.metrics:
        drawn = [r for r in manifest if r.key not in duplicates]
        report.spread = _spread(out, drawn, results, resolved.get("tsne"), config, report)
    report.cached = hits
    if "audit" in config.metrics:
        from dftoolkit.quality.audit import audit

        log = out / "runs" / "audit_workers.log"
        try:
            report.audit = audit(manifest, seed=config.seed, workers=workers, log_path=log)
        except ValueError as err:  # no video could be probed
            report.unavailable["audit"] = " ".join(str(err).split())
    return write_report(report, manifest, config, PER_VIDEO)


def _stores(
    sources: Sequence[Manifest | str | os.PathLike[str]], store: FaceStore | str | os.PathLike[str] | None
) -> list[FaceStore]:
    """The FaceStores whose tracks the face metrics follow: ``store``, then the sources that are one."""
    from dftoolkit.preprocess.store import FaceStore

    stores = [] if store is None else [store if isinstance(store, FaceStore) else FaceStore(store)]
    for source in sources:
        if not isinstance(source, Manifest) and Path(source).is_dir():
            with contextlib.suppress(FileNotFoundError):  # a corpus folder: not a store
                stores.append(FaceStore(source))
    return stores


def _read_cache(path: Path) -> dict[str, Any] | None:
    """A cached per-video result, or None when absent or unreadable (it is then recomputed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _identity_scores(jobs, results) -> dict[tuple, dict[str, float]]:
    """Identity cosines of each swap from the embeddings of it, its source and its target."""
    from dftoolkit.quality.identity import identity_similarity

    scores = {}
    for key in _swaps(jobs):
        found = [
            results.get(k, {}).get("embeddings") for k in (key, jobs[key].source_key, jobs[key].original_key)
        ]
        if all(found):
            scores[key] = identity_similarity(*(np.asarray(e, np.float32) for e in found))
    return scores


def _tables(out, manifest, jobs, results, config) -> QualityReport:
    identity = _identity_scores(jobs, results) if "identity" in config.metrics else {}
    rows = []
    for record in manifest:
        result = {**results.get(record.key, {}), **identity.get(record.key, {})}
        rows.append(
            {
                "dataset": record.dataset,
                "video_id": record.video_id,
                "label": record.label,
                "kind": "fake" if record.label else "real",
                "method": record.method or "-",
                **{name: result.get(name) for name in PER_VIDEO},
            }
        )
    per_video = pd.DataFrame(rows)
    for name in PER_VIDEO:
        per_video[name] = pd.to_numeric(per_video[name], errors="coerce")
    report = QualityReport(
        out_dir=out,
        per_video=per_video,
        datasets=_table(per_video, ["dataset", "kind"]),
        methods=_table(per_video[per_video.label == 1], ["dataset", "method"]),
    )
    return report


def _table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group: ``videos``, then ``<column>_mean``, ``_std`` and ``_n`` (videos with a value)."""
    grouped = frame.groupby(by, sort=True)
    table = grouped.size().rename("videos").to_frame()
    for name in PER_VIDEO:
        table[f"{name}_mean"] = grouped[name].mean()
        table[f"{name}_std"] = grouped[name].std()
        table[f"{name}_n"] = grouped[name].count()
    return table.reset_index()


def _spread(
    out: Path,
    records: Sequence[VideoRecord],
    results: dict[tuple, dict[str, Any]],
    backbone: BackboneInfo | None,
    config: QualityConfig,
    report: QualityReport,
) -> dict[str, Any]:
    """Spread statistics and ``tsne.png`` of the ``records`` with features, one point per video (its
    mean face feature); the plot's title names ``backbone`` and flags a fallback or non-ImageNet weights."""
    from dftoolkit.quality.spread import feature_spread, plot_spread, tsne_embed

    scored = [r for r in records if results.get(r.key, {}).get("features")]
    if len(scored) < 3 or backbone is None:
        return {"note": f"only {len(scored)} video(s) with features; t-SNE needs at least 3"}
    features = np.array([results[r.key]["features"] for r in scored], np.float32)
    labels = np.array([r.label for r in scored])
    groups = np.array([r.dataset for r in scored])
    embedding = tsne_embed(features, seed=config.seed)
    flags = ["offline fallback: not the paper's ResNet-18"] if backbone.fallback else []
    flags += [] if backbone.imagenet else ["weights NOT torchvision's ImageNet release"]
    title = f"t-SNE of {backbone.name} face features" + (f" ({'; '.join(flags)})" if flags else "")
    title += f"\none point per video: its mean feature over up to {TSNE_FRAMES} face frames"
    plot_spread(embedding, labels, groups, out / "tsne.png", title, unit="videos")
    report.files["tsne"] = out / "tsne.png"
    return feature_spread(features, labels, groups, embedding=embedding).to_dict()
