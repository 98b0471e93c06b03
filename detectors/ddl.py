"""DDL: Dynamic Difference Learning with spatio-temporal correlation (Yin et al., IEEE TIFS 2023).

A per-frame 2-D backbone (Xception, default, or ResNet-18) with two plug-in modules added in series
after each of its four stages (the paper's method section; DETECTORS.md section 2):

- :class:`DFDC`, dynamic fine-grained difference capture: per position, the negative cosine
  similarity of the frames' channel vectors gives a global inconsistency map, from which positions
  whose scores barely fluctuate over time (facial motion, not forgery) are removed;
- :class:`MSA`, multi-scale spatio-temporal aggregation: strip pooling of the clip along time at
  scales 1, 2 and 4, in a vertical and a horizontal slice, gates the features (the paper's Eq. for
  D^V, D^H and F~).

The modules act across the T frames of one segment; a clip is n segments of T consecutive frames
(dense sampling), each passed through the network as its own group. The paper's summary gives no n or
T; this implementation takes T = 4 (the largest strip-pooling scale then spans the whole segment, the
"long-range" temporal information) and n = 4, 16 frames per clip. The clip logit is the linear head
on the features averaged over its n * T frames, i.e. the mean of the segment logits; the video score is
the mean probability of its clips.

Stages: Xception's four resolution levels (timm's ``legacy_xception``, the Cadene/FaceForensics++
Xception, whose ImageNet and FF++ weights load into ``backbone``): after ``block1`` (128 channels,
1/4), ``block2`` (256, 1/8), ``block11`` (the end of the middle flow, 728, 1/16) and ``block12``
(1024, 1/32); the exit flow's separable convs follow as the head. ResNet-18: after ``layer1``-``layer4``.

Details the paper summary leaves open, chosen here:

- DFDC compares each frame with every other frame of its segment (see :class:`DFDC`), is
  parameter-free and re-weights the features by ``F * (1 + sigmoid(M))``;
- MSA's slices are the features averaged over the width (F^V, height x time) and over the height
  (F^H, time x width); its strip convs are depthwise, one per scale, without bias; its 1x1 convs have
  a bias; alpha is one learnable scalar starting at 1.

No official code or checkpoint was released: this detector has no loader of the authors' weights.
Inputs are RGB face crops (1.3 x the detector's box, 299 px for Xception, 224 px for ResNet-18; the
crop scale and sizes are the FaceForensics++ conventions, assumed), normalised in the data transforms
(Xception: mean = std = 0.5, as the FF++ Xception; ResNet-18: ImageNet), layout ``(N, 3, n*T, H, W)``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dftoolkit.detectors.base import IMAGENET_MEAN, IMAGENET_STD, Detector, InputSpec, register_detector

__all__ = ["BACKBONES", "DDL", "DFDC", "MSA", "RECIPES", "SCALES", "DDLConfig", "build"]

BACKBONES = ("xception", "resnet18")
SCALES = (1, 2, 4)
"""MSA's temporal strip-pooling scales (the paper's Sap_{1x2}, Sap_{1x4} and the unpooled slice)."""
XCEPTION_MEAN = XCEPTION_STD = (0.5, 0.5, 0.5)

RECIPES: dict[str, dict[str, Any]] = {
    # The paper summary gives no training settings: every value below is assumed (Adam at 1e-4 with a
    # step decay, as usual for FF++ Xception detectors; 16-frame clips, 8 per batch).
    "paper": {
        "config": "full",
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "scheduler": "step",
        "step_size": 10,
        "gamma": 0.1,
        "warmup_epochs": 0,
        "epochs": 30,
        "batch_size": 8,
    },
    "small": {"config": "small", "optimizer": "adam", "lr": 1e-3, "epochs": 3, "batch_size": 2},
}


@dataclass(frozen=True)
class DDLConfig:
    """Sizes of a DDL network.

    Attributes:
        segments: n, segments per clip.
        segment_frames: T, consecutive frames per segment (a multiple of 4, MSA's largest scale).
        small: a few channels and one middle block (tests, CPU demo) instead of the published backbone.
        size: input side in pixels; None: 299 (Xception) or 224 (ResNet-18).
    """

    segments: int = 4
    segment_frames: int = 4
    small: bool = False
    size: int | None = None


CONFIGS = {"full": DDLConfig(), "small": DDLConfig(segments=2, small=True, size=64)}


class DFDC(nn.Module):
    """Dynamic fine-grained difference capture (the paper's DFDC), parameter-free, on ``(B, C, T, H, W)``.

    With ``u_{h,w,t}`` the unit channel vector of frame t at (h, w), frame t's score is its negative
    cosine similarity to the other frames, averaged over them:
    ``s_t = -1/(T-1) * sum_{j != t} u_{h,w,t} . u_{h,w,j}`` in [-1, 1]. Each frame is compared with
    every other one (not only its neighbours) because the paper pairs frames i, j of the segment and
    sums T scores, whose floor -T it uses as the "no difference" value: adjacent pairs would give T-1.
    The global inconsistency map is ``M^ = sum_t s_t`` in [-T, T]; the fluctuation map ``M~`` is the
    variance of the T scores. Positions whose variance is below the k-th largest (k = H, the map's
    height) are set to -T (motion), the top k kept (ties with the k-th all kept). The features are
    re-weighted by ``F^ = F * (1 + sigmoid(M))`` (broadcast over channels and frames); how the map
    enters the features is this implementation's choice (the summary does not say).
    """

    def maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, C, T, H, W)`` -> frame scores ``s`` ``(B, T, H, W)``, fluctuation ``M~`` ``(B, H, W)``
        and the denoised global map ``M`` ``(B, H, W)``."""
        t, h, w = x.shape[2:]
        if t < 2:
            raise ValueError(f"DFDC compares frames: it needs T >= 2, got {t}")
        u = F.normalize(x, dim=1, eps=1e-6)
        # u_t . sum_j u_j minus u_t . u_t (1, or 0 for an all-zero vector): the sum over j != t
        scores = -((u * u.sum(2, keepdim=True)).sum(1) - (u * u).sum(1)) / (t - 1)
        global_map = scores.sum(1)
        fluctuation = scores.var(1, unbiased=False)
        if h < h * w:  # k = H of the H*W positions keep their value
            threshold = fluctuation.flatten(1).topk(h, dim=1).values[:, -1]
            keep = fluctuation >= threshold[:, None, None]
            global_map = torch.where(keep, global_map, torch.full_like(global_map, -float(t)))
        return scores, fluctuation, global_map

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, C, T, H, W)``."""
        return x * (1 + torch.sigmoid(self.maps(x)[2]))[:, None, None]


class MSA(nn.Module):
    """Multi-scale spatio-temporal aggregation (the paper's MSA), on ``(B, C, T, H, W)``, T % 4 == 0.

    Slices: ``F^V`` = the features averaged over the width, a (height x time) plane per channel, and
    ``F^H`` averaged over the height, (time x width). For each scale s in :data:`SCALES` the slice is
    average-pooled along time by s (``Sap_{1xs}`` / ``Sap_{sx1}``), filtered along time by a depthwise
    strip conv (``conv_v[i]`` 1x3 / ``conv_h[i]`` 3x1, zero padding) and repeated back to T steps;
    ``D^V = fuse_v(1/3 * sum_s ...)``, ``D^H = fuse_h(...)`` (1x1 convs). Output (the paper's F~):
    ``F + alpha * F * (0.5 (sigmoid(D^V) - 0.5) + 0.5 (sigmoid(D^H) - 0.5))``, D^V broadcast over the
    width and D^H over the height. Parameters: ``2 C^2 + 20 C + 1``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv_v = nn.ModuleList(
            nn.Conv2d(c, c, (1, 3), padding=(0, 1), groups=c, bias=False) for _ in SCALES
        )
        self.conv_h = nn.ModuleList(
            nn.Conv2d(c, c, (3, 1), padding=(1, 0), groups=c, bias=False) for _ in SCALES
        )
        self.fuse_v = nn.Conv2d(c, c, 1)
        self.fuse_h = nn.Conv2d(c, c, 1)
        self.alpha = nn.Parameter(torch.ones(()))

    @staticmethod
    def _pyramid(strip: Tensor, convs: nn.ModuleList, dim: int) -> Tensor:
        """Mean over the scales of ``conv(pool_s(strip))`` repeated s times along ``dim`` (time)."""
        out = torch.zeros_like(strip)
        for s, conv in zip(SCALES, convs, strict=True):
            pooled = F.avg_pool2d(strip, (1, s) if dim == 3 else (s, 1)) if s > 1 else strip
            out = out + conv(pooled).repeat_interleave(s, dim=dim) / len(SCALES)
        return out

    def directions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, T, H, W)`` -> ``D^V`` ``(B, C, H, T)`` and ``D^H`` ``(B, C, T, W)``."""
        t = x.shape[2]
        if t % SCALES[-1]:
            raise ValueError(f"MSA pools time by {SCALES}: T must be a multiple of {SCALES[-1]}, got {t}")
        d_v = self.fuse_v(self._pyramid(x.mean(4).transpose(2, 3), self.conv_v, 3))
        d_h = self.fuse_h(self._pyramid(x.mean(3), self.conv_h, 2))
        return d_v, d_h

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, C, T, H, W)``."""
        d_v, d_h = self.directions(x)
        a_v = torch.sigmoid(d_v.transpose(2, 3)).unsqueeze(4) - 0.5  # (B, C, T, H, 1)
        a_h = torch.sigmoid(d_h).unsqueeze(3) - 0.5  # (B, C, T, 1, W)
        return x + self.alpha * x * (0.5 * a_v + 0.5 * a_h)


def _small_xception() -> nn.Module:
    """Xception's layout with a few channels and one middle-flow block (timm's blocks and names)."""
    from timm.models.xception import Block, SeparableConv2d

    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, 2, 0, bias=False),
            bn1=nn.BatchNorm2d(8),
            act1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(8, 16, 3, bias=False),
            bn2=nn.BatchNorm2d(16),
            act2=nn.ReLU(inplace=True),
            block1=Block(16, 32, 2, 2, start_with_relu=False),
            block2=Block(32, 48, 2, 2),
            block3=Block(48, 64, 2, 2),
            block4=Block(64, 64, 3, 1),
            block12=Block(64, 96, 2, 2, grow_first=False),
            conv3=SeparableConv2d(96, 128, 3, 1, 1),
            bn3=nn.BatchNorm2d(128),
            act3=nn.ReLU(inplace=True),
            conv4=SeparableConv2d(128, 128, 3, 1, 1),
            bn4=nn.BatchNorm2d(128),
            act4=nn.ReLU(inplace=True),
        )
    )


def _backbone(name: str, small: bool) -> tuple[nn.Module, tuple[str, ...], tuple[int, ...], int]:
    """(trunk, names of its four stage-ending children, their channels, feature width) of a backbone:
    timm's ``legacy_xception`` or ``resnet18`` without their head, or small versions of them."""
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    if name == "xception":
        trunk = _small_xception() if small else timm.create_model("legacy_xception", num_classes=0)
        names = [n for n, _ in trunk.named_children()]
        ends = ("block1", "block2", names[names.index("block12") - 1], "block12")
        widths = tuple(
            [m for m in getattr(trunk, n).rep if isinstance(m, nn.BatchNorm2d)][-1].num_features for n in ends
        )
        return trunk, ends, widths, trunk.conv4.pointwise.out_channels
    channels = (8, 16, 32, 64) if small else (64, 128, 256, 512)
    layers = (1, 1, 1, 1) if small else (2, 2, 2, 2)
    trunk = ResNet(BasicBlock, layers, num_classes=0, channels=channels, stem_width=channels[0])
    return trunk, ("layer1", "layer2", "layer3", "layer4"), channels, channels[-1]


class DDL(Detector):
    """DDL on a per-frame backbone, :class:`DFDC` then :class:`MSA` after each of its four stages.

    ``forward``: ``(N, 3, n*T, H, W)`` (frame order, n segments of T = ``config.segment_frames``
    consecutive frames) -> ``(N,)`` fake logits: ``fc`` on the final features averaged over space and
    all n*T frames (the mean of the n segment logits). Keys: ``backbone.<timm name>`` (timm's
    ``legacy_xception`` or ``resnet18`` without ``fc``), ``msa.<stage>.*``, ``fc.*``.
    """

    name = "ddl"

    def __init__(self, config: DDLConfig | None = None, backbone: str = "xception") -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        cfg = config or DDLConfig()
        if cfg.segment_frames % SCALES[-1] or cfg.segments < 1:
            raise ValueError(
                f"DDL needs n >= 1 segments of T frames, T a multiple of {SCALES[-1]}; "
                f"got n = {cfg.segments}, T = {cfg.segment_frames}"
            )
        self.config, self.backbone_name = cfg, backbone
        xception = backbone == "xception"
        frames = cfg.segments * cfg.segment_frames
        self.spec = InputSpec(
            crop="face",
            scale=1.3,
            train_scale=None,
            size=cfg.size or (299 if xception else 224),
            frames=frames,
            sampling="dense",
            segment_frames=cfg.segment_frames,
            channels=3,
            mean=XCEPTION_MEAN if xception else IMAGENET_MEAN,
            std=XCEPTION_STD if xception else IMAGENET_STD,
            layout="NCTHW",
            video_score="mean_probability",
        )
        self.backbone, self.stage_ends, widths, features = _backbone(backbone, cfg.small)
        self.dfdc = nn.ModuleList(DFDC() for _ in widths)
        self.msa = nn.ModuleList(MSA(c) for c in widths)
        self.fc = nn.Linear(features, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, n*T, H, W)`` -> ``(N,)`` logits of "fake"."""
        n, c, frames, h, w = x.shape
        t = self.config.segment_frames
        if frames % t:
            raise ValueError(f"DDL takes clips of n segments of {t} frames; got {frames} frames")
        y = x.transpose(1, 2).reshape(n * frames, c, h, w)
        for name, module in self.backbone.named_children():
            if name in ("global_pool", "fc"):  # timm's head, replaced by ours
                continue
            y = module(y)
            if name in self.stage_ends:
                i = self.stage_ends.index(name)
                clips = y.view(-1, t, *y.shape[1:]).transpose(1, 2)  # (N*n, C, T, H', W')
                clips = self.msa[i](self.dfdc[i](clips))
                y = clips.transpose(1, 2).reshape(y.shape)
        return self.fc(y.mean((2, 3)).view(n, frames, -1).mean(1)).squeeze(1)

    def fake_logit(self, output: Tensor) -> Tensor:
        """``(N,)`` -> ``(N,)``: the output is already one fake logit per clip."""
        return output


@register_detector(
    "ddl",
    "DDL (IEEE TIFS 2023): frame-difference (DFDC) and multi-scale temporal (MSA) modules in each "
    "stage of an Xception; 4 segments of 4 frames (no official weights)",
    recipes=RECIPES,
)
def build(config: str = "full", *, backbone: str = "xception") -> DDL:
    """A DDL detector, randomly initialised (no weights are downloaded; no official checkpoint exists).

    Args:
        config: ``"full"`` (the published backbone, 4 segments of 4 frames, 299 or 224 px) or
            ``"small"`` (a few channels, 2 segments of 4 frames, 64 px, for tests and the CPU demo).
        backbone: ``"xception"`` (the paper's main model) or ``"resnet18"`` (its ablation).
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {tuple(CONFIGS)}, got {config!r}")
    return DDL(CONFIGS[config], backbone)
