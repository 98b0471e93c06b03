"""The detector interface, its input spec and the registry of the reference detectors.

Every detector is an :class:`~torch.nn.Module` whose ``forward`` takes the authors' input (already
normalised, in their layout) and returns the authors' output, so an official checkpoint gives the
authors' numbers. Around it, the harness needs three things each detector declares:

- :attr:`Detector.spec` (:class:`InputSpec`): which crops, at what scale and size, how many frames
  sampled how, the normalisation, and how frame or clip scores become a video score;
- :meth:`Detector.fake_logit`: the output as one logit per clip, ``(N,)``, positive = fake;
- :meth:`Detector.losses`: the training losses of a batch, by name (default: binary cross-entropy
  on :meth:`fake_logit`).

A detector module registers a builder, ``build(config, **options) -> Detector`` with ``config``
``"full"`` (the published architecture) or ``"small"`` (a few channels and frames, for tests and
the demo on a CPU), and optionally a loader of the authors' released checkpoint files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dftoolkit.registry import Registry

__all__ = [
    "CONFIGS",
    "DETECTORS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "RECIPES",
    "SAMPLINGS",
    "VIDEO_SCORES",
    "ClipItem",
    "Detector",
    "DetectorEntry",
    "InputSpec",
    "build_detector",
    "count_parameters",
    "describe_detectors",
    "detector_recipe",
    "detector_recipes",
    "list_detectors",
    "load_official_checkpoint",
    "on_meta",
    "register_detector",
]

CONFIGS = ("full", "small")
RECIPES = ("paper", "small")
"""Training recipes a detector may ship: the published one (``paper``) and a short CPU run (``small``)."""
SAMPLINGS = ("segments", "consecutive", "dense", "frame")
"""``segments``: T frames, one from each of T equal segments of the video (random within its
segment in training, the middle at test); ``consecutive``: T consecutive frames; ``dense``: n equal
segments of the video, a run of ``segment_frames`` consecutive frames from each (T = n *
``segment_frames``); ``frame``: one frame at a time (an image detector)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUTS = ("NCHW", "NCTHW", "N(TC)HW")
"""Batch layouts: images; clips for 3-D convs; frames stacked on channels (index ``3t + c``)."""
VIDEO_SCORES = ("mean_probability", "mean_logit")
"""How clip (or frame) scores of a video combine: the mean of ``sigmoid(logit)``, or the mean logit."""


@dataclass(frozen=True)
class InputSpec:
    """What a detector eats: the crops and how a clip is made from a FaceStore.

    Attributes:
        crop: FaceStore crop kind (``face``, ``aligned``, ``ffhq``, ``mouth``).
        scale: enlargement of the face box at test (``face`` crops), e.g. 1.3.
        train_scale: ``(low, high)`` random enlargement in training, or None (``scale`` always).
        size: side of the model's input in pixels (after any crop from a larger stored one).
        frames: T, frames per training clip (1 for an image detector).
        sampling: one of :data:`SAMPLINGS`.
        channels: 3 (RGB) or 1 (grey).
        mean: per-channel mean subtracted from values in [0, 1].
        std: per-channel standard deviation divided by.
        layout: one of :data:`LAYOUTS`.
        video_score: one of :data:`VIDEO_SCORES`.
        test_frames: frames per test clip when it differs from ``frames`` (STIL tests 16 frames as
            two groups of 8); None: ``frames``.
        segment_frames: frames per segment of ``dense`` sampling (it must divide ``frames`` and
            ``test_frames``); None for the other samplings.
        masks: items carry the manipulation ``mask`` and its ``mask_weight`` (see :class:`ClipItem`).
        fixed_alignment: cut every frame of a clip with one alignment (the clip's median box, or
            for ``aligned``/``ffhq`` crops its median alignment) instead of each frame's own.
        augment: training clips get the default augmentation (False: e.g. when features of the
            frames are cached).
    """

    crop: str
    scale: float
    train_scale: tuple[float, float] | None
    size: int
    frames: int
    sampling: str
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str
    video_score: str
    test_frames: int | None = None
    segment_frames: int | None = None
    masks: bool = False
    fixed_alignment: bool = False
    augment: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.sampling in SAMPLINGS, f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}"),
            (
                self.video_score in VIDEO_SCORES,
                f"video_score must be one of {VIDEO_SCORES}, got {self.video_score!r}",
            ),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (
                len(self.mean) == len(self.std) == self.channels,
                f"mean and std need {self.channels} value(s), got {len(self.mean)} and {len(self.std)}",
            ),
            (self.layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {self.layout!r}"),
            (
                min(self.frames, self.size) >= 1,
                f"frames and size must be >= 1, got {self.frames} and {self.size}",
            ),
            (
                self.test_frames is None or self.test_frames >= 1,
                f"test_frames must be >= 1 or None, got {self.test_frames}",
            ),
            (
                not self.fixed_alignment or self.crop in ("face", "aligned", "ffhq"),
                f"fixed_alignment is for face, aligned and ffhq crops, not {self.crop!r}",
            ),
            (
                (self.sampling == "dense") == (self.segment_frames is not None),
                f"segment_frames is for sampling 'dense' only, and it needs it; got {self.segment_frames}",
            ),
            (
                self.segment_frames is None
                or (
                    self.segment_frames >= 1
                    and self.frames % self.segment_frames == 0
                    and (self.test_frames or self.frames) % self.segment_frames == 0
                ),
                f"segment_frames must be >= 1 and divide frames and test_frames, got {self.segment_frames}",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"bad input spec: {'; '.join(problems)}")


class _ClipFields(TypedDict):
    """The keys every :class:`ClipItem` has."""

    clip: Tensor
    label: Tensor
    frame_labels: Tensor
    frames: Tensor
    dataset: str
    video_id: str
    method: str


class ClipItem(_ClipFields, total=False):
    """One item of the detectors' datasets (a clip, or a frame for an image detector); a DataLoader
    batch holds the same keys, tensors stacked and strings in lists.

    Keys:
        clip: float32, normalised by the spec's mean/std, in the spec's layout without the batch
            dimension: ``(C, T, H, W)`` (``NCTHW``), ``(T*C, H, W)`` (``N(TC)HW``) or ``(C, H, W)``.
        label: int64 scalar, the video's label (1 = fake).
        frame_labels: ``(T,)`` float32 per-frame "manipulated" label (1, 0, or NaN when unknown).
        frames: ``(T,)`` int64 frame indices of the video the clip was cut from.
        dataset, video_id, method: the video's record fields (method ``"-"`` when none).
        mask: only with ``spec.masks``: float32 0/1 manipulation mask in the crop's geometry,
            ``(T, 1, size, size)`` (``(1, size, size)`` for layout NCHW); all zeros for a real video.
        mask_weight: only with ``spec.masks``: float32 scalar, 1 when ``mask`` is ground truth (a
            real video, or a fake with the corpus's or the generator's mask), 0 when a fake has only
            a landmark hull (it must not supervise).
    """

    mask: Tensor
    mask_weight: Tensor


class Detector(nn.Module, ABC):
    """A reference detector: the authors' ``forward`` plus what the harness needs (see the module)."""

    #: the registry name
    name: ClassVar[str]
    #: what the model eats (set per instance: a small config may use fewer frames)
    spec: InputSpec

    @abstractmethod
    def fake_logit(self, output: Any) -> Tensor:
        """``(N,)`` logit of "fake" per clip from what ``forward`` returned; ``sigmoid`` of it is the
        probability of fake (for a 2-class softmax output: the logit difference, fake minus real)."""

    def model_input(self, batch: dict[str, Any]) -> Any:
        """What ``forward`` is called with, from a batch whose tensors are on the device (default:
        ``batch["clip"]``); e.g. the authors' input dict, or cached latents instead of frames."""
        return batch["clip"]

    def prepare_finetuning(self) -> None:
        """Apply the paper's recipe for training from pre-trained weights (default: nothing; e.g.
        LipForensics freezes its lip-reading front-end and trunk)."""

    def losses(self, output: Any, labels: Tensor, batch: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """Training losses by name (their sum is minimised): binary cross-entropy of :meth:`fake_logit`
        against ``labels`` (``(N,)``, 1 = fake). ``batch`` holds whatever else the data gave (masks...)."""
        return {"bce": F.binary_cross_entropy_with_logits(self.fake_logit(output), labels.float())}


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: its builder, when the authors released weights their loader, and its
    training recipes (see :func:`register_detector`)."""

    build: Callable[..., Detector]
    load_official: Callable[..., Detector] | None = None
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


DETECTORS: Registry[DetectorEntry] = Registry("detector")


def register_detector(
    name: str,
    description: str,
    load_official: Callable[..., Detector] | None = None,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator of a builder ``build(config="full", **options) -> Detector``: register it as ``name``.

    ``load_official(path, **variant) -> Detector`` reads the authors' released checkpoint files.
    ``recipes`` maps a recipe name (:data:`RECIPES`: ``paper``, the published training; ``small``,
    a CPU run) to the detector's ``config`` (key ``"config"``) and the training settings it changes
    (:class:`~dftoolkit.detectors.train.TrainConfig` fields).
    """
    missing = [recipe for recipe, values in (recipes or {}).items() if values.get("config") not in CONFIGS]
    if set(recipes or {}) - set(RECIPES) or missing:
        raise ValueError(
            f"{name}: recipes are named {RECIPES} and each gives a config in {CONFIGS}; got "
            f"{sorted(recipes or {})}, without a config: {missing}"
        )

    def add(build: Callable[..., Detector]) -> Callable[..., Detector]:
        DETECTORS.register(name, description)(DetectorEntry(build, load_official, dict(recipes or {})))
        return build

    return add


def detector_recipe(name: str, recipe: str) -> dict[str, Any]:
    """Detector ``name``'s training recipe ``recipe``: ``{"config": ..., <TrainConfig field>: ...}``;
    KeyError naming the recipes it has."""
    recipes = DETECTORS.get(name).recipes
    if recipe not in recipes:
        raise KeyError(f"detector {name!r} has no recipe {recipe!r}; it has {sorted(recipes)}")
    return dict(recipes[recipe])


def detector_recipes(name: str) -> dict[str, dict[str, Any]]:
    """Every training recipe of detector ``name``, by recipe name."""
    return {recipe: dict(values) for recipe, values in DETECTORS.get(name).recipes.items()}


def list_detectors() -> list[str]:
    """The registered detector names, sorted."""
    return DETECTORS.names()


def describe_detectors() -> dict[str, str]:
    """Detector name -> one-line description."""
    return DETECTORS.describe()


def build_detector(name: str, config: str = "full", **options: Any) -> Detector:
    """A new, randomly initialised detector ``name`` in ``config`` (:data:`CONFIGS`) with ``options``."""
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {CONFIGS}, got {config!r}")
    return DETECTORS.get(name).build(config, **options)


def load_official_checkpoint(name: str, path: str, **variant: Any) -> Detector:
    """Detector ``name`` with the weights of the authors' released file at ``path``, loaded strictly
    (:func:`~dftoolkit.checkpoints.fit_state_dict`); ``variant`` picks the authors' architecture
    variant where there are several (e.g. ``backbone="scnet50_v1d"``)."""
    loader = DETECTORS.get(name).load_official
    if loader is None:
        raise ValueError(f"the authors of {name!r} released no checkpoint this toolkit reads")
    return loader(path, **variant)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the ``meta`` device: nothing is allocated)."""
    return sum(p.numel() for p in module.parameters())


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with every tensor on the ``meta`` device: full-size models counted without memory."""
    with torch.device("meta"):
        return build()
