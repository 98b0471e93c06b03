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
its ``source_id``. Whether a method swaps or reenacts comes from :func:`method_kind`.

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

import hashlib
import json
import os
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from dftoolkit.fileio import atomic_write_text, file_identities
from dftoolkit.locks import locks_output
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess.geometry import box_matrix, warp
from dftoolkit.progress import progress
from dftoolkit.quality.report_files import json_value, write_report
from dftoolkit.records import VideoRecord
from dftoolkit.registry import Registry
from dftoolkit.video import VideoReader, sample_indices
from dftoolkit.workers import run_phases

if TYPE_CHECKING:
    from torch import Tensor

    from dftoolkit.quality.audit import AuditReport
    from dftoolkit.quality.backbones import BackboneInfo

__all__ = [
    "METRICS",
    "PER_VIDEO",
    "QUALITY_METRICS",
    "Metric",
    "QualityConfig",
    "QualityReport",
    "describe_quality_metrics",
    "get_quality_metric",
    "list_quality_metrics",
    "load_sources",
    "method_kind",
    "quality_report",
]

METRICS = ("mask-ssim", "perceptual", "lpips", "ewarp", "tsne", "identity", "expression", "jitter", "audit")
"""Every metric :func:`quality_report` computes, in report order (:data:`QUALITY_METRICS` describes each
per-video one; ``audit`` is the shortcut audit of :mod:`dftoolkit.quality.audit`, metadata features)."""
_TSNE_FRAMES = 8  # face frames averaged per video for the t-SNE; part of the cache key
_CACHE_FORMAT = 2  # part of the cache key; 2: every metric scored and failing on its own


@dataclass(frozen=True)
class Metric:
    """How a report metric is computed per video.

    Attributes:
        columns: its per-video columns (none for ``tsne``, whose output is the spread).
        needs: job fields a video must have for it (e.g. an original and a mask).
        scorer: ``scorer(job, config) -> {column: value}`` in a worker.
    """

    columns: tuple[str, ...]
    needs: tuple[str, ...]
    scorer: Callable[[dict[str, Any], Any], dict[str, Any]]


QUALITY_METRICS: Registry[Metric] = Registry("quality metric")


def list_quality_metrics() -> list[str]:
    """The registered per-video quality metric names, sorted (:data:`METRICS` has the report order)."""
    return QUALITY_METRICS.names()


def describe_quality_metrics() -> dict[str, str]:
    """Quality metric name -> one-line description."""
    return QUALITY_METRICS.describe()


def get_quality_metric(name: str) -> Metric:
    """How the metric registered as ``name`` is computed per video."""
    return QUALITY_METRICS.get(name)


# FaceForensics++'s methods; the toolkit's own are looked up in the generator registry.
_FFPP_KINDS = {
    "Deepfakes": "swap",
    "FaceSwap": "swap",
    "FaceShifter": "swap",
    "DeepFakeDetection": "swap",
    "Face2Face": "reenact",
    "NeuralTextures": "reenact",
}


def method_kind(method: str | None) -> str | None:
    """``"swap"``, ``"reenact"`` or None (unknown) for a manifest ``method`` such as ``"swap+rct"``
    (a toolkit method and its blend), ``"fomm+feather"`` or ``"Face2Face"``."""
    if not method:
        return None
    if method in _FFPP_KINDS:
        return _FFPP_KINDS[method]
    from dftoolkit.generators.base import METHODS

    name = method.split("+", 1)[0]
    return METHODS.get(name).kind if name in METHODS else None


@dataclass(frozen=True)
class QualityConfig:
    """Settings of a report; part of every cached score's key, so changing one rescores.

    Attributes:
        metrics: which of :data:`METRICS` to compute.
        protocol: Mask-SSIM protocol (``inside`` or ``masked-image``).
        frames: frames per video for Mask-SSIM / perceptual / LPIPS / identity / expression.
        temporal_frames: consecutive frames per video for E_warp and landmark jitter.
        size: side of the face crops and of the E_warp frames, pixels.
        flow: optical-flow backend of E_warp.
        perceptual_backbone: ``vgg16`` (weights from $TORCH_HOME) or the offline ``mobilenet_v2``;
            ``auto``: vgg16 when its weights exist, else mobilenet_v2 (reported as a fallback).
        lpips_net: ``alex`` or ``vgg``.
        tsne_backbone: ``resnet18`` as the paper, ``mobilenet_v2``, or ``auto`` (resnet18, else
            mobilenet_v2).
        seed: t-SNE seed.
        weights: ``(name, path)`` pairs: weight files to use instead of ``$TORCH_HOME``'s, for the
            backbones (``vgg16``, ``alexnet``, ``resnet18``, ``mobilenet_v2``) and RAFT
            (``raft_small``, ``raft_large``).
    """

    metrics: tuple[str, ...] = METRICS
    protocol: str = "inside"
    frames: int = 16
    temporal_frames: int = 32
    size: int = 256
    flow: str = "dis"
    perceptual_backbone: str = "auto"
    lpips_net: str = "alex"
    tsne_backbone: str = "auto"
    seed: int = 0
    weights: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
        from dftoolkit.quality.flow import FLOW_BACKENDS
        from dftoolkit.quality.ssim import PROTOCOLS

        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown Mask-SSIM protocol {self.protocol!r}; choose from {PROTOCOLS}")
        if self.flow not in FLOW_BACKENDS:
            raise ValueError(f"unknown flow backend {self.flow!r}; choose from {list(FLOW_BACKENDS)}")
        if self.frames < 1 or self.temporal_frames < 3 or self.size < 32:
            raise ValueError("frames must be >= 1, temporal_frames >= 3 and size >= 32")
        from dftoolkit.quality.backbones import BACKBONES

        known = set(BACKBONES.names()) | {"raft_small", "raft_large"}
        for name, path in self.weights:
            if name not in known:
                raise ValueError(f"weights for unknown network {name!r}; known: {sorted(known)}")
            if not Path(path).is_file():
                raise FileNotFoundError(f"weights for {name}: {path} does not exist")

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
        with warnings.catch_warnings():  # the fallback is reported in every output instead
            warnings.simplefilter("ignore", UserWarning)
            return resolve_backbone(preferred, weights=config.weights_of(preferred))

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
        "tsne_frames": _TSNE_FRAMES,
        "format": _CACHE_FORMAT,
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- per video (worker side) ---------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(config: QualityConfig, resolved: dict[str, Any]) -> None:
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER.clear()
    _WORKER.update(config=config, resolved=resolved)


def _model(name: str):
    """Models loaded once per worker: ``perceptual``, ``lpips``, ``features``, ``embedder``, ``cascade``."""
    if name not in _WORKER:
        config: QualityConfig = _WORKER["config"]
        resolved = _WORKER["resolved"]
        if name == "perceptual":
            from dftoolkit.quality.perceptual import Perceptual

            _WORKER[name] = Perceptual(resolved["perceptual"])
        elif name == "lpips":
            from dftoolkit.quality.perceptual import LPIPS

            _WORKER[name] = LPIPS(config.lpips_net, weights=resolved["lpips"].weights_path)
        elif name == "features":
            from dftoolkit.quality.backbones import load_backbone

            _WORKER[name] = load_backbone(resolved["tsne"])
        elif name == "embedder":
            from dftoolkit.quality.identity import FaceEmbedder

            _WORKER[name] = FaceEmbedder(resolved["identity"])
        elif name == "cascade":
            from dftoolkit.faces import DetectionCascade, get_backend

            _WORKER[name] = DetectionCascade(get_backend("mediapipe"))
    return _WORKER[name]


def _reader(path: str) -> VideoReader:
    """The job's reader of a video, opened (and its frames indexed) once per job."""
    readers = _WORKER["readers"]
    if path not in readers:
        readers[path] = VideoReader(path)
    return readers[path]


def _read(path: str, indices: np.ndarray | Sequence[int]) -> np.ndarray:
    """``(N, H, W, 3)`` frames of a video, each decoded once per job: scorers share what an earlier
    one decoded (a long-GOP or high-bitrate video costs one pass, not one per metric)."""
    memo = _WORKER["frames"].setdefault(path, {})
    wanted = [int(i) for i in np.asarray(indices).reshape(-1)]
    missing = sorted(set(wanted) - memo.keys())
    if missing:
        memo.update(_reader(path).iter_frames(missing))
    return np.stack([memo[i] for i in wanted])


def _sampled(path: str, config: QualityConfig) -> np.ndarray:
    """The ``frames`` evenly spaced frame indices of a video that every frame-sampling metric uses."""
    return sample_indices(_reader(path).num_frames, config.frames)


def _to_tensor(frames: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def _mask_square(masks: np.ndarray) -> np.ndarray | None:
    """``(4,)`` box of the union of ``(N, H, W)`` masks, or None when all are empty."""
    ys, xs = np.nonzero(masks.max(axis=0))
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _same_length(path: str, original: str) -> int:
    a, b = _reader(path).num_frames, _reader(original).num_frames
    if a != b:
        raise ValueError(
            f"{path} has {a} frames but its original {original} has {b}: frame pairs need equal lengths"
        )
    return a


def _face_pairs(job: dict[str, Any], config: QualityConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The fake's and its original's sampled frames cut to the face region, and the mask there:
    ``(N, 3, S, S)``, ``(N, 3, S, S)``, ``(N, 1, S, S)`` tensors, made once per job for Mask-SSIM,
    perceptual and LPIPS (each scored, and failing, on its own)."""
    if _WORKER["pairs"] is None:
        n = _same_length(job["path"], job["original_path"])
        indices = _sampled(job["path"], config)
        if _reader(job["mask_path"]).num_frames < n:
            raise ValueError(f"the mask {job['mask_path']} is shorter than its fake ({n} frames)")
        masks = _read(job["mask_path"], indices)[..., 0]
        box = _mask_square(masks > 127)
        if box is None:
            raise ValueError(f"the mask {job['mask_path']} is empty in every sampled frame")
        matrix = box_matrix(box[None], config.size, 1.3)[0]
        crops = [warp(_read(job[key], indices), matrix, config.size) for key in ("path", "original_path")]
        crop_masks = warp(masks.astype(np.float32) / 255, matrix, config.size)
        _WORKER["pairs"] = (_to_tensor(crops[0]), _to_tensor(crops[1]), _to_tensor(crop_masks[..., None]))
    return _WORKER["pairs"]


def _mask_ssim(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    """Mean Mask-SSIM of a fake against its original over the sampled frames with a non-empty mask."""
    from dftoolkit.quality.ssim import mask_ssim

    values = mask_ssim(*_face_pairs(job, config), protocol=config.protocol).numpy()
    return {"mask_ssim": float(np.nanmean(values)) if np.isfinite(values).any() else None}


def _distance(metric: str) -> Callable[[dict[str, Any], QualityConfig], dict[str, Any]]:
    """The scorer of ``perceptual`` or ``lpips``: the mean distance of a fake to its original."""

    def score(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
        fake, real, _ = _face_pairs(job, config)
        return {metric: float(_model(metric)(fake, real).mean())}

    return score


def _ewarp(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    from dftoolkit.quality.ewarp import video_ewarp

    size, frames = (config.size, config.size), config.temporal_frames
    options = {}
    if config.flow == "raft":  # the file resolved in the parent; its variant from its name
        path = _WORKER["resolved"]["ewarp"]
        options = {
            "weights": path,
            "variant": "large" if path == config.weights_of("raft_large") else "small",
        }
    ewarp = video_ewarp(
        job["path"], job.get("original_path"), config.flow, size, frames, flow_options=options
    )
    return {"ewarp": ewarp}


def _features(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    """Mean ImageNet feature of the largest face in up to ``_TSNE_FRAMES`` sampled frames.

    The frames are evenly spread over the sampled frames with a face (each decoded once, shared
    with the other scorers); an error when none has one. Returns ``features``, the ``(D,)`` mean,
    and ``feature_frames``, the frame indices it averages.
    """
    from dftoolkit.quality.backbones import image_features

    indices = _sampled(job["path"], config)
    frames = _read(job["path"], indices)
    boxes = {}
    for i, frame in enumerate(frames):
        faces = _model("cascade").detect(frame)
        if len(faces):
            boxes[i] = faces.boxes[int(np.argmax(np.prod(faces.boxes[:, 2:] - faces.boxes[:, :2], axis=1)))]
    if not boxes:
        raise ValueError(f"no face in any of the {len(indices)} sampled frames")
    chosen = np.array(list(boxes))[sample_indices(len(boxes), _TSNE_FRAMES)]
    crops = warp(frames[chosen], box_matrix(np.stack([boxes[i] for i in chosen]), 224, 1.3), 224)
    features = image_features(_to_tensor(crops), _model("features")).mean(dim=0)
    return {"features": features.tolist(), "feature_frames": indices[chosen].tolist()}


def _identity(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    """The video's face embeddings (combined with its source's and target's in the main process)."""
    from dftoolkit.quality.identity import face_embeddings

    frames = _read(job["path"], _sampled(job["path"], config))
    embeddings = face_embeddings(frames, _model("cascade"), _model("embedder"))
    if not len(embeddings):
        raise ValueError(f"no face in any of {config.frames} sampled frames")
    return {"embeddings": embeddings.round(5).tolist()}


def _expression(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    from dftoolkit.quality.expression import expression_fidelity, frame_landmarks, sampled_pairs

    n = _same_length(job["path"], job["original_path"])
    fake_frames, source_frames = sampled_pairs(n, _reader(job["source_path"]).num_frames, config.frames)
    cascade = _model("cascade")
    fake, target = (
        frame_landmarks(_read(job[key], fake_frames), cascade) for key in ("path", "original_path")
    )
    source = frame_landmarks(_read(job["source_path"], source_frames), cascade)
    return expression_fidelity(fake, source, target)


def _jitter(job: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    from dftoolkit.quality.temporal import video_landmark_jitter

    return {"jitter": video_landmark_jitter(job["path"], _model("cascade"), frames=config.temporal_frames)}


_PAIRS = ("original_path", "mask_path")
for _name, _metric, _description in (
    ("mask-ssim", Metric(("mask_ssim",), _PAIRS, _mask_ssim), "SSIM of fake and original inside the mask"),
    (
        "perceptual",
        Metric(("perceptual",), _PAIRS, _distance("perceptual")),
        "ImageNet-feature MSE, fake to original",
    ),
    ("lpips", Metric(("lpips",), _PAIRS, _distance("lpips")), "LPIPS v0.1, fake to original"),
    ("ewarp", Metric(("ewarp",), (), _ewarp), "warping error of consecutive frames (lower = smoother)"),
    (
        "tsne",
        Metric((), (), _features),
        f"mean ImageNet face feature of up to {_TSNE_FRAMES} frames per video, t-SNE and spreads",
    ),
    (
        "identity",
        Metric(("identity_to_source", "identity_to_target"), (), _identity),
        "swap identity cosines",
    ),
    (
        "expression",
        Metric(
            ("expression_to_source", "expression_to_target"),
            ("original_path", "source_path", "reenact"),
            _expression,
        ),
        "reenactment landmark-motion errors",
    ),
    ("jitter", Metric(("jitter",), (), _jitter), "landmark jitter of the main face"),
):
    QUALITY_METRICS.register(_name, _description)(_metric)
PER_VIDEO = tuple(
    column for name in METRICS if name in QUALITY_METRICS for column in QUALITY_METRICS.get(name).columns
)


def _score_video(job: dict[str, Any], cache: str) -> dict[str, Any]:
    """Worker: every requested per-video score of one video (a failure recorded per metric, the
    others still scored), cached atomically with the fingerprint of the files it read."""
    config: QualityConfig = _WORKER["config"]
    start = time.perf_counter()
    result: dict[str, Any] = {"key": job["key"], "errors": {}}
    # for this job only: path -> reader, path -> {index: frame}, the face pairs (:func:`_face_pairs`)
    _WORKER["readers"], _WORKER["frames"], _WORKER["pairs"] = {}, {}, None
    for metric in job["metrics"]:
        try:
            result.update(QUALITY_METRICS.get(metric).scorer(job, config))
        except Exception as err:  # recorded with the video and metric, never dropped silently
            result["errors"][metric] = traceback.format_exception_only(err)[-1].strip()
    result["seconds"] = round(time.perf_counter() - start, 3)
    result["inputs"], result["metrics"] = job["inputs"], job["metrics"]
    atomic_write_text(cache, json.dumps(result, default=json_value))
    return result


# -- the report ----------------------------------------------------------------------------------


def _jobs(
    manifest: Manifest, config: QualityConfig, unavailable: dict[str, str]
) -> dict[tuple, dict[str, Any]]:
    """Per video: its path, the paths of its original / mask / source, and the scorers that apply."""
    reals = {r.key: r for r in manifest if r.label == 0}
    by_identity: dict[tuple[str, str], VideoRecord] = {}
    for record in sorted(reals.values(), key=lambda r: r.key):
        by_identity.setdefault((record.dataset, record.target_id or record.video_id), record)
    active = [m for m in config.metrics if m not in unavailable and m in QUALITY_METRICS]
    jobs = {}
    for record in manifest:
        job: dict[str, Any] = {"key": list(record.key), "path": str(manifest.path_of(record))}
        if record.label == 1:
            original = reals.get((record.dataset, record.original_id)) if record.original_id else None
            source = by_identity.get((record.dataset, record.source_id)) if record.source_id else None
            mask = manifest.mask_path_of(record)
            if original is not None:
                job["original_path"], job["original_key"] = str(manifest.path_of(original)), original.key
            if source is not None:
                job["source_path"], job["source_key"] = str(manifest.path_of(source)), source.key
            if mask is not None:
                job["mask_path"] = str(mask)
            if method_kind(record.method) == "reenact":
                job["reenact"] = True
        job["metrics"] = [m for m in active if all(job.get(need) for need in QUALITY_METRICS.get(m).needs)]
        job["inputs"] = _fingerprint(job)
        jobs[record.key] = job
    # identity embeddings only of the swaps and the reals they were made from
    embedded = {
        key for swap in _swaps(jobs) for key in (swap, jobs[swap]["source_key"], jobs[swap]["original_key"])
    }
    for key, job in jobs.items():
        if key not in embedded and "identity" in job["metrics"]:
            job["metrics"].remove("identity")
    return jobs


def _swaps(jobs: dict[tuple, dict[str, Any]]) -> list[tuple]:
    """Keys of the fakes that are not reenactments and have both a source and an original."""
    return [k for k, j in jobs.items() if not j.get("reenact") and "source_key" in j and "original_key" in j]


_FILES = ("path", "original_path", "mask_path", "source_path")  # the job fields naming files it reads


def _fingerprint(job: dict[str, Any]) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of each file a job reads: a cached score is reused only while they hold."""
    prints = []
    for key in _FILES:
        if job.get(key):
            try:
                stat = os.stat(job[key])
                prints.append([key, stat.st_size, stat.st_mtime_ns])
            except OSError:
                prints.append([key, None, None])
    return prints


def _duplicates(jobs: dict[tuple, dict[str, Any]]) -> dict[tuple, tuple[tuple, str]]:
    """The jobs that read the same files as an earlier job: only the first (the first source given)
    is scored, and it takes on their metrics.

    Returns ``{duplicate key: (kept key, why)}``. Files are the same when they are one file (a hard
    link, e.g. a generated corpus's ``originals/``, or the same path) or identical copies (see
    :func:`~dftoolkit.fileio.file_identities`); a re-encoded copy is another video and is scored on its own.
    """
    ids = file_identities({job[name] for job in jobs.values() for name in _FILES if job.get(name)})
    kept: dict[tuple, tuple] = {}
    duplicates = {}
    for key, job in jobs.items():
        files = tuple(ids[job[name]] if job.get(name) else None for name in _FILES)
        first = kept.setdefault((files, bool(job.get("reenact"))), key)
        if first == key:
            continue
        target = jobs[first]
        target["metrics"] = [m for m in METRICS if m in target["metrics"] or m in job["metrics"]]
        if ids[job["path"]][0] == "path" or os.path.samefile(job["path"], target["path"]):
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
    workers: int | None = None,
) -> QualityReport:
    """Score the datasets of ``sources`` side by side; resumable (cached per video). One run at a
    time per ``out_dir`` (:func:`~dftoolkit.locks.output_lock`).

    Args:
        sources: manifests, manifest files, toolkit corpus folders or FaceStore folders; each
            dataset in them becomes a row per class.
        out_dir: where the report and its cache go.
        config: what to compute (:class:`QualityConfig`).
        workers: processes (default: one per core).

    Example:
        >>> report = quality_report(["demo-out/srdf"], "demo-out/quality")  # doctest: +SKIP
        >>> report.datasets[["dataset", "kind", "mask_ssim_mean", "ewarp_mean"]]  # doctest: +SKIP
    """
    config = config or QualityConfig()
    manifest = load_sources(sources)
    if not len(manifest):
        raise ValueError("the sources hold no videos")
    out = Path(out_dir)
    resolved, unavailable = _resolve(config)
    cache_dir = out / "cache" / _cache_key(config, resolved)
    jobs = _jobs(manifest, config, unavailable)
    duplicates = _duplicates(jobs)
    todo, results, hits = [], {}, 0
    for key, job in jobs.items():
        if key in duplicates:
            continue
        cache = cache_dir / key[0] / f"{key[1]}.json"
        cached = _read_cache(cache)
        if (
            cached is not None
            and cached.get("inputs") == job["inputs"]
            and set(job["metrics"]) <= set(cached.get("metrics", ()))
        ):
            results[key] = cached
            hits += 1
        elif job["metrics"]:
            todo.append((job, str(cache)))
    (out / "runs").mkdir(parents=True, exist_ok=True)
    outcomes = run_phases(
        _score_video,
        [todo],
        workers=min(workers or os.cpu_count() or 1, max(1, len(todo))),
        initializer=_init_worker,
        initargs=(config, resolved),
        log_path=out / "runs" / "workers.log",
    )
    for outcome in progress(outcomes, "scoring videos", total=len(todo)):
        results[tuple(outcome["key"])] = outcome
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
            results.get(k, {}).get("embeddings")
            for k in (key, jobs[key]["source_key"], jobs[key]["original_key"])
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
    title += f"\none point per video: its mean feature over up to {_TSNE_FRAMES} face frames"
    plot_spread(embedding, labels, groups, out / "tsne.png", title, unit="videos")
    report.files["tsne"] = out / "tsne.png"
    return feature_spread(features, labels, groups, embedding=embedding).to_dict()
