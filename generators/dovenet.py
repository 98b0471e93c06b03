"""DoveNet (Cong et al., CVPR 2020): the attention U-Net that harmonises composites, its loader, its blend.

The generator takes the composite RGB image and the foreground mask (4 channels) and returns the
harmonised RGB image. It is the pix2pix ``unet_256`` U-Net (8 stride-2 levels, 256 -> 1 pixel at
the bottleneck, ``ngf = 64``) with the authors' attention: on the three decoder levels just inside
the outermost one, the concatenation ``[skip, up]`` is multiplied by ``sigmoid(conv1x1(.))`` of
itself (the official ``--netG s2ad``). Dropout 0.5 follows the up-convolutions of the ``ngf * 8``
middle levels, as in the authors' training command (no ``--no_dropout``).

Conventions of the official code, kept here:

- images in [-1, 1]: ``x / 127.5 - 1`` for uint8 (``ToTensor`` then ``Normalize(0.5, 0.5)``);
  the mask in [0, 1] (binary in their data: a PIL ``"1"`` image); output ``tanh`` in [-1, 1];
- the skip connection of every inner level carries the LeakyReLU(0.2)-activated features
  (pix2pix's in-place ``LeakyReLU`` rewrites the tensor that is concatenated);
- their test script never calls ``eval()``: batch norm normalises each one-image batch by its own
  statistics. :attr:`DoveNetGenerator.norm_stats` ``"sample"`` (the default) does exactly that for
  any batch size; ``"running"`` uses the stored running averages. Dropout is off at inference here
  (their script leaves it on, which makes outputs random).

Checkpoint format (the authors' ``latest_net_G.pth``, which their README says is the batch-norm
model): ``torch.save`` of the generator's ``state_dict``, a flat mapping of names to tensors with
no wrapper. Names follow the recursive pix2pix block ``UnetSkipConnectionBlock``: the outermost
block is ``model``, every block keeps its layers in ``model.<i>`` and its inner block at index 1
(outermost) or 3 (others), and an attention block's 1x1 convolution is ``attention.0``::

    model.model.0.weight                      outermost down-conv   (ngf, 4, 4, 4), no bias
    model.model.3.weight / .bias              outermost up-conv     (2 ngf, 3, 4, 4)
    model.model.1.model.1.weight              level 2 down-conv     (2 ngf, ngf, 4, 4)
    model.model.1.model.2.{weight,bias,running_mean,running_var,num_batches_tracked}   its norm
    model.model.1.model.5.weight / model.6.*  level 2 up-conv and norm
    model.model.1.attention.0.weight / .bias  level 2 attention     (2 ngf, 2 ngf, 1, 1)
    model.model.1.model.3.model.1.weight      level 3 ...  and so on to the innermost block, whose
                                              layers are model.1 (down), model.3 (up), model.4 (norm)

Batch-norm convolutions have no bias; with ``norm="instance"`` (affine-free, their README's
training command) there are no norm entries and every convolution has a bias. A ``module.``
prefix (``DataParallel``) is stripped; ``num_batches_tracked`` may be absent (older PyTorch).
The official weights are distributed by the authors (Baidu Cloud / bcmi.cloud, linked from
https://github.com/bcmi/Image-Harmonization-Dataset-iHarmony4/tree/master/DoveNet) and cannot be
downloaded by the toolkit; :mod:`dftoolkit.generators.harmonise_train` trains one offline in the
same format.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dftoolkit.checkpoints import fit_state_dict, load_weights
from dftoolkit.faces.geometry import box_matrix, warp
from dftoolkit.fileio import sha256_file
from dftoolkit.generators.base import Blend, register_blend

__all__ = [
    "CONFIGS",
    "DoveNetBlend",
    "DoveNetConfig",
    "DoveNetGenerator",
    "from_model_range",
    "get_config",
    "harmonise",
    "load_dovenet",
    "resolve_device",
    "to_model_range",
]

WEIGHTS_HELP = (
    "DoveNet's official generator (latest_net_G.pth, the batch-norm model; use config='full') is "
    "distributed by its authors via Baidu Cloud / bcmi.cloud, linked from "
    "https://github.com/bcmi/Image-Harmonization-Dataset-iHarmony4/tree/master/DoveNet, and cannot be "
    "downloaded by dftoolkit: download it yourself and pass its path, or train one on your own real "
    "faces with `dftoolkit train-dovenet STORE --out CKPT`"
)


@dataclass(frozen=True)
class DoveNetConfig:
    """Architecture of a DoveNet generator.

    Attributes:
        ngf: channels of the outermost level; level ``k`` has ``ngf * min(2**k, 8)``.
        levels: stride-2 levels (>= 5); inputs must be multiples of ``2**levels`` pixels.
        in_channels: input channels (RGB + mask).
        out_channels: output channels.
        attention: attention on the three levels inside the outermost one (``s2ad``).
        dropout: dropout 0.5 on the ``ngf * 8`` middle levels (active in training only).
        norm: ``"batch"`` (the released model) or ``"instance"`` (affine-free, no norm weights).
    """

    ngf: int = 64
    levels: int = 8
    in_channels: int = 4
    out_channels: int = 3
    attention: bool = True
    dropout: bool = True
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.levels < 5:
            raise ValueError(
                f"levels must be >= 5 (3 attention levels + outermost + innermost), got {self.levels}"
            )
        if self.ngf < 1 or self.in_channels < 2 or self.out_channels < 1:
            raise ValueError(f"bad channel counts in {self}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {self.norm!r}")

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (``2**levels``)."""
        return 2**self.levels


CONFIGS = {
    "full": DoveNetConfig(),
    "small": DoveNetConfig(ngf=16, levels=6),
}
"""Named configurations: ``full`` is the authors' generator (256x256, 54,759,939 parameters);
``small`` (64x64 inputs, 16 base channels) is for tests and quick experiments."""


def get_config(config: str | DoveNetConfig) -> DoveNetConfig:
    """A :class:`DoveNetConfig` from a name in :data:`CONFIGS` (or the config itself)."""
    if isinstance(config, DoveNetConfig):
        return config
    try:
        return CONFIGS[config]
    except KeyError:
        raise ValueError(f"unknown DoveNet config {config!r}; known: {sorted(CONFIGS)}") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the generator's [-1, 1] (the official ``Normalize(0.5, 0.5)``)."""
    return images * 2 - 1


def from_model_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> images in [0, 1] (clamped)."""
    return ((images + 1) / 2).clamp(0, 1)


class _BatchNorm(nn.BatchNorm2d):
    """Batch norm (same parameters and buffers) that can normalise each sample by its own statistics.

    ``per_sample`` True: instance statistics, as batch norm in training mode on a one-image batch;
    in training the running averages are still updated (mean over the batch's samples).
    """

    per_sample = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_sample:
            return super().forward(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        track = self.training and self.track_running_stats
        return F.instance_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_input_stats=True,
            momentum=self.momentum,
            eps=self.eps,
        )


class _Level(nn.Module):
    """One U-Net level (down-conv, inner levels, up-conv), laid out as the authors' block.

    Inner levels return ``[skip, up]`` concatenated, optionally times its sigmoid attention map.
    """

    def __init__(
        self,
        outer: int,
        inner: int,
        sub: _Level | None,
        config: DoveNetConfig,
        *,
        in_channels: int | None = None,
        outermost: bool = False,
        attention: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        bias = config.norm == "instance"
        norm = (lambda c: nn.InstanceNorm2d(c)) if bias else _BatchNorm
        down = nn.Conv2d(in_channels or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif sub is None:  # innermost: no norm on the 1x1 bottleneck
            layers = [
                nn.LeakyReLU(0.2),
                down,
                nn.ReLU(),
                nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias),
            ]
            layers.append(norm(outer))
        else:
            layers = [nn.LeakyReLU(0.2), down, norm(inner), sub, nn.ReLU()]
            layers += [nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), norm(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.outermost = outermost
        self.model = nn.Sequential(*layers)
        self.attention = (
            nn.Sequential(nn.Conv2d(2 * outer, 2 * outer, 1), nn.Sigmoid()) if attention else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        skip = self.model[0](x)  # the skip carries the activation, as the reference's in-place LeakyReLU
        out = torch.cat([skip, self.model[1:](skip)], 1)
        return out if self.attention is None else self.attention(out) * out


class DoveNetGenerator(nn.Module):
    """DoveNet's attention U-Net generator (see the module docstring for the layout and conventions).

    ``forward(composite, mask)``: ``(N, 3, H, W)`` composite in [-1, 1] and ``(N, 1, H, W)`` mask in
    [0, 1] -> ``(N, 3, H, W)`` harmonised image in [-1, 1]; ``H`` and ``W`` multiples of
    ``2**levels`` (256 for ``full``). A new generator is randomly initialised, not pretrained: load
    weights with :func:`load_dovenet`.
    """

    def __init__(self, config: str | DoveNetConfig = "full") -> None:
        super().__init__()
        cfg = get_config(config)
        self.config = cfg
        ngf = cfg.ngf
        level = _Level(ngf * 8, ngf * 8, None, cfg)
        for _ in range(cfg.levels - 5):
            level = _Level(ngf * 8, ngf * 8, level, cfg, dropout=cfg.dropout)
        for mult in (4, 2, 1):
            level = _Level(ngf * mult, ngf * mult * 2, level, cfg, attention=cfg.attention)
        self.model = _Level(cfg.out_channels, ngf, level, cfg, in_channels=cfg.in_channels, outermost=True)
        self._norm_stats = "sample"

    @property
    def norm_stats(self) -> str:
        """Batch-norm statistics: ``"sample"`` (each image's own; the authors' test protocol) or
        ``"running"`` (the stored running averages, classic eval mode)."""
        return self._norm_stats

    @norm_stats.setter
    def norm_stats(self, value: str) -> None:
        if value not in ("sample", "running"):
            raise ValueError(f"norm_stats must be 'sample' or 'running', got {value!r}")
        if value == "running" and self.config.norm == "instance":
            raise ValueError("an instance-norm DoveNet has no running statistics")
        for module in self.modules():
            if isinstance(module, _BatchNorm):
                module.per_sample = value == "sample"
        self._norm_stats = value

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        n, c, h, w = composite.shape
        if c != cfg.in_channels - 1 or mask.shape != (n, 1, h, w):
            raise ValueError(
                f"expected composite (N, {cfg.in_channels - 1}, H, W) and mask (N, 1, H, W), "
                f"got {tuple(composite.shape)} and {tuple(mask.shape)}"
            )
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(
                f"H and W must be multiples of {cfg.multiple} for {cfg.levels} levels, got {h}x{w}"
            )
        return self.model(torch.cat([composite, mask.to(composite.dtype)], 1))


def load_dovenet(
    path: str | os.PathLike[str],
    config: str | DoveNetConfig = "full",
    map_location: str | torch.device = "cpu",
) -> DoveNetGenerator:
    """A :class:`DoveNetGenerator` with the weights of a generator checkpoint, in eval mode, on the
    device ``map_location``.

    ``path`` holds the authors' key format (module docstring), e.g. their ``latest_net_G.pth`` with
    ``config="full"``, or a checkpoint written by
    :func:`~dftoolkit.generators.harmonise_train.train_dovenet`. Loading uses
    ``torch.load(weights_only=True)``: a pickle carrying code is refused.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says where to get one).
        CheckpointError: not a weights-only state dict, or keys/shapes that do not fit ``config``.
    """
    state = load_weights(path, what="DoveNet checkpoint", hint=WEIGHTS_HELP)
    model = DoveNetGenerator(config)
    fit_state_dict(
        model,
        state,
        where=f"{path}: the DoveNet generator {model.config}",
        hint="Expected the authors' generator key format (latest_net_G.pth, --netG s2ad) for this config.",
    )
    return model.to(map_location).eval()


def _generate(
    generator: DoveNetGenerator, composites: torch.Tensor, masks: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Raw generator output in [0, 1] for ``(N, 3, S, S)`` composites and ``(N, 1, S, S)`` masks in [0, 1]."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            chunks = [
                from_model_range(
                    generator(
                        to_model_range(composites[i : i + batch_size].to(device)),
                        masks[i : i + batch_size].to(device),
                    )
                ).to(composites.device)
                for i in range(0, len(composites), batch_size)
            ]
    finally:
        generator.train(was_training)
    return torch.cat(chunks) if chunks else composites.new_zeros(composites.shape)


def harmonise(
    generator: DoveNetGenerator,
    composites: torch.Tensor,
    masks: torch.Tensor,
    size: int | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """Harmonise many composites at once; outside the mask the composite is returned unchanged.

    Args:
        generator: a loaded :class:`DoveNetGenerator` (its device is used; eval mode is forced).
        composites: ``(N, 3, H, W)`` float in [0, 1].
        masks: ``(N, 1, H, W)`` (or ``(N, H, W)``) float in [0, 1]: the foreground to harmonise.
        size: run the generator at ``size`` x ``size`` (bilinear resize there and back);
            None: at ``H x W``, which must then be multiples of ``2**levels``.
        batch_size: images per forward pass.

    Returns:
        ``(N, 3, H, W)`` float in [0, 1]: ``mask * generated + (1 - mask) * composite``.
    """
    if masks.ndim == 3:
        masks = masks[:, None]
    if (
        composites.ndim != 4
        or composites.shape[1] != 3
        or masks.shape != (len(composites), 1, *composites.shape[2:])
    ):
        raise ValueError(
            "expected (N, 3, H, W) composites and (N, 1, H, W) masks, "
            f"got {tuple(composites.shape)} and {tuple(masks.shape)}"
        )
    if not composites.is_floating_point():
        raise ValueError(f"composites must be float in [0, 1], got {composites.dtype}")
    masks = masks.to(composites.dtype).clamp(0, 1)
    h, w = composites.shape[2:]
    if size is None or (h, w) == (size, size):
        generated = _generate(generator, composites, masks, batch_size)
    else:
        small = F.interpolate(composites, (size, size), mode="bilinear", align_corners=False, antialias=True)
        small_masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False, antialias=True)
        generated = F.interpolate(
            _generate(generator, small, small_masks, batch_size), (h, w), mode="bilinear", align_corners=False
        )
    return composites + masks * (generated - composites)


@register_blend
class DoveNetBlend(Blend):
    """DoveNet harmonisation of the naive composite around the face (needs a checkpoint)."""

    name = "dovenet"
    description = "DoveNet harmonisation of the naive composite around the face (needs a checkpoint)"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        config: str | DoveNetConfig = "full",
        size: int = 256,
        device: str = "auto",
        scale: float = 2.0,
        batch_size: int = 8,
        norm_stats: str = "sample",
    ) -> None:
        """Load the generator.

        Args:
            checkpoint: generator weights (required): the authors' ``latest_net_G.pth`` or one made
                by ``dftoolkit train-dovenet``.
            config: the checkpoint's architecture (``full``, ``small`` or a :class:`DoveNetConfig`).
            size: side of the square crop the generator sees (a multiple of ``2**levels``).
            device: torch device, ``"auto"``: CUDA when available.
            scale: crop side / longer side of the mask's bounding box (context around the face).
            batch_size: crops per forward pass in :meth:`blend_many`.
            norm_stats: see :attr:`DoveNetGenerator.norm_stats`.
        """
        if checkpoint is None:
            raise ValueError(f"the dovenet blend needs checkpoint=PATH to generator weights. {WEIGHTS_HELP}")
        cfg = get_config(config)
        if size < cfg.multiple or size % cfg.multiple:
            raise ValueError(
                f"size must be a positive multiple of {cfg.multiple} for this config, got {size}"
            )
        if scale < 1:
            raise ValueError(f"scale must be >= 1 (the crop must hold the whole mask), got {scale}")
        self.checkpoint = Path(checkpoint)
        self.config = cfg
        self.size, self.scale, self.batch_size = int(size), float(scale), int(batch_size)
        self.generator = load_dovenet(self.checkpoint, cfg, map_location=resolve_device(device))
        self.generator.norm_stats = norm_stats
        self._sha256: str | None = None

    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.blend_many(rendered[None], target[None], mask[None])[0]

    def blend_many(self, rendered: np.ndarray, targets: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Blend N frames at once: ``(N, H, W, 3)`` uint8 renderings and targets, ``(N, H, W)`` masks.

        Per frame: the naive composite ``mask * rendered + (1 - mask) * target``; a square of side
        ``scale`` x the longer side of the mask's bounding box around its centre, resized to
        ``size`` (edge pixels replicated beyond the frame); the generator on (crop, mask crop); its
        output warped back and put in with the mask. Frames with an empty mask are returned as is.
        Returns ``(N, H, W, 3)`` uint8, equal to ``targets`` where the mask is 0.
        """
        rendered, targets = np.asarray(rendered), np.asarray(targets)
        m = np.clip(np.asarray(masks, np.float32), 0, 1)
        if (
            rendered.shape != targets.shape
            or rendered.ndim != 4
            or rendered.shape[3] != 3
            or m.shape != rendered.shape[:3]
        ):
            raise ValueError(
                f"expected (N, H, W, 3) renderings and targets and (N, H, W) masks, "
                f"got {rendered.shape}, {targets.shape}, {m.shape}"
            )
        out = targets.copy()
        todo = np.flatnonzero((m > 0).any(axis=(1, 2)))
        if len(todo) == 0:
            return out
        h, w = targets.shape[1:3]
        target_f = targets[todo].astype(np.float32)
        mask_f = m[todo][..., None]
        composite = target_f + mask_f * (rendered[todo].astype(np.float32) - target_f)
        matrices = box_matrix(np.stack([_mask_box(mask) for mask in m[todo]]), self.size, self.scale)
        crops = warp(composite, matrices, self.size, border=cv2.BORDER_REPLICATE)
        crop_masks = warp(m[todo], matrices, self.size)
        generated = _generate(
            self.generator,
            torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous() / 255,
            torch.from_numpy(crop_masks)[:, None],
            self.batch_size,
        )
        generated = generated.permute(0, 2, 3, 1).contiguous().numpy() * 255
        for j, i in enumerate(todo):
            back = cv2.warpAffine(
                generated[j],
                matrices[j],
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            blended = target_f[j] + mask_f[j] * (back - target_f[j])
            out[i] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return out

    def params(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.checkpoint)
        return {
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": self._sha256,
            "config": asdict(self.config),
            "size": self.size,
            "scale": self.scale,
            "norm_stats": self.generator.norm_stats,
        }


def _mask_box(mask: np.ndarray) -> np.ndarray:
    """``x0, y0, x1, y1`` (slicing edges) of the pixels where ``(H, W)`` ``mask`` > 0."""
    ys, xs = np.nonzero(mask > 0)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
