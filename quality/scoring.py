"""Per-video scoring for the quality report: the metric registry, the typed job of one video and
the stage that scores it in a worker (:func:`~dftoolkit.workers.run_stage`).

A metric (:class:`Metric`) names its per-video columns, the files a video needs for it (an original,
a mask, a source) and its scorer, ``scorer(job, stage) -> {column: value}``. The stage loads each
network once per worker, and within one job opens each file once and decodes each frame once, shared
by every metric. Each metric fails on its own: the failure is recorded with the video and metric.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from dftoolkit.faces.geometry import box_matrix, warp
from dftoolkit.faces.tracking import tracked_face
from dftoolkit.fileio import atomic_write_text
from dftoolkit.quality.report_files import json_value
from dftoolkit.registry import Registry
from dftoolkit.video import VideoReader, sample_indices
from dftoolkit.workers import Stage

if TYPE_CHECKING:
    from torch import Tensor

    from dftoolkit.quality.report import QualityConfig

__all__ = [
    "BETTER",
    "FILES",
    "METRICS",
    "PER_VIDEO",
    "QUALITY_METRICS",
    "TSNE_FRAMES",
    "UNITS",
    "Metric",
    "ScoreJob",
    "ScoreStage",
    "describe_quality_metrics",
    "get_quality_metric",
    "list_quality_metrics",
]

METRICS = ("mask-ssim", "perceptual", "lpips", "ewarp", "tsne", "identity", "expression", "jitter", "audit")
"""Every metric :func:`~dftoolkit.quality.report.quality_report` computes, in report order
(:data:`QUALITY_METRICS` describes each per-video one; ``audit`` is the shortcut audit of
:mod:`dftoolkit.quality.audit`, metadata features)."""
TSNE_FRAMES = 8  # face frames averaged per video for the t-SNE; part of the cache key


@dataclass(frozen=True)
class Metric:
    """How a report metric is computed per video.

    Attributes:
        columns: its per-video columns (none for ``tsne``, whose output is the spread).
        needs: job fields a video must have for it (e.g. an original and a mask).
        scorer: ``scorer(job, stage) -> {column: value}`` in a worker (a :class:`ScoreJob` and the
            :class:`ScoreStage` that loads the models and reads the frames).
    """

    columns: tuple[str, ...]
    needs: tuple[str, ...]
    scorer: Callable[[ScoreJob, ScoreStage], dict[str, Any]]


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


@dataclass
class ScoreJob:
    """One video to score: its file, the files of its original / mask / source (None when it has
    none), the metrics that apply and where its result is cached. Picklable.

    ``tracked`` holds, per file field (``path``, ``original_path``, ``source_path``) whose video a
    FaceStore holds, the face that store tracked: ``(M,)`` frame indices and ``(M, 4)`` boxes of its
    ``ok`` frames. The face metrics score that face rather than choosing their own.
    """

    key: tuple[str, str]
    path: str
    metrics: list[str] = field(default_factory=list)
    original_path: str | None = None
    original_key: tuple[str, str] | None = None
    source_path: str | None = None
    source_key: tuple[str, str] | None = None
    mask_path: str | None = None
    reenact: bool = False
    tracked: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    inputs: list[list[Any]] = field(default_factory=list)
    cache: str = ""

    def files(self) -> dict[str, str]:
        """``{field: path}`` of every file the job reads."""
        return {name: getattr(self, name) for name in FILES if getattr(self, name)}


FILES = ("path", "original_path", "mask_path", "source_path")  # the ScoreJob fields naming files


def _perceptual(stage: ScoreStage):
    from dftoolkit.quality.perceptual import Perceptual

    return Perceptual(stage.resolved["perceptual"])


def _lpips(stage: ScoreStage):
    from dftoolkit.quality.perceptual import LPIPS

    return LPIPS(stage.config.lpips_net, weights=stage.resolved["lpips"].weights_path)


def _backbone(stage: ScoreStage):
    from dftoolkit.quality.backbones import load_backbone

    return load_backbone(stage.resolved["tsne"])


def _embedder(stage: ScoreStage):
    from dftoolkit.quality.identity import FaceEmbedder

    return FaceEmbedder(stage.resolved["identity"])


def _cascade(stage: ScoreStage):
    from dftoolkit.faces import DetectionCascade, get_backend

    return DetectionCascade(get_backend("mediapipe"))


_MODELS: dict[str, Callable[[ScoreStage], Any]] = {
    "perceptual": _perceptual,  # the perceptual loss's ImageNet trunk
    "lpips": _lpips,
    "features": _backbone,  # the t-SNE features' ImageNet trunk
    "embedder": _embedder,  # dlib's face-recognition network
    "cascade": _cascade,  # the face detector
}
"""The networks a scorer may ask :meth:`ScoreStage.model` for, each loaded from the stage's settings."""


class ScoreStage(Stage[ScoreJob, dict[str, Any]]):
    """Every requested per-video score of one video (a failure recorded per metric, the others
    still scored), cached atomically with the fingerprint of the files it read.

    Networks load once per worker, when a metric first needs them (:meth:`model`); within a job,
    each file is opened once and each frame decoded once, shared by the metrics (:meth:`read`).
    """

    name = "scoring videos"

    def __init__(self, config: QualityConfig, resolved: dict[str, Any]) -> None:
        self.config, self.resolved = config, resolved
        self.models: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # workers get the settings, never loaded models
        return {"config": self.config, "resolved": self.resolved, "models": {}}

    def setup(self) -> None:
        import torch

        cv2.setNumThreads(1)
        torch.set_num_threads(1)

    def run(self, job: ScoreJob) -> dict[str, Any]:
        start = time.perf_counter()
        result: dict[str, Any] = {"key": list(job.key), "errors": {}}
        # for this job only: path -> reader, path -> {index: frame}, the face pairs (:meth:`face_pairs`)
        self.readers: dict[str, VideoReader] = {}
        self.frames: dict[str, dict[int, np.ndarray]] = {}
        self.pairs: tuple[Tensor, Tensor, Tensor] | None = None
        for metric in job.metrics:
            try:
                result.update(QUALITY_METRICS.get(metric).scorer(job, self))
            except Exception as err:  # recorded with the video and metric, never dropped silently
                result["errors"][metric] = traceback.format_exception_only(err)[-1].strip()
        result["seconds"] = round(time.perf_counter() - start, 3)
        result["inputs"], result["metrics"] = job.inputs, job.metrics
        atomic_write_text(job.cache, json.dumps(result, default=json_value))
        return result

    def model(self, name: str):
        """A network loaded once per worker, by its name in :data:`_MODELS`."""
        if name not in self.models:
            self.models[name] = _MODELS[name](self)
        return self.models[name]

    def reader(self, path: str) -> VideoReader:
        """The job's reader of a video, opened (and its frames indexed) once per job."""
        if path not in self.readers:
            self.readers[path] = VideoReader(path)
        return self.readers[path]

    def read(self, path: str, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """``(N, H, W, 3)`` frames of a video, each decoded once per job: scorers share what an earlier
        one decoded (a long-GOP or high-bitrate video costs one pass, not one per metric)."""
        memo = self.frames.setdefault(path, {})
        wanted = [int(i) for i in np.asarray(indices).reshape(-1)]
        missing = sorted(set(wanted) - memo.keys())
        if missing:
            memo.update(self.reader(path).iter_frames(missing))
        return np.stack([memo[i] for i in wanted])

    def sampled(self, path: str) -> np.ndarray:
        """The ``frames`` evenly spaced frame indices of a video that every frame-sampling metric uses."""
        return sample_indices(self.reader(path).num_frames, self.config.frames)

    def reference(self, job: ScoreJob, file: str, indices: np.ndarray) -> np.ndarray | None:
        """``(N, 4)`` box of the FaceStore's tracked face near each frame of ``indices`` of the job's
        ``file`` (a field name): the box of the nearest tracked frame when it is at most the store's
        frame spacing away, else a NaN row; None when no store tracked that video."""
        if file not in job.tracked:
            return None
        frames, boxes = job.tracked[file]
        indices = np.asarray(indices, np.int64).reshape(-1)
        if not len(frames):
            return np.full((len(indices), 4), np.nan, np.float32)
        spacing = float(np.median(np.diff(frames))) if len(frames) > 1 else 0.0
        right = np.clip(np.searchsorted(frames, indices), 0, len(frames) - 1)
        left = np.clip(right - 1, 0, len(frames) - 1)
        nearest = np.where(np.abs(frames[left] - indices) <= np.abs(frames[right] - indices), left, right)
        found = boxes[nearest].astype(np.float32)
        found[np.abs(frames[nearest] - indices) > spacing] = np.nan
        return found

    def same_length(self, path: str, original: str) -> int:
        a, b = self.reader(path).num_frames, self.reader(original).num_frames
        if a != b:
            raise ValueError(
                f"{path} has {a} frames but its original {original} has {b}: frame pairs need equal lengths"
            )
        return a

    def face_pairs(self, job: ScoreJob) -> tuple[Tensor, Tensor, Tensor]:
        """The fake's and its original's sampled frames cut to the face region, and the mask there:
        ``(N, 3, S, S)``, ``(N, 3, S, S)``, ``(N, 1, S, S)`` tensors, made once per job for Mask-SSIM,
        perceptual and LPIPS (each scored, and failing, on its own)."""
        if self.pairs is None:
            size = self.config.size
            n = self.same_length(job.path, job.original_path)
            indices = self.sampled(job.path)
            if self.reader(job.mask_path).num_frames < n:
                raise ValueError(f"the mask {job.mask_path} is shorter than its fake ({n} frames)")
            masks = self.read(job.mask_path, indices)[..., 0]
            box = _mask_square(masks > 127)
            if box is None:
                raise ValueError(f"the mask {job.mask_path} is empty in every sampled frame")
            matrix = box_matrix(box[None], size, 1.3)[0]
            fake, real = (warp(self.read(p, indices), matrix, size) for p in (job.path, job.original_path))
            crop_masks = warp(masks.astype(np.float32) / 255, matrix, size)
            self.pairs = (_to_tensor(fake), _to_tensor(real), _to_tensor(crop_masks[..., None]))
        return self.pairs


def _to_tensor(frames: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def _mask_square(masks: np.ndarray) -> np.ndarray | None:
    """``(4,)`` box of the union of ``(N, H, W)`` masks, or None when all are empty."""
    ys, xs = np.nonzero(masks.max(axis=0))
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _mask_ssim(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    """Mean Mask-SSIM of a fake against its original over the sampled frames with a non-empty mask."""
    from dftoolkit.quality.ssim import mask_ssim

    values = mask_ssim(*stage.face_pairs(job), protocol=stage.config.protocol).numpy()
    return {"mask_ssim": float(np.nanmean(values)) if np.isfinite(values).any() else None}


def _distance(metric: str) -> Callable[[ScoreJob, ScoreStage], dict[str, Any]]:
    """The scorer of ``perceptual`` or ``lpips``: the mean distance of a fake to its original."""

    def score(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
        fake, real, _ = stage.face_pairs(job)
        return {metric: float(stage.model(metric)(fake, real).mean())}

    return score


def _ewarp(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    from dftoolkit.quality.ewarp import video_ewarp

    config = stage.config
    size, frames = (config.size, config.size), config.temporal_frames
    options = {}
    if config.flow == "raft":  # the file resolved in the parent; its variant from its name
        path = stage.resolved["ewarp"]
        options = {
            "weights": path,
            "variant": "large" if path == config.weights_of("raft_large") else "small",
        }
    ewarp = video_ewarp(job.path, job.original_path, config.flow, size, frames, flow_options=options)
    return {"ewarp": ewarp}


def _features(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    """Mean ImageNet feature of the face (the FaceStore's tracked one when a store holds the video,
    else the largest) in up to ``TSNE_FRAMES`` sampled frames.

    The frames are evenly spread over the sampled frames with a face (each decoded once, shared
    with the other scorers); an error when none has one. Returns ``features``, the ``(D,)`` mean,
    and ``feature_frames``, the frame indices it averages.
    """
    from dftoolkit.quality.backbones import image_features

    indices = stage.sampled(job.path)
    frames = stage.read(job.path, indices)
    references = stage.reference(job, "path", indices)
    boxes = {}
    for i, frame in enumerate(frames):
        faces = stage.model("cascade").detect(frame)
        face = tracked_face(faces, None if references is None else references[i])
        if face is not None:
            boxes[i] = faces.boxes[face]
    if not boxes:
        raise ValueError(f"no face in any of the {len(indices)} sampled frames")
    chosen = np.array(list(boxes))[sample_indices(len(boxes), TSNE_FRAMES)]
    crops = warp(frames[chosen], box_matrix(np.stack([boxes[i] for i in chosen]), 224, 1.3), 224)
    features = image_features(_to_tensor(crops), stage.model("features")).mean(dim=0)
    return {"features": features.tolist(), "feature_frames": indices[chosen].tolist()}


def _identity(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    """The video's face embeddings (combined with its source's and target's in the main process)."""
    from dftoolkit.quality.identity import face_embeddings

    indices = stage.sampled(job.path)
    boxes = stage.reference(job, "path", indices)
    frames = stage.read(job.path, indices)
    embeddings = face_embeddings(frames, stage.model("cascade"), stage.model("embedder"), boxes)
    if not len(embeddings):
        raise ValueError(f"no face in any of {stage.config.frames} sampled frames")
    return {"embeddings": embeddings.round(5).tolist()}


def _expression(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    from dftoolkit.quality.expression import expression_fidelity, frame_landmarks, sampled_pairs

    n = stage.same_length(job.path, job.original_path)
    sources = stage.reader(job.source_path).num_frames
    fake_frames, source_frames = sampled_pairs(n, sources, stage.config.frames)
    fake, target, source = (
        frame_landmarks(
            stage.read(getattr(job, file), indices),
            stage.model("cascade"),
            stage.reference(job, file, indices),
        )
        for file, indices in (
            ("path", fake_frames),
            ("original_path", fake_frames),
            ("source_path", source_frames),
        )
    )
    return expression_fidelity(fake, source, target)


def _jitter(job: ScoreJob, stage: ScoreStage) -> dict[str, Any]:
    from dftoolkit.quality.temporal import video_landmark_jitter

    frames = min(stage.config.temporal_frames, stage.reader(job.path).num_frames)
    boxes = stage.reference(job, "path", np.arange(frames))
    return {"jitter": video_landmark_jitter(job.path, stage.model("cascade"), frames=frames, boxes=boxes)}


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
        f"mean ImageNet face feature of up to {TSNE_FRAMES} frames per video, t-SNE and spreads",
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
UNITS = {
    "mask_ssim": "0-1",
    "perceptual": "feature distance",
    "lpips": "0-1",
    "ewarp": "MSE of [0, 1] RGB",
    "identity_to_source": "cosine",
    "identity_to_target": "cosine",
    "expression_to_source": "inter-ocular distances",
    "expression_to_target": "inter-ocular distances",
    "jitter": "inter-ocular distance / frame^2",
}
"""The unit of each per-video column."""
BETTER = {"mask_ssim": "higher", "perceptual": "lower", "lpips": "lower", "ewarp": "lower", "jitter": "lower"}
"""Which way a column is better for a dataset's realism (the M2TR paper's reading: a fake closer to its
original in the masked region, steadier in time). The identity and expression columns have no such
direction: a swap should be near its source's identity, a reenactment near its target's."""
