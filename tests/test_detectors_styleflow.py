"""StyleFlow: pSp and StyleGRU at the authors' sizes and names, the style flow, latent dropout,
BatchNorm over time, triplets, the latent cache, official checkpoints, both stages, training."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dftoolkit.checkpoints import CheckpointError
from dftoolkit.detectors import styleflow
from dftoolkit.detectors.base import (
    InputSpec,
    build_detector,
    count_parameters,
    detector_recipes,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)
from dftoolkit.detectors.styleflow import (
    RECIPES,
    LatentDropout,
    StyleFlow,
    StyleFlowConfig,
    StyleGRU,
    build,
    style_flow,
    triplet_indices,
    triplet_loss,
)


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Batch-norm statistics and scales of any sign, PReLU slopes and ``latent_avg`` random (so that
    a loader that forgot one shows); in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
            elif isinstance(m, styleflow.PSPEncoder):
                m.latent_avg.copy_(torch.randn(m.latent_avg.shape, generator=gen))
    return module.eval()


def _small(seed: int = 0, **options) -> StyleFlow:
    torch.manual_seed(seed)
    return _randomise(build("small", **options), seed)


def _batch(n: int = 2, t: int = 8, size: int = 64, seed: int = 1, videos=None, starts=None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    videos = videos or [f"video_{i}" for i in range(n)]
    starts = starts or [0] * n
    return {
        "clip": torch.randn(n, 3, t, size, size, generator=gen),
        "frames": torch.stack([torch.arange(s, s + t) for s in starts]),
        "dataset": ["corpus"] * n,
        "video_id": videos,
        "label": torch.tensor([i % 2 for i in range(n)]),
    }


class _Counter:
    """Counts the frames pSp encodes (a forward hook)."""

    def __init__(self, model: StyleFlow) -> None:
        self.frames = 0
        model.psp.register_forward_hook(lambda _m, args, _out: self.add(args[0].shape[0]))

    def add(self, n: int) -> None:
        self.frames += n


# -- registry, spec, sizes -------------------------------------------------------------------------


def test_registered_with_spec_recipes_and_options():
    from dftoolkit.detectors.train import TrainConfig

    assert "styleflow" in list_detectors()
    model = build_detector("styleflow", "small")
    assert isinstance(model, StyleFlow) and model.stage == 1
    assert on_meta(lambda: build("full")).spec == InputSpec(
        crop="ffhq",
        scale=1.0,
        train_scale=None,
        size=256,
        frames=32,
        sampling="consecutive",
        channels=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        layout="NCTHW",
        video_score="mean_probability",
        fixed_alignment=True,
        augment=False,
    )
    assert (model.spec.size, model.spec.frames) == (64, 8)
    assert build("small", fc_dropout=0.0).config.fc_dropout == 0.0
    assert build("small", stage=2).stage == 2
    with pytest.raises(ValueError, match="unknown StyleFlow config"):
        build("tiny")
    with pytest.raises(ValueError, match="stage must be one of"):
        build("small", stage=3)
    with pytest.raises(ValueError, match="size must be a multiple of 16"):
        build("small", size=70)
    assert set(RECIPES) == {"paper", "small"}
    assert detector_recipes("styleflow") == RECIPES
    settings = {name: {k: v for k, v in r.items() if k != "config"} for name, r in RECIPES.items()}
    assert (RECIPES["paper"]["config"], RECIPES["small"]["config"]) == ("full", "small")
    paper = TrainConfig(**settings["paper"])
    assert (paper.optimizer, paper.lr) == ("adam", 5e-4)
    TrainConfig(**settings["small"])


def test_full_size_parameter_counts_and_authors_names():
    model = on_meta(lambda: build("full"))
    assert count_parameters(model.psp.encoder) == 267_136_704
    assert count_parameters(model.stylegru) == 763_514_943
    assert count_parameters(model) == 267_136_704 + 763_514_943
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "psp.encoder.input_layer.0.weight": (64, 3, 3, 3),
        "psp.encoder.input_layer.2.weight": (64,),
        "psp.encoder.body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "psp.encoder.body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "psp.encoder.body.23.res_layer.3.weight": (512, 512, 3, 3),
        "psp.encoder.styles.0.convs.6.weight": (512, 512, 3, 3),  # 16 px: 4 convs
        "psp.encoder.styles.3.convs.8.weight": (512, 512, 3, 3),  # 32 px: 5 convs
        "psp.encoder.styles.17.convs.10.weight": (512, 512, 3, 3),  # 64 px: 6 convs
        "psp.encoder.styles.17.linear.weight": (512, 512),
        "psp.encoder.latlayer1.weight": (512, 256, 1, 1),
        "psp.encoder.latlayer2.weight": (512, 128, 1, 1),
        "psp.latent_avg": (18, 512),
        "stylegru.hidden_state": (4, 1, 4096),
        "stylegru.gru.weight_ih_l0": (3 * 4096, 9216),
        "stylegru.gru.weight_ih_l1_reverse": (3 * 4096, 8192),
        "stylegru.bn.weight": (31,),
        "stylegru.dense.1.fn.net.0.weight": (4096, 16384),
        "stylegru.dense.1.fn.net.3.weight": (16384, 4096),
        "stylegru.dense.3.weight": (1, 16384),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    # identity units keep a parameter-free max-pool shortcut; no style block has a 5th conv at 16 px
    absent = ("psp.encoder.body.1.shortcut_layer.0.weight", "psp.encoder.styles.2.convs.8.weight")
    assert not any(k in shapes for k in absent)
    stage2 = on_meta(lambda: build("full", stage=2))
    assert count_parameters(stage2.content) == 46_198_976  # a 3-D ResNet-50 without its classifier
    assert not any(p.requires_grad for p in [*stage2.psp.parameters(), *stage2.stylegru.parameters()])


# -- formulas against direct references ------------------------------------------------------------


def test_style_flow_is_the_difference_of_consecutive_latents():
    latents = torch.randn(2, 32, 18, 512, generator=torch.Generator().manual_seed(0))
    flow = style_flow(latents)
    assert flow.shape == (2, 31, 9216)
    ref = np.empty((2, 31, 9216), np.float32)
    w = latents.numpy()
    for n in range(2):
        for t in range(31):
            ref[n, t] = (w[n, t + 1] - w[n, t]).reshape(-1)  # style-major: style k at [512k, 512k + 512)
    np.testing.assert_array_equal(flow.numpy(), ref)


def test_latent_dropout_is_one_tiled_mask_shared_by_clips_and_frames():
    drop = LatentDropout(0.5).train()
    torch.manual_seed(3)
    out = drop(torch.ones(3, 7, 40))
    mask = out[0, 0]
    assert set(mask.unique().tolist()) == {0.0, 2.0}  # kept features scaled by 1 / (1 - p)
    assert torch.equal(out, mask.expand(3, 7, 40))  # the same mask for every clip and frame
    assert torch.equal(mask[:20], mask[20:])  # 20 draws tiled twice
    torch.manual_seed(3)
    assert torch.equal(drop.mask(40) * 2.0, mask)  # drawn from the global generator
    x = torch.randn(3, 7, 40)
    assert torch.equal(drop.eval()(x), x)
    # the rate: about p of the draws are zero
    torch.manual_seed(0)
    assert abs(float((LatentDropout(0.2).mask(20000) == 0).float().mean()) - 0.2) < 0.02
    with pytest.raises(ValueError, match="dropout probability"):
        LatentDropout(1.0)


def test_batchnorm_normalises_each_time_step_over_clips_and_features():
    model = build("small").train()
    bn = model.stylegru.bn
    assert bn.num_features == model.config.frames - 1 == 7
    x = torch.randn(4, 7, 576, generator=torch.Generator().manual_seed(0)) * 3 + 1
    with torch.no_grad():
        out = bn(x).numpy()
    v = x.numpy().astype(np.float64)
    mean = v.mean((0, 2), keepdims=True)
    var = v.var((0, 2), keepdims=True)
    np.testing.assert_allclose(out, (v - mean) / np.sqrt(var + bn.eps), rtol=1e-4, atol=1e-4)
    # a shift per time step is removed; a shift per feature is not
    shifted_t = bn(x + torch.arange(7.0).view(1, 7, 1))
    shifted_f = bn(x + torch.linspace(0, 5, 576).view(1, 1, 576))
    torch.testing.assert_close(shifted_t.detach(), torch.from_numpy(out), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(shifted_f.detach(), torch.from_numpy(out), atol=1e-2)


def _gru_reference(gru: torch.nn.GRU, x: np.ndarray, h0: np.ndarray) -> list[np.ndarray]:
    """The final hidden states, in the order layer 0 forward, layer 0 backward, layer 1 forward, ...,
    of a bidirectional GRU written out step by step (float64)."""

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    finals, inputs = [], x
    for layer in range(gru.num_layers):
        outputs = []
        for direction, suffix in enumerate(("", "_reverse")):
            w = {
                k: getattr(gru, f"{k}_l{layer}{suffix}").detach().double().numpy()
                for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            }
            h = h0[2 * layer + direction]
            steps = range(inputs.shape[1]) if direction == 0 else reversed(range(inputs.shape[1]))
            out = np.zeros((inputs.shape[0], inputs.shape[1], h.shape[-1]))
            for t in steps:
                gi = inputs[:, t] @ w["weight_ih"].T + w["bias_ih"]
                gh = h @ w["weight_hh"].T + w["bias_hh"]
                ir, iz, inn = np.split(gi, 3, axis=1)
                hr, hz, hn = np.split(gh, 3, axis=1)
                r, z = sigmoid(ir + hr), sigmoid(iz + hz)
                n = np.tanh(inn + r * hn)
                h = (1 - z) * n + z * h
                out[:, t] = h
            finals.append(h)
            outputs.append(out)
        inputs = np.concatenate(outputs, axis=2)
    return finals


def test_stylegru_matches_a_step_by_step_reference():
    """Eval mode: BN(31-style) with running statistics over time steps, the GRU from the learned
    initial state, the 4 final hidden states as the feature, and the residual head."""
    config = StyleFlowConfig(size=16, frames=5, widths=(2, 2, 2, 2), styles=8, hidden=3, res_hidden=5)
    torch.manual_seed(0)
    gru = _randomise(StyleGRU(config))
    x = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, features = gru(x)
    assert logits.shape == (2, 1) and features.shape == (2, 12)
    bn = {k: v.double().numpy()[None, :, None] for k, v in gru.bn.state_dict().items() if v.ndim == 1}
    scale = bn["weight"] / np.sqrt(bn["running_var"] + gru.bn.eps)
    v = (x.double().numpy() - bn["running_mean"]) * scale + bn["bias"]
    h0 = np.repeat(gru.hidden_state.detach().double().numpy(), 2, axis=1)  # (4, N, H)
    ref_features = np.concatenate(_gru_reference(gru.gru, v, h0), axis=1)
    np.testing.assert_allclose(features.numpy(), ref_features, rtol=1e-5, atol=1e-6)
    net = gru.dense[1].fn.net
    w1, b1, w2, b2 = (
        p.detach().double().numpy() for p in (net[0].weight, net[0].bias, net[3].weight, net[3].bias)
    )
    hidden = ref_features + np.maximum(ref_features @ w1.T + b1, 0) @ w2.T + b2
    head = gru.dense[3]
    ref_logits = hidden @ head.weight.detach().double().numpy().T + head.bias.detach().double().numpy()
    np.testing.assert_allclose(logits.numpy(), ref_logits, rtol=1e-5, atol=1e-6)


def test_triplets_are_chosen_by_label_across_the_videos_of_the_batch():
    assert triplet_indices([1, 0, 1, 1, 0]) == [(0, 2, 1), (1, 4, 2), (2, 3, 4), (3, 0, 4), (4, 1, 0)]
    # a positive comes from another video: clip 2 is clip 0's video
    assert triplet_indices([1, 0, 1, 1, 0], ["a", "b", "a", "c", "d"]) == [
        (0, 3, 1),
        (1, 4, 2),
        (2, 3, 4),
        (3, 0, 4),
        (4, 1, 0),
    ]
    assert triplet_indices(torch.tensor([1, 0, 0])) == [(1, 2, 0), (2, 1, 0)]  # a lone fake has no positive
    assert triplet_indices([1, 1, 1]) == [] and triplet_indices([0]) == []


def test_triplet_loss_against_a_direct_reference_and_the_authors_ranking_loss():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    triplets = triplet_indices([1, 0, 1, 1, 0])
    loss = triplet_loss(features, triplets, margin=1.0)
    e = features.detach().numpy()
    terms = [
        max(np.linalg.norm(e[a] - e[p] + 1e-6) - np.linalg.norm(e[a] - e[n] + 1e-6) + 1.0, 0.0)
        for a, p, n in triplets
    ]
    assert 0 < sum(t > 0 for t in terms) < len(terms)  # the hinge is active for some, not all
    assert float(loss.detach()) == pytest.approx(np.mean(terms), rel=1e-9)
    a, p, n = (list(i) for i in zip(*triplets, strict=True))
    authors = torch.nn.MarginRankingLoss(margin=1.0)(
        F.pairwise_distance(features[a], features[p], 2),
        F.pairwise_distance(features[a], features[n], 2),
        torch.full((len(a),), -1.0, dtype=torch.float64),
    )
    torch.testing.assert_close(loss, authors)
    loss.backward()
    assert features.grad.abs().sum() > 0
    empty = triplet_loss(features, [])
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_stage1_losses_are_bce_and_the_batch_triplet_loss():
    model = _small().train()
    batch = _batch(4)
    torch.manual_seed(0)
    output = model(model.model_input(batch))
    losses = model.losses(output, batch["label"], batch)
    assert set(losses) == {"bce", "triplet"}
    torch.testing.assert_close(
        losses["bce"], F.binary_cross_entropy_with_logits(output[0][:, 0], batch["label"].float())
    )
    torch.testing.assert_close(
        losses["triplet"], triplet_loss(output[1], triplet_indices([0, 1, 0, 1]), margin=1.0)
    )


def test_style_attention_against_its_formula():
    torch.manual_seed(0)
    sam = styleflow.StyleAttention(content=6, style=5, dim=4)
    c = torch.randn(2, 3, 6, dtype=torch.float64)
    e = torch.randn(2, 4, 5, dtype=torch.float64)
    sam = sam.double()
    with torch.no_grad():
        out = sam(c, e).numpy()
        weights = sam.attention(c, e).numpy()

    def lin(layer, v):
        return v @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()

    q, k, v = lin(sam.query, c.numpy()), lin(sam.key, e.numpy()), lin(sam.value, e.numpy())
    logits = q @ k.transpose(0, 2, 1) / 2.0  # sqrt(d) = 2
    ref_weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-10)
    np.testing.assert_allclose(out, lin(sam.out, ref_weights @ v), rtol=1e-10)


# -- forward and backward of both stages -------------------------------------------------------------


def test_stage1_small_forward_backward_trains_only_stylegru():
    torch.manual_seed(0)
    model = build("small").train()
    assert not model.psp.training and model.stylegru.training
    batch = _batch(4)
    flow = model.model_input(batch)
    assert flow.shape == (4, 7, 18 * 32)
    logits, features = model(flow)
    assert logits.shape == (4, 1) and features.shape == (4, 4 * 16)
    assert model.fake_logit((logits, features)).shape == (4,)
    sum(model.losses((logits, features), batch["label"], batch).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.stylegru.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.psp.parameters())


def test_stage2_small_forward_backward_keeps_psp_and_stylegru_frozen():
    torch.manual_seed(0)
    model = build("small", stage=2).train()
    assert not model.psp.training and not model.stylegru.training and model.content.training
    batch = _batch(2)
    inputs = model.model_input(batch)
    assert set(inputs) == {"clip", "flow"} and inputs["flow"].shape == (2, 7, 576)
    assert model.content(batch["clip"]).shape == (2, 4, 64)  # T / 2 steps of 4 x 16 features
    stats = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("psp.", "stylegru."))}
    out = model(inputs)
    assert out.shape == (2, 1) and model.fake_logit(out).shape == (2,)
    losses = model.losses(out, batch["label"], batch)
    assert set(losses) == {"bce"}
    losses["bce"].backward()
    trained = [p for name in ("content", "sam", "tte", "head") for p in getattr(model, name).parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    assert all(p.grad is None for p in [*model.psp.parameters(), *model.stylegru.parameters()])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # BN statistics kept
    # the style features reach the output through the attention
    inputs["flow"] = inputs["flow"] + 1.0
    assert not torch.allclose(model.eval()(inputs), model(model.model_input(batch)))


# -- the latent cache --------------------------------------------------------------------------------


def test_cache_encodes_each_frame_once_in_memory():
    model = _small()
    count = _Counter(model)
    batch = _batch(2, videos=["a", "a"], starts=[0, 4])  # frames 4-7 of video a in both clips
    first = model.latents(batch)
    assert first.shape == (2, 8, 18, 32) and count.frames == 12
    # pSp's output on each frame; a frame in two clips keeps the crop of the first seen (one latent a
    # frame, as the authors'): clip 1's step 3 is frame 7, clip 0's step 7
    psp = model.psp

    def encoded(n: int, t: int) -> torch.Tensor:  # without the counting hook
        return psp.encoder(batch["clip"][n, :, t][None])[0] + psp.latent_avg

    with torch.no_grad():
        torch.testing.assert_close(first[1, 4], encoded(1, 4))
        torch.testing.assert_close(first[1, 3], encoded(0, 7))
        assert torch.equal(first[1, :4], first[0, 4:])
    again = model.latents(batch)
    assert count.frames == 12 and torch.equal(first, again)
    torch.testing.assert_close(model.model_input(batch), style_flow(first))
    assert count.frames == 12


def test_folder_cache_is_keyed_by_the_encoder_hash(tmp_path):
    folder = tmp_path / "latents"
    model = _small(latent_cache=folder)
    count = _Counter(model)
    batch = _batch(2, videos=["a/clip 1", "b"])
    first = model.model_input(batch)
    assert count.frames == 16
    digest = model.encoder_hash()
    path = folder / digest / "corpus" / quote("a/clip 1", safe="") / "000003.npy"
    assert path.is_file()
    torch.testing.assert_close(torch.from_numpy(np.load(path)), model.latents(batch)[0, 3])
    # a second pass, and another instance with the same weights, read the folder
    assert torch.equal(model.model_input(batch), first) and count.frames == 16
    twin = build("small", latent_cache=folder)
    twin.load_state_dict(model.state_dict())
    twin.psp.eval()
    twin_count = _Counter(twin)
    assert twin.encoder_hash() == digest
    assert torch.equal(twin.model_input(batch), first) and twin_count.frames == 0
    # other encoder weights: another hash, so every frame misses
    other = _small(seed=5, latent_cache=folder)
    other_count = _Counter(other)
    assert other.encoder_hash() != digest
    other.model_input(batch)
    assert other_count.frames == 16
    # changing the weights in place changes the hash too
    with torch.no_grad():
        twin.psp.latent_avg.add_(1.0)
    assert twin.encoder_hash() != digest
    twin.model_input(batch)
    assert twin_count.frames == 16


# -- official checkpoints ----------------------------------------------------------------------------


def _psp_file(tmp_path, model: StyleFlow, name: str = "psp.pt", edit=None, **opts) -> str:
    state = {f"encoder.{k}": v for k, v in model.psp.encoder.state_dict().items()}
    state["decoder.conv1.conv.weight"] = torch.randn(1, 2, 2, 3, 3)  # dropped
    state["decoder.style.1.weight"] = torch.randn(4, 4)
    checkpoint = {
        "state_dict": state,
        "latent_avg": model.psp.latent_avg.clone(),
        "opts": {
            "encoder_type": "GradualStyleEncoder",
            "start_from_latent_avg": True,
            "n_styles": 18,
            **opts,
        },
    }
    if edit is not None:
        edit(checkpoint)
    path = tmp_path / name
    torch.save(checkpoint, path)
    return str(path)


def test_psp_checkpoint_round_trip_adds_latent_avg(tmp_path):
    source = _small(seed=2)
    loaded = load_official_checkpoint("styleflow", _psp_file(tmp_path, source), part="psp", config="small")
    assert isinstance(loaded, StyleFlow) and not loaded.training
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = loaded.psp(x)
        assert torch.equal(out, source.psp(x))
        torch.testing.assert_close(out, source.psp.encoder(x) + source.psp.latent_avg)
        assert out.shape == (3, 18, 32)
    assert loaded.encoder_hash() == source.encoder_hash()
    off = styleflow.load_styleflow(
        _psp_file(tmp_path, source, "off.pt", start_from_latent_avg=False), part="psp", config="small"
    )
    with torch.no_grad():
        assert torch.equal(off.psp(x), source.psp.encoder(x))
    assert off.encoder_hash() != loaded.encoder_hash()  # the latents differ, so does the cache key


def test_psp_checkpoint_refusals(tmp_path):
    source = _small()
    key = "encoder.body.2.res_layer.1.weight"
    cases = [
        (lambda c: c["state_dict"].pop(key), r"1 missing: encoder\.body\.2\.res_layer\.1\.weight"),
        (lambda c: c["state_dict"].update({key: torch.zeros(3, 3)}), r"wrong shape: encoder\.body\.2\.res"),
        (lambda c: c.pop("latent_avg"), "needs 'state_dict' and 'latent_avg'"),
        (lambda c: c.update(latent_avg=torch.zeros(512)), r"wrong shape: latent_avg \(512,\)"),
        (
            lambda c: c["opts"].update(encoder_type="BackboneEncoderUsingLastLayerIntoW"),
            "GradualStyleEncoder",
        ),
    ]
    for i, (edit, message) in enumerate(cases):
        path = _psp_file(tmp_path, source, f"bad{i}.pt", edit=edit)
        with pytest.raises(CheckpointError, match=message) as err:
            load_official_checkpoint("styleflow", path, part="psp", config="small")
        assert path in str(err.value)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"state_dict": {"encoder.x": _Exploit(str(marker))}, "latent_avg": torch.zeros(1)}, evil)
    with pytest.raises(CheckpointError, match="may run code") as err:
        load_official_checkpoint("styleflow", str(evil), part="psp", config="small")
    assert str(evil) in str(err.value) and not marker.exists()
    with pytest.raises(FileNotFoundError, match="psp_ffhq_encode"):
        load_official_checkpoint("styleflow", str(tmp_path / "absent.pt"), part="psp")
    with pytest.raises(ValueError, match="part must be one of"):
        load_official_checkpoint("styleflow", str(evil), part="decoder")


def test_stylegru_checkpoints_of_the_authors_train_py_and_plain_load(tmp_path):
    source = _small(seed=3)
    state = source.stylegru.state_dict()
    flow = torch.randn(2, 7, 576, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source.stylegru(flow)
    files = {
        "train_py.pth": {"epoch": 4, "state_dict": {f"module.model.{k}": v for k, v in state.items()}},
        "plain.pth": dict(state),
        "tripletnet.pth": {f"model.{k}": v for k, v in state.items()},
    }
    for name, content in files.items():
        torch.save(content, tmp_path / name)
        loaded = load_official_checkpoint("styleflow", str(tmp_path / name), part="stylegru", config="small")
        assert not loaded.training
        with torch.no_grad():
            logits, features = loaded.stylegru(flow)
        assert torch.equal(logits, expected[0]) and torch.equal(features, expected[1]), name
    # a stage-1 checkpoint of dftoolkit's training starts stage 2 (its pSp is not read)
    torch.save({"model": source.state_dict(), "epoch": 2, "config": {}}, tmp_path / "epoch_2.pt")
    stage2 = styleflow.load_styleflow(tmp_path / "epoch_2.pt", part="stylegru", config="small", stage=2)
    assert all(torch.equal(v, state[k]) for k, v in stage2.stylegru.state_dict().items())
    assert not torch.equal(stage2.psp.latent_avg, source.psp.latent_avg)
    # both parts into one detector
    both = styleflow.load_styleflow(_psp_file(tmp_path, source), part="psp", config="small", stage=2)
    assert styleflow.load_styleflow(tmp_path / "plain.pth", part="stylegru", into=both) is both
    assert both.stage == 2
    assert all(
        torch.equal(v, source.state_dict()[k])
        for k, v in both.state_dict().items()
        if k[:4] in ("psp.", "styl")
    )


def test_stylegru_checkpoint_refusals(tmp_path):
    state = dict(build("small").stylegru.state_dict())
    missing = dict(state)
    missing.pop("gru.weight_hh_l1")
    wrong = {**state, "bn.weight": torch.zeros(31)}
    for name, content, message in [
        ("missing.pth", {"epoch": 1, "state_dict": {f"module.model.{k}": v for k, v in missing.items()}},
         r"1 missing: gru\.weight_hh_l1"),
        ("wrong.pth", wrong, r"wrong shape: bn\.weight \(31,\) \(expected \(7,\)\)"),
        ("other.pth", {"weights": state}, "expected a state dict"),
    ]:  # fmt: skip
        torch.save(content, tmp_path / name)
        with pytest.raises(CheckpointError, match=message) as err:
            load_official_checkpoint("styleflow", str(tmp_path / name), part="stylegru", config="small")
        assert name in str(err.value)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"epoch": 1, "state_dict": {"module.model.bn.weight": _Exploit(str(marker))}}, evil)
    with pytest.raises(CheckpointError, match="may run code") as err:
        load_official_checkpoint("styleflow", str(evil), part="stylegru", config="small")
    assert str(evil) in str(err.value) and not marker.exists()


@pytest.mark.slow
def test_full_size_psp_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    source = _randomise(styleflow.PSPEncoder(StyleFlowConfig()), seed=1)
    path = tmp_path / "psp_ffhq_encode.pt"
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    torch.save({"state_dict": state, "latent_avg": source.latent_avg, "opts": {"n_styles": 18}}, path)
    loaded = load_official_checkpoint("styleflow", str(path), part="psp")
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = loaded.psp(x)
        assert out.shape == (1, 18, 512) and torch.equal(out, source(x))


@pytest.mark.slow
def test_full_size_stylegru_checkpoint_round_trip(tmp_path):
    """The authors' 3 GB stage-1 file: StyleGRU alone (pSp stays at its small size here)."""
    torch.manual_seed(0)
    source = _randomise(StyleGRU(StyleFlowConfig()), seed=1)
    path = tmp_path / "checkpoint_1"
    torch.save(
        {"epoch": 2, "state_dict": {f"module.model.{k}": v for k, v in source.state_dict().items()}}, path
    )
    loaded = load_official_checkpoint("styleflow", str(path), part="stylegru")
    flow = torch.randn(1, 31, 9216, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, features = loaded.stylegru(flow)
        assert features.shape == (1, 16384)
        assert torch.equal(logits, source(flow)[0]) and torch.equal(features, source(flow)[1])


# -- training on real clips --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ffhq_store(swap_store, tmp_path_factory):
    """The swap corpus (two reals, one naive swap each way) preprocessed again with every frame's
    FFHQ crop at 64 px (the shared fixture has face and mouth crops only)."""
    from dftoolkit.preprocess import PreprocessConfig, preprocess

    out = tmp_path_factory.mktemp("styleflow_store")
    config = PreprocessConfig(crops=("ffhq",), sizes=(("ffhq", 64),), policy="all")
    return preprocess(swap_store.manifest(), out / "store", config, workers=1).store


def test_small_stage1_training_on_real_clips_lowers_the_loss(ffhq_store, tmp_path):
    from dftoolkit.detectors.data import face_dataset
    from dftoolkit.detectors.train import TrainConfig, train

    torch.manual_seed(0)
    model = build("small", latent_cache=tmp_path / "latents")
    train_set = face_dataset(ffhq_store, model.spec, split=None, train=True)
    val_set = face_dataset(ffhq_store, model.spec, split=None, train=False)
    assert len(train_set) == 4 and {v.label for v in train_set.videos} == {0, 1}
    item = train_set[0]
    assert item["clip"].shape == (3, 8, 64, 64)
    recipe = {k: v for k, v in RECIPES["small"].items() if k != "config"}
    config = TrainConfig(**{**recipe, "epochs": 8, "log_every": 1, "eval_every": 8})
    count = _Counter(model)
    result = train(model, train_set, val_set, config, tmp_path / "run", initialisation="random", resume=False)
    assert result.epochs == 8
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [r["loss"] for r in lines if r["kind"] == "epoch"]
    steps = [r for r in lines if r["kind"] == "step"]
    assert {"loss_bce", "loss_triplet"} <= set(steps[0])
    assert np.mean(epochs[-2:]) < np.mean(epochs[:2]), epochs
    # every frame was encoded once: no more encodings than usable frames
    usable = sum(len(v.frames) for v in train_set.videos)
    assert 0 < count.frames <= usable
    assert all(p.grad is None for p in model.psp.parameters())
