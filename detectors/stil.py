"""STIL: Spatiotemporal Inconsistency Learning for DeepFake video detection (Gu et al., ACM MM 2021).

Every bottleneck of a 50-layer ResNet ``[3, 4, 6, 3]`` is a STIL block: two 1x1 convs split the
input into a spatial and a temporal stream of half the bottleneck width each. The spatial stream is
the Spatial Inconsistency Module (:class:`SIM`); the temporal one the Temporal Inconsistency Module
(:class:`TIM`), plus the Information Supplement Module (:class:`ISM`, spatial -> temporal) and a
learnable temporal shift (:class:`TemporalShift`), then a 3x3 conv. Both streams are concatenated,
fused by a 1x1 conv and added to the shortcut. Each frame is classified (2 classes, 1 = fake) and the
logits are averaged over the clip.

Two backbones (``backbone=``):

- ``resnet50`` (the paper): torchvision's ResNet-50 stem (7x7 conv, max pool), strided 3x3 convs in
  both streams, strided 1x1 conv in the shortcut.
- ``scnet50_v1d`` (the authors' released code): SCNet-50-v1d, with the deep 32-32-64 stem, average
  pooling before the shortcut's 1x1 conv, and, in the strided blocks, 3x3 convs of stride 1 followed
  by a 3x3 average pool of stride 2 on both streams. The authors' checkpoints load into this variant.

Details the facts leave open follow the authors' code: SIM's 1x3 conv has BN + ReLU and its 3x1 conv
BN; TIM's two path convs per plane are full (not depthwise) convs with BN, its pools 2x1 / 1x2; ISM
reads SIM's gated features before SIM's last conv.

The modules see clips of :data:`SEGMENTS` = 8 frames; a longer clip (16 frames at test) is a batch
of consecutive groups of 8 whose logits are averaged together. Inputs are already normalised (ImageNet
mean and std, in the data transforms) in the layout ``(N, T*3, H, W)``, channel ``3t + c``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dftoolkit.checkpoints import fit_state_dict, load_weights
from dftoolkit.detectors.base import Detector, InputSpec, register_detector

__all__ = [
    "BACKBONES",
    "ISM",
    "SEGMENTS",
    "SIM",
    "STIL",
    "TIM",
    "STILBlock",
    "STILConfig",
    "TemporalShift",
    "build",
    "load_stil",
]

SEGMENTS = 8
"""Frames per clip inside the modules (the authors' ``n_segment``, fixed)."""
BACKBONES = ("resnet50", "scnet50_v1d")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_HINT = (
    "expected the authors' STIL checkpoint: a dict whose 'state_dict' maps "
    "'module.base_model.<name>' to tensors (SCNet-50-v1d backbone: backbone='scnet50_v1d')"
)
PRETRAINED_HINT = (
    "give the path of torchvision's ImageNet ResNet-50 state dict (e.g. resnet50-11ad3fa6.pth from "
    "download.pytorch.org/models); it is never downloaded"
)


@dataclass(frozen=True)
class STILConfig:
    """Sizes of a STIL network.

    Attributes:
        planes: bottleneck width of each stage (the output has 4x; each stream has half).
        layers: blocks per stage.
        reduction: TIM's channel reduction r.
        pooling: SIM's average-pool factor before its 1x3 and 3x1 convs.
        size: input side in pixels. The maps of the last stage must be at least ``pooling`` wide:
            the full model takes inputs of 112 px or more.
    """

    planes: tuple[int, int, int, int] = (64, 128, 256, 512)
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    reduction: int = 16
    pooling: int = 4
    size: int = 224


CONFIGS = {
    "full": STILConfig(),
    "small": STILConfig(planes=(16, 16, 32, 32), layers=(1, 1, 1, 1), reduction=8, size=64),
}


def _conv_bn(cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1) -> nn.Sequential:
    """Conv (no bias, "same" padding) + BN: keys ``0.weight`` and ``1.*``."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (k[0] // 2, k[1] // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout))


class SIM(nn.Module):
    """Spatial Inconsistency Module (paper Sec. 3, SIM), on ``(N*T, C, H, W)``.

    ``g = sigmoid(x + up(BN(conv3x1(ReLU(BN(conv1x3(avgpool_p(x))))))))``, ``s = BN(conv3x3(x)) * g``
    (nearest upsampling to ``H x W``); output ``BN(conv3x3_stride(s))``. Keys ``f_w`` (pool, 1x3 conv,
    BN), ``f_h`` (3x1 conv, BN), ``k3`` (gated 3x3 branch), ``k4`` (final 3x3 conv).
    """

    def __init__(self, channels: int, stride: int = 1, pooling: int = 4) -> None:
        super().__init__()
        c = channels
        self.f_w = nn.Sequential(
            nn.AvgPool2d(pooling, pooling), *_conv_bn(c, c, (1, 3)), nn.ReLU(inplace=True)
        )
        self.f_h = _conv_bn(c, c, (3, 1))
        self.k3 = _conv_bn(c, c, 3)
        self.k4 = _conv_bn(c, c, 3, stride)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N*T, C, H, W)`` -> (output ``(N*T, C, H/stride, W/stride)``, gated ``s`` ``(N*T, C, H, W)``
        that ISM passes to the temporal stream)."""
        gate = torch.sigmoid(x + F.interpolate(self.f_h(self.f_w(x)), size=x.shape[-2:], mode="nearest"))
        gated = self.k3(x) * gate
        return self.k4(gated), gated


class TIM(nn.Module):
    """Temporal Inconsistency Module (paper Sec. 3, TIM), on ``(N*T, C, H, W)`` with T = :data:`SEGMENTS`.

    ``z = BN(conv1x1(x))`` reduces C to ``C/r``. In the height-time plane, per frame t:
    ``d_t = conv_ht(z_{t+1}) - z_t`` (depthwise 3x1 conv along H), ``d_{T-1} = 0``;
    ``m = (d + up(BN(conv3x1(avgpool_2x1(d)))) + BN(conv3x1(d))) / 3`` (nearest upsampling);
    ``a_h = sigmoid(BN(conv1x1(m))) - 0.5`` back at C channels. The time-width plane is the same
    along W (1x3 convs, 1x2 pool) giving ``a_w``. Output ``x + x * 0.5 (a_h + a_w)``.
    """

    def __init__(self, channels: int, reduction: int = 16, segments: int = SEGMENTS) -> None:
        super().__init__()
        c, cr = channels, channels // reduction
        self.segments = segments
        self.conv1 = nn.Conv2d(c, cr, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cr)
        self.conv_ht = nn.Conv2d(cr, cr, (3, 1), padding=(1, 0), groups=cr, bias=False)
        self.conv_tw = nn.Conv2d(cr, cr, (1, 3), padding=(0, 1), groups=cr, bias=False)
        self.htie_conv1 = _conv_bn(cr, cr, (3, 1))  # after the 2x1 pool
        self.htie_conv2 = _conv_bn(cr, cr, (3, 1))
        self.vtie_conv1 = _conv_bn(cr, cr, (1, 3))  # after the 1x2 pool
        self.vtie_conv2 = _conv_bn(cr, cr, (1, 3))
        self.ht_up_conv = _conv_bn(cr, c, 1)
        self.tw_up_conv = _conv_bn(cr, c, 1)

    def _plane(
        self, z: Tensor, diff: nn.Conv2d, pool: tuple[int, int], pooled: nn.Module, direct: nn.Module
    ) -> Tensor:
        """One plane's mean of the three paths, ``(N*T, C/r, H, W)`` -> ``(N*T, C/r, H, W)``."""
        frames = z.view(-1, self.segments, *z.shape[1:])
        later = diff(frames[:, 1:].flatten(0, 1)).view_as(frames[:, 1:])
        d = F.pad(later - frames[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1)).flatten(0, 1)  # d_{T-1} = 0
        coarse = F.interpolate(pooled(F.avg_pool2d(d, pool, pool)), size=d.shape[-2:], mode="nearest")
        return (d + coarse + direct(d)) / 3

    def forward(self, x: Tensor) -> Tensor:
        """``(N*T, C, H, W)`` -> ``(N*T, C, H, W)``."""
        z = self.bn1(self.conv1(x))
        m_h = self._plane(z, self.conv_ht, (2, 1), self.htie_conv1, self.htie_conv2)
        m_w = self._plane(z, self.conv_tw, (1, 2), self.vtie_conv1, self.vtie_conv2)
        a_h = torch.sigmoid(self.ht_up_conv(m_h)) - 0.5
        a_w = torch.sigmoid(self.tw_up_conv(m_w)) - 0.5
        return x + x * (0.5 * (a_h + a_w))


class ISM(nn.Module):
    """Information Supplement Module, spatial -> temporal (paper Sec. 3, ISM; the ablation's best, S->T).

    ``s * sigmoid(conv1d_k3(GAP(s)))``, the 1-D conv (no bias) running across channels; the result
    is added to TIM's output.
    """

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, s: Tensor) -> Tensor:
        """``(N*T, C, H, W)`` -> ``(N*T, C, H, W)``."""
        weights = self.conv(s.mean((2, 3)).unsqueeze(1)).squeeze(1)  # (N*T, C)
        return s * torch.sigmoid(weights)[..., None, None]


class TemporalShift(nn.Module):
    """Learnable temporal shift: a depthwise conv over time (kernel 3, no bias) on ``(N*T, C, H, W)``.

    Initialised as a shift: ``out_t = x_{t+1}`` for the first C/8 channels, ``x_{t-1}`` for the next
    C/8, ``x_t`` for the rest (zeros beyond the clip). ``conv`` (an ``nn.Conv1d``) holds the weight,
    ``(C, 1, 3)``, under the authors' key; it is applied as three per-channel taps.
    """

    def __init__(self, channels: int, segments: int = SEGMENTS, fold_div: int = 8) -> None:
        super().__init__()
        if channels % fold_div:
            raise ValueError(f"the temporal shift needs channels divisible by {fold_div}, got {channels}")
        self.segments = segments
        self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)
        fold = channels // fold_div
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:fold, 0, 2] = 1
            self.conv.weight[fold : 2 * fold, 0, 0] = 1
            self.conv.weight[2 * fold :, 0, 1] = 1

    def forward(self, x: Tensor) -> Tensor:
        """``(N*T, C, H, W)`` -> ``(N*T, C, H, W)``."""
        clips = F.pad(x.view(-1, self.segments, *x.shape[1:]), (0, 0, 0, 0, 0, 0, 1, 1))  # (N, T+2, C, H, W)
        w = self.conv.weight.squeeze(1).T[..., None, None]  # (3, C, 1, 1): taps t-1, t, t+1
        return (clips[:, :-2] * w[0] + clips[:, 1:-1] * w[1] + clips[:, 2:] * w[2]).flatten(0, 1)


class STILBlock(nn.Module):
    """A STIL block in place of a ResNet bottleneck, on ``(N*T, C_in, H, W)``.

    Temporal stream: ``ReLU(BN(conv1_a(x)))`` -> TIM, + ISM(SIM's gated features) -> temporal shift ->
    ``ReLU(k1)`` (3x3 conv + BN). Spatial stream: ``ReLU(BN(conv1_b(x)))`` -> SIM -> ReLU. With
    ``pool_stride`` (SCNet-v1d) the 3x3 convs keep stride 1 and a 3x3 average pool of stride 2
    follows on both streams; otherwise ``k1`` and SIM's last conv are strided. Output
    ``ReLU(BN(conv3(cat(temporal, spatial))) + shortcut(x))``, ``4 * planes`` channels.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        *,
        pool_stride: bool,
        reduction: int,
        pooling: int,
    ) -> None:
        super().__init__()
        width = planes // 2
        conv_stride = 1 if pool_stride else stride
        self.conv1_a = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1_a = nn.BatchNorm2d(width)
        self.conv1_b = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1_b = nn.BatchNorm2d(width)
        self.tim = TIM(width, reduction)
        self.ism = ISM()
        self.shift = TemporalShift(width)
        self.k1 = _conv_bn(width, width, 3, conv_stride)
        self.scconv = SIM(width, conv_stride, pooling)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if pool_stride and stride > 1 else None
        self.conv3 = nn.Conv2d(2 * width, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``(N*T, C_in, H, W)`` -> ``(N*T, 4 planes, H/stride, W/stride)``."""
        temporal = F.relu(self.bn1_a(self.conv1_a(x)))
        spatial, gated = self.scconv(F.relu(self.bn1_b(self.conv1_b(x))))
        spatial = F.relu(spatial)
        temporal = self.shift(self.tim(temporal) + self.ism(gated))
        temporal = F.relu(self.k1(temporal))
        if self.avd_layer is not None:
            temporal, spatial = self.avd_layer(temporal), self.avd_layer(spatial)
        out = self.bn3(self.conv3(torch.cat([temporal, spatial], 1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class STIL(Detector):
    """STIL on a ResNet-50 (``resnet50``, paper) or SCNet-50-v1d (``scnet50_v1d``, authors' code).

    ``forward``: ``(N, T*3, H, W)`` (channel ``3t + c``, T a multiple of 8) -> logits ``(N, 2)``
    (class 1 = fake): per-frame ``Linear(4 * planes[3], 2)`` after global average pooling, averaged
    over the T frames. Keys as the authors' (``layer1.0.tim.conv_ht.weight``, ``fc.weight``); the
    stem is ``conv1`` (7x7, or ``conv1.{0,3,6}`` for the deep stem), ``bn1``; the shortcut is
    ``downsample.{0,1}`` (conv, BN) or ``downsample.{1,2}`` after the average pool.
    """

    name = "stil"

    def __init__(self, config: STILConfig | None = None, backbone: str = "resnet50") -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        cfg = config or STILConfig()
        self.config, self.backbone = cfg, backbone
        self.spec = InputSpec(
            crop="face",
            scale=1.3,
            train_scale=(1.0, 1.5),
            size=cfg.size,
            frames=SEGMENTS,
            sampling="segments",
            channels=3,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            layout="N(TC)HW",
            video_score="mean_probability",
            test_frames=2 * SEGMENTS,  # the authors' test clips: two groups of 8
        )
        stem = cfg.planes[0]
        v1d = backbone == "scnet50_v1d"
        if v1d:
            half = stem // 2
            self.conv1: nn.Module = nn.Sequential(
                nn.Conv2d(3, half, 3, 2, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, half, 3, 1, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, stem, 3, 1, 1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for i, (planes, blocks) in enumerate(zip(cfg.planes, cfg.layers, strict=True)):
            stride = 1 if i == 0 else 2
            if v1d:  # AvgPool2d(1) in layer1: the authors' module list, whose index the keys hold
                downsample = nn.Sequential(
                    nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                    *_conv_bn(inplanes, 4 * planes, 1),
                )
            else:
                downsample = _conv_bn(inplanes, 4 * planes, 1, stride)
            stage = []
            for j in range(blocks):
                stage.append(
                    STILBlock(
                        inplanes,
                        planes,
                        stride if j == 0 else 1,
                        downsample if j == 0 else None,
                        pool_stride=v1d,
                        reduction=cfg.reduction,
                        pooling=cfg.pooling,
                    )
                )
                inplanes = 4 * planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(inplanes, 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, T*3, H, W)`` -> ``(N, 2)``: frame logits averaged over T (T = 16: 2 groups of 8)."""
        n, tc, h, w = x.shape
        if tc % (3 * SEGMENTS):
            raise ValueError(f"STIL takes (N, T*3, H, W) with T a multiple of {SEGMENTS}; got {tc} channels")
        y = F.relu(self.bn1(self.conv1(x.reshape(-1, 3, h, w))))
        y = self.layer4(self.layer3(self.layer2(self.layer1(self.maxpool(y)))))
        logits = self.fc(y.mean((2, 3)))  # (N*T, 2)
        return logits.view(n, -1, 2).mean(1)

    def fake_logit(self, output: Tensor) -> Tensor:
        """``(N, 2)`` -> ``(N,)``: fake minus real logit (its sigmoid is the softmax fake probability)."""
        return output[:, 1] - output[:, 0]

    def losses(
        self, output: Tensor, labels: Tensor, batch: dict[str, Any] | None = None
    ) -> dict[str, Tensor]:
        """Cross-entropy on the 2-class output, as the authors train (``labels`` ``(N,)``, 1 = fake)."""
        return {"ce": F.cross_entropy(output, labels.long())}


def _torchvision_to_stil(tv: Mapping[str, Tensor], model: STIL) -> dict[str, Tensor]:
    """torchvision ResNet-50 weights under STIL's names (the ``resnet50`` backbone, full size).

    Stem, shortcuts and ``conv3``/``bn3`` keep their names; each bottleneck's ``conv1``/``bn1`` is
    split by output channel into the temporal (first half, ``conv1_a``) and spatial (second half,
    ``conv1_b``) streams; the diagonal blocks of its 3x3 ``conv2``/``bn2`` become ``k1`` (temporal)
    and SIM's last conv ``scconv.k4`` (spatial). TIM, ISM, the shift, SIM's ``f_w``, ``f_h``, ``k3``
    and the 2-class ``fc`` keep their initialisation.
    """
    out = {k: v for k, v in tv.items() if k in model.state_dict() and not k.startswith("fc.")}
    bn = ("weight", "bias", "running_mean", "running_var")
    for stage, blocks in enumerate(model.config.layers, start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}."
            half = tv[p + "conv1.weight"].shape[0] // 2
            first, second = slice(None, half), slice(half, None)
            for name, part in (("a", first), ("b", second)):
                out[f"{p}conv1_{name}.weight"] = tv[p + "conv1.weight"][part]
                out.update({f"{p}bn1_{name}.{s}": tv[f"{p}bn1.{s}"][part] for s in bn})
            for name, part in (("k1", first), ("scconv.k4", second)):
                out[f"{p}{name}.0.weight"] = tv[p + "conv2.weight"][part, part]
                out.update({f"{p}{name}.1.{s}": tv[f"{p}bn2.{s}"][part] for s in bn})
    return out


def _load_pretrained(model: STIL, path: str | os.PathLike[str]) -> None:
    """Load torchvision's ImageNet ResNet-50 state dict at ``path`` into ``model`` (see
    :func:`_torchvision_to_stil`), checked against torchvision's architecture first."""
    from torchvision.models import resnet50

    reference = resnet50()
    state = load_weights(path, what="ImageNet ResNet-50 weights", hint=PRETRAINED_HINT)
    fit_state_dict(reference, state, where=f"{path} (torchvision ResNet-50)", hint=PRETRAINED_HINT)
    mapped = _torchvision_to_stil(reference.state_dict(), model)
    fit_state_dict(model, {**model.state_dict(), **mapped}, where=f"{path} (mapped onto STIL)")


def load_stil(path: str | os.PathLike[str], *, backbone: str = "scnet50_v1d", config: str = "full") -> STIL:
    """A STIL detector with the weights of the authors' checkpoint at ``path``, in eval mode.

    The file is a dict whose ``state_dict`` maps ``module.base_model.<name>`` to tensors (a bare state
    dict is read too); it is read with ``torch.load(weights_only=True)`` and loaded strictly.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a safe weights file, or names or shapes differ from the architecture's.
    """
    path = Path(path)
    checkpoint = load_weights(path, what="STIL checkpoint", hint=CHECKPOINT_HINT)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    model = build(config, backbone=backbone)
    fit_state_dict(
        model,
        state,
        where=f"{path} (STIL, {backbone}, {config})",
        strip_prefix=("module.base_model.", "module."),
        hint=CHECKPOINT_HINT,
    )
    return model.eval()


RECIPES = {
    # The authors' code (DETECTORS.md): cross-entropy, Adam lr 1e-3, weight decay 1e-5, a 1-epoch
    # warm-up then step decay, batch 10 per GPU. The decay's step and factor and the epoch count
    # are not given: 10, 0.1 and 30 are assumptions.
    "paper": {
        "config": "full",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-5,
        "warmup_epochs": 1,
        "scheduler": "step",
        "step_size": 10,
        "gamma": 0.1,
        "batch_size": 10,
        "epochs": 30,
    },
    "small": {"config": "small", "optimizer": "adam", "lr": 1e-3, "batch_size": 4, "epochs": 3},
}


@register_detector(
    "stil",
    "STIL (ACM MM 2021): spatial, temporal and supplement modules in a ResNet-50; 8-frame clips",
    load_official=load_stil,
    recipes=RECIPES,
)
def build(
    config: str = "full", *, backbone: str = "resnet50", pretrained: str | os.PathLike[str] | None = None
) -> STIL:
    """A STIL detector.

    Args:
        config: ``"full"`` (224 px, the published sizes) or ``"small"`` (bottleneck widths 16-32, one
            block per stage, r = 8, 64 px, for tests and the demo on a CPU).
        backbone: ``"resnet50"`` (the paper) or ``"scnet50_v1d"`` (the authors' code).
        pretrained: path of torchvision's ImageNet ResNet-50 state dict, mapped onto the ``resnet50``
            backbone (full config); the STIL modules keep their initialisation, as the authors do.

    Raises:
        FileNotFoundError: no file at ``pretrained``.
        CheckpointError: ``pretrained`` is not a torchvision ResNet-50 state dict.
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {tuple(CONFIGS)}, got {config!r}")
    model = STIL(CONFIGS[config], backbone)
    if pretrained is not None:
        if (backbone, config) != ("resnet50", "full"):
            raise ValueError("pretrained ImageNet weights are for the full resnet50 backbone only")
        _load_pretrained(model, pretrained)
    return model
