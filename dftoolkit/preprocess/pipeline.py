"""Per-video face preprocessing and the engines that run it over a Manifest.

For each video: sample frames (default 32, evenly spaced) without decoding the rest; find faces
(:class:`~dftoolkit.faces.cascade.DetectionCascade`); link them into tracks and keep the main face
(the one overlapping the corpus's manipulation mask when there is one); smooth its landmarks;
cut every requested crop kind with one affine warp per frame, with the matching mask (the
corpus's mask video warped the same way, else the landmark hull). Every sampled frame gets a
status and, when not ``ok``, a reason. A fake whose original was processed in the same store
reuses the original's face track, so real and fake crops align frame by frame.

Engines: those of the stage runner (:func:`~dftoolkit.workers.run_stage`): ``local`` (a process pool,
one face model per worker, the default) and ``ray``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dftoolkit.config import config_to_dict, normalise, setting, write_config
from dftoolkit.faces.base import FACE_BACKENDS, Faces
from dftoolkit.faces.geometry import CROP_KINDS, DEFAULT_SIZES, MOUTH_FRAME, crop_matrix, hull_mask, warp
from dftoolkit.faces.tracking import TRACK_POLICIES, link_tracks, main_track, smooth_landmarks
from dftoolkit.locks import locks_output
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess.store import FaceStore, StoredTrack, VideoFaces
from dftoolkit.progress import progress
from dftoolkit.records import VideoRecord
from dftoolkit.video import SAMPLING_POLICIES, VideoDecodeError, VideoReader, sample_indices
from dftoolkit.video.reader import CORRUPT_PACKET
from dftoolkit.workers import Outcome, Stage, check_engine, run_stage, runs_dir, write_run

__all__ = [
    "PreprocessConfig",
    "PreprocessJob",
    "PreprocessStage",
    "RunReport",
    "preprocess",
    "process_video",
]

GPU_BACKENDS = frozenset({"fan"})  # face backends that run on a GPU when there is one
IMAGE_FORMATS = ("png", "jpg", "jpeg")  # what FaceStore.commit encodes


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of a preprocessing run; stored in the FaceStore so a resumed run must match them.

    Each field's help is in its metadata (:func:`dftoolkit.config.describe_config`). Raises
    ``ValueError`` (naming every bad setting) when constructed with settings no video could be
    processed with.
    """

    crops: tuple[str, ...] = setting(("face",), "Crop kinds to cut.", choices=CROP_KINDS)
    sizes: tuple[tuple[str, int], ...] = setting(
        (), "Side in pixels per crop kind, KIND=SIZE; kinds not listed get their default."
    )
    frames: int = setting(32, "Frames sampled per video (policy all: every frame).")
    policy: str = setting("even", "How the frames are sampled.", choices=SAMPLING_POLICIES)
    backend: str = setting("mediapipe", "Face backend.", choices=FACE_BACKENDS)
    backend_options: tuple[tuple[str, Any], ...] = setting((), "Options of the face backend, KEY=VALUE.")
    min_score: float = setting(0.5, "Detections scoring below are kept out of the crops (status low_score).")
    scale: float = setting(1.3, "Enlargement of the square face crop around the detected box.")
    smooth: int = setting(5, "Landmark smoothing window in sampled frames (1: none).")
    track_policy: str = setting(
        "persistent", "Which face to keep when the video has no mask.", choices=TRACK_POLICIES
    )
    reuse_original_track: bool = setting(
        True, "Fakes reuse the face track of their original when it is in the store."
    )
    image_format: str = setting("png", "Image format of the crops (png: lossless).", choices=IMAGE_FORMATS)

    def __post_init__(self) -> None:
        """Refuse settings every video would fail with, before a run writes anything."""
        normalise(self)
        problems = [
            *(
                f"unknown crop kind {k!r} (kinds: {', '.join(CROP_KINDS)})"
                for k in self.crops
                if k not in CROP_KINDS
            ),
            *(f"size of unknown crop kind {k!r}" for k, _ in self.sizes if k not in CROP_KINDS),
            *(f"{k} size must be >= 1, got {n}" for k, n in self.sizes if n < 1),
            *(
                f"mouth size must be <= {MOUTH_FRAME}, got {n}"
                for k, n in self.sizes
                if k == "mouth" and n > MOUTH_FRAME
            ),
        ]
        checks = [
            (bool(self.crops), "crops must name at least one crop kind"),
            (self.frames >= 1, f"frames must be >= 1, got {self.frames}"),
            (
                self.policy in SAMPLING_POLICIES,
                f"policy must be one of {SAMPLING_POLICIES}, got {self.policy!r}",
            ),
            (
                self.backend in FACE_BACKENDS,
                f"backend must be one of {FACE_BACKENDS.names()}, got {self.backend!r}",
            ),
            (self.scale > 0, f"scale must be > 0, got {self.scale}"),
            (self.smooth >= 1, f"smooth must be >= 1, got {self.smooth}"),
            (
                self.track_policy in TRACK_POLICIES,
                f"track_policy must be one of {TRACK_POLICIES}, got {self.track_policy!r}",
            ),
            (
                self.image_format in IMAGE_FORMATS,
                f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}",
            ),
        ]
        problems += [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"bad preprocessing settings: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        """The settings in plain JSON types, as the FaceStore stores them (``store.json``)."""
        return config_to_dict(self)

    def size_of(self, kind: str) -> int | None:
        return dict(self.sizes).get(kind)


@dataclass
class RunReport:
    """What a run did: videos processed / skipped (already in the store) / failed, frame statuses.

    ``store`` opens the FaceStore the run wrote.
    """

    root: Path
    processed: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def store(self) -> FaceStore:
        return FaceStore(self.root)


# -- one video -----------------------------------------------------------------------------------


def _mask_boxes(
    mask_path: Path | None, indices: np.ndarray
) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
    """Bounding boxes ``(N, 4)`` (NaN rows where empty) and the mask frames (0/255, pixels above 127)
    of a corpus mask video."""
    if mask_path is None or not mask_path.is_file():
        return None, [None] * len(indices)
    partial = VideoReader(mask_path).read_partial(indices)
    by_index = dict(zip(partial.indices.tolist(), partial.frames, strict=True))
    boxes = np.full((len(indices), 4), np.nan, np.float32)
    masks: list[np.ndarray | None] = []
    for n, index in enumerate(indices.tolist()):
        frame = by_index.get(index)
        if frame is None:
            masks.append(None)
            continue
        mask = (frame.max(axis=2) > 127).astype(np.uint8) * 255
        masks.append(mask)
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[n] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes, masks


def _track_from_detections(faces_per_frame, config: PreprocessConfig, mask_boxes):
    """Main-face boxes, scores and landmarks per frame (NaN where the main face is absent)."""
    n = len(faces_per_frame)
    boxes = np.full((n, 4), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    face_index = np.full(n, -1, np.int64)
    tracks = link_tracks([faces.boxes for faces in faces_per_frame])
    track = main_track(tracks, n, policy=config.track_policy, mask_boxes=mask_boxes)
    if track is not None:
        for frame, k in zip(track.frames, track.face_indices, strict=True):
            faces = faces_per_frame[frame]
            boxes[frame], scores[frame], face_index[frame] = faces.boxes[k], faces.scores[k], k
            landmarks[frame] = faces.landmarks[k]
    return boxes, scores, landmarks, face_index


def _original_track(store: FaceStore, record: VideoRecord, indices: np.ndarray) -> StoredTrack | None:
    """The original's stored track when it sampled the same frame indices, else None."""
    if record.original_id is None or not store.has(record.dataset, record.original_id):
        return None
    track = store.track(record.dataset, record.original_id)
    return track if np.array_equal(track.frame_indices, indices) else None


def process_video(
    record: VideoRecord,
    path: Path,
    mask_path: Path | None,
    config: PreprocessConfig,
    cascade,
    store: FaceStore | None = None,
) -> VideoFaces:
    """Everything for one video, in memory (the caller commits it to a store)."""
    try:
        reader = VideoReader(path)
    except (VideoDecodeError, FileNotFoundError) as err:
        return _failed_video(record, config, "decode_error", str(err))
    indices = sample_indices(reader.num_frames, config.frames, config.policy)
    if len(indices) == 0:
        return _failed_video(record, config, "decode_error", f"{path}: the video has no frames")
    partial = reader.read_partial(indices)
    decoded = dict(zip(partial.indices.tolist(), partial.frames, strict=True))
    frames = [decoded.get(i) for i in indices.tolist()]
    mask_boxes, mask_frames = _mask_boxes(mask_path, indices)
    if record.label == 0:
        manipulated: list[bool | None] = [False] * len(indices)
    else:  # a fake's frame is manipulated where its mask is not empty; unknown without a mask
        manipulated = [None if m is None else bool(m.any()) for m in mask_frames]

    reused = (
        _original_track(store, record, indices)
        if (store is not None and config.reuse_original_track)
        else None
    )
    if reused is not None:
        boxes, scores, landmarks = reused.boxes, reused.scores, reused.landmarks
        face_index = reused.face_index
    else:
        present = [n for n, f in enumerate(frames) if f is not None]
        faces_per_frame = [Faces.empty() for _ in frames]
        for n, faces in zip(present, cascade.detect_video([frames[n] for n in present]), strict=True):
            faces_per_frame[n] = faces
        boxes, scores, landmarks, face_index = _track_from_detections(faces_per_frame, config, mask_boxes)
    landmarks = smooth_landmarks(landmarks, config.smooth)

    status, reason = [], []
    for n, index in enumerate(indices.tolist()):
        if frames[n] is None:
            failed = partial.failed.get(index, "not decoded")
            status.append("corrupt_packet" if failed == CORRUPT_PACKET else "decode_error")
            reason.append(failed)
        elif np.isnan(boxes[n, 0]):
            status.append("no_face")
            reason.append(
                f"no face found by {config.backend}"
                + (" (track of the original)" if reused is not None else "")
            )
        elif scores[n] < config.min_score:
            status.append("low_score")
            reason.append(f"face score {scores[n]:.2f} < min_score {config.min_score}")
        else:
            status.append("ok")
            reason.append(None)
    ok = np.array([s == "ok" for s in status])

    crops, masks, matrices = {}, {}, {}
    for kind in config.crops:
        size = config.size_of(kind)
        mats = np.full((len(indices), 2, 3), np.nan, np.float32)
        kind_crops: list[np.ndarray | None] = [None] * len(indices)
        kind_masks: list[np.ndarray | None] = [None] * len(indices)
        if ok.any():
            rows = np.flatnonzero(ok)
            mats[rows] = crop_matrix(kind, landmarks[rows], boxes[rows], size, config.scale)
            side = _side(kind, size)
            images = warp([frames[r] for r in rows], mats[rows], side)
            region = [
                mask_frames[r]
                if mask_frames[r] is not None
                else hull_mask(landmarks[r : r + 1], *frames[r].shape[:2])[0]
                for r in rows
            ]
            warped_masks = warp(region, mats[rows], side, interpolation=cv2.INTER_NEAREST)
            for j, r in enumerate(rows):
                image = images[j]
                kind_crops[r] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if kind == "mouth" else image
                kind_masks[r] = warped_masks[j]
        crops[kind], masks[kind], matrices[kind] = kind_crops, kind_masks, mats
    given = "generated" if record.coverage is not None else "corpus"  # the generator records coverage
    mask_source = [
        (given if mask_frames[r] is not None else "hull") if ok[r] and config.crops else None
        for r in range(len(indices))
    ]
    return VideoFaces(
        dataset=record.dataset,
        video_id=record.video_id,
        frame_indices=indices.astype(np.int64),
        status=status,
        reason=reason,
        face_index=np.where(ok, face_index, -1).astype(np.int64),
        scores=scores,
        boxes=np.where(ok[:, None], boxes, np.nan).astype(np.float32),
        landmarks=np.where(ok[:, None, None], landmarks, np.nan).astype(np.float32),
        crops=crops,
        masks=masks,
        matrices=matrices,
        manipulated=manipulated,
        mask_source=mask_source,
    )


def _side(kind: str, size: int | None) -> int:
    return size or DEFAULT_SIZES[kind]


def _failed_video(record: VideoRecord, config: PreprocessConfig, status: str, reason: str) -> VideoFaces:
    """A video that could not be read at all: one row (frame_index -1) saying why."""
    nothing = {kind: [None] for kind in config.crops}
    return VideoFaces(
        dataset=record.dataset,
        video_id=record.video_id,
        frame_indices=np.array([-1], np.int64),
        status=[status],
        reason=[reason],
        face_index=np.array([-1], np.int64),
        scores=np.full(1, np.nan, np.float32),
        boxes=np.full((1, 4), np.nan, np.float32),
        landmarks=np.full((1, 68, 2), np.nan, np.float32),
        crops=nothing,
        masks={kind: [None] for kind in config.crops},
        matrices={kind: np.full((1, 2, 3), np.nan, np.float32) for kind in config.crops},
        manipulated=[False if record.label == 0 else None],
    )


# -- the stage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessJob:
    """One video to preprocess: its record, its file and its corpus mask video (or None)."""

    record: VideoRecord
    path: str
    mask_path: str | None


class PreprocessStage(Stage[PreprocessJob, Counter]):
    """Preprocess and commit one video to the store at ``store_root``; the result counts its frame
    statuses. The face models load once per worker."""

    name = "preprocessing"

    def __init__(self, config: PreprocessConfig, store_root: str) -> None:
        self.config, self.store_root = config, store_root

    def setup(self) -> None:
        from dftoolkit.faces import DetectionCascade, get_backend

        cv2.setNumThreads(1)
        self.store = FaceStore(self.store_root)
        backend = get_backend(self.config.backend, **dict(self.config.backend_options))
        self.cascade = DetectionCascade(backend)

    def run(self, job: PreprocessJob) -> Counter:
        mask = Path(job.mask_path) if job.mask_path else None
        result = process_video(job.record, Path(job.path), mask, self.config, self.cascade, self.store)
        self.store.commit(result, image_format=self.config.image_format)
        return Counter(result.status)

    def gpus(self) -> float:
        return 1.0 if self.config.backend in GPU_BACKENDS else 0.0

    def __getstate__(self) -> dict[str, Any]:  # workers get the settings, never loaded models
        return {"config": self.config, "store_root": self.store_root}


def _phases(manifest: Manifest, store: FaceStore) -> tuple[list[PreprocessJob], list[PreprocessJob], int]:
    """Videos to do: those whose original is not being processed first, then the fakes that can
    reuse their original's track. Also how many are already done."""
    todo = [r for r in manifest if not store.has(r.dataset, r.video_id)]
    keys = {r.key for r in manifest}
    second = [r for r in todo if r.original_id is not None and (r.dataset, r.original_id) in keys]
    first = [r for r in todo if r not in second]

    def job(record: VideoRecord) -> PreprocessJob:
        mask = manifest.mask_path_of(record)
        return PreprocessJob(record, str(manifest.path_of(record)), str(mask) if mask else None)

    return [job(r) for r in first], [job(r) for r in second], len(manifest) - len(todo)


@locks_output("out", "preprocess")
def preprocess(
    manifest: Manifest,
    out: str | os.PathLike[str],
    config: PreprocessConfig | None = None,
    *,
    workers: int | None = None,
    engine: str = "local",
) -> RunReport:
    """Turn ``manifest``'s videos into a :class:`FaceStore` at ``out``; resumable.

    One run at a time per store: it holds ``out``'s lock (:func:`~dftoolkit.locks.output_lock`;
    :class:`~dftoolkit.locks.FolderLockedError` when another run has it). Videos already committed
    are skipped, partial ones (a killed run) redone. ``workers`` processes (default: one per core)
    each hold one face model; ``engine`` is a :data:`~dftoolkit.workers.ENGINES` name
    (:func:`~dftoolkit.workers.run_stage`). A video that fails unexpectedly is reported in
    ``out/runs/<time>.json`` and left for the next run; corrupt and faceless videos are committed
    with their statuses.
    """
    config = config or PreprocessConfig()
    check_engine(engine)
    store = FaceStore.create(out, config.to_dict())
    write_config(store.root, config)
    store.clean_partial()
    store.set_manifest(manifest)
    first, second, skipped = _phases(manifest, store)
    report = RunReport(Path(store.root), skipped=skipped)
    start = time.perf_counter()
    outcomes = run_stage(
        PreprocessStage(config, str(store.root)),
        [first, second],
        workers=workers,
        engine=engine,
        log_path=runs_dir(store.root) / "workers.log",
    )
    for outcome in progress(outcomes, "preprocessing", total=len(first) + len(second), count=_frames_in):
        if outcome.error is not None:
            report.failed["/".join(outcome.job.record.key)] = outcome.error
            continue
        report.processed += 1
        report.statuses.update(outcome.result)
        report.frames += sum(outcome.result.values())
    report.seconds = time.perf_counter() - start
    write_run(
        store.root,
        {
            "processed": report.processed,
            "skipped_already_done": report.skipped,
            "failed": report.failed,
            "frame_statuses": dict(report.statuses),
            "frames": report.frames,
            "seconds": round(report.seconds, 3),
            "frames_per_second": round(report.frames_per_second, 2),
            "engine": engine,
        },
    )
    return report


def _frames_in(outcome: Outcome[PreprocessJob, Counter]) -> int:
    """Sampled frames of a finished video (0 for a failed one)."""
    return sum(outcome.result.values()) if outcome.result is not None else 0
