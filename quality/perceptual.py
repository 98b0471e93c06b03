"""Perceptual distances between a fake frame and its original: deep-feature MSE and LPIPS.

**Perceptual distance** (:class:`Perceptual`, :func:`perceptual_distance`): for each chosen layer
``l`` of an ImageNet backbone with feature maps ``phi_l`` of shape ``C_l x H_l x W_l``,

    d_l(x, y) = 1 / (C_l H_l W_l) * || phi_l(x) - phi_l(y) ||_2^2

(the feature reconstruction loss of Johnson et al., 2016: a mean squared error), and the distance
is the plain mean of ``d_l`` over the layers. Lower = closer to the original; 0 for identical
images. Images are ImageNet-normalised and NOT resized (compare pairs at the same resolution; the
value depends on it). Default layers:

- ``vgg16``: ``relu1_2, relu2_2, relu3_3, relu4_3`` (strides 1, 2, 4, 8): the layer set Johnson et
  al. use for their style loss and the usual choice for multi-layer VGG perceptual losses (their
  feature loss alone uses ``relu2_2``).
- ``mobilenet_v2`` (the offline ImageNet fallback): ``block1, block3, block6, block13``, the outputs
  of ``features[1], [3], [6], [13]``, the last block at strides 2, 4, 8, 16 (16, 24, 32, 96
  channels; MobileNetV2's blocks end in a linear bottleneck, not a ReLU).
- ``alexnet``: ``relu1 .. relu5``; ``resnet18``: ``relu, layer1, layer2, layer3``.

With a ``mask`` (``(N, 1, H, W)`` in [0, 1], 1 = manipulated) each ``d_l`` becomes a weighted mean
over positions: the mask is resized to ``H_l x W_l`` by area averaging (the fraction of each
feature cell's pixels inside the region), and ``d_l = sum m (phi_l(x) - phi_l(y))^2 /
(C_l sum m)``. Features still see context outside the mask through their receptive field. A frame
with an empty mask gives NaN.

**LPIPS** (:class:`LPIPS`, :func:`lpips_distance`): Zhang et al., 2018, computed by the ``lpips``
package (v0.1) with its calibrated linear layers, which ship with the package; its AlexNet/VGG-16
trunk is loaded by :func:`~dftoolkit.quality.backbones.load_backbone` (``$TORCH_HOME`` or a path,
never downloaded). LPIPS has no offline fallback: its linear layers were fitted on those trunks.

Every module carries the :class:`~dftoolkit.quality.backbones.BackboneInfo` of its weights as
``.info``; report it with the numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import lpips
import torch
import torch.nn.functional as F
from torch import nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.quality.backbones import Backbone, BackboneInfo, check_images, load_backbone

__all__ = ["LPIPS", "LPIPS_NETS", "PERCEPTUAL_LAYERS", "Perceptual", "lpips_distance", "perceptual_distance"]

PERCEPTUAL_LAYERS: dict[str, tuple[str, ...]] = {
    "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    "mobilenet_v2": ("block1", "block3", "block6", "block13"),
    "alexnet": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "resnet18": ("relu", "layer1", "layer2", "layer3"),
}
LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}  # lpips' name -> the backbone it loads


def _check_pair(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    check_images(fake, "fake")
    check_images(real, "real")
    if fake.shape != real.shape:
        raise ValueError(f"fake and real differ in shape: {tuple(fake.shape)} vs {tuple(real.shape)}")
    if mask is not None:
        n, _, h, w = fake.shape
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (n, 1, h, w):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be ({n}, 1, {h}, {w}) like the images, got {shape}")
        if mask.numel() and not (mask.min() >= 0 and mask.max() <= 1):
            raise ValueError("mask must lie in [0, 1] (1 = manipulated)")


class Perceptual(nn.Module):
    """Deep-feature MSE between image pairs (module docstring), with the backbone's info as ``.info``.

    Calling it returns ``(N,)``; it is differentiable with respect to the images (the weights are
    frozen), so it also serves as a training loss.

    Args:
        backbone: a loaded :class:`~dftoolkit.quality.backbones.Backbone`, or a name / info to
            load (``vgg16`` needs ``vgg16-397923af.pth``; ``mobilenet_v2`` works offline).
        layers: layer names of that backbone (default :data:`PERCEPTUAL_LAYERS`).
        weights: weight file when ``backbone`` is a name.
        device: where a backbone loaded here lives.
    """

    def __init__(
        self,
        backbone: Backbone | BackboneInfo | str = "vgg16",
        layers: Sequence[str] | None = None,
        *,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if isinstance(backbone, Backbone):
            if weights is not None:
                raise ValueError("weights= applies to a backbone name, not to a loaded Backbone")
            self.backbone = backbone
        else:
            self.backbone = load_backbone(backbone, weights, device)
        self.layers = tuple(layers) if layers is not None else PERCEPTUAL_LAYERS[self.backbone.name]
        unknown = [name for name in self.layers if name not in self.backbone.layers]
        if unknown or not self.layers:
            raise ValueError(f"unknown {self.backbone.name} layers {unknown}; known: {self.backbone.layers}")
        self.eval()

    @property
    def info(self) -> BackboneInfo:
        return self.backbone.info

    def train(self, mode: bool = True) -> Perceptual:
        """Stays in eval mode: the backbone is a fixed reference."""
        return super().train(False)

    def forward(
        self, fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(N,)`` distances of ``(N, 3, H, W)`` images in [0, 1]; ``mask`` ``(N, 1, H, W)`` in [0, 1]."""
        _check_pair(fake, real, mask)
        n = len(fake)
        device = self.backbone.mean.device
        both = torch.cat([fake, real]).to(device, torch.float32)
        per_layer = []
        for maps in self.backbone.feature_maps(both, self.layers):
            squared = (maps[:n] - maps[n:]).pow(2).mean(dim=1)  # (N, H_l, W_l): mean over channels
            if mask is None:
                per_layer.append(squared.mean(dim=(1, 2)))
            else:
                m = F.interpolate(mask.to(device, torch.float32), size=squared.shape[-2:], mode="area")[:, 0]
                per_layer.append((squared * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)))
        return torch.stack(per_layer).mean(dim=0).to(fake.device)


class LPIPS(nn.Module):
    """LPIPS v0.1 of the ``lpips`` package, its trunk loaded by our loader; ``.info`` names the weights.

    Built as ``lpips.LPIPS(pretrained=True, net=net, pnet_rand=True)`` (so it downloads nothing),
    then the trunk weights are copied in strictly (every name and shape checked) and the package's
    linear layers are checked against the package's own file. Calling it on ``(N, 3, H, W)`` images
    in [0, 1] returns ``(N,)``.

    Args:
        net: ``"alex"`` (AlexNet trunk, ``alexnet-owt-7be5be79.pth``) or ``"vgg"`` (VGG-16,
            ``vgg16-397923af.pth``).
        weights: trunk weight file (default ``$TORCH_HOME/hub/checkpoints/<that file>``).
        device: where the network lives.

    Attributes:
        info: the trunk's :class:`~dftoolkit.quality.backbones.BackboneInfo`.
        linear_weights: the package file the linear layers come from.

    Raises:
        FileNotFoundError: the trunk's weights are missing (before anything is built).
        CheckpointError: the trunk file is unsafe or does not fit; the linear layers are not the
            package's.
    """

    def __init__(
        self,
        net: str = "alex",
        *,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(LPIPS_NETS)}")
        trunk = load_backbone(LPIPS_NETS[net], weights)
        with warnings.catch_warnings():  # lpips asks torchvision for `pretrained=False` (deprecated)
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            self.model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        # lpips slices torchvision's `features` as sliceK.<index>: rename our trunk's <index>.<param>
        slice_of = {
            index: slice_name
            for slice_name, part in self.model.net.named_children()
            for index, _ in part.named_children()
        }
        state = {}
        for key, value in trunk.trunk.state_dict().items():
            index = key.split(".", 1)[0]
            state[f"{slice_of[index]}.{key}" if index in slice_of else key] = value
        fit_state_dict(self.model.net, state, where=f"{trunk.info.weights_path} -> LPIPS {net} trunk")
        self.linear_weights = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        self._check_linear_layers()
        self.net, self.info = net, trunk.info
        self.model.requires_grad_(False)
        self.to(device).eval()

    def _check_linear_layers(self) -> None:
        shipped = load_weights(self.linear_weights, what="LPIPS linear layers", hint="reinstall lpips")
        own = self.model.state_dict()
        linear = [key for key in own if key.startswith("lin") and not key.startswith("lins.")]
        differing = [key for key in linear if key not in shipped or not torch.equal(own[key], shipped[key])]
        if differing or not linear:
            raise CheckpointError(
                f"LPIPS linear layers {differing or '(none)'} are not those of {self.linear_weights}; "
                "the lpips package did not load its calibrated weights"
            )

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode (lpips' dropout off)."""
        return super().train(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``(N,)`` LPIPS of ``(N, 3, H, W)`` image pairs in [0, 1]."""
        _check_pair(fake, real)
        device = self.model.scaling_layer.shift.device
        value = self.model(fake.to(device, torch.float32), real.to(device, torch.float32), normalize=True)
        return value.flatten().to(fake.device)


def _batched(
    module: nn.Module,
    fake: torch.Tensor,
    real: torch.Tensor,
    batch_size: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    _check_pair(fake, real, mask)
    parts = []
    with torch.no_grad():
        for start in range(0, len(fake), batch_size):
            part = slice(start, start + batch_size)
            pair = (fake[part], real[part])
            parts.append(module(*pair) if mask is None else module(*pair, mask[part]))
    return torch.cat(parts) if parts else fake.new_zeros(0)


def perceptual_distance(
    fake: torch.Tensor,
    real: torch.Tensor,
    backbone: Perceptual | Backbone | BackboneInfo | str = "vgg16",
    layers: Sequence[str] | None = None,
    mask: torch.Tensor | None = None,
    weights: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 16,
) -> torch.Tensor:
    """Deep-feature MSE of each fake frame to its original (module docstring), lower = closer.

    Args:
        fake, real: ``(N, 3, H, W)`` float RGB in [0, 1], pairs by index.
        backbone: a :class:`Perceptual` (reused; its ``.info`` names the weights), a loaded
            backbone, or a name / info to load on the images' device (loaded on every call:
            build a :class:`Perceptual` once for repeated use).
        layers: layer names (default :data:`PERCEPTUAL_LAYERS` of the backbone); not with a
            :class:`Perceptual`.
        mask: ``(N, 1, H, W)`` in [0, 1], 1 = manipulated: restricts the distance to that region.
        weights: weight file when ``backbone`` is a name.
        batch_size: pairs per forward pass (run without gradients).

    Returns:
        ``(N,)`` float32 on the device of ``fake``; NaN where a mask is empty.
    """
    if isinstance(backbone, Perceptual):
        if layers is not None or weights is not None:
            raise ValueError("layers= and weights= apply when building a Perceptual, not to a built one")
        module = backbone
    else:
        module = Perceptual(backbone, layers, weights=weights, device=fake.device)
    return _batched(module, fake, real, batch_size, mask)


def lpips_distance(
    fake: torch.Tensor,
    real: torch.Tensor,
    net: LPIPS | str = "alex",
    weights: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 16,
) -> torch.Tensor:
    """LPIPS v0.1 of each fake frame to its original, lower = closer.

    Args:
        fake, real: ``(N, 3, H, W)`` float RGB in [0, 1], pairs by index (at least about 32 px a
            side for AlexNet's strides).
        net: a built :class:`LPIPS` (reused; ``.info`` names its trunk weights), or ``"alex"`` /
            ``"vgg"`` to build one on the images' device.
        weights: trunk weight file when ``net`` is a name.
        batch_size: pairs per forward pass (run without gradients).

    Returns:
        ``(N,)`` float32 on the device of ``fake``.
    """
    if isinstance(net, LPIPS):
        if weights is not None:
            raise ValueError("weights= applies when building an LPIPS, not to a built one")
        module = net
    else:
        module = LPIPS(net, weights=weights, device=fake.device)
    return _batched(module, fake, real, batch_size)
