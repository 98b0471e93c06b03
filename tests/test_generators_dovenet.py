"""DoveNet: the authors' checkpoint format, the blend, and offline training on real sample faces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

from dftoolkit import Manifest, VideoRecord
from dftoolkit.checkpoints import CheckpointError
from dftoolkit.cli.harmoniser import register
from dftoolkit.faces.geometry import hull_mask
from dftoolkit.generators.base import get_blend, list_blends
from dftoolkit.generators.dovenet import (
    DoveNetConfig,
    DoveNetGenerator,
    harmonise,
    load_dovenet,
)
from dftoolkit.generators.harmonise_train import make_composites, train_dovenet, train_state_path
from dftoolkit.generators.material import face_patches
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.video import VideoReader

TRAIN_STEPS = 40


def authors_layout(ngf: int, levels: int, in_nc: int = 4, out_nc: int = 3) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' ``s2ad`` batch-norm generator, enumerated from their recursive
    ``UnetSkipConnectionBlock`` layout (independently of the implementation under test)."""
    keys: dict[str, tuple[int, ...]] = {}

    def norm(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["model.model.0.weight"] = (ngf, in_nc, 4, 4)
    keys["model.model.3.weight"] = (2 * ngf, out_nc, 4, 4)  # ConvTranspose2d: (in, out, k, k)
    keys["model.model.3.bias"] = (out_nc,)
    prefix = "model.model.1."
    inner_levels = [(ngf, 2 * ngf, True), (2 * ngf, 4 * ngf, True), (4 * ngf, 8 * ngf, True)]
    inner_levels += [(8 * ngf, 8 * ngf, False)] * (levels - 5)
    for outer, inner, attention in inner_levels:
        keys[prefix + "model.1.weight"] = (inner, outer, 4, 4)
        norm(prefix + "model.2", inner)
        keys[prefix + "model.5.weight"] = (2 * inner, outer, 4, 4)
        norm(prefix + "model.6", outer)
        if attention:
            keys[prefix + "attention.0.weight"] = (2 * outer, 2 * outer, 1, 1)
            keys[prefix + "attention.0.bias"] = (2 * outer,)
        prefix += "model.3."
    keys[prefix + "model.1.weight"] = (8 * ngf, 8 * ngf, 4, 4)
    keys[prefix + "model.3.weight"] = (8 * ngf, 8 * ngf, 4, 4)
    norm(prefix + "model.4", 8 * ngf)
    return keys


def reference_forward(
    state: dict[str, torch.Tensor], x: torch.Tensor, levels: int, depth: int = 0
) -> torch.Tensor:
    """The authors' forward pass written out from their layout with functional ops: per-sample
    batch-norm statistics (their test protocol), dropout off, skips carrying LeakyReLU(x)."""
    prefix = "model." + "model.1." * min(depth, 1) + "model.3." * max(depth - 1, 0)

    def get(key: str) -> torch.Tensor:
        return state[prefix + key]

    def norm(t: torch.Tensor, key: str) -> torch.Tensor:
        return F.instance_norm(t, weight=get(key + ".weight"), bias=get(key + ".bias"))

    if depth == 0:
        h = reference_forward(state, F.conv2d(x, get("model.0.weight"), stride=2, padding=1), levels, 1)
        up = F.conv_transpose2d(F.relu(h), get("model.3.weight"), get("model.3.bias"), stride=2, padding=1)
        return torch.tanh(up)
    a = F.leaky_relu(x, 0.2)
    h = F.conv2d(a, get("model.1.weight"), stride=2, padding=1)
    if depth == levels - 1:
        h = norm(F.conv_transpose2d(F.relu(h), get("model.3.weight"), stride=2, padding=1), "model.4")
    else:
        h = reference_forward(state, norm(h, "model.2"), levels, depth + 1)
        h = norm(F.conv_transpose2d(F.relu(h), get("model.5.weight"), stride=2, padding=1), "model.6")
    out = torch.cat([a, h], 1)
    if prefix + "attention.0.weight" in state:
        out = torch.sigmoid(F.conv2d(out, get("attention.0.weight"), get("attention.0.bias"))) * out
    return out


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


@pytest.fixture(scope="module")
def carphone(sample, track):
    """The carphone talking head: its path and the face track (landmarks in every frame)."""
    return sample("carphone_pristine"), track("carphone_pristine")


@pytest.fixture(scope="module")
def faces(carphone, sample, track):
    """48 real 64 px face crops (carphone + jesper webcam) with their landmark-hull masks."""
    images, masks = [], []
    for path, face in [carphone, (sample("jesper_webcam"), track("jesper_webcam"))]:
        patches = face_patches(iter(VideoReader(path)), face, size=64, max_patches=24)
        images.append(patches.images)
        masks.append(hull_mask(patches.landmarks, 64, 64))
    return np.concatenate(images), np.concatenate(masks)


@pytest.fixture(scope="module")
def trained(faces, tmp_path_factory):
    """A small DoveNet trained for TRAIN_STEPS steps on the real crops: (checkpoint, losses)."""
    out = tmp_path_factory.mktemp("dovenet") / "small.pth"
    # lr 1e-3 (the paper's 2e-4 is for 100+ epochs of iHarmony4) so 40 steps show real progress
    losses = train_dovenet(*faces, out, steps=TRAIN_STEPS, batch_size=8, lr=1e-3, config="small", seed=0)
    return out, losses


def test_small_forward_shapes_and_bad_input():
    net = DoveNetGenerator("small").eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 64, 128) * 2 - 1, torch.ones(2, 1, 64, 128))
    assert y.shape == (2, 3, 64, 128) and y.abs().max() <= 1
    with pytest.raises(ValueError, match="multiples of 64"):
        net(torch.zeros(1, 3, 96, 64), torch.zeros(1, 1, 96, 64))
    with pytest.raises(ValueError, match="mask"):
        net(torch.zeros(1, 4, 64, 64), torch.zeros(1, 1, 64, 64))


def test_full_config_is_the_authors_generator():
    full = DoveNetGenerator("full")
    assert {k: tuple(v.shape) for k, v in full.state_dict().items()} == authors_layout(64, 8)
    count = sum(p.numel() for p in full.parameters())
    print(f"DoveNet full generator: {count:,} parameters")
    # pix2pix's unet_256 (batch norm, 3 -> 3), which the authors extend, prints "54.414 M"
    # parameters; DoveNet adds the mask's input channel (64 * 4 * 4) and three 1x1 attention convs.
    pix2pix = DoveNetGenerator(DoveNetConfig(in_channels=3, attention=False))
    pix2pix_count = sum(p.numel() for p in pix2pix.parameters())
    assert round(pix2pix_count / 1e6, 3) == 54.414
    attention = sum((c * c + c) for c in (128, 256, 512))
    assert count == pix2pix_count + 64 * 4 * 4 + attention == 54_759_939
    with torch.no_grad():  # the released model's resolution
        assert full.eval()(torch.zeros(1, 3, 256, 256), torch.zeros(1, 1, 256, 256)).shape == (1, 3, 256, 256)


def test_loads_the_authors_key_format(tmp_path):
    written = random_state(authors_layout(16, 6))
    state = {f"module.{k}": v for k, v in written.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "latest_net_G.pth")  # DataParallel prefix, no batch counters
    net = load_dovenet(tmp_path / "latest_net_G.pth", "small")
    assert not net.training
    loaded = net.state_dict()
    for key, value in written.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key
    assert net.norm_stats == "sample"
    x, m = torch.rand(2, 3, 64, 64) * 2 - 1, torch.zeros(2, 1, 64, 64)
    m[..., 16:48, 16:48] = 1
    with torch.no_grad():
        per_sample = net(x, m)
        torch.testing.assert_close(per_sample, reference_forward(written, torch.cat([x, m], 1), 6))
        net.norm_stats = "running"
        assert not torch.allclose(net(x, m), per_sample)  # the stored running averages are used


def test_missing_checkpoint_says_where_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dovenet(tmp_path / "latest_net_G.pth")
    text = str(err.value)
    assert str(tmp_path / "latest_net_G.pth") in text
    assert "bcmi" in text and "train-dovenet" in text


def test_wrong_keys_and_shapes_are_listed(tmp_path):
    state = random_state(authors_layout(16, 6))
    state["model.model.9.weight"] = state.pop("model.model.3.weight")
    del state["model.model.1.attention.0.bias"]
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError) as err:
        load_dovenet(tmp_path / "renamed.pth", "small")
    text = str(err.value)
    assert "2 missing" in text and "model.model.3.weight" in text and "model.model.1.attention.0.bias" in text
    assert "1 unexpected: model.model.9.weight" in text
    assert "DoveNet generator" in text and "latest_net_G.pth, --netG s2ad" in text  # the format to expect
    torch.save(random_state(authors_layout(16, 6)), tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_dovenet(tmp_path / "small.pth", DoveNetConfig(ngf=8, levels=6))
    torch.save({"generator": random_state(authors_layout(16, 6))}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):  # e.g. a training state
        load_dovenet(tmp_path / "wrapped.pth", "small")


def test_composites_perturb_only_the_masked_face(faces):
    images, masks = faces
    comp, m, original = make_composites(images[:8], masks[:8], np.random.default_rng(1))
    assert comp.shape == images[:8].shape and comp.dtype == np.uint8 and m.dtype == np.float32
    assert np.array_equal(original, images[:8])
    outside, inside = m == 0, m == 1
    assert np.array_equal(comp[outside], images[:8][outside])
    change = np.abs(comp.astype(int) - images[:8])[inside].mean()
    assert change > 4, change  # the face's colours really moved (grey levels)
    again, _, _ = make_composites(images[:8], masks[:8], np.random.default_rng(1))
    assert np.array_equal(comp, again)
    with pytest.raises(ValueError, match="uint8"):
        make_composites(images[:2].astype(np.float32), masks[:2], np.random.default_rng(0))


def test_training_reduces_the_loss_and_writes_the_authors_format(trained):
    out, losses = trained
    assert len(losses) == TRAIN_STEPS
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    print(f"L1 first 8 steps {first:.4f} -> last 8 steps {last:.4f}")
    assert last < 0.5 * first
    net = load_dovenet(out, "small")
    assert set(net.state_dict()) == set(authors_layout(16, 6))
    state = torch.load(train_state_path(out), weights_only=True)
    assert state["losses"] == losses
    for key, value in net.state_dict().items():
        assert torch.equal(value, state["generator"][key]), key


def test_resumed_training_continues_exactly(faces, tmp_path):
    images, masks = faces[0][::4], faces[1][::4]
    straight = train_dovenet(images, masks, tmp_path / "a.pth", steps=8, batch_size=4, config="small", seed=3)
    half = train_dovenet(images, masks, tmp_path / "b.pth", steps=4, batch_size=4, config="small", seed=3)
    assert half == straight[:4]
    resumed = train_dovenet(images, masks, tmp_path / "b.pth", steps=8, batch_size=4, config="small", seed=3)
    np.testing.assert_allclose(resumed, straight, rtol=1e-5)
    a = load_dovenet(tmp_path / "a.pth", "small").state_dict()
    b = load_dovenet(tmp_path / "b.pth", "small").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="seed"):
        train_dovenet(images, masks, tmp_path / "b.pth", steps=9, batch_size=4, config="small", seed=4)
    train_state_path(tmp_path / "c.pth").write_bytes(b"half-written junk")
    with pytest.raises(ValueError, match=r"training state.*--fresh"):
        train_dovenet(images, masks, tmp_path / "c.pth", steps=1, batch_size=4, config="small")


def test_dovenet_blend_on_real_frames(trained, carphone):
    out, _ = trained
    assert "dovenet" in list_blends()
    with pytest.raises(ValueError, match="checkpoint"):
        get_blend("dovenet")
    path, track = carphone
    picks = [10, 60, 110]
    frames = VideoReader(path).read(picks)
    masks = hull_mask(track.landmarks[picks], track.height, track.width).astype(np.float32) / 255
    masks[1] = 0  # a frame without a face is left alone
    rendered = frames.copy()
    tint = np.clip(frames.astype(int) + np.array([40, -10, -30]), 0, 255).astype(
        np.uint8
    )  # a colour cast on the face
    rendered[masks > 0] = tint[masks > 0]
    blend = get_blend("dovenet", checkpoint=out, config="small", size=64, device="cpu")
    many = blend.blend_many(rendered, frames, masks)
    assert many.shape == frames.shape and many.dtype == np.uint8
    assert np.array_equal(many[masks == 0], frames[masks == 0])
    assert np.array_equal(many[1], frames[1])
    inside = masks[0] > 0
    assert np.abs(many[0][inside].astype(int) - frames[0][inside]).mean() > 3
    assert np.array_equal(blend(rendered[2], frames[2], masks[2]), many[2])  # batching changes nothing
    params = blend.params()
    assert params["config"]["ngf"] == 16 and len(params["checkpoint_sha256"]) == 64


def test_harmonise_batch_keeps_the_composite_outside_the_mask(trained, carphone):
    path, track = carphone
    frames = VideoReader(path).read([5, 50])
    masks = torch.from_numpy(hull_mask(track.landmarks[[5, 50]], track.height, track.width) / 255.0).float()
    composites = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    net = load_dovenet(trained[0], "small")
    out = harmonise(net, composites, masks, size=64)
    assert out.shape == composites.shape
    outside = (masks == 0)[:, None].expand_as(out)
    assert torch.equal(out[outside], composites[outside])
    assert not torch.equal(out, composites)
    with pytest.raises(ValueError, match="multiples"):
        harmonise(net, composites, masks)  # 176x144 is not a multiple of 64


def test_cli_trains_from_a_face_store(tmp_path, sample):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(sample("carphone_pristine"), root / "carphone.mp4")
    manifest = Manifest([VideoRecord("t", "carphone", "carphone.mp4", 0)], root=root)
    preprocess(manifest, tmp_path / "store", PreprocessConfig(frames=4), workers=1)
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as the real CLI: commands are named
    register(app)
    ckpt = tmp_path / "harmoniser.pth"
    args = ["train-dovenet", str(tmp_path / "store"), "--out", str(ckpt), "--steps", "3", "--batch-size", "2"]
    result = CliRunner().invoke(app, [*args, "--size", "64", "--config", "small", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "4 real face crops" in result.output and "after 3 steps" in result.output
    assert load_dovenet(ckpt, "small") is not None
    result = CliRunner().invoke(app, ["train-dovenet", str(tmp_path / "nothing"), "--out", str(ckpt)])
    assert result.exit_code == 2 and "no face store" in result.output
