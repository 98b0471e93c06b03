"""DDL: sizes against the backbones plus the modules' own formula, DFDC and MSA against direct NumPy
implementations of the paper's equations, clips as independent segments, and a short training run on
real sample clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from torch import nn

import dftoolkit.detectors.ddl  # noqa: F401 - registers "ddl"
from dftoolkit.detectors.base import (
    DETECTORS,
    build_detector,
    count_parameters,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)
from dftoolkit.detectors.ddl import DFDC, MSA, RECIPES, build
from dftoolkit.detectors.train import LOG_FILE, TrainConfig, train

STAGES = {"xception": (128, 256, 728, 1024), "resnet18": (64, 128, 256, 512)}  # channels after each stage
FEATURES = {"xception": 2048, "resnet18": 512}
TIMM_NAMES = {"xception": "legacy_xception", "resnet18": "resnet18"}


def _msa_count(c: int) -> int:
    """Two directions of three depthwise strip convs (3 taps, no bias) and a 1x1 conv with bias, alpha."""
    return 2 * (3 * 3 * c + c * c + c) + 1


@pytest.mark.parametrize("backbone", ["xception", "resnet18"])
def test_full_parameter_counts_are_the_backbone_plus_the_modules(backbone):
    model = on_meta(lambda: build("full", backbone=backbone))
    timm_model = on_meta(lambda: timm.create_model(TIMM_NAMES[backbone], num_classes=0))
    expected = count_parameters(timm_model) + sum(map(_msa_count, STAGES[backbone])) + FEATURES[backbone] + 1
    assert count_parameters(model) == expected  # 24,172,685 (Xception), 11,892,549 (ResNet-18)
    assert count_parameters(model.backbone) == count_parameters(timm_model)
    assert sum(count_parameters(m) for m in model.dfdc) == 0
    # timm's names under "backbone.": the FF++ / ImageNet weights of the backbone load unchanged
    theirs = {f"backbone.{k}": v.shape for k, v in timm_model.state_dict().items()}
    ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith("backbone.")}
    assert ours == theirs


@pytest.mark.parametrize("backbone", [pytest.param("xception", marks=pytest.mark.slow), "resnet18"])
def test_full_size_forward_of_one_segment(backbone):
    """The published sizes at 299 / 224 px: the stages' maps (74 / 56 px first) go through the modules."""
    torch.manual_seed(0)
    model = build("full", backbone=backbone).eval()
    size = model.spec.size
    with torch.no_grad():
        out = model(torch.randn(1, 3, 4, size, size))
    assert out.shape == (1,) and torch.isfinite(out).all()


def test_registered_without_an_official_loader_and_the_spec():
    assert "ddl" in list_detectors() and DETECTORS.get("ddl").load_official is None
    with pytest.raises(ValueError, match="no checkpoint"):
        load_official_checkpoint("ddl", "ddl.pth")
    xception = on_meta(lambda: build("full")).spec
    assert (xception.size, xception.frames, xception.segment_frames) == (299, 16, 4)
    assert (xception.sampling, xception.layout, xception.video_score) == (
        "dense",
        "NCTHW",
        "mean_probability",
    )
    assert xception.mean == xception.std == (0.5, 0.5, 0.5) and (xception.crop, xception.scale) == (
        "face",
        1.3,
    )
    resnet = on_meta(lambda: build("full", backbone="resnet18")).spec
    assert resnet.size == 224 and resnet.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="backbone"):
        build("small", backbone="vgg")
    assert RECIPES["paper"]["config"] == "full" and RECIPES["small"]["config"] == "small"


@pytest.mark.parametrize("backbone", ["xception", "resnet18"])
def test_small_forward_backward_and_clips_are_independent_segments(backbone):
    torch.manual_seed(0)
    model = build_detector("ddl", "small", backbone=backbone)
    spec = model.spec
    assert (spec.frames, spec.segment_frames, spec.size) == (8, 4, 64) and count_parameters(model) < 200_000
    x = torch.randn(2, 3, spec.frames, spec.size, spec.size)
    out = model(x)
    assert out.shape == (2,) and torch.equal(model.fake_logit(out), out)
    sum(model.losses(out, torch.tensor([0, 1])).values()).backward()
    if backbone == "resnet18":  # timm zero-initialises each block's last BN scale: no grad behind it yet
        assert all(
            b.bn2.weight.abs().sum() == 0
            for layer in range(1, 5)
            for b in getattr(model.backbone, f"layer{layer}")
        )
        with torch.no_grad():
            for layer in range(1, 5):
                for block in getattr(model.backbone, f"layer{layer}"):
                    block.bn2.weight.fill_(1)
        model.zero_grad()
        sum(model.losses(model(x), torch.tensor([0, 1])).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    model.eval()  # frozen BN: the clip logit is the mean of its segments' logits
    with torch.no_grad():
        torch.testing.assert_close(model(x), (model(x[:, :, :4]) + model(x[:, :, 4:])) / 2)
    with pytest.raises(ValueError, match="segments of 4 frames"):
        model(x[:, :, :6])


def _dfdc_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, fluctuation and denoised map by loops: each frame against each other frame."""
    b, _, t, h, w = x.shape
    scores = np.zeros((b, t, h, w))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                v = x[n, :, :, i, j]  # (C, T)
                for f in range(t):
                    others = [g for g in range(t) if g != f]
                    cos = [
                        v[:, f] @ v[:, g] / np.linalg.norm(v[:, f]) / np.linalg.norm(v[:, g]) for g in others
                    ]
                    scores[n, f, i, j] = -np.mean(cos)
    global_map = scores.sum(1)
    fluctuation = scores.var(1)
    denoised = global_map.copy()
    for n in range(b):
        threshold = np.sort(fluctuation[n].ravel())[::-1][h - 1]  # the k-th largest, k = H
        denoised[n][fluctuation[n] < threshold] = -t
    return scores, fluctuation, denoised


def test_dfdc_against_the_papers_maps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 4, 3, 5, generator=gen, dtype=torch.float64)
    ref_scores, ref_fluct, ref_map = _dfdc_reference(x.numpy())
    scores, fluct, denoised = DFDC().maps(x)
    np.testing.assert_allclose(scores.numpy(), ref_scores, atol=1e-10)
    np.testing.assert_allclose(fluct.numpy(), ref_fluct, atol=1e-10)
    np.testing.assert_allclose(denoised.numpy(), ref_map, atol=1e-10)
    assert ((denoised != -4).sum((1, 2)) == 3).all()  # k = H = 3 of the 15 positions kept
    ref_out = x.numpy() * (1 + 1 / (1 + np.exp(-ref_map)))[:, None, None]
    np.testing.assert_allclose(DFDC()(x).numpy(), ref_out, atol=1e-10)

    still = x[:, :, :1].expand(-1, -1, 4, -1, -1)  # four identical frames: no difference anywhere
    torch.testing.assert_close(DFDC().maps(still)[2], torch.full((2, 3, 5), -4.0, dtype=torch.float64))


def _strip_pyramid(strip: np.ndarray, taps: list[np.ndarray]) -> np.ndarray:
    """``(B, C, L, T)`` strips along time: per scale s, mean-pool T by s, a 3-tap depthwise
    cross-correlation with zero padding, repeat s times; the mean over the scales."""
    b, c, length, t = strip.shape
    total = np.zeros_like(strip)
    for s, k in zip((1, 2, 4), taps, strict=True):
        pooled = strip.reshape(b, c, length, t // s, s).mean(-1)
        padded = np.pad(pooled, ((0, 0), (0, 0), (0, 0), (1, 1)))
        filtered = sum(k[None, :, None, None, i] * padded[..., i : i + t // s] for i in range(3))
        total += np.repeat(filtered, s, axis=-1) / 3
    return total


def test_msa_against_the_papers_equations():
    torch.manual_seed(0)
    msa = MSA(5).double()
    for p in msa.parameters():
        nn.init.normal_(p)
    with torch.no_grad():
        msa.alpha.fill_(0.7)
    x = torch.randn(2, 5, 8, 3, 4, dtype=torch.float64)  # (B, C, T, H, W)
    a = x.numpy()

    def fuse(conv, y):  # 1x1 conv on (B, C, L, T)
        weight, bias = conv.weight.detach().numpy()[:, :, 0, 0], conv.bias.detach().numpy()
        return np.einsum("oc,bclt->bolt", weight, y) + bias[None, :, None, None]

    taps_v = [conv.weight.detach().numpy()[:, 0, 0, :] for conv in msa.conv_v]  # (C, 3) along time
    taps_h = [conv.weight.detach().numpy()[:, 0, :, 0] for conv in msa.conv_h]
    d_v = fuse(msa.fuse_v, _strip_pyramid(a.mean(4).transpose(0, 1, 3, 2), taps_v))  # (B, C, H, T)
    d_h = fuse(msa.fuse_h, _strip_pyramid(a.mean(3).transpose(0, 1, 3, 2), taps_h))  # (B, C, W, T)

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    gate_v = sigmoid(d_v).transpose(0, 1, 3, 2)[..., None]  # (B, C, T, H, 1)
    gate_h = sigmoid(d_h).transpose(0, 1, 3, 2)[:, :, :, None]  # (B, C, T, 1, W)
    expected = a + 0.7 * a * (0.5 * (gate_v - 0.5) + 0.5 * (gate_h - 0.5))
    with torch.no_grad():
        got_v, got_h = msa.directions(x)
        np.testing.assert_allclose(got_v.numpy(), d_v, atol=1e-10)
        np.testing.assert_allclose(got_h.numpy(), d_h.transpose(0, 1, 3, 2), atol=1e-10)
        np.testing.assert_allclose(msa(x).numpy(), expected, atol=1e-10)
    assert count_parameters(msa) == _msa_count(5)
    with pytest.raises(ValueError, match="multiple of 4"):
        msa(x[:, :, :6])


def test_training_on_real_clips_lowers_the_loss(swap_store, tmp_path):
    from dftoolkit.detectors.data import FaceClipDataset

    torch.manual_seed(0)
    model = build("small")
    train_set = FaceClipDataset(swap_store, model.spec, train=True)
    val_set = FaceClipDataset(swap_store, model.spec)
    assert len(train_set) == 4 and train_set[0]["clip"].shape == (3, 8, 64, 64)
    settings = {k: v for k, v in RECIPES["small"].items() if k != "config"}
    config = TrainConfig(**{**settings, "epochs": 6, "log_every": 1})
    result = train(model, train_set, val_set, config, tmp_path / "run", initialisation="random")
    lines = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    losses = [line["loss"] for line in lines if line["kind"] == "epoch"]
    assert len(losses) == 6 and result.best_checkpoint.is_file()
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
