"""First Order Motion Model (Siarohin et al., NeurIPS 2019) and the ``fomm`` reenactment method.

Written from the paper. The configuration values (``config/vox-256.yaml``) and the parameter names
of the authors' checkpoint were read in their public code (``AliaksandrSiarohin/first-order-model``,
MIT since 2023) so that their ``vox-cpk.pth.tar`` loads as is; no code is copied.

A source image S is animated by a driving frame D in three steps:

1. :class:`KeypointDetector`: an hourglass on the image (anti-aliased to 1/4) predicts K heatmaps;
   each keypoint is the soft-argmax of its heatmap, and its local affine Jacobian (2x2) is the
   heatmap-weighted mean of 4 predicted maps.
2. :class:`DenseMotionNetwork`: K first-order motions ``z -> p_S + J_S J_D^-1 (z - p_D)`` plus the
   identity (background) warp S K+1 times; an hourglass over the warped copies and the keypoint
   heatmap differences predicts soft masks over the K+1 motions (their mixture is the dense flow)
   and an occlusion map.
3. :class:`OcclusionAwareGenerator`: encoder -> features warped by the flow -> multiplied by the
   occlusion map -> residual bottleneck -> decoder -> sigmoid.

Coordinates: keypoints and flows are ``x, y`` in [-1, 1], -1 and 1 at the centres of the outer
pixels (``grid_sample(align_corners=True)``: the model was trained with PyTorch 1.0, whose
``grid_sample`` behaved so). Images are ``(N, 3, H, W)`` float RGB in [0, 1], 256 x 256 for vox-256.

No weights ship with the toolkit: :func:`load_fomm` reads the authors' checkpoint from a path the
user gives. A model that was not loaded from a checkpoint is randomly initialised.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.faces.geometry import box_matrix, hull_mask, landmark_boxes, warp
from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.generators.base import FacePatches, Manipulation, Rendered, register_method
from dftoolkit.generators.material import PATCH_SCALE

__all__ = [
    "CHECKPOINT_HINT",
    "FOMM_CONFIGS",
    "CheckpointError",
    "DenseMotion",
    "DenseMotionNetwork",
    "FOMMConfig",
    "FOMMReenact",
    "FirstOrderModel",
    "Generated",
    "KeypointDetector",
    "Keypoints",
    "OcclusionAwareGenerator",
    "fomm_config",
    "load_fomm",
    "transfer_keypoints",
]

CHECKPOINT_HINT = (
    "the First Order Motion Model vox-256 checkpoint is the authors' 'vox-cpk.pth.tar' (linked from the "
    "'Pre-trained checkpoint' section of https://github.com/AliaksandrSiarohin/first-order-model: Google "
    "Drive or Yandex Disk); the toolkit never downloads it: place it yourself and pass its path"
)


@dataclass(frozen=True)
class FOMMConfig:
    """Hyper-parameters of the three networks (names as in the authors' YAML, prefixed per network).

    The defaults are ``config/vox-256.yaml``. ``kp_*``: keypoint detector; ``dm_*``: dense motion
    network; the rest: generator. ``image_size`` is the side of the frames the model was trained on.
    """

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    kp_temperature: float = 0.1
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_scale_factor: float = 0.25
    kp_num_blocks: int = 5
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dm_block_expansion: int = 64
    dm_max_features: int = 1024
    dm_num_blocks: int = 5
    dm_scale_factor: float = 0.25
    kp_variance: float = 0.01
    image_size: int = 256


FOMM_CONFIGS: dict[str, FOMMConfig] = {
    "vox-256": FOMMConfig(),
    # the same structure with 0.22 M parameters instead of 59.8 M: for tests (random weights only)
    "small": FOMMConfig(
        kp_block_expansion=8,
        kp_max_features=64,
        kp_num_blocks=3,
        block_expansion=8,
        max_features=32,
        num_bottleneck_blocks=2,
        dm_block_expansion=8,
        dm_max_features=64,
        dm_num_blocks=3,
    ),
}


def fomm_config(config: str | FOMMConfig) -> FOMMConfig:
    """A :class:`FOMMConfig` or the name of one in :data:`FOMM_CONFIGS`."""
    if isinstance(config, FOMMConfig):
        return config
    if config not in FOMM_CONFIGS:
        raise ValueError(f"unknown FOMM config {config!r}; choose from {sorted(FOMM_CONFIGS)}")
    return FOMM_CONFIGS[config]


class Keypoints(NamedTuple):
    """Keypoints of a batch of images.

    Attributes:
        value: ``(N, K, 2)`` ``x, y`` in [-1, 1].
        jacobian: ``(N, K, 2, 2)`` local affine Jacobians, or None (``estimate_jacobian=False``).
    """

    value: torch.Tensor
    jacobian: torch.Tensor | None

    def take(self, index: int | slice) -> Keypoints:
        """The keypoints of images ``index`` (an int keeps the batch axis)."""
        index = [index] if isinstance(index, int) else index
        return Keypoints(self.value[index], None if self.jacobian is None else self.jacobian[index])


class DenseMotion(NamedTuple):
    """Output of :class:`DenseMotionNetwork`, at its working resolution ``h, w``.

    Attributes:
        deformation: ``(N, h, w, 2)`` for each driving pixel, where to sample the source (``x, y``).
        masks: ``(N, K + 1, h, w)`` softmax weights of the background and the K keypoint motions.
        occlusion: ``(N, 1, h, w)`` in [0, 1] (1 = visible in the source), or None.
        sparse_deformed: ``(N, K + 1, C, h, w)`` the source warped by each motion alone.
    """

    deformation: torch.Tensor
    masks: torch.Tensor
    occlusion: torch.Tensor | None
    sparse_deformed: torch.Tensor


class Generated(NamedTuple):
    """Output of :class:`OcclusionAwareGenerator`: ``prediction`` ``(N, C, H, W)`` in [0, 1], and
    the motion it was warped with."""

    prediction: torch.Tensor
    motion: DenseMotion


def _coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``(h, w, 2)`` pixel-centre coordinates ``x, y`` in [-1, 1], outer pixels at +-1 (align_corners)."""
    from kornia.geometry import create_meshgrid  # lazy: importing kornia adds ~0.2 s to the CLI start

    return create_meshgrid(h, w, normalized_coordinates=True, device=like.device, dtype=like.dtype)[0]


def _gaussians(value: torch.Tensor, grid: torch.Tensor, variance: float) -> torch.Tensor:
    """``(N, K, 2)`` keypoints on an ``(h, w, 2)`` grid -> ``(N, K, h, w)`` unnormalised Gaussians."""
    d2 = (grid - value[:, :, None, None]).square().sum(-1)
    return torch.exp(-0.5 * d2 / variance)


class _ConvBlock(nn.Module):
    """Convolution, batch norm, ReLU; ``resample`` ``"up"``: 2x nearest upsampling before,
    ``"down"``: 2x2 average pooling after."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, resample: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(c_out)
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.relu(self.norm(self.conv(x)))
        return F.avg_pool2d(x, 2) if self.resample == "down" else x


class _ResBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice), 3x3, same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class _Hourglass(nn.Module):
    """U-Net of ``blocks`` down and up blocks; level ``i`` has ``min(cap, width * 2**i)`` channels.
    The output is the last up block's features concatenated with the input:
    ``width + c_in`` channels at the input's resolution (which must divide by ``2**blocks``)."""

    def __init__(self, c_in: int, width: int, blocks: int, cap: int) -> None:
        super().__init__()

        def ch(i: int) -> int:
            return min(cap, width * 2**i)

        down = [_ConvBlock(c_in if i == 0 else ch(i), ch(i + 1), resample="down") for i in range(blocks)]
        up = [
            _ConvBlock(ch(i + 1) * (1 if i == blocks - 1 else 2), ch(i), resample="up")
            for i in reversed(range(blocks))
        ]
        self.encoder = nn.ModuleDict({"down_blocks": nn.ModuleList(down)})
        self.decoder = nn.ModuleDict({"up_blocks": nn.ModuleList(up)})
        self.out_channels = ch(0) + c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.encoder["down_blocks"]:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder["up_blocks"]:
            out = torch.cat([block(out), skips.pop()], 1)
        return out


class _AntiAliasDownsample(nn.Module):
    """Gaussian blur (sigma ``(1/scale - 1) / 2``, zero padding), then nearest subsampling by ``scale``.

    The kernel is a buffer named ``weight`` (``(C, 1, k, k)``), part of the state dict as in the
    authors' checkpoint."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(4 * sigma) + 1
        t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(t**2) / (2 * sigma**2))
        kernel = torch.outer(g, g)
        self.register_buffer("weight", (kernel / kernel.sum()).expand(channels, 1, size, size).clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2, groups=x.shape[1])
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def _downsampler(channels: int, scale: float) -> nn.Module:
    return nn.Identity() if scale == 1 else _AntiAliasDownsample(channels, scale)


class KeypointDetector(nn.Module):
    """Keypoints and their local affine Jacobians: ``(N, C, H, W)`` images in [0, 1] -> :class:`Keypoints`.

    The heatmaps come from an unpadded 7x7 convolution (``(H/4 - 6)^2`` for vox-256: 58 x 58), a
    softmax over pixels at temperature ``kp_temperature``; keypoint = expected coordinate. The
    Jacobian head starts at the identity (zero weights, bias ``[1, 0, 0, 1]``).
    """

    def __init__(self, config: str | FOMMConfig = "vox-256") -> None:
        super().__init__()
        c = fomm_config(config)
        self.predictor = _Hourglass(c.num_channels, c.kp_block_expansion, c.kp_num_blocks, c.kp_max_features)
        self.kp = nn.Conv2d(self.predictor.out_channels, c.num_kp, 7)
        self.jacobian: nn.Conv2d | None = None
        if c.estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_channels, 4 * c.num_kp, 7)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(c.num_kp))
        self.down = _downsampler(c.num_channels, c.kp_scale_factor)
        self.temperature = c.kp_temperature

    def forward(self, image: torch.Tensor) -> Keypoints:
        features = self.predictor(self.down(image))
        logits = self.kp(features)
        n, k, h, w = logits.shape
        heat = F.softmax(logits.flatten(2) / self.temperature, dim=2).view(n, k, h, w)
        value = torch.einsum("nkhw,hwc->nkc", heat, _coordinate_grid(h, w, heat))
        if self.jacobian is None:
            return Keypoints(value, None)
        maps = self.jacobian(features).view(n, k, 4, h, w)
        jacobian = (heat[:, :, None] * maps).sum((3, 4)).view(n, k, 2, 2)
        return Keypoints(value, jacobian)


class DenseMotionNetwork(nn.Module):
    """Dense flow and occlusion from the source image and the two keypoint sets (Sec. 3.1-3.2).

    Works at ``dm_scale_factor`` of the image (64 x 64 for vox-256). The hourglass input is, per
    motion ``k = 0..K`` (0: background, identity), the heatmap difference ``G(p_D) - G(p_S)`` (zero for
    the background) followed by the source warped by motion ``k``: ``(K + 1) (C + 1)`` channels.
    """

    def __init__(self, config: str | FOMMConfig = "vox-256") -> None:
        super().__init__()
        c = fomm_config(config)
        self.num_kp = c.num_kp
        c_in = (c.num_kp + 1) * (c.num_channels + 1)
        self.hourglass = _Hourglass(c_in, c.dm_block_expansion, c.dm_num_blocks, c.dm_max_features)
        self.mask = nn.Conv2d(self.hourglass.out_channels, c.num_kp + 1, 7, padding=3)
        self.occlusion: nn.Conv2d | None = None
        if c.estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, 7, padding=3)
        self.down = _downsampler(c.num_channels, c.dm_scale_factor)
        self.kp_variance = c.kp_variance

    def sparse_motions(self, kp_driving: Keypoints, kp_source: Keypoints, grid: torch.Tensor) -> torch.Tensor:
        """``(N, K + 1, h, w, 2)``: identity, then ``p_S + J_S J_D^-1 (z - p_D)`` per keypoint."""
        z = grid - kp_driving.value[:, :, None, None]
        if kp_driving.jacobian is not None and kp_source.jacobian is not None:
            affine = kp_source.jacobian @ torch.linalg.inv(kp_driving.jacobian)
            z = torch.einsum("nkij,nkhwj->nkhwi", affine, z)
        motions = z + kp_source.value[:, :, None, None]
        identity = grid.expand(len(motions), 1, *grid.shape)
        return torch.cat([identity, motions], 1)

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> DenseMotion:
        x = self.down(source)
        n, c, h, w = x.shape
        grid = _coordinate_grid(h, w, x)
        k1 = self.num_kp + 1
        heat = _gaussians(kp_driving.value, grid, self.kp_variance) - _gaussians(
            kp_source.value, grid, self.kp_variance
        )
        heat = torch.cat([heat.new_zeros(n, 1, h, w), heat], 1)
        motions = self.sparse_motions(kp_driving, kp_source, grid)
        copies = x[:, None].expand(n, k1, c, h, w).reshape(n * k1, c, h, w)
        deformed = F.grid_sample(copies, motions.reshape(n * k1, h, w, 2), align_corners=True)
        deformed = deformed.view(n, k1, c, h, w)
        features = self.hourglass(torch.cat([heat[:, :, None], deformed], 2).view(n, -1, h, w))
        masks = F.softmax(self.mask(features), dim=1)
        deformation = torch.einsum("nkhw,nkhwc->nhwc", masks, motions)
        occlusion = None if self.occlusion is None else torch.sigmoid(self.occlusion(features))
        return DenseMotion(deformation, masks, occlusion, deformed)


class OcclusionAwareGenerator(nn.Module):
    """The source image re-rendered as the driving keypoints say: ``(source, kp_driving, kp_source)``
    -> :class:`Generated`. Owns the :class:`DenseMotionNetwork` (``dense_motion_network``), as in the
    authors' checkpoint."""

    def __init__(self, config: str | FOMMConfig = "vox-256") -> None:
        super().__init__()
        c = fomm_config(config)
        self.dense_motion_network = DenseMotionNetwork(c)
        levels = c.num_down_blocks

        def ch(i: int) -> int:
            return min(c.max_features, c.block_expansion * 2**i)

        self.first = _ConvBlock(c.num_channels, ch(0), kernel=7)
        self.down_blocks = nn.ModuleList(_ConvBlock(ch(i), ch(i + 1), resample="down") for i in range(levels))
        self.up_blocks = nn.ModuleList(
            _ConvBlock(ch(levels - i), ch(levels - i - 1), resample="up") for i in range(levels)
        )
        self.bottleneck = nn.Sequential(
            OrderedDict((f"r{i}", _ResBlock(ch(levels))) for i in range(c.num_bottleneck_blocks))
        )
        self.final = nn.Conv2d(ch(0), c.num_channels, 7, padding=3)

    @staticmethod
    def _resize(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Bilinear resize of ``(N, C, h, w)`` maps to ``size`` (no-op when equal)."""
        return maps if maps.shape[2:] == size else F.interpolate(maps, size=size, mode="bilinear")

    def forward(self, source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> Generated:
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        motion = self.dense_motion_network(source, kp_driving, kp_source)
        flow = self._resize(motion.deformation.permute(0, 3, 1, 2), out.shape[2:]).permute(0, 2, 3, 1)
        out = F.grid_sample(out, flow, align_corners=True)
        if motion.occlusion is not None:
            out = out * self._resize(motion.occlusion, out.shape[2:])
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        return Generated(torch.sigmoid(self.final(out)), motion)


def _hull_areas(points: torch.Tensor) -> np.ndarray:
    """``(N, K, 2)`` -> ``(N,)`` float64 areas of the convex hulls."""
    pts = points.detach().float().cpu().numpy()
    return np.array([cv2.contourArea(cv2.convexHull(p)) for p in pts], np.float64)


def transfer_keypoints(
    kp_source: Keypoints,
    kp_driving: Keypoints,
    kp_initial: Keypoints,
    relative: bool = True,
    adapt_scale: bool = True,
) -> Keypoints:
    """The keypoints to render the source with, from the driving frame's (the paper's Sec. 4 animation).

    ``relative``: the source's keypoints moved by the driving keypoints' displacement since the
    initial driving frame, ``p_S + s (p_D - p_D0)``, and Jacobians ``J_D J_D0^-1 J_S``; otherwise the
    driving keypoints as they are (absolute). ``adapt_scale``: ``s = sqrt(area_S / area_D0)``, the
    ratio of the keypoints' convex hulls (1 where the initial hull is degenerate); else ``s = 1``.
    ``kp_initial`` may have batch 1 (one initial frame for all).
    """
    if not relative:
        return kp_driving
    scale = torch.ones(1, dtype=kp_source.value.dtype, device=kp_source.value.device)
    if adapt_scale:
        src, ini = np.broadcast_arrays(_hull_areas(kp_source.value), _hull_areas(kp_initial.value))
        ratio = np.where(ini > 0, np.sqrt(src / np.where(ini > 0, ini, 1.0)), 1.0)
        scale = torch.as_tensor(ratio, dtype=kp_source.value.dtype, device=kp_source.value.device)
    value = kp_source.value + (kp_driving.value - kp_initial.value) * scale[:, None, None]
    jacobian = None
    if kp_source.jacobian is not None:
        jacobian = kp_driving.jacobian @ torch.linalg.inv(kp_initial.jacobian) @ kp_source.jacobian
    return Keypoints(value, jacobian)


def _check_images(name: str, images: torch.Tensor, channels: int) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (N, {channels}, H, W) float tensor in [0, 1], got {shape}")


class FirstOrderModel(nn.Module):
    """Keypoint detector + generator (with its dense motion network), as one module.

    Its state dict is ``kp_detector.*`` and ``generator.*``: the authors' checkpoint entries of the
    same names, prefixed. Randomly initialised unless loaded with :func:`load_fomm`.
    """

    def __init__(self, config: str | FOMMConfig = "vox-256") -> None:
        super().__init__()
        self.config = fomm_config(config)
        self.kp_detector = KeypointDetector(self.config)
        self.generator = OcclusionAwareGenerator(self.config)

    def animate(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        driving_initial: torch.Tensor,
        relative: bool = True,
        adapt_scale: bool = True,
    ) -> torch.Tensor:
        """The source images moved as the driving frames: ``(N, C, H, W)`` in [0, 1].

        Args:
            source: ``(N, C, H, W)`` float in [0, 1] (256 x 256 for vox-256).
            driving: ``(N, C, H, W)`` driving frames.
            driving_initial: ``(N or 1, C, H, W)`` the first driving frame (in a pose like the source's,
                for the relative mode).
            relative, adapt_scale: see :func:`transfer_keypoints`.
        """
        channels = self.config.num_channels
        for name, images in (("source", source), ("driving", driving), ("driving_initial", driving_initial)):
            _check_images(name, images, channels)
        if (
            driving.shape != source.shape
            or driving_initial.shape[2:] != source.shape[2:]
            or len(driving_initial) not in (1, len(source))
        ):
            raise ValueError(
                f"driving {tuple(driving.shape)} and driving_initial {tuple(driving_initial.shape)} "
                f"must match source {tuple(source.shape)}"
            )
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        kp_initial = self.kp_detector(driving_initial)
        kp = transfer_keypoints(kp_source, kp_driving, kp_initial, relative, adapt_scale)
        return self.generator(source, kp, kp_source).prediction


def load_fomm(
    path: str | os.PathLike[str],
    config: str | FOMMConfig = "vox-256",
    map_location: str | torch.device = "cpu",
) -> FirstOrderModel:
    """A :class:`FirstOrderModel` with the weights of an authors'-format checkpoint, in eval mode.

    The file is a dict with the state dicts ``generator`` and ``kp_detector`` (the authors' also hold
    ``discriminator``, the optimisers and ``epoch``, ignored here). It is read with
    ``torch.load(weights_only=True)``, which accepts only tensors, containers and plain values; the
    authors' file (PyTorch 1.0 legacy serialisation: OrderedDicts of tensors, Adam states of
    tensors, ints, floats and tuples) needs nothing else, so no extra global is allowed and a pickle
    that would run code is refused.

    Args:
        path: the checkpoint (e.g. ``vox-cpk.pth.tar``).
        config: the configuration it was trained with (name or :class:`FOMMConfig`).
        map_location: device to load to and to put the model on.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to obtain it).
        CheckpointError: the file is not a safe weights file, is not in the authors' format, or its
            parameter names or shapes differ from the architecture's.
    """
    path = Path(path)
    checkpoint = load_weights(path, what="FOMM checkpoint", hint=CHECKPOINT_HINT, map_location=map_location)
    model = FirstOrderModel(config)
    parts = {"generator": model.generator, "kp_detector": model.kp_detector}
    if not isinstance(checkpoint, dict) or not all(isinstance(checkpoint.get(k), dict) for k in parts):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not in the authors' FOMM format (a dict with the state dicts 'generator' and "
            f"'kp_detector'); found {found}"
        )
    name = config if isinstance(config, str) else "given"
    for part, module in parts.items():
        fit_state_dict(module, checkpoint[part], where=f"{path}: {part} (FOMM config {name})")
    return model.to(map_location).eval()


CROP_SCALE = PATCH_SCALE  # the target's crop is framed like the driver's FacePatches crops
MASK_DILATE = 0.06  # hull dilation, fraction of the landmark box's longer side
MASK_FEATHER = 0.03  # Gaussian sigma of the mask's soft edge, same unit


def _to_tensor(images: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255


def _face_region_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Soft mask of one face: the landmarks' hull dilated by :data:`MASK_DILATE` and feathered by
    :data:`MASK_FEATHER` of the face size. ``(68, 2)`` -> ``(height, width)`` float32 in [0, 1]."""
    box = landmark_boxes(landmarks[None])[0]
    side = float(max(box[2] - box[0], box[3] - box[1]))
    hull = hull_mask(landmarks[None], height, width, dilate=max(1, round(MASK_DILATE * side)))[0]
    soft = cv2.GaussianBlur(hull.astype(np.float32) / 255, (0, 0), max(1.0, MASK_FEATHER * side))
    return np.clip(soft, 0.0, 1.0)


@register_method
class FOMMReenact(Manipulation):
    """The target's face moved by the driver's motion with the First Order Motion Model.

    For target frame ``t``: the source image is the target's face crop at ``t`` (the landmark box
    enlarged :data:`CROP_SCALE` times, ``image_size`` square), the driving image the driver's crop
    ``source.at(t)`` and the initial driving image the driver's first crop, both resized to
    ``image_size``; relative motion with the Jacobian and scale adaptation. The generated crop is
    pasted back through the inverse crop matrix, inside the dilated landmark hull (soft edge).
    Driver keypoints are computed once, ``batch`` crops at a time.

    Args:
        checkpoint: path of the authors' checkpoint (required; see :func:`load_fomm`).
        config: name of the configuration it was trained with (:data:`FOMM_CONFIGS`).
        device: torch device.
        batch: driver crops per keypoint-detector batch.
    """

    name = "fomm"
    kind = "reenact"
    description = (
        "First Order Motion Model (Siarohin et al. 2019), relative motion; needs the vox-256 checkpoint"
    )

    def __init__(
        self,
        source: FacePatches,
        target: FaceTrack,
        checkpoint: str | os.PathLike[str] | None = None,
        config: str = "vox-256",
        device: str = "cpu",
        batch: int = 8,
    ) -> None:
        super().__init__(source, target)
        if checkpoint is None:
            raise ValueError(
                f"the fomm method needs the option 'checkpoint' (a file path): {CHECKPOINT_HINT}"
            )
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.checkpoint, self.config, self.device, self.batch = Path(checkpoint), config, device, batch
        self.model: FirstOrderModel | None = load_fomm(checkpoint, config, map_location=device)
        size = self.model.config.image_size
        drivers = np.stack(
            [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in source.images]
        )
        with torch.inference_mode():
            found = [
                self.model.kp_detector(_to_tensor(drivers[i : i + batch], device))
                for i in range(0, len(drivers), batch)
            ]
        jacobians = [kp.jacobian for kp in found]
        self._driver_kp = Keypoints(
            torch.cat([kp.value for kp in found]),
            None if jacobians[0] is None else torch.cat(jacobians),
        )

    def render(self, t: int, frame: np.ndarray) -> Rendered:
        if self.model is None:
            raise RuntimeError("the fomm method was closed")
        h, w = frame.shape[:2]
        landmarks = self.target.landmarks[t]
        if not np.isfinite(landmarks).all():
            return Rendered(frame.copy(), np.zeros((h, w), np.float32))
        size = self.model.config.image_size
        matrix = box_matrix(landmark_boxes(landmarks[None]), size, CROP_SCALE)
        source = _to_tensor(warp(frame[None], matrix, size), self.device)
        with torch.inference_mode():
            kp_source = self.model.kp_detector(source)
            kp = transfer_keypoints(
                kp_source, self._driver_kp.take(self.source.at(t)), self._driver_kp.take(0)
            )
            face = self.model.generator(source, kp, kp_source).prediction[0]
        face = (face.permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        inverse = cv2.invertAffineTransform(matrix[0])
        pasted = cv2.warpAffine(face, inverse, (w, h), flags=cv2.INTER_LINEAR)
        coverage = cv2.warpAffine(np.ones((size, size), np.float32), inverse, (w, h), flags=cv2.INTER_LINEAR)
        mask = _face_region_mask(landmarks, h, w) * coverage
        return Rendered(np.where(mask[..., None] > 0, pasted, frame), mask.astype(np.float32))

    def params(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "config": self.config,
            "device": self.device,
            "batch": self.batch,
        }

    def close(self) -> None:
        self.model = None
