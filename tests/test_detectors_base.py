"""The detector interface: input specs are checked, the registry builds by name and config."""

from __future__ import annotations

import pytest
import torch

from dftoolkit.detectors.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Detector,
    InputSpec,
    build_detector,
    count_parameters,
    list_detectors,
    load_official_checkpoint,
    on_meta,
)

SPEC = {
    "crop": "face",
    "scale": 1.3,
    "train_scale": (1.0, 1.5),
    "size": 224,
    "frames": 8,
    "sampling": "segments",
    "channels": 3,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "layout": "N(TC)HW",
    "video_score": "mean_probability",
}


def test_a_bad_input_spec_names_every_problem():
    InputSpec(**SPEC)
    with pytest.raises(ValueError) as err:
        InputSpec(**{**SPEC, "sampling": "random", "channels": 2, "layout": "NHWC", "frames": 0})
    message = str(err.value)
    for named in (
        "sampling must be one of",
        "channels must be 1 or 3",
        "mean and std need 2",
        "layout must be",
    ):
        assert named in message
    assert "frames and size must be >= 1" in message


def test_the_registry_lists_builds_and_refuses_by_name():
    names = list_detectors()
    assert names == sorted(names)
    with pytest.raises(KeyError, match="unknown detector 'nope'"):
        build_detector("nope")
    if names:
        with pytest.raises(ValueError, match="config must be one of"):
            build_detector(names[0], config="medium")
    with pytest.raises(KeyError, match="unknown detector"):
        load_official_checkpoint("nope", "x.pth")


def test_default_loss_is_bce_of_the_fake_logit():
    class Linear(Detector):
        name = "linear"
        spec = InputSpec(**SPEC)

        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.fc(x)

        def fake_logit(self, output):
            return output[:, 0]

    model = Linear()
    x, labels = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    loss = model.losses(model(x), labels)["bce"]
    p = torch.sigmoid(model(x)[:, 0])
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert count_parameters(on_meta(lambda: torch.nn.Linear(1000, 1000))) == 1_001_000


@pytest.mark.parametrize("name", list_detectors())
def test_every_recipe_is_a_valid_training_config_and_builds(name):
    from dftoolkit.detectors import detector_recipe, detector_recipes
    from dftoolkit.detectors.train import TrainConfig

    recipes = detector_recipes(name)
    assert set(recipes) == {"paper", "small"}
    for recipe, values in recipes.items():
        settings = {k: v for k, v in values.items() if k != "config"}
        TrainConfig(**settings)  # a misspelt or bad field raises
        assert on_meta(lambda values=values: build_detector(name, values["config"])).spec.frames >= 1, recipe
    with pytest.raises(KeyError, match="has no recipe 'fast'"):
        detector_recipe(name, "fast")


def test_a_recipe_must_name_its_config():
    from dftoolkit.detectors.base import register_detector

    with pytest.raises(ValueError, match="without a config: \\['small'\\]"):
        register_detector("x", "x", recipes={"small": {"lr": 1.0}})
    with pytest.raises(ValueError, match="recipes are named"):
        register_detector("x", "x", recipes={"quick": {"config": "small"}})
