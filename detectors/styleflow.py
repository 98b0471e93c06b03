"""StyleFlow (Choi et al., "Exploiting Style Latent Flows for Generalizing Deepfake Video Detection",
CVPR 2024): the temporal changes of StyleGAN style latents reveal generated faces.

Input: FFHQ-aligned faces at 256 x 256 cut with one fixed alignment per clip (the authors' rule),
normalised with mean/std 0.5 in the data transforms, 32 consecutive frames, layout ``(N, 3, T, H, W)``.

- **pSp** (:class:`PSPEncoder`; Richardson et al.'s GradualStyleEncoder, IR-SE-50 with a feature
  pyramid, 267,136,704 parameters) maps each frame to a W+ latent ``s_t`` of ``(18, 512)``; with
  ``start_from_latent_avg`` (the released encoders) the output is ``encoder(x) + latent_avg``. It is
  frozen in both stages.
- **Style flow** (paper Sec. 3.1): ``Delta s_t = s_{t+1} - s_t``, flattened: ``(N, T - 1, 9216)``,
  ``(N, 31, 9216)`` for 32 frames (:func:`style_flow`).
- **StyleGRU** (:class:`StyleGRU`, the authors' code, 763,514,943 parameters): a latent dropout
  (p = 0.2: one Bernoulli mask over 4,608 features tiled twice, shared by every frame and clip of
  the batch), ``BatchNorm1d(31)`` over the *time steps*, a 2-layer bidirectional GRU (hidden 4096,
  dropout 0.1, learned initial state), the 4 final hidden states concatenated as the style feature
  ``E_style`` ``(N, 16384)``, and a head Dropout(0.5) -> residual MLP 16384 -> 4096 -> 16384 (a
  Dropout(0.5) between its ReLU and second Linear) -> Dropout(0.5) -> Linear(16384, 1). Its
  ``forward`` returns ``(logits (N, 1), E_style (N, 16384))``.

Training (build option ``stage``):

- **Stage 1** (style representation learning, Sec. 3.3; the authors' ``train.py``): the detector is
  pSp + StyleGRU, ``forward(flow)`` is StyleGRU's. Losses: binary cross-entropy of the logits plus a
  triplet loss ``max(0, ||E_a - E_p|| - ||E_a - E_n|| + 1)`` on L2 distances (the authors'
  ``MarginRankingLoss(margin=1.0)`` of ``pairwise_distance``s), the anchors, positives and negatives
  chosen by label across the videos of the batch (:func:`triplet_indices`). Adam, lr 5e-4.
- **Stage 2** (style attention-based detection, Sec. 3.2; no public code, so built from the paper):
  pSp and StyleGRU frozen; a 3-D ResNet-50 content branch on the clip resized to 224 gives ``C``
  ``(N, 16, 2048)``; the style attention module ``SAM(E, C) = phi(softmax(Q_C K_E^T / sqrt(d)) V_E)``
  (Eq. 3-4) with ``Q`` from ``C`` and ``K``, ``V`` from the 4 hidden states of ``E_style``; a
  temporal transformer encoder over the 16 steps of ``C + SAM(E, C)``, the mean over steps and a
  linear head whose sigmoid is the probability of fake (Eq. 5). ``forward({"clip", "flow"})`` returns
  ``(N, 1)`` logits. BCE, SGD.

The W+ latents are computed once per frame and cached (:class:`LatentCache`), keyed by
``(sha256 of pSp's state, dataset, video_id, frame index)``; :meth:`StyleFlow.model_input` builds
the model's input from a batch, running the frozen encoder only on frames the cache lacks. The
cache is in memory by default, or a folder (option ``latent_cache``) laid out as
``<folder>/<sha256>/<dataset>/<video_id>/<frame:06d>.npy`` (names percent-quoted), float32
``(18, 512)`` each. Like the authors' per-frame latents it holds one latent per frame: the first crop
of a frame seen is the one kept, so training clips are not augmented (``spec.augment`` is False).

Module names are the authors', so their files load strictly (:func:`load_styleflow`)::

    psp.encoder.input_layer.{0,1,2}.*          conv, BN, PReLU
    psp.encoder.body.<i>.shortcut_layer.*      psp.encoder.body.<i>.res_layer.{0..5}.*
    psp.encoder.styles.<j>.{convs.<k>,linear}.*, psp.encoder.latlayer{1,2}.*, psp.latent_avg
    stylegru.hidden_state, stylegru.gru.*, stylegru.bn.*, stylegru.dense.1.fn.net.{0,3}.*,
    stylegru.dense.3.*
    (stage 2) content.*, sam.*, tte.*, head.*
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.detectors.base import Detector, InputSpec, register_detector

__all__ = [
    "PARTS",
    "PSP_HINT",
    "RECIPES",
    "STAGES",
    "STYLEFLOW_CONFIGS",
    "STYLEGRU_HINT",
    "GradualStyleEncoder",
    "LatentCache",
    "LatentDropout",
    "PSPEncoder",
    "ResNet3D",
    "StyleAttention",
    "StyleFlow",
    "StyleFlowConfig",
    "StyleGRU",
    "TemporalEncoder",
    "build",
    "load_styleflow",
    "style_flow",
    "triplet_indices",
    "triplet_loss",
]

PARTS = ("psp", "stylegru")
STAGES = (1, 2)
PSP_HINT = (
    "expected the authors' pSp file (e.g. psp_ffhq_encode.pt from "
    "https://github.com/eladrich/pixel2style2pixel): a dict with 'state_dict' mapping 'encoder.<name>' "
    "(and 'decoder.<name>') to tensors and 'latent_avg' of shape (18, 512); it is never downloaded"
)
STYLEGRU_HINT = (
    "expected a StyleGRU file of the authors' StyleGRU/train.py ({'epoch': e, 'state_dict': "
    "{'module.model.<name>': tensor}}) or a plain StyleGRU state dict (https://github.com/jongwook-Choi/"
    "StyleFlow); it is never downloaded"
)

RECIPES: dict[str, dict[str, Any]] = {
    # Stage 1 as the authors' StyleGRU/train.py runs it: Adam, lr 5e-4 (also the paper), batch 128,
    # 100 epochs (theirs of 50,000 random triplets each; ours of one clip per video), no schedule or
    # weight decay. Stage 2 (SGD in the paper) has no published settings.
    "paper": {
        "config": "full",
        "optimizer": "adam",
        "lr": 5e-4,
        "weight_decay": 0.0,
        "scheduler": "none",
        "warmup_epochs": 0,
        "epochs": 100,
        "batch_size": 128,
    },
    "small": {
        "config": "small",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "scheduler": "none",
        "warmup_epochs": 0,
        "epochs": 4,
        "batch_size": 4,
    },
}


@dataclass(frozen=True)
class StyleFlowConfig:
    """Sizes of the network; the defaults are the published model.

    Attributes:
        size: side of the input faces in pixels (a multiple of 16).
        frames: T, frames per clip; StyleGRU's BatchNorm1d has ``frames - 1`` features.
        widths: channels of the IR-SE-50 stages; the W+ latents have ``widths[3]`` dims per style.
        units: bottleneck units per stage (IR-SE-50: 3, 4, 14, 3).
        styles: W+ styles (18 for a 1024 px StyleGAN2): 3 coarse, 4 middle, the rest fine.
        se_reduction: squeeze-and-excitation reduction of the IR-SE units.
        hidden: StyleGRU's GRU hidden size.
        gru_layers: GRU layers (bidirectional: the feature has ``2 * gru_layers * hidden`` dims).
        res_hidden: hidden width of the head's residual MLP.
        latent_dropout: StyleGRU's latent dropout probability.
        gru_dropout: dropout between the GRU layers.
        fc_dropout: the head's dropout probability.
        margin: the triplet loss margin (stage 1).
        content_widths: bottleneck widths of the stage-2 3-D ResNet-50 (outputs 4x the last).
        content_layers: its blocks per stage.
        content_size: side the clip is resized to for the content branch (224, the paper's).
        attention_dim: d of the style attention's queries, keys and values.
        tte_layers: layers of the temporal transformer encoder.
        tte_heads: its attention heads.
        tte_ff: its feed-forward width.
        tte_dropout: its dropout.
    """

    size: int = 256
    frames: int = 32
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    units: tuple[int, int, int, int] = (3, 4, 14, 3)
    styles: int = 18
    se_reduction: int = 16
    hidden: int = 4096
    gru_layers: int = 2
    res_hidden: int = 4096
    latent_dropout: float = 0.2
    gru_dropout: float = 0.1
    fc_dropout: float = 0.5
    margin: float = 1.0
    content_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    content_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    content_size: int = 224
    attention_dim: int = 512
    tte_layers: int = 2
    tte_heads: int = 8
    tte_ff: int = 2048
    tte_dropout: float = 0.1

    def __post_init__(self) -> None:
        checks = [
            (self.size % 16 == 0 and self.size >= 16, f"size must be a multiple of 16, got {self.size}"),
            (self.frames >= 3, f"frames must be >= 3, got {self.frames}"),
            (self.styles > 7, f"styles must be > 7 (3 coarse, 4 middle, fine), got {self.styles}"),
            ((self.styles * self.widths[3]) % 2 == 0, "the style flow needs an even number of features"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"bad StyleFlow config: {'; '.join(problems)}")

    @property
    def latent_features(self) -> int:
        """Features of one W+ latent, flattened: ``styles * widths[3]`` (9216)."""
        return self.styles * self.widths[3]

    @property
    def style_features(self) -> int:
        """Dims of ``E_style``: the ``2 * gru_layers`` final hidden states (16,384)."""
        return 2 * self.gru_layers * self.hidden


STYLEFLOW_CONFIGS: dict[str, StyleFlowConfig] = {
    "full": StyleFlowConfig(),
    # the same structure and names on 8 frames of 64 x 64 faces: tests, CPU demos
    "small": StyleFlowConfig(
        size=64,
        frames=8,
        widths=(8, 16, 32, 32),
        units=(1, 1, 1, 1),
        se_reduction=4,
        hidden=16,
        res_hidden=16,
        content_widths=(4, 8, 8, 16),
        content_layers=(1, 1, 1, 1),
        content_size=32,
        attention_dim=16,
        tte_layers=1,
        tte_heads=2,
        tte_ff=32,
    ),
}


# ----------------------------------------------------------------------------------------------------
# pSp: GradualStyleEncoder (IR-SE-50 + feature pyramid + map2style blocks)


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` (1x1 convs, no bias)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """IR-SE unit: ``res_layer(x) + shortcut_layer(x)``; res_layer = BN, 3x3 conv, PReLU, 3x3 conv
    (stride), BN, SE; the shortcut a 1x1 subsampling max-pool, or 1x1 conv + BN when the width changes.
    ``(B, cin, H, W)`` -> ``(B, depth, H / stride, W / stride)``."""

    def __init__(self, cin: int, depth: int, stride: int, reduction: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module = (
            nn.MaxPool2d(1, stride)
            if cin == depth
            else nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """StyleGAN2's equalised linear layer (lr_mul 1): ``x W^T / sqrt(in) + b``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """map2style: ``log2(spatial)`` stride-2 3x3 convs with LeakyReLU(0.01) take a ``spatial`` x
    ``spatial`` map to 1x1, then an :class:`EqualLinear`: ``(B, C, s, s)`` -> ``(B, C)``."""

    def __init__(self, channels: int, spatial: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).flatten(1))


class GradualStyleEncoder(nn.Module):
    """pSp's encoder: ``(B, 3, size, size)`` -> W+ offsets ``(B, styles, widths[3])``.

    The IR-SE body's stage outputs c1 (stride 4), c2 (stride 8), c3 (stride 16) feed a pyramid:
    styles 0-2 from c3, 3-6 from ``p2 = up(c3) + latlayer1(c2)``, the rest from ``p1 = up(p2) +
    latlayer2(c1)`` (bilinear upsampling with aligned corners).
    """

    coarse = 3
    middle = 7

    def __init__(self, config: StyleFlowConfig) -> None:
        super().__init__()
        widths, width = config.widths, config.widths[3]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        units: list[nn.Module] = []
        cin = widths[0]
        for depth, count in zip(widths, config.units, strict=True):
            for k in range(count):
                units.append(BottleneckIRSE(cin, depth, 2 if k == 0 else 1, config.se_reduction))
                cin = depth
        self.body = nn.Sequential(*units)
        ends = np.cumsum(config.units) - 1
        self.taps = (int(ends[1]), int(ends[2]), int(ends[3]))  # body indices of c1, c2, c3
        s = config.size
        self.styles = nn.ModuleList(
            GradualStyleBlock(width, s // 16 if j < self.coarse else s // 8 if j < self.middle else s // 4)
            for j in range(config.styles)
        )
        self.latlayer1 = nn.Conv2d(widths[2], width, 1)
        self.latlayer2 = nn.Conv2d(widths[1], width, 1)

    @staticmethod
    def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        c1, c2, c3 = taps
        p2 = self._upsample_add(c3, self.latlayer1(c2))
        p1 = self._upsample_add(p2, self.latlayer2(c1))
        maps = [c3 if j < self.coarse else p2 if j < self.middle else p1 for j in range(len(self.styles))]
        return torch.stack([style(m) for style, m in zip(self.styles, maps, strict=True)], 1)


class PSPEncoder(nn.Module):
    """pSp without its StyleGAN decoder: ``(B, 3, size, size)`` in [-1, 1] -> W+ latents
    ``(B, styles, widths[3])`` = ``encoder(x) + latent_avg`` (or ``encoder(x)`` when
    ``start_from_latent_avg`` is off). Keys ``encoder.*`` and ``latent_avg``, as in pSp's files."""

    def __init__(self, config: StyleFlowConfig) -> None:
        super().__init__()
        self.encoder = GradualStyleEncoder(config)
        self.register_buffer("latent_avg", torch.zeros(config.styles, config.widths[3]))
        self.start_from_latent_avg = True

    def forward(self, x: Tensor) -> Tensor:
        codes = self.encoder(x)
        return codes + self.latent_avg if self.start_from_latent_avg else codes


# ----------------------------------------------------------------------------------------------------
# StyleGRU (the authors' StyleGRU/model/StyleGRU.py)


def style_flow(latents: Tensor) -> Tensor:
    """Style flow (paper Sec. 3.1): ``(N, T, styles, D)`` W+ latents -> ``(N, T - 1, styles * D)``,
    row t = ``s_{t+1} - s_t`` flattened style-major."""
    flat = latents.flatten(2)
    return flat[:, 1:] - flat[:, :-1]


class LatentDropout(nn.Module):
    """The authors' latent dropout, training only: ``x * m / (1 - p)`` with ONE Bernoulli(1 - p) mask
    ``m`` over the first half of the F features tiled twice (``m[f] = m[f mod F/2]``), shared by every
    clip and time step of the batch. ``(N, L, F)`` -> the same."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"latent dropout probability must be in [0, 1), got {p}")
        self.p = p

    def mask(self, features: int) -> Tensor:
        """``(F,)`` mask of 0 and 1, drawn from torch's global CPU generator."""
        return torch.bernoulli(torch.full((features // 2,), 1.0 - self.p)).repeat(2)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (self.mask(x.shape[-1]).to(x) / (1.0 - self.p))


class FeedForward(nn.Module):
    """``net`` = Linear(dim, hidden), ReLU, Dropout, Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Residual(nn.Module):
    """``fn(x) + x``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) + x


class StyleGRU(nn.Module):
    """The authors' StyleGRU (see the module): style flow ``(N, frames - 1, F)`` -> (logits ``(N, 1)``,
    ``E_style`` ``(N, 2 * gru_layers * hidden)``: the final hidden states of layer 0 forward, layer 0
    backward, layer 1 forward, ..., concatenated)."""

    def __init__(self, config: StyleFlowConfig) -> None:
        super().__init__()
        c = config
        self.hidden_state = nn.Parameter(torch.randn(2 * c.gru_layers, 1, c.hidden))
        self.dropout_latent = LatentDropout(c.latent_dropout)
        self.gru = nn.GRU(
            c.latent_features,
            c.hidden,
            num_layers=c.gru_layers,
            dropout=c.gru_dropout,
            batch_first=True,
            bidirectional=True,
        )
        self.dense = nn.Sequential(
            nn.Dropout(c.fc_dropout),
            Residual(FeedForward(c.style_features, c.res_hidden, c.fc_dropout)),
            nn.Dropout(c.fc_dropout),
            nn.Linear(c.style_features, 1),
        )
        self.bn = nn.BatchNorm1d(c.frames - 1)  # over the time steps, not the features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.bn(self.dropout_latent(x))
        _, hidden = self.gru(x, self.hidden_state.expand(-1, x.shape[0], -1).contiguous())
        features = torch.cat(list(hidden), 1)
        return self.dense(features), features


# ----------------------------------------------------------------------------------------------------
# Stage 2 (from the paper; no public code)


class Bottleneck3D(nn.Module):
    """3-D ResNet bottleneck (Hara et al.): 1x1x1, 3x3x3 (stride), 1x1x1 x4 convs with BN, ReLU, and
    a 1x1x1 conv + BN shortcut where the shape changes."""

    def __init__(self, cin: int, planes: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        out = 4 * planes
        self.conv1 = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv3d(cin, out, 1, stride, bias=False), nn.BatchNorm3d(out))
            if cin != out or stride != (1, 1, 1)
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    """The content branch: a 3-D ResNet-50 (Hara et al.'s layout: 7x7x7 stem of stride 1x2x2, 3x3x3
    max-pool of stride 2, bottleneck stages ``[3, 4, 6, 3]``) whose stages subsample space only, so T
    frames give ``ceil(T / 2)`` steps (32 -> the paper's 16). The clip is resized to ``content_size`` first.
    ``(N, 3, T, H, W)`` -> ``C_content`` ``(N, ceil(T / 2), 4 * widths[3])`` (spatial mean)."""

    def __init__(self, config: StyleFlowConfig) -> None:
        super().__init__()
        widths = config.content_widths
        self.size = config.content_size
        self.conv1 = nn.Conv3d(3, widths[0], 7, (1, 2, 2), 3, bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        cin = widths[0]
        for stage, (planes, blocks) in enumerate(zip(widths, config.content_layers, strict=True)):
            stride = (1, 1, 1) if stage == 0 else (1, 2, 2)
            layer = []
            for k in range(blocks):
                layer.append(Bottleneck3D(cin, planes, stride if k == 0 else (1, 1, 1)))
                cin = 4 * planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.features = cin

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(
                x, size=(x.shape[2], self.size, self.size), mode="trilinear", align_corners=False
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((3, 4)).transpose(1, 2)


class StyleAttention(nn.Module):
    """Style attention module (paper Eq. 3-4): ``Q = phi_q(C)``, ``K = phi_k(E)``, ``V = phi_v(E)``,
    ``SAM(E, C) = phi(softmax(Q K^T / sqrt(d)) V)``. ``C`` ``(N, S, Dc)`` content steps, ``E``
    ``(N, K, De)`` style tokens (StyleGRU's K = 4 final hidden states) -> ``(N, S, Dc)``."""

    def __init__(self, content: int, style: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(content, dim)
        self.key = nn.Linear(style, dim)
        self.value = nn.Linear(style, dim)
        self.out = nn.Linear(dim, content)

    def attention(self, content: Tensor, style: Tensor) -> Tensor:
        """``SA(Q_C, K_E)``: ``(N, S, K)`` weights, each row summing to 1."""
        q, k = self.query(content), self.key(style)
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return self.out(self.attention(content, style) @ self.value(style))


class TemporalEncoder(nn.Module):
    """Temporal transformer encoder (TTE): a learned position embedding for each of the ``steps``,
    then ``layers`` post-norm transformer encoder layers (ReLU feed-forward) and the mean over
    steps. ``(N, steps, dim)`` -> ``(N, dim)``."""

    def __init__(self, dim: int, steps: int, layers: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, steps, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x + self.position).mean(1)


# ----------------------------------------------------------------------------------------------------
# Triplet selection and loss (stage 1)


def triplet_indices(
    labels: Sequence[int] | Tensor, videos: Sequence[str] | None = None
) -> list[tuple[int, int, int]]:
    """Triplets ``(anchor, positive, negative)`` across the clips of a batch: each clip i is an
    anchor; its positive is the first clip after it (cyclically, in batch order: a shuffled batch
    makes it a random one) with the same label and from another video, its negative the first clip
    after it with the other label. Anchors lacking either are left out.

    Args:
        labels: ``(N,)`` 0/1 labels.
        videos: N video keys (e.g. ``"dataset/video_id"``); None: every clip is its own video.
    """
    labels = [int(v) for v in labels]
    n = len(labels)
    videos = list(range(n)) if videos is None else list(videos)
    triplets = []
    for i in range(n):
        after = [(i + k) % n for k in range(1, n)]
        positive = next((j for j in after if labels[j] == labels[i] and videos[j] != videos[i]), None)
        negative = next((j for j in after if labels[j] != labels[i]), None)
        if positive is not None and negative is not None:
            triplets.append((i, positive, negative))
    return triplets


def triplet_loss(features: Tensor, triplets: Sequence[tuple[int, int, int]], margin: float = 1.0) -> Tensor:
    """Mean over ``triplets`` of ``max(0, ||E_a - E_p|| - ||E_a - E_n|| + margin)``, L2 distances as
    ``F.pairwise_distance`` (the authors' MarginRankingLoss with target -1); 0 (keeping the graph)
    without triplets. ``features`` ``(N, D)``."""
    if not triplets:
        return features.sum() * 0.0
    a, p, n = (torch.tensor(i, device=features.device) for i in zip(*triplets, strict=True))
    positive = F.pairwise_distance(features[a], features[p])
    negative = F.pairwise_distance(features[a], features[n])
    return F.relu(positive - negative + margin).mean()


# ----------------------------------------------------------------------------------------------------
# The latent cache


class LatentCache:
    """W+ latents per ``(encoder digest, dataset, video_id, frame index)``: in memory (``folder``
    None) or as ``<folder>/<digest>/<dataset>/<video_id>/<frame:06d>.npy`` (float32, names
    percent-quoted, written atomically so that several processes may share the folder)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._memory: dict[tuple[str, str, str, int], Tensor] = {}

    def _path(self, digest: str, dataset: str, video_id: str, frame: int) -> Path:
        assert self.folder is not None
        return self.folder / digest / quote(dataset, safe="") / quote(video_id, safe="") / f"{frame:06d}.npy"

    def get(self, digest: str, dataset: str, video_id: str, frame: int) -> Tensor | None:
        """The cached float32 CPU latent, or None."""
        if self.folder is None:
            return self._memory.get((digest, dataset, video_id, frame))
        path = self._path(digest, dataset, video_id, frame)
        return torch.from_numpy(np.load(path, allow_pickle=False)) if path.is_file() else None

    def put(self, digest: str, dataset: str, video_id: str, frame: int, latent: Tensor) -> None:
        """Keep ``latent`` (any device; stored as float32 on the CPU)."""
        value = latent.detach().float().cpu()
        if self.folder is None:
            self._memory[(digest, dataset, video_id, frame)] = value
            return
        path = self._path(digest, dataset, video_id, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, value.numpy())
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------
# The detector


class StyleFlow(Detector):
    """StyleFlow (see the module). Stage 1: ``forward(flow)`` -> ``(logits (N, 1), E_style (N, F))``;
    stage 2: ``forward({"clip", "flow"})`` -> logits ``(N, 1)``. :meth:`model_input` makes these
    inputs from a batch through the latent cache."""

    name = "styleflow"

    def __init__(
        self,
        config: StyleFlowConfig | None = None,
        stage: int = 1,
        latent_cache: str | os.PathLike[str] | None = None,
        encode_batch: int = 64,
    ) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.config = config = config or StyleFlowConfig()
        self.stage = stage
        self.cache = LatentCache(latent_cache)
        self.encode_batch = encode_batch
        self.psp = PSPEncoder(config)
        self.stylegru = StyleGRU(config)
        self.psp.requires_grad_(False)
        self.frozen: tuple[str, ...] = ("psp",)
        if stage == 2:
            self.content = ResNet3D(config)
            dim = self.content.features
            self.sam = StyleAttention(dim, config.hidden, config.attention_dim)
            self.tte = TemporalEncoder(
                dim,
                (config.frames + 1) // 2,  # the stem's max-pool halves T (rounding up)
                config.tte_layers,
                config.tte_heads,
                config.tte_ff,
                config.tte_dropout,
            )
            self.head = nn.Linear(dim, 1)
            self.stylegru.requires_grad_(False)
            self.frozen = ("psp", "stylegru")
        self.spec = InputSpec(
            crop="ffhq",
            scale=1.0,
            train_scale=None,
            size=config.size,
            frames=config.frames,
            sampling="consecutive",
            channels=3,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            layout="NCTHW",
            video_score="mean_probability",
            fixed_alignment=True,
            augment=False,
        )
        self._digest: tuple[tuple[Any, ...], str] | None = None
        self.train()

    def train(self, mode: bool = True) -> StyleFlow:
        """Set the training mode; the :attr:`frozen` parts stay in eval mode."""
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    # -- latents ----------------------------------------------------------------------------------

    def encoder_hash(self) -> str:
        """sha256 (hex) of pSp's state: every tensor's name, dtype, shape and bytes, and the
        ``start_from_latent_avg`` flag. Recomputed only when a tensor was replaced or changed in
        place (its data pointer or version counter moved)."""
        state = self.psp.state_dict(keep_vars=True)
        stamp = (
            self.psp.start_from_latent_avg,
            *((k, v.data_ptr(), v._version) for k, v in state.items()),
        )
        if self._digest is None or self._digest[0] != stamp:
            digest = hashlib.sha256(f"start_from_latent_avg={self.psp.start_from_latent_avg}".encode())
            for name, value in state.items():
                tensor = value.detach().cpu().contiguous()
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._digest = (stamp, digest.hexdigest())
        return self._digest[1]

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """W+ latents of normalised frames ``(B, 3, size, size)`` -> ``(B, styles, widths[3])``
        float32, by the frozen pSp in eval mode, without autocast, ``encode_batch`` frames at a time."""
        with torch.autocast(images.device.type, enabled=False):
            chunks = [self.psp(part.float()) for part in images.split(self.encode_batch)]
        return torch.cat(chunks)

    def latents(self, batch: Mapping[str, Any]) -> Tensor:
        """W+ latents ``(N, T, styles, widths[3])`` of a batch's clips (``clip`` ``(N, 3, T, H, W)``,
        ``frames`` ``(N, T)``, ``dataset`` and ``video_id`` lists of N), from the cache where it has
        them; the others are encoded once each and cached."""
        clip = batch["clip"]
        n, _, t = clip.shape[:3]
        digest = self.encoder_hash()
        frames = torch.as_tensor(batch["frames"]).reshape(n, t).tolist()
        keys = [
            [(str(batch["dataset"][i]), str(batch["video_id"][i]), int(frames[i][j])) for j in range(t)]
            for i in range(n)
        ]
        found: dict[tuple[str, str, int], Tensor] = {}
        missing: dict[tuple[str, str, int], tuple[int, int]] = {}
        for i in range(n):
            for j in range(t):
                key = keys[i][j]
                if key in found or key in missing:
                    continue
                hit = self.cache.get(digest, *key)
                if hit is None:
                    missing[key] = (i, j)
                else:
                    found[key] = hit
        if missing:
            rows, steps = (torch.tensor(v, device=clip.device) for v in zip(*missing.values(), strict=True))
            encoded = self.encode(clip[rows, :, steps])  # (M, 3, H, W) -> (M, styles, D)
            for key, latent in zip(missing, encoded, strict=True):
                self.cache.put(digest, *key, latent)
                found[key] = latent
        return torch.stack([torch.stack([found[k].to(clip.device) for k in row]) for row in keys])

    def model_input(self, batch: dict[str, Any]) -> Tensor | dict[str, Tensor]:
        """Stage 1: the style flow ``(N, T - 1, styles * D)`` of the batch's cached latents; stage 2:
        ``{"clip": batch["clip"], "flow": that flow}``."""
        flow = style_flow(self.latents(batch))
        return flow if self.stage == 1 else {"clip": batch["clip"], "flow": flow}

    # -- forward and losses ---------------------------------------------------------------------

    def forward(self, x: Tensor | Mapping[str, Tensor]) -> tuple[Tensor, Tensor] | Tensor:
        """Stage 1: ``x`` the style flow ``(N, frames - 1, styles * D)`` -> StyleGRU's ``(logits
        (N, 1), E_style (N, 2 * gru_layers * hidden))``. Stage 2: ``x`` a dict with ``clip``
        ``(N, 3, frames, H, W)`` (normalised) and ``flow`` -> fake logits ``(N, 1)`` (Eq. 5 without
        its sigmoid)."""
        if self.stage == 1:
            return self.stylegru(x)
        _, style = self.stylegru(x["flow"])
        tokens = style.view(style.shape[0], 2 * self.config.gru_layers, self.config.hidden)
        content = self.content(x["clip"])
        return self.head(self.tte(content + self.sam(content, tokens)))

    def fake_logit(self, output: tuple[Tensor, Tensor] | Tensor) -> Tensor:
        """``(N,)`` logits from either stage's output."""
        logits = output[0] if isinstance(output, tuple) else output
        return logits[:, 0]

    def losses(
        self, output: tuple[Tensor, Tensor] | Tensor, labels: Tensor, batch: dict[str, Any] | None = None
    ) -> dict[str, Tensor]:
        """Stage 1: ``bce`` and ``triplet`` (:func:`triplet_indices` over the batch's videos,
        :func:`triplet_loss` with the config's margin); stage 2: ``bce``."""
        losses = super().losses(output, labels, batch)
        if self.stage == 1:
            videos = None
            if batch is not None and "video_id" in batch:
                videos = [f"{d}/{v}" for d, v in zip(batch["dataset"], batch["video_id"], strict=True)]
            triplets = triplet_indices(labels.tolist(), videos)
            losses["triplet"] = triplet_loss(output[1], triplets, self.config.margin)
        return losses


# ----------------------------------------------------------------------------------------------------
# Official checkpoints and the builder


def _load_psp(model: StyleFlow, checkpoint: Any, path: Path) -> None:
    if not isinstance(checkpoint, Mapping) or not {"state_dict", "latent_avg"} <= set(checkpoint):
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not a pSp file (needs 'state_dict' and 'latent_avg'); found {found}"
        )
    opts = checkpoint.get("opts")
    opts = opts if isinstance(opts, Mapping) else {}
    if opts.get("encoder_type", "GradualStyleEncoder") != "GradualStyleEncoder":
        raise CheckpointError(
            f"{path}: pSp encoder {opts['encoder_type']!r}; StyleFlow uses GradualStyleEncoder. {PSP_HINT}"
        )
    state = checkpoint["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a state dict")
    fit_state_dict(
        model.psp,
        {**state, "latent_avg": checkpoint["latent_avg"]},
        where=f"{path}: pSp state_dict",
        strip_prefix=None,
        dropped=("decoder.",),  # the StyleGAN2 generator: StyleFlow only encodes
        hint=PSP_HINT,
    )
    model.psp.start_from_latent_avg = bool(opts.get("start_from_latent_avg", True))


def _load_stylegru(model: StyleFlow, checkpoint: Any, path: Path) -> None:
    key = next(
        (k for k in ("state_dict", "model") if isinstance(checkpoint, Mapping) and k in checkpoint), None
    )
    fit_state_dict(
        model.stylegru,
        checkpoint if key is None else checkpoint[key],
        where=f"{path}: StyleGRU{'' if key is None else f' {key}'}",
        strip_prefix=("module.model.", "model.", "module.", "stylegru."),
        dropped=("psp.",),  # a stage-1 detector of dftoolkit's training holds the frozen pSp too
        hint=STYLEGRU_HINT,
    )


def load_styleflow(
    path: str | os.PathLike[str],
    *,
    part: str = "stylegru",
    into: StyleFlow | None = None,
    config: str = "full",
    **options: Any,
) -> StyleFlow:
    """A :class:`StyleFlow` with one part's weights from an authors' file, in eval mode.

    Files are read with ``torch.load(weights_only=True)`` (a pickle naming any global is refused):

    - ``part="psp"``: pSp's ``{"state_dict": {"encoder.<k>", "decoder.<k>"}, "latent_avg": (18, 512),
      "opts": {...}}``: the encoder and ``latent_avg`` are loaded, the decoder keys dropped; an
      ``opts`` with another ``encoder_type`` is refused, its ``start_from_latent_avg`` is kept.
    - ``part="stylegru"``: the authors' stage-1 file ``{"epoch": e, "state_dict":
      {"module.model.<k>": ...}}`` or a plain StyleGRU state dict (prefixes ``module.model.``,
      ``model.``, ``module.`` stripped); also a stage-1 checkpoint of
      :func:`~dftoolkit.detectors.train.train` (``{"model": {"psp.<k>", "stylegru.<k>"}, ...}``, its
      pSp left out), which starts stage 2 from a StyleGRU trained here.

    Load both parts by passing the first call's result as ``into`` of the second. A part not loaded
    keeps its random initialisation.

    Args:
        path: the checkpoint file.
        part: one of :data:`PARTS`.
        into: the detector to load into (``config`` and ``options`` are then unused); None: a new
            ``build(config, **options)``.
        config: the :data:`STYLEFLOW_CONFIGS` entry of a new detector.
        options: :func:`build` options of a new detector (``stage``, ``latent_cache``, fields).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a safe weights file, not the part's format, or names missing,
            unexpected or of another shape (the message names the file).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    path = Path(path)
    hint = PSP_HINT if part == "psp" else STYLEGRU_HINT
    checkpoint = load_weights(path, what=f"StyleFlow {part} checkpoint", hint=hint)
    model = build(config, **options) if into is None else into
    (_load_psp if part == "psp" else _load_stylegru)(model, checkpoint, path)
    return model.eval()


@register_detector(
    "styleflow",
    "StyleFlow (CVPR 2024): pSp style latent flows + StyleGRU (stage 1), style attention (stage 2)",
    load_official=load_styleflow,
    recipes=RECIPES,
)
def build(
    config: str = "full",
    *,
    stage: int = 1,
    latent_cache: str | os.PathLike[str] | None = None,
    encode_batch: int = 64,
    **options: Any,
) -> StyleFlow:
    """A randomly initialised :class:`StyleFlow`.

    Args:
        config: a :data:`STYLEFLOW_CONFIGS` entry.
        stage: 1 (pSp + StyleGRU) or 2 (with the content branch, style attention and TTE).
        latent_cache: folder of the cached W+ latents; None: in memory.
        encode_batch: frames per pSp forward when filling the cache.
        options: :class:`StyleFlowConfig` field overrides (e.g. ``fc_dropout=0.0``).
    """
    if config not in STYLEFLOW_CONFIGS:
        raise ValueError(f"unknown StyleFlow config {config!r}; choose from {sorted(STYLEFLOW_CONFIGS)}")
    return StyleFlow(replace(STYLEFLOW_CONFIGS[config], **options), stage, latent_cache, encode_batch)
