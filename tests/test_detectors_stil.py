"""STIL: sizes of the authors' model, the modules against their definitions, the authors' checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dftoolkit.checkpoints import CheckpointError
from dftoolkit.detectors import stil
from dftoolkit.detectors.base import (
    build_detector,
    count_parameters,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)
from dftoolkit.detectors.stil import ISM, TIM, TemporalShift, build

AUTHORS_TOTAL = 22_688_418
DEEP_STEM = 3 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 64 * 9  # the 7x7 stem has 3 * 64 * 49


def _sum(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(count_parameters(m) for m in model.modules() if isinstance(m, kind))


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Random affine parameters and running statistics, so that eval-mode BN is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=gen) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=gen) + 0.5


@pytest.mark.parametrize("backbone", stil.BACKBONES)
def test_parameter_counts_of_the_full_model(backbone):
    model = on_meta(lambda: build("full", backbone=backbone))
    stem = 3 * 64 * 49 if backbone == "resnet50" else DEEP_STEM
    assert count_parameters(model) == AUTHORS_TOTAL - DEEP_STEM + stem  # 22,669,186 for resnet50
    assert (_sum(model, TIM), _sum(model, ISM), _sum(model, TemporalShift)) == (83_120, 48, 5_664)
    keys = model.state_dict().keys()
    assert {"layer1.0.tim.conv_ht.weight", "layer4.2.shift.conv.weight", "fc.weight"} <= set(keys)
    assert model.fc.out_features == 2 and model.spec.size == 224 and model.spec.frames == 8
    assert model.spec.test_frames == 16


def test_small_forward_backward_and_sixteen_frames():
    torch.manual_seed(0)
    model = build_detector("stil", "small", backbone="scnet50_v1d")
    assert "stil" in list_detectors() and count_parameters(model) < 1_000_000
    size = model.spec.size
    x = torch.randn(2, 8 * 3, size, size)
    out = model(x)
    assert out.shape == (2, 2)
    loss = sum(model.losses(out, torch.tensor([0, 1])).values())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    model.eval()
    clip = torch.randn(2, 16 * 3, size, size)  # a 16-frame test clip, channel 3t + c
    with torch.no_grad():
        groups = (model(clip[:, :24]) + model(clip[:, 24:])) / 2
        torch.testing.assert_close(model(clip), groups)
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.randn(1, 12 * 3, size, size))


def test_score_loss_and_spec():
    model = build("small")
    logits = torch.tensor([[0.3, 1.2], [2.0, -1.0]])
    fake = model.fake_logit(logits)
    torch.testing.assert_close(torch.sigmoid(fake), logits.softmax(1)[:, 1])
    labels = torch.tensor([1, 0])
    torch.testing.assert_close(model.losses(logits, labels)["ce"], F.cross_entropy(logits, labels))
    spec = model.spec
    assert (spec.crop, spec.scale, spec.train_scale, spec.sampling) == ("face", 1.3, (1.0, 1.5), "segments")
    assert (spec.layout, spec.video_score, spec.channels) == ("N(TC)HW", "mean_probability", 3)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_tim_against_its_definition():
    """TIM by the formulas: per frame conv(z[t+1]) - z[t], the last frame zero, three paths averaged,
    up conv + BN, sigmoid - 0.5, half the sum of both planes, x + x * attention."""
    torch.manual_seed(0)
    tim = TIM(32, reduction=16).eval()
    _randomise_bn(tim)
    for m in tim.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight)
    t, c, h, w = 8, 32, 4, 6
    x = torch.randn(t, c, h, w)  # one clip of 8 frames
    z = tim.bn1(tim.conv1(x))

    def plane(conv, kernel_pad, pool, pooled, direct, up):
        diff = torch.zeros_like(z)
        for i in range(t - 1):
            later = F.conv2d(z[i + 1 : i + 2], conv.weight, padding=kernel_pad, groups=z.shape[1])
            diff[i] = later[0] - z[i]
        small = pooled(F.avg_pool2d(diff, pool))
        rows = torch.arange(h) * small.shape[2] // h
        cols = torch.arange(w) * small.shape[3] // w
        coarse = small[:, :, rows][:, :, :, cols]  # nearest upsampling
        return torch.sigmoid(up((diff + coarse + direct(diff)) / 3)) - 0.5

    a_h = plane(tim.conv_ht, (1, 0), (2, 1), tim.htie_conv1, tim.htie_conv2, tim.ht_up_conv)
    a_w = plane(tim.conv_tw, (0, 1), (1, 2), tim.vtie_conv1, tim.vtie_conv2, tim.tw_up_conv)
    with torch.no_grad():
        torch.testing.assert_close(tim(x), x + x * 0.5 * (a_h + a_w))
    assert tim.conv_ht.weight.shape == (2, 1, 3, 1) and tim.conv_tw.weight.shape == (2, 1, 1, 3)


def test_temporal_shift_starts_as_a_shift_of_an_eighth_each_way():
    shift = TemporalShift(32)
    weight = shift.conv.weight[:, 0]  # (32, 3): taps t-1, t, t+1
    expected = torch.zeros(32, 3)
    expected[:4, 2], expected[4:8, 0], expected[8:, 1] = 1, 1, 1
    assert torch.equal(weight, expected)
    x = torch.zeros(2 * 8, 32, 1, 1)
    x[3] = 1  # an impulse at frame 3 of the first clip, every channel
    out = shift(x).view(2, 8, 32)
    assert out[0, 2, :4].eq(1).all() and out[0, 4, 4:8].eq(1).all() and out[0, 3, 8:].eq(1).all()
    assert out.sum() == 32 and out[1].eq(0).all()


def test_ism_is_a_channel_gate_from_a_three_tap_conv():
    ism = ISM()
    nn.init.normal_(ism.conv.weight)
    s = torch.randn(3, 5, 4, 4)
    k = ism.conv.weight.flatten()
    g = F.pad(s.mean((2, 3)), (1, 1))
    gate = torch.sigmoid(k[0] * g[:, :-2] + k[1] * g[:, 1:-1] + k[2] * g[:, 2:])
    torch.testing.assert_close(ism(s), s * gate[..., None, None])


def _save_authors(model: nn.Module, path, prefix: str = "module.base_model.") -> None:
    torch.save({"epoch": 3, "state_dict": {prefix + k: v for k, v in model.state_dict().items()}}, path)


def test_authors_checkpoint_round_trip_at_full_size(tmp_path):
    torch.manual_seed(1)
    model = build("full", backbone="scnet50_v1d")
    _randomise_bn(model)
    path = tmp_path / "stil.pth"
    _save_authors(model, path)
    loaded = load_official_checkpoint("stil", str(path), backbone="scnet50_v1d")
    assert not loaded.training and loaded.backbone == "scnet50_v1d"
    x = torch.randn(1, 24, 112, 112)  # 112 px: the smallest input the full model takes
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_bare_state_dicts_load_and_bad_checkpoints_are_refused(tmp_path):
    model = build("small", backbone="scnet50_v1d")
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    loaded = stil.load_stil(bare, backbone="scnet50_v1d", config="small")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())

    state = {f"module.base_model.{k}": v for k, v in model.state_dict().items()}
    cases = {
        "missing": {k: v for k, v in state.items() if "tim.conv_ht" not in k},
        "wrong shape": {**state, "module.base_model.fc.weight": torch.zeros(3, 128)},
    }
    for problem, broken in cases.items():
        path = tmp_path / f"{problem.replace(' ', '_')}.pth"
        torch.save({"state_dict": broken}, path)
        with pytest.raises(CheckpointError, match=problem) as err:
            load_official_checkpoint("stil", str(path), backbone="scnet50_v1d", config="small")
        assert str(path) in str(err.value)

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": _Exploit(str(marker))}}, evil)
    with pytest.raises(CheckpointError, match="may run code") as err:
        load_official_checkpoint("stil", str(evil), backbone="scnet50_v1d", config="small")
    assert str(evil) in str(err.value) and not marker.exists()


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_imagenet_resnet50_weights_map_onto_the_paper_backbone(tmp_path):
    from torchvision.models import resnet50

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build(pretrained=tmp_path / "absent.pth")
    torch.manual_seed(2)
    reference = resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build(pretrained=path)
    tv, own = reference.state_dict(), model.state_dict()
    pairs = {
        "conv1.weight": tv["conv1.weight"],
        "layer2.0.downsample.0.weight": tv["layer2.0.downsample.0.weight"],
        "layer3.1.conv3.weight": tv["layer3.1.conv3.weight"],
        "layer1.0.conv1_a.weight": tv["layer1.0.conv1.weight"][:32],
        "layer1.0.bn1_b.running_var": tv["layer1.0.bn1.running_var"][32:],
        "layer4.2.k1.0.weight": tv["layer4.2.conv2.weight"][:256, :256],
        "layer4.2.scconv.k4.0.weight": tv["layer4.2.conv2.weight"][256:, 256:],
        "layer4.2.scconv.k4.1.bias": tv["layer4.2.bn2.bias"][256:],
    }
    assert all(torch.equal(own[k], v) for k, v in pairs.items())
    assert own["fc.weight"].shape == (2, 2048)
    torch.save({"x": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="torchvision ResNet-50"):
        build(pretrained=tmp_path / "other.pth")
