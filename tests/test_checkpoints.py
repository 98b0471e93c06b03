"""Safe checkpoint loading: weights-only unpickling, and state dicts checked against a module."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.generators.dovenet import load_dovenet
from dftoolkit.generators.fomm import load_fomm


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def _random_state(module: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 100, v.shape, generator=gen) if v.dtype == torch.int64 else torch.randn(v.shape)
        for k, v in module.state_dict().items()
    }


def test_the_exploit_is_live_without_weights_only(tmp_path):
    """The payload used below really runs when unpickled unsafely (so the refusal tests can fail)."""
    marker = tmp_path / "ran"
    torch.save({"weight": _Exploit(str(marker))}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


LOADERS = {
    "load_weights": lambda path: load_weights(path, what="test checkpoint", hint="none"),
    "load_fomm": lambda path: load_fomm(path, config="small"),
    "load_dovenet": lambda path: load_dovenet(path, "small"),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-format"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_malicious_pickle_never_runs(tmp_path, loader, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"generator": {"weight": _Exploit(str(marker))}, "kp_detector": {}}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="may run code") as err:
        LOADERS[loader](path)
    assert not marker.exists()
    text = str(err.value)
    assert str(path) in text and "posix.system" in text  # torch's reason: the blocked global
    assert "weights_only` set to `False`" not in text and "Weights only load failed" not in text


def test_weights_round_trip_and_map_location(tmp_path):
    saved = {"a": torch.randn(3, 4), "b": {"c": torch.arange(5)}, "epoch": 7}
    torch.save(saved, tmp_path / "ok.pth")
    got = load_weights(tmp_path / "ok.pth", what="test checkpoint", hint="none", map_location="meta")
    assert got["epoch"] == 7 and got["a"].device.type == "meta" and got["b"]["c"].shape == (5,)
    got = load_weights(str(tmp_path / "ok.pth"), what="test checkpoint", hint="none")
    assert torch.equal(got["a"], saved["a"]) and torch.equal(got["b"]["c"], saved["b"]["c"])


def test_missing_file_names_the_path_and_the_hint(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError) as err:
        load_weights(path, what="Frobnicator checkpoint", hint="get it from example.org")
    text = str(err.value)
    assert str(path) in text and "Frobnicator checkpoint" in text and "get it from example.org" in text
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path, what="x", hint="y")  # a folder is not a checkpoint


def test_corrupt_files_are_refused(tmp_path):
    torch.save({"a": torch.randn(100)}, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    files = {
        "junk.pth": b"not a checkpoint at all",
        "empty.pth": b"",
        "truncated.pth": data[: len(data) // 2],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            load_weights(tmp_path / name, what="test checkpoint", hint="none")
        assert str(tmp_path / name) in str(err.value), name
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_weights(tmp_path / "truncated.pth", what="test checkpoint", hint="none")


def test_fit_state_dict_loads_exactly_strips_the_prefix_and_fills_optional_keys():
    net = _net()
    state = _random_state(net)
    wrapped = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    fit_state_dict(net, wrapped, where="ckpt")
    got = net.state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            assert got[key] == 0, key  # the module's own value is kept
        else:
            assert torch.equal(got[key], value), key
    with pytest.raises(CheckpointError, match=r"1 unexpected: module\.0\.weight"):
        fit_state_dict(_net(), {"module.0.weight": state["0.weight"]}, where="ckpt", strip_prefix=None)
    without_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    with pytest.raises(CheckpointError, match=r"1 missing: 1\.num_batches_tracked"):
        fit_state_dict(_net(), without_counter, where="ckpt", optional=())


def test_fit_state_dict_lists_what_differs_and_loads_nothing():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = _random_state(net)
    state["0.kernel"] = state.pop("0.weight")
    del state["1.bias"]
    state["3.weight"] = torch.zeros(4, 8, 3, 3)
    for i in range(7):
        state[f"extra.{i}"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        fit_state_dict(net, state, where="ckpt.pth: head", hint="Expected the head format.")
    text = str(err.value)
    assert text.startswith("ckpt.pth: head does not fit")
    assert "2 missing: 0.weight, 1.bias;" in text
    assert "8 unexpected: 0.kernel, extra.0, extra.1, extra.2, extra.3 and 3 more;" in text
    assert "1 wrong shape: 3.weight (4, 8, 3, 3) (expected (4, 8, 1, 1))" in text
    assert text.endswith("Expected the head format.")
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "state",
    [[torch.zeros(1)], {"0.weight": [1.0, 2.0]}, {0: torch.zeros(1)}, torch.zeros(3)],
    ids=["list", "non-tensor", "non-str-key", "tensor"],
)
def test_fit_state_dict_needs_names_to_tensors(state):
    with pytest.raises(CheckpointError, match="expected a state dict"):
        fit_state_dict(_net(), state, where="ckpt")


def test_fit_state_dict_strips_the_longest_of_several_prefixes_and_drops_documented_heads():
    """The authors' files carry ``module.`` (DataParallel) or ``module.base_model.`` / ``module.model.``
    (their wrappers); a lip-reading head absent from the forgery model is dropped only when named."""
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    reference = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    wrapped = {f"module.base_model.{k}": v for k, v in reference.state_dict().items()}
    wrapped["module.base_model.head.weight"] = torch.zeros(500, 2)
    with pytest.raises(CheckpointError, match=r"1 unexpected: head\.weight"):
        fit_state_dict(net, wrapped, where="ckpt", strip_prefix=("module.", "module.base_model."))
    fit_state_dict(
        net, wrapped, where="ckpt", strip_prefix=("module.", "module.base_model."), dropped=("head.",)
    )
    loaded, expected = net.state_dict(), reference.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    plain = {f"module.{k}": v + 1 for k, v in reference.state_dict().items() if v.is_floating_point()}
    fit_state_dict(net, plain, where="ckpt", strip_prefix=("module.", "module.base_model."))
    assert torch.equal(net[0].weight, reference[0].weight + 1)
