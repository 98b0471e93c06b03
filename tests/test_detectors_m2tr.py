"""M2TR: sizes and names of the authors' model, the modules against direct formulas, the authors'
checkpoints, losses and a short training run on real clips."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from dftoolkit.checkpoints import CheckpointError
from dftoolkit.detectors import m2tr
from dftoolkit.detectors.base import (
    build_detector,
    count_parameters,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)
from dftoolkit.detectors.m2tr import (
    M2TR,
    DCTBranch,
    GlobalFilter,
    MultiScaleAttention,
    StaticSamePadConv2d,
    authors_names,
    band_masks,
    build,
    supervised_contrastive,
)

AUTHORS_TOTAL = 18_611_532
BACKBONE = 17_552_202
UNIT = {"transformer": 31_104, "frequency filter": 228_544, "fusion": 4_288}
CONV_BN = {"3x3": 32 * 32 * 9 + 32 + 64, "1x1": 32 * 32 + 32 + 64}


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics, so that eval-mode BN is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


def _efficientnet_pytorch_b4() -> list[tuple[str, tuple[int, ...]]]:
    """The authors' backbone names and shapes, in order, from efficientnet_pytorch's B4 definition
    (width 1.4, depth 1.8, its block strings), written out independently of timm."""

    def filters(c: int) -> int:
        c *= 1.4
        new = max(8, int(c + 4) // 8 * 8)
        return int(new + 8 if new < 0.9 * c else new)

    def bn(name: str, c: int) -> list:
        return [(f"{name}.{s}", (c,)) for s in ("weight", "bias", "running_mean", "running_var")] + [
            (f"{name}.num_batches_tracked", ())
        ]

    stages = [(1, 3, 1, 32, 16), (2, 3, 6, 16, 24), (2, 5, 6, 24, 40), (3, 3, 6, 40, 80)]
    stages += [(3, 5, 6, 80, 112), (4, 5, 6, 112, 192), (1, 3, 6, 192, 320)]
    out = [("model._conv_stem.weight", (48, 3, 3, 3)), *bn("model._bn0", 48)]
    index = 0
    for repeats, k, expand, cin, cout in stages:
        cin, cout = filters(cin), filters(cout)
        for r in range(math.ceil(1.8 * repeats)):
            p = f"model._blocks.{index}."
            inp = cin if r == 0 else cout
            mid, squeezed = inp * expand, max(1, int(inp * 0.25))
            if expand != 1:
                out += [(p + "_expand_conv.weight", (mid, inp, 1, 1)), *bn(p + "_bn0", mid)]
            out += [(p + "_depthwise_conv.weight", (mid, 1, k, k)), *bn(p + "_bn1", mid)]
            out += [(p + "_se_reduce.weight", (squeezed, mid, 1, 1)), (p + "_se_reduce.bias", (squeezed,))]
            out += [(p + "_se_expand.weight", (mid, squeezed, 1, 1)), (p + "_se_expand.bias", (mid,))]
            out += [(p + "_project_conv.weight", (cout, mid, 1, 1)), *bn(p + "_bn2", cout)]
            index += 1
    head = filters(1280)
    out += [("model._conv_head.weight", (head, filters(320), 1, 1)), *bn("model._bn1", head)]
    return [*out, ("model._fc.weight", (2, head)), ("model._fc.bias", (2,))]


@pytest.fixture(scope="module")
def full_fft() -> M2TR:
    torch.manual_seed(0)
    return _randomise_bn(build("full", frequency="fft", decoder=False), seed=3).eval()


def _authors_state(model: M2TR) -> dict[str, torch.Tensor]:
    names = authors_names(model.model)
    return {names.get(k, k): v.clone() for k, v in model.state_dict().items()}


def test_parameter_counts_of_the_full_models():
    model = on_meta(lambda: build("full", frequency="fft", decoder=False))
    assert count_parameters(model) == AUTHORS_TOTAL and count_parameters(model.model) == BACKBONE
    for attention, freq, fusion in model.layers:
        assert [count_parameters(m) for m in (attention, freq, fusion)] == list(UNIT.values())
    assert count_parameters(model.classifier) == 1792 * 2 + 2 and model.decoder is None
    keys = set(model.state_dict())
    assert {"layers.0.0.t.attention.query_embedding.weight", "layers.3.1.filter.complex_weight"} <= keys
    assert model.layers[0][1].filter.complex_weight.shape == (80, 41, 32, 2)

    paper = on_meta(lambda: build("full"))
    branch = 9 * 32 * 9 + 32 + 64 + CONV_BN["3x3"]
    fusion = 3 * (32 * 32 + 32) + CONV_BN["3x3"]
    decoder = (32 * 32 * 9 + 32) + (32 * 16 * 9 + 16) + (16 * 16 * 9 + 16) + (16 * 9 + 1)
    expected = BACKBONE + 4 * (UNIT["transformer"] + fusion) + branch + 3586 + decoder
    assert count_parameters(paper) == expected and paper.frequency == "dct"
    assert count_parameters(paper.decoder) == decoder and count_parameters(paper.frequency_branch) == branch


def test_backbone_names_and_shapes_are_efficientnet_pytorchs_one_by_one():
    model = on_meta(lambda: build("full", frequency="fft", decoder=False))
    names = authors_names(model.model)
    ours = [(names[f"model.{k}"], tuple(v.shape)) for k, v in model.model.state_dict().items()]
    expected = _efficientnet_pytorch_b4()
    assert len(ours) == len(expected) == 706
    for got, want in zip(ours, expected, strict=True):
        assert got == want
    assert len(set(names.values())) == 706


def test_registered_spec_and_the_authors_input_and_output():
    assert "m2tr" in list_detectors()
    model = build_detector("m2tr", "small")
    spec = model.spec
    assert (spec.crop, spec.scale, spec.size, spec.frames, spec.sampling) == ("face", 1.3, 64, 1, "frame")
    assert (spec.layout, spec.video_score, spec.masks) == ("NCHW", "mean_probability", True)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert build("full").spec.size == 320
    clip = torch.randn(2, 3, 64, 64)
    assert model.model_input({"clip": clip, "label": torch.tensor([0, 1])})["img"] is clip
    with pytest.raises(ValueError, match="frequency"):
        build("small", frequency="wavelet")


@pytest.mark.parametrize("frequency", m2tr.FREQUENCIES)
def test_small_forward_backward_and_eval_scores(frequency):
    torch.manual_seed(0)
    model = build("small", frequency=frequency).train()
    x = torch.randn(4, 3, 64, 64)
    out = model({"img": x})
    assert out["logits"].shape == (4, 2) and out["mask"].shape == (4, 1, 64, 64)
    assert out["features:"].shape == (4, 64) and out["mask"].min() >= 0 and out["mask"].max() <= 1
    labels = torch.tensor([0, 1, 0, 1])
    batch = {
        "mask": (torch.rand(4, 1, 64, 64) > 0.5).float(),
        "mask_weight": torch.tensor([1.0, 1.0, 0.0, 1.0]),
    }
    losses = model.losses(out, labels, batch)
    assert set(losses) == {"ce", "seg", "contrastive"}
    sum(losses.values()).backward()
    unused = {f"model.classifier.{s}" for s in ("weight", "bias")}  # the authors' model._fc
    for name, p in model.named_parameters():
        if name in unused:
            assert p.grad is None and not p.requires_grad
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    model.eval()
    with torch.no_grad():
        out = model({"img": x})
    logits = out["logits"]
    if frequency == "fft":  # per-class sigmoids; the authors' score is softmax(those)[:, 1]
        assert logits.min() > 0 and logits.max() < 1
    torch.testing.assert_close(torch.sigmoid(model.fake_logit(out)), logits.softmax(1)[:, 1])


def test_losses_follow_their_definitions():
    model = build("small", seg_weight=2.0, contrastive_weight=0.5, temperature=0.2)
    gen = torch.Generator().manual_seed(0)
    logits, features = torch.randn(4, 2, generator=gen), torch.randn(4, 64, generator=gen)
    mask = torch.rand(4, 1, 64, 64, generator=gen)
    target = (torch.rand(4, 1, 64, 64, generator=gen) > 0.5).float()
    labels = torch.tensor([1, 0, 1, 1])
    weight = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = {"logits": logits, "mask": mask, "features:": features}
    losses = model.losses(out, labels, {"mask": target, "mask_weight": weight})
    torch.testing.assert_close(losses["ce"], F.cross_entropy(logits, labels))
    bce = -(target * mask.log() + (1 - target) * (1 - mask).log()).mean((1, 2, 3))
    torch.testing.assert_close(losses["seg"], 2.0 * bce[[0, 2, 3]].mean())
    z = F.normalize(features, dim=1).numpy()
    terms = []
    for i in range(4):
        positives = [p for p in range(4) if p != i and labels[p] == labels[i]]
        if positives:  # the real item has none: it is no anchor
            denominator = sum(math.exp(z[i] @ z[j] / 0.2) for j in range(4) if j != i)
            terms.append(-np.mean([math.log(math.exp(z[i] @ z[p] / 0.2) / denominator) for p in positives]))
    assert len(terms) == 3
    torch.testing.assert_close(losses["contrastive"], torch.tensor(0.5 * np.mean(terms), dtype=torch.float32))
    assert supervised_contrastive(features[:1], labels[:1]) == 0  # no positive pair
    no_truth = model.losses(out, labels, {"mask": target, "mask_weight": torch.zeros(4)})
    assert no_truth["seg"] == 0


@pytest.mark.parametrize("scale_channels", [4, 16])
def test_multiscale_attention_against_a_loop_over_patch_pairs(scale_channels):
    torch.manual_seed(1)
    attention = _randomise_bn(MultiScaleAttention(16, (1, 2, 4, 8), scale_channels)).eval()
    x = torch.randn(2, 16, 16, 16)
    q, k, v = (m(x) for m in (attention.query_embedding, attention.key_embedding, attention.value_embedding))
    stitched = torch.zeros_like(x)
    for head, r in enumerate((1, 2, 4, 8)):
        c = slice(4 * head, 4 * head + 4)
        p = 16 // r
        cells = [(i, j) for i in range(r) for j in range(r)]

        def patch(t, cell, c=c, p=p):
            return t[:, c, cell[0] * p : (cell[0] + 1) * p, cell[1] * p : (cell[1] + 1) * p]

        for a in cells:
            scores = torch.stack(
                [
                    (patch(q, a) * patch(k, b)).sum((1, 2, 3)) / math.sqrt(p * p * scale_channels)
                    for b in cells
                ],
                1,
            )
            weights = scores.softmax(1)
            out = sum(weights[:, n, None, None, None] * patch(v, b) for n, b in enumerate(cells))
            stitched[:, c, a[0] * p : (a[0] + 1) * p, a[1] * p : (a[1] + 1) * p] = out
    with torch.no_grad():
        torch.testing.assert_close(attention(x), attention.output_linear(stitched))
    with pytest.raises(ValueError, match="patches"):
        attention(torch.randn(1, 16, 12, 12))


def test_dct_band_split_against_scipy():
    h, w = 32, 48
    masks = band_masks(h, w)
    assert torch.equal(masks.sum(0), torch.ones(h, w))  # a partition of the coefficients
    u, v = 5, 0  # 5/32 >= 1/8: high; (1, 1): 1/32 + 1/48 < 1/16: low; (2, 2): middle
    assert masks[2, u, v] == 1 and masks[0, 1, 1] == 1 and masks[1, 2, 2] == 1
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    bands = DCTBranch.bands(x.float())
    coefficients = scipy.fft.dctn(x.numpy(), axes=(2, 3), norm="ortho")
    for b in range(3):
        keep = np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                keep[i, j] = m2tr.BANDS[b][0] <= i / h + j / w < m2tr.BANDS[b][1]
        expected = scipy.fft.idctn(coefficients * keep, axes=(2, 3), norm="ortho")
        torch.testing.assert_close(
            bands[:, 3 * b : 3 * b + 3].double(), torch.from_numpy(expected), atol=1e-5, rtol=0
        )
    torch.testing.assert_close(bands.view(2, 3, 3, h, w).sum(1), x.float(), atol=1e-5, rtol=0)


def test_global_filter_against_numpy():
    torch.manual_seed(2)
    layer = GlobalFilter(4, 8, 10)
    x = torch.randn(2, 4, 8, 10)
    weight = layer.complex_weight.detach().numpy()
    spectrum = np.fft.rfft2(x.numpy(), axes=(2, 3), norm="ortho")
    filtered = spectrum * (weight[..., 0] + 1j * weight[..., 1]).transpose(2, 0, 1)
    expected = np.fft.irfft2(filtered, s=(8, 10), axes=(2, 3), norm="ortho")
    torch.testing.assert_close(layer(x), torch.from_numpy(expected).float(), atol=1e-6, rtol=1e-5)


def test_fft_backbone_pads_as_for_a_380_px_input():
    model = on_meta(lambda: build("full", frequency="fft"))
    assert not any(isinstance(m, Conv2dSame) for m in model.modules())
    static = {n: m.pad for n, m in model.model.named_modules() if isinstance(m, StaticSamePadConv2d)}
    assert static == {
        "conv_stem": (0, 1, 0, 1),
        "blocks.1.0.conv_dw": (0, 1, 0, 1),
        "blocks.2.0.conv_dw": (1, 2, 1, 2),
        "blocks.3.0.conv_dw": (0, 1, 0, 1),
        "blocks.5.0.conv_dw": (1, 2, 1, 2),
    }
    assert any(isinstance(m, Conv2dSame) for m in on_meta(lambda: build("full")).modules())
    torch.manual_seed(3)
    dynamic = Conv2dSame(4, 4, 5, stride=2, groups=4, bias=False)
    fixed = StaticSamePadConv2d(dynamic)
    for side in (320, 160, 40, 20):  # the maps of a 320 px input: timm's padding is the authors'
        x = torch.randn(1, 4, side, side)
        torch.testing.assert_close(fixed(x), dynamic(x), rtol=0, atol=0)
    odd = torch.randn(1, 4, 21, 21)
    assert fixed(odd).shape[-1] == 10 and dynamic(odd).shape[-1] == 11


def test_authors_checkpoint_round_trip_at_full_size(full_fft, tmp_path):
    path = tmp_path / "m2tr_ff_c23.pth"
    state = _authors_state(full_fft)
    assert {"model._conv_stem.weight", "model._blocks.31._bn2.running_var", "model._fc.weight"} <= set(state)
    assert {"layers.0.0.t.attention.query_embedding.weight", "classifier.projection.weight"} <= set(state)
    torch.save({"epoch": 20, "model_state": state}, path)
    loaded = load_official_checkpoint("m2tr", str(path), frequency="fft")
    assert isinstance(loaded, M2TR) and not loaded.training and loaded.decoder is None
    own = _authors_state(loaded)
    assert own.keys() == state.keys() and all(torch.equal(own[k], v) for k, v in state.items())
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, theirs = loaded({"img": x}), full_fft({"img": x})
    torch.testing.assert_close(ours["logits"], theirs["logits"], rtol=0, atol=0)
    torch.testing.assert_close(ours["features:"], theirs["features:"], rtol=0, atol=0)
    assert ours["mask"] is None and ours["logits"].min() > 0 and ours["logits"].max() < 1


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_decoder_weights_and_bad_files(tmp_path):
    torch.manual_seed(5)
    model = build("small", frequency="fft")
    state = _authors_state(model)
    good = tmp_path / "with_decoder.pth"
    torch.save({"model_state": {f"module.{k}": v for k, v in state.items()}}, good)
    loaded = m2tr.load_m2tr(good, config="small")
    assert loaded.decoder is not None and torch.equal(
        loaded.state_dict()["model.blocks.1.0.conv_dw.weight"],
        state["model._blocks.1._depthwise_conv.weight"],
    )
    cases = {
        "missing": {k: v for k, v in state.items() if k != "layers.1.1.filter.complex_weight"},
        "wrong shape": {**state, "model._blocks.2._se_reduce.bias": torch.zeros(3)},
    }
    for problem, broken in cases.items():
        path = tmp_path / f"{problem.replace(' ', '_')}.pth"
        torch.save({"model_state": broken}, path)
        with pytest.raises(CheckpointError, match=problem) as err:
            load_official_checkpoint("m2tr", str(path), config="small")
        assert str(path) in str(err.value)
    other = tmp_path / "other.pth"
    torch.save({"state_dict": state}, other)
    with pytest.raises(CheckpointError, match="model_state") as err:
        m2tr.load_m2tr(other, config="small")
    assert str(other) in str(err.value)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"model_state": {"classifier.projection.weight": _Exploit(str(marker))}}, evil)
    with pytest.raises(CheckpointError, match="may run code") as err:
        m2tr.load_m2tr(evil, config="small")
    assert str(evil) in str(err.value) and not marker.exists()
    with pytest.raises(ValueError, match="fft"):
        m2tr.load_m2tr(good, frequency="dct", config="small")


def test_recipes():
    assert set(m2tr.RECIPES) == {"paper", "small"}
    paper = m2tr.RECIPES["paper"]
    assert (paper["optimizer"], paper["lr"], paper["momentum"], paper["scheduler"]) == (
        "sgd",
        5e-4,
        0.9,
        "cosine",
    )


def test_training_on_real_clips_lowers_the_loss(swap_store, tmp_path):
    from dftoolkit.detectors.data import FaceFrameDataset
    from dftoolkit.detectors.train import TrainConfig, train

    torch.manual_seed(0)
    model = build("small")
    train_set = FaceFrameDataset(swap_store, model.spec, train=True, frames_per_video=6)
    val_set = FaceFrameDataset(swap_store, model.spec, frames_per_video=2)
    item = train_set[0]
    assert item["clip"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    config = TrainConfig(epochs=4, batch_size=4, lr=1e-3, optimizer="adam", log_every=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, train_set, val_set, config, tmp_path, initialisation="random")
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    epochs = [r["loss"] for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    assert {"loss_ce", "loss_seg", "loss_contrastive"} <= set(steps[0])
    assert len(epochs) == 4 and epochs[-1] < epochs[0]
