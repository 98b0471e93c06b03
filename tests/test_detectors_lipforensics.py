"""LipForensics: the authors' architecture and sizes, lengths pooling, official checkpoints, recipe."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from dftoolkit.checkpoints import CheckpointError
from dftoolkit.detectors import lipforensics
from dftoolkit.detectors.base import (
    InputSpec,
    build_detector,
    count_parameters,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)
from dftoolkit.detectors.lipforensics import LRW_HEAD, LipForensics, build, freeze_for_finetuning


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Batch-norm statistics and scales, and PReLU slopes, of any sign (so that layer order
    matters); in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                sign = torch.randint(0, 2, (m.num_features,), generator=gen) * 2 - 1
                m.weight.copy_(sign * (torch.rand(m.num_features, generator=gen) + 0.5))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
    return model.eval()


def _small(seed: int = 0) -> LipForensics:
    torch.manual_seed(seed)
    return _randomise_norms(build("small"), seed)


def _clip(n: int, t: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, t, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_with_spec_and_official_loader():
    assert "lipforensics" in list_detectors()
    model = build_detector("lipforensics", "small")
    assert isinstance(model, LipForensics)
    assert build("full").spec == InputSpec(
        crop="mouth",
        scale=1.0,
        train_scale=None,
        size=88,
        frames=25,
        sampling="consecutive",
        channels=1,
        mean=(0.421,),
        std=(0.165,),
        layout="NCTHW",
        video_score="mean_logit",
    )
    assert (model.spec.size, model.spec.frames) == (32, 25)
    assert build("small", dropout=0.0).config.dropout == 0.0
    with pytest.raises(ValueError, match="unknown LipForensics config"):
        build("tiny")


def test_full_model_parameter_counts_and_authors_names():
    model = on_meta(lambda: build("full"))
    assert count_parameters(model) == 35_990_785
    assert count_parameters(model.tcn.mb_ms_tcn) == 24_803_328
    assert count_parameters(model.frontend3D) == 15_872
    assert count_parameters(model.trunk) == 11_170_816
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["frontend3D.0.weight"] == (64, 1, 5, 7, 7)
    assert shapes["trunk.layer1.0.relu1.weight"] == (64,)
    assert shapes["trunk.layer4.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert shapes["tcn.mb_ms_tcn.network.0.cbcr0_0.conv.weight"] == (256, 512, 3)
    assert shapes["tcn.mb_ms_tcn.network.3.cbcr1_2.conv.weight"] == (256, 768, 7)
    assert shapes["tcn.tcn_output.weight"] == (1, 768)
    # every level has its 1x1 downsample (a conv with bias, no batch norm) and a final PReLU
    for level, inputs in enumerate((512, 768, 768, 768)):
        assert shapes[f"tcn.mb_ms_tcn.network.{level}.downsample.weight"] == (768, inputs, 1)
        assert shapes[f"tcn.mb_ms_tcn.network.{level}.relu_final.weight"] == (768,)
    # no stem and no classifier in the trunk; layer1 keeps 64 channels, so no shortcut conv there
    assert not any(
        k.startswith(("trunk.conv1", "trunk.bn1", "trunk.fc", "trunk.layer1.0.downsample")) for k in shapes
    )


def test_small_forward_backward():
    torch.manual_seed(0)
    model = build("small").train()
    x = _clip(2, model.spec.frames, model.spec.size)
    out = model(x)
    assert out.shape == (2, 1) and model.fake_logit(out).shape == (2,)
    model.losses(out, torch.tensor([0, 1]))["bce"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_lengths_pool_the_first_steps_of_the_whole_clip():
    """``out(L) = W mean_{t<L} f_t + b`` with ``f`` the MS-TCN output of the whole clip, so
    ``L out(L) - (L - 1) out(L - 1) = W f_{L-1} + b``: per-step logits from the pooled ones."""
    torch.manual_seed(0)
    model = build("small").eval()
    x = _clip(1, 25, 32)
    with torch.no_grad():
        steps = model.tcn.mb_ms_tcn(model.features(x).transpose(1, 2))[0].T  # (T, C)
        per_step = model.tcn.tcn_output(steps)[:, 0]  # (T,)
        pooled = model(x.expand(25, -1, -1, -1, -1), lengths=range(1, 26))[:, 0]  # (T,): L = 1..25
        full = model(x)[0, 0]
        ten = model(x, lengths=[10])[0, 0]
        first_ten_alone = model(x[:, :, :10])[0, 0]
    sizes = torch.arange(1, 26, dtype=pooled.dtype)
    telescoped = sizes * pooled - torch.cat([pooled.new_zeros(1), (sizes * pooled)[:-1]])
    torch.testing.assert_close(telescoped, per_step, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled[-1], full)
    torch.testing.assert_close(ten, pooled[9])
    # the convolutions are not causal: steps before 10 see later frames, so a 10-frame clip differs
    assert not torch.allclose(ten, first_ten_alone, atol=1e-3)


def test_lengths_per_row_and_checked():
    torch.manual_seed(0)
    model = build("small").eval()
    x = _clip(2, 25, 32)
    with torch.no_grad():
        both = model(x, lengths=torch.tensor([7, 25]))
        torch.testing.assert_close(both[0], model(x[:1], lengths=[7])[0])
        torch.testing.assert_close(both[1], model(x[1:])[0])
    for bad in ([0, 25], [7, 26], [7]):
        with pytest.raises(ValueError, match="lengths must be 2 values"):
            model(x, lengths=bad)


def test_frontend_is_conv_bn_prelu_maxpool():
    model = _small()
    conv, bn, prelu, _ = model.frontend3D
    x = _clip(1, 6, 32)
    expected = F.conv3d(x, conv.weight, stride=(1, 2, 2), padding=(2, 3, 3))
    expected = F.batch_norm(expected, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
    expected = F.prelu(expected, prelu.weight)
    expected = F.max_pool3d(expected, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
    with torch.no_grad():
        assert (prelu.weight < 0).any() and (bn.weight < 0).any()  # max pool does not commute
        torch.testing.assert_close(model.frontend3D(x), expected)
        # the trunk runs on each frame t of the front-end output
        frames = model.frontend3D(x)
        features = model.features(x)
        for t in (0, 5):
            torch.testing.assert_close(features[:, t], model.trunk(frames[:, :, t]), rtol=1e-4, atol=1e-4)


def test_tcn_branches_are_symmetric_and_blocks_add_the_downsampled_input():
    model = _small()
    block = model.tcn.mb_ms_tcn.network[2]  # dilation 4
    branch = block.cbcr0_2  # kernel 7: padding 24, 12 trimmed per side
    x = torch.randn(2, 24, 25, generator=torch.Generator().manual_seed(3))
    conv, bn, act = branch.conv, branch.batchnorm, branch.non_lin
    with torch.no_grad():
        centred = F.conv1d(x, conv.weight, conv.bias, padding=12, dilation=4)
        eval_ref = F.prelu(
            F.batch_norm(centred, bn.running_mean, bn.running_var, bn.weight, bn.bias), act.weight
        )
        torch.testing.assert_close(branch(x), eval_ref)
        # in training the batch statistics include the padded ends that the chomp then trims
        padded = F.conv1d(x, conv.weight, conv.bias, padding=24, dilation=4)
        train_ref = F.prelu(F.batch_norm(padded, None, None, bn.weight, bn.bias, training=True), act.weight)
        torch.testing.assert_close(branch.train()(x), train_ref[:, :, 12:-12])
        branch.eval()
        first = torch.cat([getattr(block, f"cbcr0_{i}")(x) for i in range(3)], 1)
        second = torch.cat([getattr(block, f"cbcr1_{i}")(first) for i in range(3)], 1)
        torch.testing.assert_close(block(x), block.relu_final(second + block.downsample(x)))


def test_freeze_for_finetuning_trains_only_the_tcn():
    model = freeze_for_finetuning(build("small"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("tcn.")}
    assert any(n.startswith("tcn.tcn_output.") for n in trainable)
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.losses(model(_clip(2, 25, 32)), torch.tensor([1, 0]))["bce"].backward()
    assert all(p.grad is None for p in [*model.frontend3D.parameters(), *model.trunk.parameters()])
    assert not model.frontend3D.training and not model.trunk.training and model.tcn.training
    after = model.state_dict()
    frozen_stats = [k for k in stats if not k.startswith("tcn.")]
    assert frozen_stats and all(torch.equal(stats[k], after[k]) for k in frozen_stats)  # kept
    assert any(not torch.equal(stats[k], after[k]) for k in stats if k.startswith("tcn."))  # tcn learns


@pytest.fixture(scope="module")
def full_model() -> LipForensics:
    torch.manual_seed(0)
    return _randomise_norms(build("full"), seed=5)


def test_official_forgery_checkpoint_round_trip_full_size(full_model, tmp_path):
    path = tmp_path / "lipforensics_ff.pth"
    torch.save({"model": {f"module.{k}": v for k, v in full_model.state_dict().items()}}, path)
    loaded = load_official_checkpoint("lipforensics", str(path))
    assert isinstance(loaded, LipForensics) and not loaded.training
    x = _clip(1, 5, 88)
    with torch.no_grad():
        assert torch.equal(loaded(x), full_model(x))


def test_lip_reading_checkpoint_drops_its_500_word_head(full_model, tmp_path):
    state = dict(full_model.state_dict())
    state[f"{LRW_HEAD}weight"], state[f"{LRW_HEAD}bias"] = torch.randn(500, 768), torch.randn(500)
    path = tmp_path / "lrw_resnet18_mstcn.pth.tar"
    torch.save({"model_state_dict": state, "epoch": 80}, path)
    loaded = lipforensics.load_lipforensics(path)
    own = loaded.state_dict()
    assert own[f"{LRW_HEAD}weight"].shape == (1, 768)
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith(LRW_HEAD))
    # a forgery file does not drop the head: the 500-word one is the wrong shape there
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"wrong shape: tcn\.tcn_output\.weight \(500, 768\)"):
        lipforensics.load_lipforensics(path)


def _small_file(tmp_path, name: str, edit) -> str:
    state = dict(build("small").state_dict())
    edit(state)
    path = tmp_path / name
    torch.save({"model": state}, path)
    return str(path)


def test_missing_and_wrong_shape_keys_are_refused(tmp_path):
    missing = _small_file(tmp_path, "missing.pth", lambda s: s.pop("trunk.layer2.1.relu2.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing: trunk\.layer2\.1\.relu2\.weight") as err:
        load_official_checkpoint("lipforensics", missing, config="small")
    assert missing in str(err.value)
    key = "tcn.mb_ms_tcn.network.1.downsample.weight"
    wrong = _small_file(tmp_path, "wrong.pth", lambda s: s.update({key: torch.zeros(24, 24, 3)}))
    with pytest.raises(CheckpointError, match=rf"wrong shape: {key} \(24, 24, 3\)") as err:
        load_official_checkpoint("lipforensics", wrong, config="small")
    assert wrong in str(err.value)
    loaded = load_official_checkpoint("lipforensics", _small_file(tmp_path, "ok.pth", dict), config="small")
    assert isinstance(loaded, LipForensics)


def test_other_formats_and_pickled_objects_are_refused(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"state_dict": build("small").state_dict()}, other)
    with pytest.raises(CheckpointError, match="not an authors' LipForensics file") as err:
        lipforensics.load_lipforensics(other, config="small")
    assert str(other) in str(err.value) and "state_dict" in str(err.value)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"model": {"frontend3D.0.weight": _Exploit(str(marker))}}, evil)
    with pytest.raises(CheckpointError, match="may run code") as err:
        lipforensics.load_lipforensics(evil, config="small")
    assert str(evil) in str(err.value) and not marker.exists()
    with pytest.raises(FileNotFoundError, match=r"lipforensics_ff\.pth"):
        lipforensics.load_lipforensics(tmp_path / "absent.pth")
