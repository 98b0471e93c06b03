"""First Order Motion Model: architecture, the authors' checkpoint format, and the ``fomm`` manipulation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dftoolkit.faces.geometry import hull_mask
from dftoolkit.generators.base import METHODS, describe_methods, get_method, list_methods
from dftoolkit.generators.fomm import (
    FOMM_CONFIGS,
    CheckpointError,
    FirstOrderModel,
    FOMMReenact,
    Generated,
    KeypointDetector,
    Keypoints,
    load_fomm,
    transfer_keypoints,
)
from dftoolkit.generators.material import face_patches
from dftoolkit.video import VideoReader


def _randomised(config: str = "small", seed: int = 0) -> FirstOrderModel:
    """A model whose every parameter and batch-norm statistic is random (so equality means something)."""
    torch.manual_seed(seed)
    model = FirstOrderModel(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(1234)
            elif not name.endswith("down.weight"):  # keep the anti-aliasing kernels
                tensor.normal_(0, 0.05)
    return model.eval()


def _authors_format(model: FirstOrderModel) -> dict:
    """The layout of the authors' ``Logger.save_cpk``: one state dict per network, optimisers, epoch."""
    optimiser = torch.optim.Adam(model.kp_detector.parameters(), lr=2e-4, betas=(0.5, 0.999))
    model.kp_detector(torch.rand(1, 3, 64, 64)).value.sum().backward()
    optimiser.step()
    return {
        "generator": model.generator.state_dict(),
        "kp_detector": model.kp_detector.state_dict(),
        "discriminator": {},
        "optimizer_kp_detector": optimiser.state_dict(),
        "epoch": 99,
    }


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A tiny random checkpoint of the ``small`` config in the authors' format (default init, seeded)."""
    torch.manual_seed(1)
    model = FirstOrderModel("small").eval()
    path = tmp_path_factory.mktemp("fomm") / "small-cpk.pth.tar"
    torch.save(
        {"generator": model.generator.state_dict(), "kp_detector": model.kp_detector.state_dict()}, path
    )
    return path


# --- architecture -------------------------------------------------------------------------------


def test_small_forward_shapes_and_ranges():
    torch.manual_seed(0)
    model = FirstOrderModel("small").eval()
    source, driving = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        kp = model.kp_detector(source)
        assert kp.value.shape == (2, 10, 2) and kp.jacobian.shape == (2, 10, 2, 2)
        assert kp.value.abs().max() <= 1
        out = model.generator(source, model.kp_detector(driving), kp)
        animated = model.animate(source, driving, driving[:1])
    assert out.prediction.shape == (2, 3, 256, 256)
    assert out.prediction.min() >= 0 and out.prediction.max() <= 1
    motion = out.motion
    assert motion.deformation.shape == (2, 64, 64, 2)
    assert motion.masks.shape == (2, 11, 64, 64)
    torch.testing.assert_close(motion.masks.sum(1), torch.ones(2, 64, 64))
    assert motion.occlusion.shape == (2, 1, 64, 64)
    assert motion.occlusion.min() >= 0 and motion.occlusion.max() <= 1
    assert motion.sparse_deformed.shape == (2, 11, 3, 64, 64)
    assert animated.shape == (2, 3, 256, 256) and animated.min() >= 0 and animated.max() <= 1
    with pytest.raises(ValueError, match="source must be"):
        model.animate(source[:, :1], driving, driving)
    with pytest.raises(ValueError, match="must match source"):
        model.animate(source, driving[:, :, :128], driving)


def test_identical_keypoints_give_the_identity_flow():
    """S == D: every first-order motion is the identity, so the dense flow is the pixel grid (this pins
    the align_corners=True convention) and each warped copy is the (anti-aliased) source itself."""
    torch.manual_seed(0)
    model = _randomised("small")
    source = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        kp = model.kp_detector(source)
        motion = model.generator(source, kp, kp).motion
        small = model.generator.dense_motion_network.down(source)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    torch.testing.assert_close(motion.deformation[0], torch.stack([xs, ys], -1), atol=1e-5, rtol=0)
    for k in range(11):  # grid_sample at the pixel grid: float32 rounding of the bilinear weights, ~2e-5
        torch.testing.assert_close(motion.sparse_deformed[0, k], small[0], atol=1e-4, rtol=0)


def test_uniform_heatmaps_put_keypoints_at_the_centre_with_identity_jacobians():
    detector = KeypointDetector("small").eval()
    with torch.no_grad():
        detector.kp.weight.zero_()
        detector.kp.bias.zero_()
        kp = detector(torch.rand(3, 3, 256, 256))
    torch.testing.assert_close(kp.value, torch.zeros(3, 10, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(kp.jacobian, torch.eye(2).expand(3, 10, 2, 2), atol=1e-6, rtol=0)


def test_transfer_keypoints_relative_motion_scale_and_jacobians():
    g = torch.Generator().manual_seed(0)
    initial = Keypoints(torch.rand(1, 10, 2, generator=g) - 0.5, torch.eye(2) + 0.1 * torch.rand(1, 10, 2, 2))
    source = Keypoints(2 * initial.value + 0.1, torch.eye(2).expand(1, 10, 2, 2) * 1.5)
    shift = torch.tensor([0.05, -0.02])
    turn = torch.tensor([[0.9, -0.1], [0.1, 0.9]])
    driving = Keypoints(initial.value + shift, turn @ initial.jacobian)
    moved = transfer_keypoints(source, driving, initial)
    torch.testing.assert_close(moved.value, source.value + 2 * shift)  # hull area x4 -> scale 2
    torch.testing.assert_close(moved.jacobian, turn @ source.jacobian)
    unscaled = transfer_keypoints(source, driving, initial, adapt_scale=False)
    torch.testing.assert_close(unscaled.value, source.value + shift)
    assert transfer_keypoints(source, driving, initial, relative=False) is driving


def test_vox256_parameter_counts_and_authors_names():
    model = FirstOrderModel("vox-256")

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    kp, gen, dense = (
        count(model.kp_detector),
        count(model.generator),
        count(model.generator.dense_motion_network),
    )
    print(f"vox-256 parameters: kp_detector {kp:,}, generator {gen:,} (dense {dense:,}), total {kp + gen:,}")
    assert (kp, gen, dense) == (14_215_368, 45_575_391, 37_730_268)
    # Cross-check with a public number: the authors' vox-adv-cpk.pth.tar (same generator and detector,
    # plus their Discriminator with use_kp, and Adam's two moments per parameter) is 751 MB (as hosted
    # on the Hugging Face space abhishek/first-order-motion-model). Their discriminator for vox-adv:
    # 4x4 convs 13->64->128->256->512, affine instance norm on blocks 1-3, 1x1 conv 512->1.
    disc = sum(i * o * 16 + o for i, o in [(13, 64), (64, 128), (128, 256), (256, 512)]) + 2 * 896 + 513
    assert abs(3 * 4 * (kp + gen + disc) / 1e6 - 751) < 1.0
    # Names and shapes as in the authors' checkpoint (vox-256.yaml through their module layout).
    kp_sd, gen_sd = model.kp_detector.state_dict(), model.generator.state_dict()
    expected = {
        "kp.weight": (10, 35, 7, 7),
        "jacobian.weight": (40, 35, 7, 7),
        "jacobian.bias": (40,),
        "down.weight": (3, 1, 13, 13),
        "predictor.encoder.down_blocks.0.conv.weight": (64, 3, 3, 3),
        "predictor.encoder.down_blocks.4.norm.running_var": (1024,),
        "predictor.decoder.up_blocks.0.conv.weight": (512, 1024, 3, 3),
        "predictor.decoder.up_blocks.4.norm.num_batches_tracked": (),
    }
    assert {k: tuple(kp_sd[k].shape) for k in expected} == expected
    expected = {
        "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight": (128, 44, 3, 3),
        "dense_motion_network.hourglass.decoder.up_blocks.0.conv.weight": (1024, 1024, 3, 3),
        "dense_motion_network.mask.weight": (11, 108, 7, 7),
        "dense_motion_network.occlusion.weight": (1, 108, 7, 7),
        "dense_motion_network.down.weight": (3, 1, 13, 13),
        "first.conv.weight": (64, 3, 7, 7),
        "first.norm.running_mean": (64,),
        "down_blocks.1.conv.weight": (256, 128, 3, 3),
        "up_blocks.0.conv.weight": (128, 256, 3, 3),
        "up_blocks.1.norm.bias": (64,),
        "bottleneck.r0.norm1.weight": (256,),
        "bottleneck.r5.conv2.weight": (256, 256, 3, 3),
        "final.weight": (3, 64, 7, 7),
    }
    assert {k: tuple(gen_sd[k].shape) for k in expected} == expected
    assert len(kp_sd) == 75 and len(gen_sd) == 196
    assert not any(k.startswith("module.") for k in [*kp_sd, *gen_sd])


@pytest.mark.slow
def test_vox256_runs_at_256():
    torch.manual_seed(0)
    model = FirstOrderModel("vox-256").eval()
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        out = model.animate(source, driving, source)
        kp = model.kp_detector(source)
        motion = model.generator(source, kp, kp).motion
    assert out.shape == (1, 3, 256, 256) and out.min() >= 0 and out.max() <= 1
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    torch.testing.assert_close(motion.deformation[0], torch.stack([xs, ys], -1), atol=1e-5, rtol=0)


# --- checkpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
def test_checkpoint_in_authors_format_loads_exactly(tmp_path, legacy):
    """The authors' file dates from PyTorch 1.0 (legacy serialisation); both formats must load."""
    model = _randomised("small", seed=3)
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save(_authors_format(model), path, _use_new_zipfile_serialization=not legacy)
    loaded = load_fomm(path, config="small")
    assert not loaded.training
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.animate(source, driving, source), model.animate(source, driving, source)
        )


def test_missing_checkpoint_names_the_path_and_the_file_to_get(tmp_path):
    path = tmp_path / "nowhere" / "vox-cpk.pth.tar"
    with pytest.raises(FileNotFoundError, match=r"vox-cpk\.pth\.tar") as err:
        load_fomm(path)
    assert str(path) in str(err.value) and "first-order-model" in str(err.value)


def test_checkpoint_with_wrong_keys_or_shapes_is_refused(tmp_path):
    model = _randomised("small")
    good = {"generator": model.generator.state_dict(), "kp_detector": model.kp_detector.state_dict()}

    renamed = dict(good, kp_detector=dict(good["kp_detector"]))
    renamed["kp_detector"]["keypoints.weight"] = renamed["kp_detector"].pop("kp.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"kp_detector .*1 missing: kp\.weight; 1 unexpected"):
        load_fomm(tmp_path / "renamed.pth", config="small")

    torch.save({"generator": good["generator"]}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="'kp_detector'"):
        load_fomm(tmp_path / "partial.pth", config="small")
    torch.save([good["generator"]], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not in the authors' FOMM format"):
        load_fomm(tmp_path / "list.pth", config="small")

    torch.save(good, tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="missing"):  # small weights, vox-256 architecture
        load_fomm(tmp_path / "small.pth", config="vox-256")
    wider = replace(FOMM_CONFIGS["small"], block_expansion=16)  # same names, other shapes
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_fomm(tmp_path / "small.pth", config=wider)
    with pytest.raises(ValueError, match="unknown FOMM config"):
        load_fomm(tmp_path / "small.pth", config="vox-512")


# --- the fomm manipulation on real media -----------------------------------------------------------


@pytest.fixture(scope="module")
def target_track(track):
    return track("carphone_pristine")


@pytest.fixture(scope="module")
def driver(sample, track):
    path = sample("jesper_webcam")
    return face_patches(VideoReader(path), track("jesper_webcam"), max_patches=8)


def test_fomm_is_registered_as_reenactment():
    assert "fomm" in list_methods() and describe_methods()["fomm"]
    assert METHODS.get("fomm") is FOMMReenact and FOMMReenact.kind == "reenact"


def test_fomm_renders_real_frames(sample, target_track, driver, small_checkpoint):
    method = get_method("fomm", driver, target_track, checkpoint=small_checkpoint, config="small")
    assert isinstance(method, FOMMReenact)
    assert json.loads(json.dumps(method.params()))["config"] == "small"
    frames_at = [0, 37, 119]
    frames = VideoReader(sample("carphone_pristine")).read(frames_at)
    assert target_track.found[frames_at].all()
    for t, frame in zip(frames_at, frames, strict=True):
        out = method.render(t, frame)
        assert out.image.shape == frame.shape and out.image.dtype == np.uint8
        assert out.mask.shape == frame.shape[:2] and out.mask.dtype == np.float32
        assert out.mask.min() >= 0 and out.mask.max() <= 1
        outside = out.mask == 0
        assert outside.mean() > 0.3
        assert np.array_equal(out.image[outside], frame[outside])
        hull = hull_mask(target_track.landmarks[t][None], *frame.shape[:2])[0] > 0
        assert (out.mask[hull] >= 0.5).mean() > 0.98  # the mask covers the face
        inside = out.mask > 0.5
        diff = np.abs(out.image.astype(int) - frame.astype(int))[inside].mean()
        assert diff > 10  # a random generator redraws the face
    method.close()
    with pytest.raises(RuntimeError, match="closed"):
        method.render(0, frames[0])


class _PassThrough(torch.nn.Module):
    """A generator that returns the source crop unchanged."""

    def forward(self, source, kp_driving, kp_source):
        return Generated(source, None)


def test_fomm_pastes_the_crop_back_in_place(sample, target_track, driver, small_checkpoint):
    """With a pass-through generator the crop -> paste round trip must give the frame back."""
    method = FOMMReenact(driver, target_track, checkpoint=small_checkpoint, config="small")
    method.model.generator = _PassThrough()
    frame = VideoReader(sample("carphone_pristine")).read([60])[0]
    out = method.render(60, frame)
    inside = out.mask > 0
    error = np.abs(out.image.astype(int) - frame.astype(int))[inside]
    assert inside.sum() > 1000 and error.mean() < 2.0


def test_fomm_leaves_frames_without_a_face_untouched(sample, target_track, driver, small_checkpoint):
    landmarks = target_track.landmarks.copy()
    landmarks[5] = np.nan
    track = replace(target_track, landmarks=landmarks)
    method = FOMMReenact(driver, track, checkpoint=small_checkpoint, config="small", batch=3)
    frame = VideoReader(sample("carphone_pristine")).read([5])[0]
    out = method.render(5, frame)
    assert np.array_equal(out.image, frame) and not out.mask.any()


def test_fomm_needs_a_checkpoint(target_track, driver, tmp_path):
    with pytest.raises(ValueError, match="'checkpoint'"):
        FOMMReenact(driver, target_track)
    with pytest.raises(FileNotFoundError, match=r"vox-cpk\.pth\.tar"):
        FOMMReenact(driver, target_track, checkpoint=tmp_path / "vox-cpk.pth.tar")
