"""M2TR: Multi-modal Multi-scale TRansformers for Deepfake detection (Wang et al., ICMR 2022).

A frame-level detector. An RGB face ``(N, 3, S, S)`` (S = 320, ImageNet mean/std applied in the data
transforms) goes through

- the first two stages of an EfficientNet-B4 (timm's ``tf_efficientnet_b4``: stem and the 6 first
  blocks), giving the shallow map ``f_s`` of C = 32 channels at S/4 = 80 px;
- 4 stacked units of a multi-scale transformer (:class:`MultiScaleAttention`: 4 heads of C/4
  channels with patches of S/4, S/8, S/16, S/32 px, i.e. 1, 4, 16, 64 tokens), a frequency branch
  and a cross-modality fusion (paper Sec. 3.1-3.2);
- the rest of the EfficientNet, global average pooling (1,792 features) and a 2-class linear
  classifier after dropout 0.5 (class 1 = fake); a mask decoder predicts the manipulated region
  ``(N, 1, S, S)`` from the fused shallow map.

Two variants (``frequency=``):

- ``"dct"`` (the paper, default): the frequency branch (:class:`DCTBranch`) takes the image's 2-D DCT,
  keeps the low (``u/H + v/W < 1/16``), middle (``< 1/8``) and high (the rest) bands, inverts each
  and turns the 9 band images into ``f_fq`` (C channels at S/4) with two strided convs; each unit
  computes ``f_mt = MT(f)`` and ``f = conv3x3(f + f_mt + f_fuse)`` with ``f_fuse`` the attention
  of queries from ``f`` over keys and values from ``f_fq``, scaled by ``sqrt(H/4 * W/4 * C)``
  (:class:`CrossModalityFusion`); the multi-scale attention is scaled by ``sqrt(ph * pw * C)``.
- ``"fft"`` (the authors' released code; their checkpoints load into it, :func:`load_m2tr`): each
  unit runs the transformer, then :class:`FreqBlock` ``x + FF(irfft2(rfft2(x) * W))`` with a learnable
  complex filter W on the transformer's output, then :class:`CMABlock` (attention over the 6,400
  positions scaled by ``1/sqrt(C)``, output ``rgb + LeakyReLU(BN(conv1x1(z)))``); the multi-scale
  attention is scaled by ``sqrt(C/4 * ph * pw)``; the backbone pads every stride-2 conv as
  efficientnet_pytorch does for a 380 px input (:class:`StaticSamePadConv2d`; equal to timm's
  padding at 320 px); in eval mode the classifier returns ``sigmoid`` of its projection.

``forward`` takes the authors' ``{"img": x}`` (:meth:`M2TR.model_input` builds it from a batch) and
returns their dict: ``logits`` ``(N, 2)``, ``mask`` ``(N, 1, S, S)`` probabilities (None without a
decoder) and ``"features:"`` ``(N, 1792)`` (the key with the colon, as the authors spell it).

Module names are the authors' (``layers.<u>.0.t.attention.query_embedding``,
``layers.<u>.1.filter.complex_weight``, ``classifier.projection``, ``decoder.*``), except the backbone:
it is timm's, and :func:`authors_names` maps its names to efficientnet_pytorch's (``model._conv_stem``,
``model._blocks.<i>._depthwise_conv``, ``model._fc``...). The authors' ``model._fc`` (the backbone's
own 2-class head) is unused in ``forward`` but counted: it is kept, frozen (so that DDP sees no
unused trainable parameter). The full fft model has 18,611,532 parameters, as the authors'.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.efficientnet import EfficientNet, decode_arch_def
from torch import Tensor, nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.detectors.base import IMAGENET_MEAN, IMAGENET_STD, Detector, InputSpec, register_detector

__all__ = [
    "AUTHORS_PAD_SIZE",
    "BANDS",
    "CHECKPOINT_HINT",
    "CONFIGS",
    "FREQUENCIES",
    "M2TR",
    "RECIPES",
    "CMABlock",
    "CrossModalityFusion",
    "DCTBranch",
    "FreqBlock",
    "GlobalFilter",
    "M2TRConfig",
    "MultiScaleAttention",
    "StaticSamePadConv2d",
    "authors_names",
    "band_masks",
    "build",
    "dct_matrix",
    "load_m2tr",
    "supervised_contrastive",
]

FREQUENCIES = ("dct", "fft")
BANDS = ((0.0, 1 / 16), (1 / 16, 1 / 8), (1 / 8, math.inf))
"""The paper's DCT bands (low, middle, high) on ``u/H + v/W`` (coefficient row u, column v)."""
AUTHORS_PAD_SIZE = 380
"""The input size efficientnet_pytorch's static "same" padding is computed for in the authors' code
(B4's native size), at every layer."""
TEXTURE_STAGES = 2
"""Backbone stages before the transformer units (the authors' ``TEXTURE_LAYER: b2``: 6 blocks of B4)."""
DROP_CONNECT = 0.2
"""Drop-connect rate of the last block (block i: ``0.2 * i / blocks``), as efficientnet_pytorch."""
BN_MOMENTUM = 0.01
"""Backbone batch-norm momentum (the authors' 1 - 0.99)."""
CHECKPOINT_HINT = (
    "expected the authors' M2TR file (https://github.com/wdrink/M2TR-Multi-modal-Multi-scale-"
    "Transformers-for-Deepfake-Detection, e.g. the FF++ c23 model): a dict whose 'model_state' maps "
    "their names ('model._conv_stem.weight', 'layers.0.1.filter.complex_weight', "
    "'classifier.projection.weight', ...) to tensors; the toolkit never downloads it"
)

RECIPES: dict[str, dict[str, Any]] = {
    # The authors' released configs/m2tr.yaml (+ configs/default.yaml for the schedule): SGD, lr 5e-4,
    # momentum 0.9, no weight decay, cosine schedule without warm-up, 20 epochs, 8 images per GPU
    # (on 8 GPUs). Their cosine ends at 1e-6 and is followed by 10 cool-down epochs, not reproduced.
    "paper": {
        "config": "full",
        "optimizer": "sgd",
        "lr": 5e-4,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "scheduler": "cosine",
        "warmup_epochs": 0,
        "epochs": 20,
        "batch_size": 8,
    },
    "small": {"config": "small", "optimizer": "adam", "lr": 1e-3, "epochs": 3, "batch_size": 4},
}


@dataclass(frozen=True)
class M2TRConfig:
    """Sizes of an M2TR network.

    Attributes:
        size: input side S in pixels; S/4 must be a multiple of 8 (the smallest patches).
        arch: timm EfficientNet stage strings for a narrower backbone, or None for
            ``tf_efficientnet_b4``.
        stem: stem channels of ``arch``.
        head: channels of the last 1x1 conv (pooled features) of ``arch``.
        depth: transformer units.
        dropout: dropout before the classifier's projection.
    """

    size: int = 320
    arch: tuple[tuple[str, ...], ...] | None = None
    stem: int = 48
    head: int = 1792
    depth: int = 4
    dropout: float = 0.5
    patches: tuple[int, ...] = field(default=(1, 2, 4, 8))


CONFIGS = {
    "full": M2TRConfig(),
    "small": M2TRConfig(
        size=64,
        arch=(
            ("ds_r1_k3_s1_e1_c8_se0.25",),
            ("ir_r1_k3_s2_e6_c16_se0.25",),
            ("ir_r1_k5_s2_e6_c24_se0.25",),
            ("ir_r1_k3_s2_e6_c32_se0.25",),
            ("ir_r1_k5_s2_e6_c48_se0.25",),
        ),
        stem=16,
        head=64,
        depth=2,
    ),
}


class StaticSamePadConv2d(nn.Conv2d):
    """A conv with TensorFlow "same" padding fixed for a ``size`` px input, as efficientnet_pytorch's
    ``Conv2dStaticSamePadding`` with the authors' ``image_size=380`` at every layer: a total of
    ``max((ceil(size/s) - 1) s + (k - 1) d + 1 - size, 0)`` per axis, the larger half after.

    Built from ``conv`` (its weight and bias are shared, so the parameter names do not change).
    """

    def __init__(self, conv: nn.Conv2d, size: int = AUTHORS_PAD_SIZE) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        self.weight = conv.weight
        self.bias = conv.bias
        pads = []
        for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        self.pad = (*pads[1], *pads[0])  # F.pad order: left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``."""
        return F.conv2d(
            F.pad(x, self.pad), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def _backbone(cfg: M2TRConfig, static_padding: bool) -> EfficientNet:
    """timm's ``tf_efficientnet_b4`` (or ``cfg.arch``), 2-class head, drop-connect 0.2, BN momentum
    0.01; with ``static_padding`` its dynamic "same" convs become :class:`StaticSamePadConv2d`."""
    if cfg.arch is None:
        net = timm.create_model(
            "tf_efficientnet_b4", pretrained=False, num_classes=2, drop_path_rate=DROP_CONNECT
        )
    else:
        net = EfficientNet(
            decode_arch_def([list(stage) for stage in cfg.arch]),
            num_classes=2,
            num_features=cfg.head,
            stem_size=cfg.stem,
            pad_type="same",
            act_layer=nn.SiLU,
            norm_layer=partial(nn.BatchNorm2d, eps=1e-3),
            drop_path_rate=DROP_CONNECT,
        )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = BN_MOMENTUM
    if static_padding:
        for name, m in list(net.named_modules()):
            if isinstance(m, Conv2dSame):
                parent, _, child = name.rpartition(".")
                setattr(net.get_submodule(parent) if parent else net, child, StaticSamePadConv2d(m))
    net.classifier.requires_grad_(False)  # the authors' model._fc: counted, never used
    return net


def authors_names(net: EfficientNet, prefix: str = "model.") -> dict[str, str]:
    """timm EfficientNet state-dict name -> efficientnet_pytorch's (the authors'), both with ``prefix``.

    Stem ``conv_stem``/``bn1`` -> ``_conv_stem``/``_bn0``; block ``blocks.<s>.<j>`` -> ``_blocks.<i>``
    (i counting blocks over the stages) with ``conv_pw, bn1, conv_dw, bn2, se.conv_reduce,
    se.conv_expand, conv_pwl, bn3`` -> ``_expand_conv, _bn0, _depthwise_conv, _bn1, _se_reduce,
    _se_expand, _project_conv, _bn2`` (a depthwise-separable block: ``conv_dw, bn1, se.*, conv_pw,
    bn2`` -> ``_depthwise_conv, _bn1, _se_*, _project_conv, _bn2``); head ``conv_head``/``bn2`` ->
    ``_conv_head``/``_bn1``; ``classifier`` -> ``_fc``.
    """
    top = {
        "conv_stem": "_conv_stem",
        "bn1": "_bn0",
        "conv_head": "_conv_head",
        "bn2": "_bn1",
        "classifier": "_fc",
    }
    se = {"se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand"}
    inverted = {
        "conv_pw": "_expand_conv",
        "bn1": "_bn0",
        "conv_dw": "_depthwise_conv",
        "bn2": "_bn1",
        "conv_pwl": "_project_conv",
        "bn3": "_bn2",
        **se,
    }
    separable = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2", **se}
    flat: dict[str, tuple[int, dict[str, str]]] = {}
    for s, stage in enumerate(net.blocks):
        for j, block in enumerate(stage):
            if not isinstance(block, InvertedResidual | DepthwiseSeparableConv):
                raise TypeError(f"no efficientnet_pytorch name for block {type(block).__name__}")
            flat[f"blocks.{s}.{j}"] = (
                len(flat),
                inverted if isinstance(block, InvertedResidual) else separable,
            )
    names = {}
    for key in net.state_dict():
        module, _, tensor = key.rpartition(".")
        if module.startswith("blocks."):
            *block, inner = module.split(".", 3)
            index, table = flat[".".join(block)]
            names[prefix + key] = f"{prefix}_blocks.{index}.{table[inner]}.{tensor}"
        else:
            names[prefix + key] = f"{prefix}{top[module]}.{tensor}"
    return names


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> list:
    """Conv (with bias) + BN + LeakyReLU(0.2): the authors' conv block."""
    return [
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    ]


class FeedForward2D(nn.Module):
    """The authors' feed-forward block: 3x3 conv (dilation 2) + BN + LeakyReLU(0.2), 3x3 conv + BN +
    LeakyReLU(0.2), on ``(N, C, H, W)``; keys ``conv.{0,1,3,4}``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            *_conv_bn_act(channels, channels, 3, padding=2, dilation=2),
            *_conv_bn_act(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return self.conv(x)


class MultiScaleAttention(nn.Module):
    """Multi-scale multi-head self-attention (paper Sec. 3.1, Fig. 3) on ``(N, C, H, W)``.

    Q, K, V are 1x1 convs; their channels split into ``len(patches)`` heads of ``C/heads`` channels.
    Head h cuts its maps into patches of ``H/r_h x W/r_h`` (r = 1, 2, 4, 8: 1, 4, 16, 64 tokens), a
    token being a whole patch, and computes ``o_i = sum_j softmax_j(q_i . k_j / sqrt(d)) v_j`` with
    ``d = ph * pw * scale_channels`` (the paper: C; the authors' code: C/heads). The heads' outputs are
    stitched back, concatenated and passed through ``output_linear`` (3x3 conv + BN + LeakyReLU(0.2)).
    """

    def __init__(self, channels: int, patches: tuple[int, ...], scale_channels: int) -> None:
        super().__init__()
        if channels % len(patches):
            raise ValueError(f"{channels} channels do not split into {len(patches)} heads")
        self.patches, self.scale_channels = patches, scale_channels
        self.query_embedding = nn.Conv2d(channels, channels, 1)
        self.value_embedding = nn.Conv2d(channels, channels, 1)
        self.key_embedding = nn.Conv2d(channels, channels, 1)
        self.output_linear = nn.Sequential(*_conv_bn_act(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``; H and W divisible by every ``patches`` ratio."""
        b, c, h, w = x.shape
        if any(h % r or w % r for r in self.patches):
            raise ValueError(f"a {h}x{w} map does not split into patches of 1/{self.patches} its side")
        heads = len(self.patches)
        d_k = c // heads
        qkv = [m(x).chunk(heads, 1) for m in (self.query_embedding, self.key_embedding, self.value_embedding)]
        outputs = []
        for r, q, k, v in zip(self.patches, *qkv, strict=True):
            ph, pw = h // r, w // r

            def tokens(t: Tensor, ph: int = ph, pw: int = pw, r: int = r) -> Tensor:
                t = t.reshape(b, d_k, r, ph, r, pw).permute(0, 2, 4, 1, 3, 5)
                return t.reshape(b, r * r, d_k * ph * pw)

            scores = tokens(q) @ tokens(k).transpose(1, 2) / math.sqrt(ph * pw * self.scale_channels)
            y = scores.softmax(-1) @ tokens(v)  # (b, r*r, d_k*ph*pw)
            y = y.reshape(b, r, r, d_k, ph, pw).permute(0, 3, 1, 4, 2, 5)
            outputs.append(y.reshape(b, d_k, h, w))
        return self.output_linear(torch.cat(outputs, 1))


class TransformerBlock(nn.Module):
    """``y = x + attention(x)``, output ``y + feed_forward(y)`` (keys ``attention``, ``feed_forward``)."""

    def __init__(self, channels: int, patches: tuple[int, ...], scale_channels: int) -> None:
        super().__init__()
        self.attention = MultiScaleAttention(channels, patches, scale_channels)
        self.feed_forward = FeedForward2D(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        y = x + self.attention(x)
        return y + self.feed_forward(y)


class PatchTrans(nn.Module):
    """The authors' wrapper of a :class:`TransformerBlock` (key ``t``)."""

    def __init__(self, channels: int, patches: tuple[int, ...], scale_channels: int) -> None:
        super().__init__()
        self.t = TransformerBlock(channels, patches, scale_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return self.t(x)


class GlobalFilter(nn.Module):
    """The released code's frequency filter: ``irfft2(rfft2(x) * W)`` over H and W (orthonormal, in
    float32), W a learnable complex ``(H, W/2 + 1, C)`` filter stored as ``complex_weight``
    ``(H, W/2 + 1, C, 2)`` (initialised N(0, 0.02^2))."""

    def __init__(self, channels: int, h: int, w: int) -> None:
        super().__init__()
        self.complex_weight = nn.Parameter(torch.randn(h, w // 2 + 1, channels, 2) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)`` (H, W as built)."""
        h, w = x.shape[-2:]
        y = torch.fft.rfft2(x.permute(0, 2, 3, 1).float(), dim=(1, 2), norm="ortho")
        y = torch.fft.irfft2(
            y * torch.view_as_complex(self.complex_weight), s=(h, w), dim=(1, 2), norm="ortho"
        )
        return y.to(x.dtype).permute(0, 3, 1, 2)


class FreqBlock(nn.Module):
    """The released code's frequency block: ``x + feed_forward(filter(x))`` (keys ``filter``,
    ``feed_forward``)."""

    def __init__(self, channels: int, h: int, w: int) -> None:
        super().__init__()
        self.filter = GlobalFilter(channels, h, w)
        self.feed_forward = FeedForward2D(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return x + self.feed_forward(self.filter(x))


def _attend_positions(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Attention of every position of ``q`` over every position of ``k``/``v``, all ``(N, C, H, W)``:
    ``softmax(Q K^T * scale) V`` with Q, K, V ``(N, HW, C)``; returns ``(N, C, H, W)``."""
    n, _, h, w = q.shape
    attn = (q.flatten(2).transpose(1, 2) @ k.flatten(2) * scale).softmax(-1)  # (N, HW, HW)
    return (attn @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)


class CMABlock(nn.Module):
    """The released code's fusion: Q = conv1(rgb), K = conv2(freq), V = conv3(freq) (1x1 convs), ``z =
    softmax(Q K^T / sqrt(C)) V`` over all H*W positions, output ``rgb + conv4(z)`` with ``conv4`` =
    1x1 conv + BN + LeakyReLU(0.2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.scale = channels**-0.5
        self.conv4 = nn.Sequential(*_conv_bn_act(channels, channels, 1))

    def forward(self, rgb: Tensor, freq: Tensor) -> Tensor:
        """``(N, C, H, W)`` twice -> ``(N, C, H, W)``."""
        z = _attend_positions(self.conv1(rgb), self.conv2(freq), self.conv3(freq), self.scale)
        return rgb + self.conv4(z)


class CrossModalityFusion(nn.Module):
    """The paper's cross-modality fusion (Sec. 3.2): ``Q = conv_q(f_s)``, ``K = conv_k(f_fq)``, ``V =
    conv_v(f_fq)`` (1x1 convs), ``f_fuse = softmax(Q K^T / sqrt(H W C)) V`` over all positions (H, W
    of the map, i.e. the image's H/4, W/4), output ``f_cmf = conv(f_s + f_mt + f_fuse)`` with ``conv``
    a 3x3 conv + BN + LeakyReLU(0.2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_q = nn.Conv2d(channels, channels, 1)
        self.conv_k = nn.Conv2d(channels, channels, 1)
        self.conv_v = nn.Conv2d(channels, channels, 1)
        self.conv = nn.Sequential(*_conv_bn_act(channels, channels, 3, padding=1))

    def forward(self, f_s: Tensor, f_mt: Tensor, f_fq: Tensor) -> Tensor:
        """RGB ``f_s``, transformer ``f_mt``, frequency ``f_fq``, each ``(N, C, H, W)`` -> same shape."""
        c, h, w = f_s.shape[1:]
        f_fuse = _attend_positions(
            self.conv_q(f_s), self.conv_k(f_fq), self.conv_v(f_fq), (h * w * c) ** -0.5
        )
        return self.conv(f_s + f_mt + f_fuse)


def dct_matrix(n: int, device: torch.device | None = None) -> Tensor:
    """The orthonormal DCT-II matrix ``(n, n)``: ``D[k, i] = a_k cos(pi (2i + 1) k / 2n)``, ``a_0 =
    sqrt(1/n)``, ``a_k = sqrt(2/n)``; the 2-D DCT of ``x`` is ``D x D^T``, its inverse ``D^T X D``."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(n, dtype=torch.float64, device=device)[None]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.float()


def band_masks(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """``(3, h, w)`` 0/1 masks of the DCT coefficients (row u, column v) in each of :data:`BANDS`: low
    ``u/h + v/w < 1/16``, middle ``< 1/8``, high the rest (the paper's 0-1/16, 1/16-1/8, 1/8-1)."""
    r = torch.arange(h, device=device)[:, None] / h + torch.arange(w, device=device)[None] / w
    return torch.stack([((lo <= r) & (r < hi)).float() for lo, hi in BANDS])


class DCTBranch(nn.Module):
    """The paper's frequency branch (Sec. 3.2): per colour channel, the 2-D DCT, the three band filters
    of :func:`band_masks`, the inverse DCT of each band; the 9 band images ``(N, 9, S, S)`` (band-major,
    ``3 * band + colour``) then go through two stride-2 3x3 conv blocks (keys ``convs.{0,1,3,4}``) to
    ``f_fq`` ``(N, C, S/4, S/4)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *_conv_bn_act(9, channels, 3, stride=2, padding=1),
            *_conv_bn_act(channels, channels, 3, stride=2, padding=1),
        )

    @staticmethod
    def bands(x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, 9, H, W)``: ``idct(mask_b * dct(x))`` for the 3 bands b."""
        h, w = x.shape[-2:]
        dh, dw = dct_matrix(h, x.device).to(x.dtype), dct_matrix(w, x.device).to(x.dtype)
        coefficients = dh @ x @ dw.T
        masks = band_masks(h, w, x.device).to(x.dtype)
        return torch.cat([dh.T @ (coefficients * m) @ dw for m in masks], 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, S, S)`` image -> ``(N, C, S/4, S/4)`` frequency features."""
        return self.convs(self.bands(x))


class Deconv(nn.Module):
    """Bilinear x2 upsampling (align_corners) + conv + LeakyReLU(0.2) (the authors' ``Deconv``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, 2H, 2W)``."""
        return F.leaky_relu(
            self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)), 0.2
        )


class Localizer(nn.Module):
    """The mask decoder (the authors' ``Localizer``): Deconv(C, C), 3x3 conv to C/2 + LeakyReLU(0.2),
    Deconv(C/2, C/2), LeakyReLU(0.2) + 3x3 conv to 1 channel, sigmoid: ``(N, C, H, W)`` ->
    ``(N, 1, 4H, 4W)``. The released class does not run (its ``super`` call is wrong) and its first
    Deconv has no padding (320 px -> 316); here every 3x3 conv is padded, so the mask is S x S."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels // 2
        self.deconv1 = Deconv(channels, channels)
        self.conv1 = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.deconv2 = Deconv(hidden, hidden)
        self.conv2 = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(hidden, 1, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, 1, 4H, 4W)`` probabilities."""
        return torch.sigmoid(self.conv2(self.deconv2(self.conv1(self.deconv1(x)))))


class Classifier2D(nn.Module):
    """Dropout + ``projection`` Linear(features, 2); in eval mode with ``sigmoid_in_eval`` (the authors'
    ``act_func="sigmoid"``) the output is ``sigmoid`` of the projection, per class."""

    def __init__(self, features: int, classes: int, dropout: float, sigmoid_in_eval: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(features, classes)
        self.sigmoid_in_eval = sigmoid_in_eval

    def forward(self, x: Tensor) -> Tensor:
        """``(N, features)`` -> ``(N, classes)``."""
        x = self.projection(self.dropout(x))
        return torch.sigmoid(x) if self.sigmoid_in_eval and not self.training else x


def supervised_contrastive(features: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss on the pooled features ``(N, D)`` with ``labels`` ``(N,)``: for each
    anchor i with positives P(i) (other items of its label), ``-mean_{p in P(i)} log(exp(s_ip / t) /
    sum_{j != i} exp(s_ij / t))`` with cosine similarities s, averaged over the anchors that have a
    positive (0 when none has)."""
    z = F.normalize(features.float(), dim=1)
    n = len(z)
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_pair, -1e9)
    log_prob = sim - sim.logsumexp(1, keepdim=True)
    positive = (labels[:, None] == labels[None]) & ~self_pair
    count = positive.sum(1)
    anchors = count > 0
    if not anchors.any():
        return sim.new_zeros(()) + 0 * features.sum()
    per_anchor = log_prob.masked_fill(~positive, 0).sum(1)[anchors] / count[anchors]
    return -per_anchor.mean()


class M2TR(Detector):
    """M2TR (see the module). ``forward({"img": (N, 3, S, S)})`` -> ``{"logits": (N, 2), "mask":
    (N, 1, S, S) or None, "features:": (N, 1792)}``.

    Args:
        config: sizes (:data:`CONFIGS`).
        frequency: ``"dct"`` (the paper) or ``"fft"`` (the authors' code).
        decoder: build the mask decoder (the authors' released config has none).
        ce_weight, seg_weight, contrastive_weight: weights of the three training losses.
        temperature: of the contrastive loss.
    """

    name = "m2tr"

    def __init__(
        self,
        config: M2TRConfig | None = None,
        frequency: str = "dct",
        *,
        decoder: bool = True,
        ce_weight: float = 1.0,
        seg_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if frequency not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
        cfg = config or M2TRConfig()
        if cfg.size % (4 * max(cfg.patches)):
            raise ValueError(f"size must be a multiple of {4 * max(cfg.patches)}, got {cfg.size}")
        self.config, self.frequency = cfg, frequency
        self.weights = {"ce": ce_weight, "seg": seg_weight, "contrastive": contrastive_weight}
        self.temperature = temperature
        self.spec = InputSpec(
            crop="face",
            scale=1.3,  # the authors' face box enlargement is not published
            train_scale=None,
            size=cfg.size,
            frames=1,
            sampling="frame",
            channels=3,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            layout="NCHW",
            video_score="mean_probability",
            masks=True,
        )
        fft = frequency == "fft"
        self.model = _backbone(cfg, static_padding=fft)
        channels = self.model.blocks[TEXTURE_STAGES - 1][-1].conv_pwl.out_channels
        side = cfg.size // 4
        heads = len(cfg.patches)
        scale_channels = channels // heads if fft else channels
        units = []
        for _ in range(cfg.depth):
            unit: list[nn.Module] = [PatchTrans(channels, cfg.patches, scale_channels)]
            unit += (
                [FreqBlock(channels, side, side), CMABlock(channels)]
                if fft
                else [CrossModalityFusion(channels)]
            )
            units.append(nn.ModuleList(unit))
        self.layers = nn.ModuleList(units)
        self.frequency_branch = None if fft else DCTBranch(channels)
        self.classifier = Classifier2D(self.model.num_features, 2, cfg.dropout, sigmoid_in_eval=fft)
        self.decoder = Localizer(channels) if decoder else None

    def model_input(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The authors' input dict ``{"img": batch["clip"]}``."""
        return {"img": batch["clip"]}

    def textures(self, x: Tensor) -> Tensor:
        """``(N, 3, S, S)`` -> the shallow map ``(N, C, S/4, S/4)`` (stem and the first stages)."""
        net = self.model
        return net.blocks[:TEXTURE_STAGES](net.bn1(net.conv_stem(x)))

    def forward(self, x: Mapping[str, Tensor]) -> dict[str, Tensor | None]:
        """``{"img": (N, 3, S, S)}`` -> ``{"logits": (N, 2), "mask": (N, 1, S, S) | None, "features:":
        (N, 1792)}`` (logits are per-class sigmoids in eval mode for ``fft``)."""
        image = x["img"]
        rgb = self.textures(image)
        if self.frequency_branch is None:
            for attention, freq_block, fusion in self.layers:
                rgb = attention(rgb)
                rgb = fusion(rgb, freq_block(rgb))
        else:
            f_fq = self.frequency_branch(image)
            for attention, fusion in self.layers:
                rgb = fusion(rgb, attention(rgb), f_fq)
        net = self.model
        features = net.bn2(net.conv_head(net.blocks[TEXTURE_STAGES:](rgb))).mean((2, 3))
        return {
            "logits": self.classifier(features),
            "mask": None if self.decoder is None else self.decoder(rgb),
            "features:": features,
        }

    def fake_logit(self, output: Mapping[str, Tensor]) -> Tensor:
        """``(N,)``: ``logits[:, 1] - logits[:, 0]``. For ``fft`` in eval mode the logits are the
        authors' per-class sigmoids s, and ``s1 - s0`` is the logit of their score ``softmax(s)[:, 1]``;
        otherwise the logits are raw and this is the logit of the softmax fake probability. The mode
        read is the model's when this is called (the one ``forward`` ran in)."""
        logits = output["logits"]
        return logits[:, 1] - logits[:, 0]

    def losses(
        self, output: Mapping[str, Tensor], labels: Tensor, batch: dict[str, Any] | None = None
    ) -> dict[str, Tensor]:
        """The paper's losses (Sec. 3.3), each times its weight, on a training-mode output:

        - ``ce``: cross-entropy of the raw logits against ``labels`` (``(N,)``, 1 = fake);
        - ``seg`` (with a decoder): per-pixel binary cross-entropy of ``mask`` against the batch's
          ``mask`` ``(N, 1, S, S)``, averaged per item and weighted by ``mask_weight`` (the mean over
          the items of weight 1; 0 when there is none);
        - ``contrastive``: :func:`supervised_contrastive` of the pooled features (the paper's form is
          not among the facts; this is the supervised contrastive loss, temperature ``temperature``).
        """
        out = {"ce": self.weights["ce"] * F.cross_entropy(output["logits"].float(), labels.long())}
        mask = output["mask"]
        if mask is not None and batch is not None and "mask" in batch:
            target = batch["mask"].to(mask.device, torch.float32)
            if target.shape[-2:] != mask.shape[-2:]:
                target = F.interpolate(target, size=mask.shape[-2:], mode="nearest")
            with torch.autocast(mask.device.type, enabled=False):  # BCE on probabilities is fp32 only
                per_item = F.binary_cross_entropy(mask.float(), target, reduction="none").mean((1, 2, 3))
            weight = batch["mask_weight"].to(per_item)
            out["seg"] = self.weights["seg"] * (per_item * weight).sum() / weight.sum().clamp(min=1)
        out["contrastive"] = self.weights["contrastive"] * supervised_contrastive(
            output["features:"], labels, self.temperature
        )
        return out


def load_m2tr(path: str | os.PathLike[str], *, frequency: str = "fft", config: str = "full") -> M2TR:
    """An M2TR detector with the weights of the authors' file at ``path``, in eval mode.

    The file is a dict whose ``model_state`` maps the authors' names to tensors (a ``module.`` prefix
    is stripped); the backbone's names are efficientnet_pytorch's (:func:`authors_names`). A decoder
    is built when the file has ``decoder.*`` weights (the released config has none). Read with
    ``torch.load(weights_only=True)`` and loaded strictly.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a safe weights file, no ``model_state``, or names or shapes differ.
        ValueError: ``frequency`` is not ``"fft"`` (the authors released that variant only).
    """
    if frequency != "fft":
        raise ValueError(f"the authors' checkpoints are of the 'fft' variant, not {frequency!r}")
    path = Path(path)
    checkpoint = load_weights(path, what="M2TR checkpoint", hint=CHECKPOINT_HINT)
    if not isinstance(checkpoint, Mapping) or "model_state" not in checkpoint:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not an authors' M2TR file (no 'model_state'; found {found}); {CHECKPOINT_HINT}"
        )
    state = checkpoint["model_state"]
    if isinstance(state, Mapping):
        state = {k.removeprefix("module.") if isinstance(k, str) else k: v for k, v in state.items()}
    decoder = isinstance(state, Mapping) and any(
        isinstance(k, str) and k.startswith("decoder.") for k in state
    )
    model = build(config, frequency="fft", decoder=decoder)
    if isinstance(state, Mapping):
        timm_names = {a: t for t, a in authors_names(model.model).items()}
        state = {timm_names.get(k, k): v for k, v in state.items()}
    fit_state_dict(
        model, state, where=f"{path} (M2TR, fft, {config})", strip_prefix=None, hint=CHECKPOINT_HINT
    )
    return model.eval()


@register_detector(
    "m2tr",
    "M2TR (ICMR 2022): multi-scale transformer and frequency fusion on EfficientNet-B4 features; frames",
    load_official=load_m2tr,
    recipes=RECIPES,
)
def build(config: str = "full", *, frequency: str = "dct", decoder: bool = True, **losses: float) -> M2TR:
    """An M2TR detector.

    Args:
        config: ``"full"`` (320 px, EfficientNet-B4, 4 units) or ``"small"`` (64 px, a 5-stage
            EfficientNet of 8-48 channels, 16-channel map, 2 units, for tests and the demo on a CPU).
        frequency: ``"dct"`` (the paper) or ``"fft"`` (the authors' code).
        decoder: build the mask decoder.
        losses: ``ce_weight``, ``seg_weight``, ``contrastive_weight``, ``temperature``.
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {tuple(CONFIGS)}, got {config!r}")
    return M2TR(CONFIGS[config], frequency, decoder=decoder, **losses)
