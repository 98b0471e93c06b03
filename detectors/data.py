"""Torch datasets of a FaceStore's crops for the detectors: clips (:class:`FaceClipDataset`) and
frames (:class:`FaceFrameDataset`), as :class:`~dftoolkit.detectors.base.ClipItem` dicts.

A dataset joins the store with a manifest on ``(dataset, video_id)`` (label, split, method) and
reads each frame's ``manipulated`` flag from the store's frame table. Only ``ok`` frames with a crop
are used. A video that cannot give an item (not in the store, too few usable frames, ...) is left
out with its reason in ``skipped``; it is never replaced by another item, so an epoch covers every
usable video once.

Crops follow the detector's :class:`~dftoolkit.detectors.base.InputSpec`:

- ``face``: the square of ``scale`` times the stored box (random in ``train_scale`` when training)
  at ``spec.size``. The stored crop is warped by ``box_matrix(box) @ inverse(stored matrix)``
  (area-averaged first where it shrinks), which is exact up to resampling while the wanted square
  lies inside the stored one (scale <= the store's ``scale``). A wider square is cut from the
  video's frames instead (decoded with :class:`~dftoolkit.video.VideoReader`, warped like
  preprocessing does), which is exact but slower: preprocess with ``scale`` >= the largest
  ``train_scale`` to keep training off the videos.
- ``mouth``: LipForensics' window of 88/96 of the stored side (random position in training, the
  centre at test), resized to ``spec.size`` when that differs.
- ``aligned``, ``ffhq``: the stored crop resized to ``spec.size`` (the same square at another size).

With ``spec.fixed_alignment`` every frame of a clip is cut with one alignment: for ``face`` the
square around the clip's median box, for ``aligned``/``ffhq`` the elementwise median of the clip's
stored alignments, applied to each stored crop as ``median @ inverse(its own)``. With
``spec.masks`` each item also carries the frames' manipulation masks cut the same way (from the
stored masks; all zeros for real videos) and a ``mask_weight`` saying whether they are ground truth
(the store's ``mask_source`` is ``corpus`` or ``generated`` on every frame of the clip).

Items are reproducible: their randomness comes from ``(seed, epoch, index)`` only, so any number of
DataLoader workers gives the same items. Call :meth:`set_epoch` before each training epoch (it
reaches persistent workers: the epoch lives in shared memory).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision import tv_tensors

from dftoolkit.detectors.base import ClipItem, InputSpec
from dftoolkit.faces.geometry import DEFAULT_SIZES, box_matrix, warp
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess.store import MOUTH_TEST_SIZE, FaceStore, read_image
from dftoolkit.video import VideoReader, sample_indices

if TYPE_CHECKING:
    from dftoolkit.preprocess import PreprocessConfig

__all__ = ["FaceClipDataset", "FaceFrameDataset", "default_augment", "face_dataset", "loader", "store_config"]

Augment = Callable[..., Any]
"""Called as ``augment(clip)`` or, with masks, ``augment(clip, mask)`` (a ``tv_tensors.Mask``) and
returning the same: ``clip`` ``(T, C, H, W)`` float in [0, 1], ``mask`` ``(T, 1, H, W)``; geometric
draws must move both alike. Its random draws use torch's global RNG, which the dataset seeds per
item."""
_TRUE_MASKS = ("corpus", "generated")  # mask sources that say what was manipulated

_FIT_TOLERANCE = 1e-3  # pixels a wanted square may pass the stored crop's edge (float error)


@dataclass(frozen=True)
class _Video:
    """One usable video: its record fields and its K usable (ok) frames, in frame order."""

    dataset: str
    video_id: str
    label: int
    method: str
    path: Path  # the video file, for face crops wider than the stored ones
    frames: np.ndarray  # (K,) int64 frame indices
    manipulated: np.ndarray  # (K,) float32: 1, 0 or NaN
    crops: list[str]  # K crop paths relative to the store root
    masks: list[str | None]  # K mask paths relative to the store root
    mask_source: np.ndarray  # (K,) object: the store's mask_source (None where unknown)
    boxes: np.ndarray  # (K, 4) float64 x0, y0, x1, y1 frame pixels
    matrices: np.ndarray  # (K, 2, 3) float64 frame -> stored crop


def default_augment(spec: InputSpec) -> Augment:
    """Tensor augmentation for training (torchvision v2, one draw per clip): a horizontal flip
    (p = 0.5, masks flipped alike), and for RGB a mild colour jitter (brightness, contrast,
    saturation 0.1)."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.RandomHorizontalFlip()]
    if spec.channels == 3:
        steps.append(v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1))
    return v2.Compose(steps)


def _affine3(m: np.ndarray) -> np.ndarray:
    """``(..., 2, 3)`` affines -> ``(..., 3, 3)`` homogeneous matrices."""
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (*m.shape[:-2], 1, 3))
    return np.concatenate([m, bottom], axis=-2)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(T, S, S[, C])`` uint8 -> ``(T, size, size[, C])``: area-averaged when shrinking, else bilinear."""
    if images.shape[1] == size:
        return images
    flag = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(image, (size, size), interpolation=flag) for image in images])


def _rewarp(images: np.ndarray, maps: np.ndarray, size: int) -> np.ndarray:
    """Warp ``(T, S, S[, C])`` crops by ``(T, 2, 3)`` similarities (crop -> output pixels) into
    ``size`` x ``size``; a map that shrinks is applied as an area resize plus the remaining warp."""
    shrink = float(np.sqrt(np.abs(np.linalg.det(maps[0, :, :2]))))  # uniform over the clip
    if shrink < 1:
        side = images.shape[1]
        small = max(1, round(side * shrink))
        r = small / side  # cv2.resize: x' = r (x + 0.5) - 0.5
        undo = np.array([[1 / r, 0, 0.5 / r - 0.5], [0, 1 / r, 0.5 / r - 0.5], [0, 0, 1]])
        images, maps = _resize(images, small), (_affine3(maps) @ undo)[:, :2]
    if images.shape[1] == size and np.allclose(maps, np.eye(2, 3), atol=1e-3):
        return images
    return warp(images, maps, size)


class _FaceData(Dataset):
    """What both datasets share: the join, the crops, the item (see the module docstring)."""

    def __init__(
        self,
        store: FaceStore,
        spec: InputSpec,
        *,
        split: str | None,
        train: bool,
        manifest: Manifest | None,
        seed: int,
        augment: Augment | None,
    ) -> None:
        self.store, self.spec, self.split, self.train = store, spec, split, train
        self.seed, self.augment = seed, augment
        self.skipped: dict[str, str] = {}
        self.videos: list[_Video] = []
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._stored_size = int(
            dict(store.config.get("sizes") or {}).get(spec.crop, DEFAULT_SIZES[spec.crop])
        )
        manifest = store.manifest() if manifest is None else manifest
        if manifest is None:
            raise ValueError(f"the store {store.root} keeps no manifest; pass manifest=")
        table = store.frames()
        column = f"crop_path_{spec.crop}"
        if column not in table:
            raise ValueError(f"the store {store.root} has no {spec.crop!r} crops")
        if "mask_source" not in table:  # a store written before the column: sources unknown
            table["mask_source"] = None
        widest = spec.train_scale[1] if train and spec.train_scale else spec.scale
        needs_video = spec.crop == "face" and widest > float(store.config.get("scale", np.inf)) + 1e-6
        groups = dict(iter(table.groupby(["dataset", "video_id"], sort=False)))
        records = [r for r in manifest if split is None or r.split == split]
        for key in sorted(set(groups) - {(r.dataset, r.video_id) for r in manifest}):
            self.skipped["/".join(key)] = "not in the manifest (no label)"
        for record in records:
            key = f"{record.dataset}/{record.video_id}"
            rows = groups.get((record.dataset, record.video_id))
            if rows is None:
                self.skipped[key] = "not in the store (no committed video)"
                continue
            usable = rows[(rows.status == "ok") & rows[column].notna()]
            path = manifest.path_of(record)
            if usable.empty:
                statuses = rows.status.value_counts().to_dict()
                reason = f"no usable frame ({len(rows)} sampled; statuses {statuses})"
            elif needs_video and not path.is_file():
                reason = (
                    f"face crops up to scale {widest} need the video (the store's are "
                    f"{store.config.get('scale')}), and {path} is missing"
                )
            else:
                video = _Video(
                    dataset=record.dataset,
                    video_id=record.video_id,
                    label=int(record.label),
                    method=record.method or "-",
                    path=path,
                    frames=usable.frame_index.to_numpy(np.int64),
                    manipulated=usable.manipulated.map({True: 1.0, False: 0.0}).to_numpy(np.float32),
                    crops=usable[column].tolist(),
                    masks=[m if isinstance(m, str) else None for m in usable[f"mask_path_{spec.crop}"]],
                    mask_source=usable.mask_source.to_numpy(object),
                    boxes=np.stack(usable.box.to_numpy()).astype(np.float64),
                    matrices=np.stack(usable[f"matrix_{spec.crop}"].to_numpy())
                    .reshape(-1, 2, 3)
                    .astype(np.float64),
                )
                reason = self._unusable(video)
                if reason is None:
                    self.videos.append(video)
                    continue
            self.skipped[key] = reason

    def _unusable(self, video: _Video) -> str | None:
        """Why ``video`` gives no item, or None."""
        return None

    @property
    def epoch(self) -> int:
        """The epoch the random draws of training items depend on."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw the next items of epoch ``epoch`` (seen by persistent DataLoader workers too)."""
        self._epoch.fill_(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _read(self, video: _Video, positions: np.ndarray) -> np.ndarray:
        """``(T, S, S[, 3])`` uint8 stored crops of the usable frames at ``positions`` (grey: 1 channel)."""
        gray = self.spec.channels == 1
        return np.stack([read_image(self.store.path(video.crops[p]), gray) for p in positions])

    def _read_masks(self, video: _Video, positions: np.ndarray) -> np.ndarray:
        """``(T, S, S)`` uint8 stored masks (0/255) of the usable frames at ``positions``; ValueError
        naming the video when one is missing."""
        paths = [video.masks[p] for p in positions]
        if None in paths:
            frame = video.frames[positions[paths.index(None)]]
            raise ValueError(f"{video.dataset}/{video.video_id}: frame {frame} has no stored mask")
        return np.stack([read_image(self.store.path(path), True) for path in paths])

    def _crops(
        self, video: _Video, positions: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(T, size, size[, 3])`` uint8 crops of the usable frames at ``positions``, and with
        ``spec.masks`` their ``(T, size, size)`` uint8 0/255 masks (zeros for a real video)."""
        spec = self.spec
        masked = spec.masks and video.label == 1
        if spec.crop == "face":
            return self._face_crops(video, positions, rng, masked)
        maps = self._fixed_maps(video, positions) if spec.fixed_alignment else None
        stacks = [self._read(video, positions)] + ([self._read_masks(video, positions)] if masked else [])
        if maps is not None:
            stacks = [_rewarp(images, maps, spec.size) for images in stacks]
        elif spec.crop == "mouth":
            window = round(stacks[0].shape[1] * MOUTH_TEST_SIZE / DEFAULT_SIZES["mouth"])
            room = stacks[0].shape[1] - window
            top, left = rng.integers(0, room + 1, 2) if self.train else (room // 2, room // 2)
            stacks = [
                _resize(images[:, top : top + window, left : left + window], spec.size) for images in stacks
            ]
        else:
            stacks = [_resize(images, spec.size) for images in stacks]
        return stacks[0], self._mask_values(stacks[1] if masked else None, len(positions))

    def _mask_values(self, masks: np.ndarray | None, t: int) -> np.ndarray | None:
        """Resampled masks back to 0/255 (None without ``spec.masks``; zeros for a real video)."""
        if not self.spec.masks:
            return None
        if masks is None:
            return np.zeros((t, self.spec.size, self.spec.size), np.uint8)
        return np.where(masks > 127, 255, 0).astype(np.uint8)

    def _fixed_maps(self, video: _Video, positions: np.ndarray) -> np.ndarray:
        """``(T, 2, 3)`` maps from each stored crop to the output, all frames cut with the clip's
        median stored alignment (``aligned``/``ffhq`` crops)."""
        side, size = self._stored_size, self.spec.size
        stored = video.matrices[positions]
        r = size / side  # stored-crop pixels -> output pixels, pixel centres kept
        to_output = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1]])
        common = to_output @ _affine3(np.median(stored, axis=0))
        return (common @ np.linalg.inv(_affine3(stored)))[:, :2]

    def _face_crops(
        self, video: _Video, positions: np.ndarray, rng: np.random.Generator, masked: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Face crops at the spec's (or a random training) scale: from the stored crops while the
        square fits in them, else from the video's frames; masks from the stored masks (zero where
        the square passes their edge)."""
        spec, side = self.spec, self._stored_size
        scale = float(rng.uniform(*spec.train_scale)) if self.train and spec.train_scale else spec.scale
        boxes = video.boxes[positions]
        if spec.fixed_alignment:
            boxes = np.broadcast_to(np.median(boxes, axis=0), boxes.shape)
        wanted = box_matrix(boxes, spec.size, scale)
        maps = (_affine3(wanted) @ np.linalg.inv(_affine3(video.matrices[positions])))[:, :2]
        masks = _rewarp(self._read_masks(video, positions), maps, spec.size) if masked else None
        corners = np.array([[-0.5, -0.5, 1.0], [spec.size - 0.5, spec.size - 0.5, 1.0]])
        back = (corners @ np.linalg.inv(_affine3(maps)).transpose(0, 2, 1))[..., :2]  # in stored pixels
        if back.min() >= -0.5 - _FIT_TOLERANCE and back.max() <= side - 0.5 + _FIT_TOLERANCE:
            return _rewarp(self._read(video, positions), maps, spec.size), self._mask_values(
                masks, len(positions)
            )
        crops = warp(VideoReader(video.path).read(video.frames[positions]), wanted, spec.size)
        if spec.channels == 1:
            crops = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops])
        return crops, self._mask_values(masks, len(positions))

    def _item(self, video: _Video, positions: np.ndarray, rng: np.random.Generator) -> ClipItem:
        """The item of ``video``'s usable frames at ``positions`` (T of them)."""
        spec = self.spec
        crops, masks = self._crops(video, positions, rng)
        clip = torch.from_numpy(crops).float().div_(255)
        clip = clip.unsqueeze(1) if clip.ndim == 3 else clip.permute(0, 3, 1, 2)  # (T, C, H, W)
        mask = None if masks is None else torch.from_numpy(masks).unsqueeze(1).float().div_(255)
        if self.train and self.augment is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**63)))
                if mask is None:
                    clip = self.augment(clip)
                else:
                    clip, mask = self.augment(clip, tv_tensors.Mask(mask))
                    mask = mask.as_subclass(Tensor)
        mean = torch.tensor(spec.mean).view(-1, 1, 1)
        std = torch.tensor(spec.std).view(-1, 1, 1)
        clip = (clip - mean) / std
        t, c, h, w = clip.shape
        if spec.layout == "NCTHW":
            clip = clip.permute(1, 0, 2, 3).contiguous()
        elif spec.layout == "N(TC)HW":
            clip = clip.reshape(t * c, h, w)
        else:  # NCHW: one frame
            clip = clip[0]
        item = ClipItem(
            clip=clip,
            label=torch.tensor(video.label, dtype=torch.int64),
            frame_labels=torch.from_numpy(video.manipulated[positions]),
            frames=torch.from_numpy(video.frames[positions]),
            dataset=video.dataset,
            video_id=video.video_id,
            method=video.method,
        )
        if mask is not None:
            item["mask"] = mask[0] if spec.layout == "NCHW" else mask
            truth = video.label == 0 or all(source in _TRUE_MASKS for source in video.mask_source[positions])
            item["mask_weight"] = torch.tensor(float(truth))
        return item


class FaceClipDataset(_FaceData):
    """One clip of T frames per usable video of ``split`` (all splits when None), for video detectors.

    T is ``spec.frames`` in training and ``spec.test_frames or spec.frames`` at test. By
    ``spec.sampling``:

    - ``segments``: the K usable frames cut into T equal segments, one frame from each (random in
      its segment in training, the middle at test); a video needs K >= T.
    - ``consecutive``: T frames with consecutive frame indices (a store sampled with policy
      ``all``), a random run in training, the one nearest the middle of the video at test; a video
      needs such a run.
    - ``dense``: the K usable frames cut into n = T / ``spec.segment_frames`` equal segments, from
      each a run of ``segment_frames`` adjacent usable frames (consecutive frames in a store
      sampled with policy ``all``) starting at random in its segment in training, in its middle
      at test (a short segment's run reaches into the next one); a video needs K >= T.

    Args:
        store: the FaceStore.
        spec: the detector's input spec (``sampling`` not ``frame``: see :class:`FaceFrameDataset`).
        split: keep the manifest's records of this split.
        train: random sampling, crop scale and position, and ``augment``; else deterministic.
        manifest: the records to join (default: the one the store keeps).
        seed: seed of the random draws (with the epoch and the item's index).
        augment: tensor augmentation applied in training (e.g. :func:`default_augment`); None: none.

    Attributes:
        videos: the usable videos, one per item.
        skipped: ``"dataset/video_id"`` -> why the video gives no item.
    """

    def __init__(
        self,
        store: FaceStore,
        spec: InputSpec,
        *,
        split: str | None = None,
        train: bool = False,
        manifest: Manifest | None = None,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        if spec.sampling == "frame" or spec.layout == "NCHW":
            raise ValueError("a frame-by-frame spec (sampling 'frame', layout NCHW) needs FaceFrameDataset")
        self.length = spec.frames if train else spec.test_frames or spec.frames
        super().__init__(store, spec, split=split, train=train, manifest=manifest, seed=seed, augment=augment)

    def _starts(self, video: _Video) -> np.ndarray:
        """Positions where a run of T consecutive frame indices starts."""
        t, frames = self.length, video.frames
        if len(frames) < t:
            return np.zeros(0, np.int64)
        return np.flatnonzero(frames[t - 1 :] - frames[: len(frames) - t + 1] == t - 1)

    def _dense(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Positions of ``dense`` sampling among ``k`` usable frames (see the class docstring)."""
        run = self.spec.segment_frames or 1
        n = self.length // run
        edges = np.linspace(0, k, n + 1)
        low = np.minimum(np.floor(edges[:-1]), k - run).astype(np.int64)
        high = np.clip(np.floor(edges[1:]) - run, low, k - run).astype(np.int64)
        starts = rng.integers(low, high + 1) if self.train else (low + high) // 2
        return (starts[:, None] + np.arange(run)).reshape(-1)

    def _unusable(self, video: _Video) -> str | None:
        if len(video.frames) < self.length:
            return f"{len(video.frames)} usable frames, a clip needs {self.length}"
        if self.spec.sampling == "consecutive" and not len(self._starts(video)):
            return f"no run of {self.length} consecutive usable frames"
        return None

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> ClipItem:
        video, rng, t = self.videos[index], self._rng(index), self.length
        if self.spec.sampling == "segments":
            positions = sample_indices(len(video.frames), t, "segments", rng=rng if self.train else None)
        elif self.spec.sampling == "dense":
            positions = self._dense(len(video.frames), rng)
        else:
            starts = self._starts(video)
            if self.train:
                start = int(rng.choice(starts))
            else:
                middle = (video.frames[0] + video.frames[-1]) / 2
                start = int(starts[np.argmin(np.abs(video.frames[starts] + (t - 1) / 2 - middle))])
            positions = np.arange(start, start + t)
        return self._item(video, positions, rng)


class FaceFrameDataset(_FaceData):
    """One item per usable frame of each usable video (T = 1, ``clip`` ``(C, H, W)`` for layout
    NCHW), for image detectors; ``frames_per_video`` keeps that many evenly spaced frames per video.

    The arguments and attributes are :class:`FaceClipDataset`'s; a video needs one usable frame.
    """

    def __init__(
        self,
        store: FaceStore,
        spec: InputSpec,
        *,
        split: str | None = None,
        train: bool = False,
        manifest: Manifest | None = None,
        seed: int = 0,
        frames_per_video: int | None = None,
        augment: Augment | None = None,
    ) -> None:
        if spec.sampling != "frame":
            raise ValueError(
                f"FaceFrameDataset serves sampling 'frame'; {spec.sampling!r} needs FaceClipDataset"
            )
        super().__init__(store, spec, split=split, train=train, manifest=manifest, seed=seed, augment=augment)
        picks = [
            sample_indices(len(v.frames), frames_per_video, "even" if frames_per_video else "all")
            for v in self.videos
        ]
        self._video_of = np.repeat(np.arange(len(self.videos)), [len(p) for p in picks])
        self._position = np.concatenate([np.zeros(0, np.int64), *picks])

    def __len__(self) -> int:
        return len(self._position)

    def __getitem__(self, index: int) -> ClipItem:
        video = self.videos[self._video_of[index]]
        return self._item(video, self._position[index : index + 1], self._rng(index))


def store_config(spec: InputSpec) -> PreprocessConfig:
    """The preprocessing that lets a FaceStore serve ``spec``'s test clips exactly: its crop kind at
    its size (mouth crops keep the stored 96 px window) and face scale; every frame for clips of
    consecutive frames (``consecutive``, ``dense``), else ``max(32, T)`` evenly spaced frames."""
    from dftoolkit.preprocess import PreprocessConfig

    consecutive = spec.sampling in ("consecutive", "dense")
    frames = max(32, spec.test_frames or spec.frames)
    sizes = () if spec.crop == "mouth" else ((spec.crop, spec.size),)
    return PreprocessConfig(
        crops=(spec.crop,),
        sizes=sizes,
        scale=spec.scale,
        policy="all" if consecutive else "even",
        frames=frames,
    )


def face_dataset(
    store: FaceStore,
    spec: InputSpec,
    *,
    split: str | None,
    train: bool,
    manifest: Manifest | None = None,
    seed: int = 0,
    frames_per_video: int | None = 32,
) -> FaceClipDataset | FaceFrameDataset:
    """The dataset a detector with ``spec`` trains (``train``) or is tested on: clips, or for an
    image detector (sampling ``frame``) ``frames_per_video`` evenly spaced frames per video (None:
    every usable frame); a training set gets :func:`default_augment` unless ``spec.augment`` is
    False."""
    augment = default_augment(spec) if train and spec.augment else None
    common = {"split": split, "train": train, "manifest": manifest, "seed": seed, "augment": augment}
    if spec.sampling == "frame":
        return FaceFrameDataset(store, spec, frames_per_video=frames_per_video, **common)
    return FaceClipDataset(store, spec, **common)


def _init_worker(worker_id: int) -> None:
    """Seed Python's and numpy's global RNGs from the worker's torch seed; one OpenCV thread."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    cv2.setNumThreads(1)


def loader(dataset: Dataset, batch_size: int, *, train: bool, workers: int = 0, seed: int = 0) -> DataLoader:
    """A DataLoader of ``dataset``: shuffled by a ``seed``-ed sampler of its own (the same order
    whatever ``workers``) and dropping the last partial batch in training, in order at test;
    ``workers`` processes (persistent), memory pinned when CUDA is there. Batches are
    ``default_collate``'s: tensors stacked, strings in lists."""
    order = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size,
        sampler=RandomSampler(dataset, generator=order) if train else SequentialSampler(dataset),
        drop_last=train,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_init_worker,
    )
