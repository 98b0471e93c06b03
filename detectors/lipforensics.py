"""LipForensics (Haliassos et al., "Lips Don't Lie", CVPR 2021): a lip-reading network turned detector.

Grey mouth crops ``(N, 1, T, 88, 88)`` (T = 25, normalised with mean 0.421 / std 0.165 in the data
transforms) go through

- a 3-D front-end: Conv3d(1 -> 64, kernel 5x7x7, stride 1x2x2, padding 2x3x3, no bias), BN, PReLU,
  MaxPool3d(1x3x3, stride 1x2x2, padding 0x1x1); T is kept, 88 -> 22 pixels;
- a ResNet-18 trunk with PReLUs and no stem, run on every frame: 512 features per frame;
- a multi-scale temporal convolutional network (MS-TCN): 4 levels with dilations 1, 2, 4, 8, each
  two sets of 3 branches (kernels 3, 5, 7; 256 channels each, 768 in all) and a final PReLU on the
  sum with a 1x1 ``downsample`` conv of the level's input (always built: the authors compare
  ``n_inputs // 3`` with ``n_outputs``); dropout 0.2 after each set;
- the mean of the MS-TCN output over the first ``lengths[i]`` steps, then Linear(768, 1): ``(N, 1)``.

Each branch is the authors' conv -> BN -> chomp -> PReLU: the conv pads ``(k - 1) * dilation`` steps
on both sides and the chomp trims half of that from each end, so the branch is symmetric (not
causal) and keeps T; batch-norm statistics in training include the trimmed edge steps, as in the
authors' code. The full model has 35,990,785 parameters, the MS-TCN (``tcn.mb_ms_tcn``) 24,803,328.

Module names are the authors', so their files load strictly::

    frontend3D.{0,1,2}.*                        conv, BN, PReLU
    trunk.layer<l>.<b>.{conv1,bn1,relu1,conv2,bn2,relu2}.*, trunk.layer<l>.0.downsample.{0,1}.*
    tcn.mb_ms_tcn.network.<level>.cbcr<set>_<branch>.{conv,batchnorm,non_lin}.*
    tcn.mb_ms_tcn.network.<level>.{downsample,relu_final}.*
    tcn.tcn_output.{weight,bias}

Training recipe of the paper: start from a lip-reading (LRW) model, freeze the front-end and the
ResNet (:func:`freeze_for_finetuning`) and fine-tune the MS-TCN with binary cross-entropy. A video's
score is the mean logit of its non-overlapping 25-frame clips.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.detectors.base import Detector, InputSpec, register_detector

__all__ = [
    "CHECKPOINT_HINT",
    "LIPFORENSICS_CONFIGS",
    "LRW_HEAD",
    "LipForensics",
    "LipForensicsConfig",
    "build",
    "freeze_for_finetuning",
    "load_lipforensics",
]

CHECKPOINT_HINT = (
    "the LipForensics model trained on FaceForensics++ is the authors' 'lipforensics_ff.pth' (see "
    "https://github.com/ahaliassos/LipForensics), the lip-reading models are those of "
    "https://github.com/mpc001/Lipreading_using_Temporal_Convolutional_Networks (ResNet-18 + MS-TCN, "
    "e.g. 'lrw_resnet18_mstcn_adamw_s3.pth.tar'); the toolkit never downloads them: place the file "
    "yourself and pass its path"
)
LRW_HEAD = "tcn.tcn_output."
"""Prefix of the lip-reading model's 500-word classifier, Linear(768, 500): dropped when loading."""


@dataclass(frozen=True)
class LipForensicsConfig:
    """Widths of the network; the defaults are the published model.

    Attributes:
        widths: channels of the trunk's four stages; the front-end has ``widths[0]``.
        kernel_sizes: temporal kernels of the MS-TCN branches.
        branch_channels: channels per branch (the MS-TCN has ``len(kernel_sizes)`` times as many).
        levels: MS-TCN levels (dilation ``2 ** level``).
        dropout: MS-TCN dropout probability.
        frames: T, frames per clip.
        size: side of the square input crops in pixels.
    """

    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    branch_channels: int = 256
    levels: int = 4
    dropout: float = 0.2
    frames: int = 25
    size: int = 88


LIPFORENSICS_CONFIGS: dict[str, LipForensicsConfig] = {
    "full": LipForensicsConfig(),
    # the same structure and names with 76 k parameters instead of 36 M, on 32 x 32 crops: tests, CPU demos
    "small": LipForensicsConfig(widths=(8, 8, 16, 32), branch_channels=8, size=32),
}


class BasicBlock(nn.Module):
    """ResNet basic block with PReLUs: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.PReLU(planes)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            if stride != 1 or inplanes != planes
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``."""
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.downsample is None else self.downsample(x)))


class ResNetTrunk(nn.Module):
    """ResNet-18 stages [2, 2, 2, 2] without stem, then a global average pool."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        inplanes = widths[0]
        for stage, planes in enumerate(widths):
            stride = 1 if stage == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, widths[0], H, W)`` -> ``(B, widths[-1])``."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class BranchConv(nn.Module):
    """One MS-TCN branch: dilated conv padded ``(k - 1) * d`` per side, BN, chomp of half that per
    side, PReLU. ``(N, C_in, T)`` -> ``(N, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = (kernel_size - 1) * dilation
        self.trim = padding // 2  # padding is even for odd kernels
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation)
        self.batchnorm = nn.BatchNorm1d(out_channels)
        self.non_lin = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.batchnorm(self.conv(x))  # (N, C_out, T + 2 * trim)
        return self.non_lin(out[:, :, self.trim : out.shape[2] - self.trim])


class MultibranchBlock(nn.Module):
    """One MS-TCN level: two sets of parallel branches (``cbcr0_<b>``, ``cbcr1_<b>``), each set's
    outputs concatenated and dropped out, then ``relu_final(out + downsample(x))``.
    ``(N, in_channels, T)`` -> ``(N, out_channels, T)``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], dilation: int, dropout: float
    ) -> None:
        super().__init__()
        if out_channels % len(kernel_sizes):
            raise ValueError(f"{out_channels} channels do not split into {len(kernel_sizes)} branches")
        self.branches = len(kernel_sizes)
        branch = out_channels // self.branches
        for i, k in enumerate(kernel_sizes):
            self.add_module(f"cbcr0_{i}", BranchConv(in_channels, branch, k, dilation))
        self.dropout0 = nn.Dropout(dropout)
        for i, k in enumerate(kernel_sizes):
            self.add_module(f"cbcr1_{i}", BranchConv(out_channels, branch, k, dilation))
        self.dropout1 = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1)
        self.relu_final = nn.PReLU(out_channels)

    def branch_set(self, index: int, x: Tensor) -> Tensor:
        """The branches ``cbcr<index>_*`` on ``x``, concatenated on channels: ``(N, out_channels, T)``."""
        return torch.cat([getattr(self, f"cbcr{index}_{i}")(x) for i in range(self.branches)], 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout1(self.branch_set(1, self.dropout0(self.branch_set(0, x))))
        return self.relu_final(out + self.downsample(x))


class MultibranchTCN(nn.Module):
    """The MS-TCN levels, dilation ``2 ** level``, in ``network``. ``(N, C_in, T)`` -> ``(N, C, T)``."""

    def __init__(
        self, in_channels: int, channels: int, kernel_sizes: Sequence[int], levels: int, dropout: float
    ) -> None:
        super().__init__()
        self.network = nn.Sequential(
            *(
                MultibranchBlock(in_channels if i == 0 else channels, channels, kernel_sizes, 2**i, dropout)
                for i in range(levels)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)


class MultiscaleTCN(nn.Module):
    """MS-TCN (``mb_ms_tcn``), mean over the valid steps, ``tcn_output`` Linear(C, 1)."""

    def __init__(self, in_channels: int, config: LipForensicsConfig) -> None:
        super().__init__()
        channels = config.branch_channels * len(config.kernel_sizes)
        self.mb_ms_tcn = MultibranchTCN(
            in_channels, channels, config.kernel_sizes, config.levels, config.dropout
        )
        self.tcn_output = nn.Linear(channels, 1)

    def forward(self, x: Tensor, lengths: Sequence[int] | Tensor | None = None) -> Tensor:
        """``(N, T, C_in)`` per-frame features -> ``(N, 1)`` logits; ``lengths`` as in
        :meth:`LipForensics.forward`."""
        out = self.mb_ms_tcn(x.transpose(1, 2))  # (N, C, T)
        steps = out.shape[2]
        if lengths is None:
            pooled = out.mean(2)
        else:
            counts = [int(k) for k in lengths]
            if len(counts) != out.shape[0] or not all(1 <= k <= steps for k in counts):
                raise ValueError(f"lengths must be {out.shape[0]} values in [1, {steps}], got {counts}")
            pooled = torch.stack([row[:, :k].mean(1) for row, k in zip(out, counts, strict=True)])
        return self.tcn_output(pooled)


class LipForensics(Detector):
    """The LipForensics network (see the module); ``forward(x, lengths)`` -> ``(N, 1)`` fake logits."""

    name = "lipforensics"

    def __init__(self, config: LipForensicsConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LipForensicsConfig()
        front = config.widths[0]
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, front, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(front),
            nn.PReLU(front),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.trunk = ResNetTrunk(config.widths)
        self.tcn = MultiscaleTCN(config.widths[-1], config)
        self.spec = InputSpec(
            crop="mouth",
            scale=1.0,
            train_scale=None,
            size=config.size,
            frames=config.frames,
            sampling="consecutive",
            channels=1,
            mean=(0.421,),
            std=(0.165,),
            layout="NCTHW",
            video_score="mean_logit",
        )
        self.frozen: tuple[str, ...] = ()  # parts kept in eval mode and without gradients
        self._init_weights()

    def train(self, mode: bool = True) -> LipForensics:
        """Set the training mode; the :attr:`frozen` parts stay in eval mode (their batch norms keep
        the pre-trained running statistics)."""
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def _init_weights(self) -> None:
        """The authors' initialisation: conv weights normal with std ``sqrt(2 / (kernel volume x out
        channels))``, conv biases 0, linear weights normal with std ``sqrt(2 / in)`` (batch norms and
        PReLUs keep PyTorch's 1 / 0 and 0.25)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (math.prod(m.kernel_size) * m.out_channels)))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))

    def features(self, x: Tensor) -> Tensor:
        """Front-end and trunk: ``(N, 1, T, H, W)`` -> per-frame features ``(N, T, widths[-1])``."""
        n, _, t = x.shape[:3]
        x = self.frontend3D(x)  # (N, C0, T, H / 4, W / 4)
        x = x.transpose(1, 2).flatten(0, 1)  # (N * T, C0, H / 4, W / 4)
        return self.trunk(x).view(n, t, -1)

    def forward(self, x: Tensor, lengths: Sequence[int] | Tensor | None = None) -> Tensor:
        """Fake logits of clips.

        Args:
            x: ``(N, 1, T, H, W)`` normalised grey mouth crops (88 x 88 for the published model).
            lengths: ``(N,)`` valid frames per clip: row ``i`` is the mean of the MS-TCN output over
                its first ``lengths[i]`` steps (computed on the whole clip: the convolutions still see
                the later frames); None: all T.

        Returns:
            ``(N, 1)`` logits, positive = fake.
        """
        return self.tcn(self.features(x), lengths)

    def prepare_finetuning(self) -> None:
        """The paper's recipe (:func:`freeze_for_finetuning`)."""
        freeze_for_finetuning(self)

    def fake_logit(self, output: Tensor) -> Tensor:
        """``(N, 1)`` -> ``(N,)``."""
        return output[:, 0]


def freeze_for_finetuning(model: LipForensics) -> LipForensics:
    """The paper's recipe on a lip-reading model: front-end and trunk frozen, only ``tcn`` (MS-TCN
    and head) trains. Frozen means no gradients and eval mode in training too, so their batch norms
    keep the lip-reading running statistics. Returns ``model``."""
    model.frozen = ("frontend3D", "trunk")
    for name in model.frozen:
        getattr(model, name).requires_grad_(False)
    return model.train(model.training)


def load_lipforensics(path: str | os.PathLike[str], *, config: str = "full") -> LipForensics:
    """A :class:`LipForensics` with the weights of an authors' file, in eval mode.

    Two formats are read (``torch.load(weights_only=True)``: a pickle that names any global is
    refused), both tolerating ``module.`` prefixes:

    - the forgery detector, ``{"model": state_dict}``: every weight, head included;
    - a lip-reading (LRW) model, ``{"model_state_dict": state_dict}``: its 500-word head
      (:data:`LRW_HEAD`, Linear(768, 500)) is dropped and the model keeps its randomly initialised
      Linear(768, 1): it is a starting point for fine-tuning (:func:`freeze_for_finetuning`), not a
      detector.

    Args:
        path: the checkpoint file.
        config: the :data:`LIPFORENSICS_CONFIGS` entry it was trained with.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a safe weights file, neither format, or names missing, unexpected or
            of another shape (the message names the file).
    """
    path = Path(path)
    checkpoint = load_weights(path, what="LipForensics checkpoint", hint=CHECKPOINT_HINT)
    model = build(config)
    key = next(
        (k for k in ("model", "model_state_dict") if isinstance(checkpoint, dict) and k in checkpoint), None
    )
    if key is None:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not an authors' LipForensics file (a dict with the state dict under 'model', or "
            f"a lip-reading one under 'model_state_dict'); found {found}"
        )
    dropped = (LRW_HEAD,) if key == "model_state_dict" else ()
    fresh = tuple(k for k in model.state_dict() if k.startswith(dropped))  # our head, kept as built
    fit_state_dict(
        model,
        checkpoint[key],
        where=f"{path}: {key} (LipForensics config {config})",
        strip_prefix=("module.",),
        optional=("num_batches_tracked", *fresh),
        dropped=dropped,
        hint=CHECKPOINT_HINT,
    )
    return model.eval()


RECIPES = {
    # Fine-tuning from the lip-reading weights (the front-end and trunk frozen by
    # prepare_finetuning): Adam, lr 2e-4, batch 32, as the paper's implementation details state
    # them; DETECTORS.md does not list them, so they are unverified here, as is the epoch count.
    "paper": {"config": "full", "optimizer": "adam", "lr": 2e-4, "batch_size": 32, "epochs": 20},
    "small": {"config": "small", "optimizer": "adam", "lr": 1e-3, "batch_size": 4, "epochs": 3},
}


@register_detector(
    "lipforensics",
    "LipForensics (CVPR 2021): lip-reading ResNet-18 + MS-TCN on grey mouth clips",
    load_official=load_lipforensics,
    recipes=RECIPES,
)
def build(config: str = "full", **options: object) -> LipForensics:
    """A randomly initialised :class:`LipForensics`: ``config`` names a :data:`LIPFORENSICS_CONFIGS`
    entry, ``options`` override its fields (e.g. ``dropout=0.0``)."""
    if config not in LIPFORENSICS_CONFIGS:
        raise ValueError(
            f"unknown LipForensics config {config!r}; choose from {sorted(LIPFORENSICS_CONFIGS)}"
        )
    return LipForensics(replace(LIPFORENSICS_CONFIGS[config], **options))
