"""Typed stage configs: files, overrides and ``--set`` in one syntax, coercion, errors that name the key,
the config each output folder records, and CLI options whose help comes from the dataclasses."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from dftoolkit import Manifest, VideoRecord
from dftoolkit.cli import app
from dftoolkit.cli import generate as generate_cli
from dftoolkit.cli import preprocess as preprocess_cli
from dftoolkit.cli import quality as quality_cli
from dftoolkit.config import (
    CONFIG_FILE,
    ConfigError,
    PairError,
    config_to_dict,
    describe_config,
    field_help,
    load_config,
    override,
    write_config,
)
from dftoolkit.generators import BuildConfig
from dftoolkit.preprocess import PreprocessConfig
from dftoolkit.quality import QualityConfig, quality_report

runner = CliRunner()
CONFIGS = (PreprocessConfig, BuildConfig, QualityConfig)


def test_defaults_then_file_then_overrides_then_settings(tmp_path):
    file = tmp_path / "faces.yaml"
    file.write_text("crops: [face, mouth]\nframes: 8\nmin_score: 0.6\nsizes: {mouth: 96}\n")
    config = load_config(
        PreprocessConfig, file, {"frames": 4, "backend": "dlib"}, ["frames=2", "sizes.face=128"]
    )
    assert config == PreprocessConfig(
        crops=("face", "mouth"),
        frames=2,
        min_score=0.6,
        backend="dlib",
        sizes=(("mouth", 96), ("face", 128)),
    )
    json_file = tmp_path / "faces.json"
    json_file.write_text(json.dumps({"frames": 3, "policy": "stride"}))
    assert load_config(PreprocessConfig, json_file) == PreprocessConfig(frames=3, policy="stride")


@pytest.mark.parametrize(
    ("cls", "setting", "field", "value"),
    [
        (PreprocessConfig, "crops=face, mouth", "crops", ("face", "mouth")),
        (PreprocessConfig, "sizes=face=128,mouth=64", "sizes", (("face", 128), ("mouth", 64))),
        (PreprocessConfig, "backend_options.max_faces=3", "backend_options", (("max_faces", 3),)),
        (PreprocessConfig, "reuse_original_track=no", "reuse_original_track", False),
        (PreprocessConfig, "scale=1.5", "scale", 1.5),
        (PreprocessConfig, "image-format=jpg", "image_format", "jpg"),
        (BuildConfig, "crf=none", "crf", None),
        (BuildConfig, "perturbations=none,random:2", "perturbations", (None, "random:2")),
        (BuildConfig, "method_options.fomm.batch=4", "method_options", {"fomm": {"batch": 4}}),
        (
            BuildConfig,
            'blend_options={"feather": {"width": 0.2}}',
            "blend_options",
            {"feather": {"width": 0.2}},
        ),
        (BuildConfig, "name=2024", "name", "2024"),
        (QualityConfig, "metrics=mask-ssim,ewarp", "metrics", ("mask-ssim", "ewarp")),
        (QualityConfig, "seed=7", "seed", 7),
    ],
)
def test_text_is_coerced_to_the_field_type(cls, setting, field, value):
    assert getattr(load_config(cls, settings=[setting]), field) == value


def test_python_values_are_normalised_so_configs_compare_equal():
    assert BuildConfig(methods=["swap"], perturbations=["none", "random"]) == BuildConfig(
        methods=("swap",), perturbations=(None, "random")
    )
    assert PreprocessConfig(sizes={"face": 128}) == PreprocessConfig(sizes=(("face", 128),))
    assert override(BuildConfig(), {"seed": "3"}, ["crf=20"]) == BuildConfig(seed=3, crf=20)


def test_unknown_keys_and_bad_values_name_the_key(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown PreprocessConfig setting 'framez'; settings: crops, sizes, frames"
    ):
        load_config(PreprocessConfig, settings=["framez=3"])
    file = tmp_path / "c.yaml"
    file.write_text("frames: 3\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown PreprocessConfig setting 'bogus'"):
        load_config(PreprocessConfig, file)
    with pytest.raises(ConfigError, match=r"frames: expected a whole number, got 'many'"):
        load_config(PreprocessConfig, settings=["frames=many"])
    with pytest.raises(ConfigError, match=r"crf: expected a whole number or none, got 'x'"):
        load_config(BuildConfig, settings=["crf=x"])
    with pytest.raises(ConfigError, match=r"'frames\.x': frames has no entries"):
        load_config(PreprocessConfig, settings=["frames.x=1"])
    with pytest.raises(PairError, match="expected KEY=VALUE"):
        load_config(PreprocessConfig, settings=["frames"])
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(PreprocessConfig, tmp_path / "nope.yaml")
    file.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        load_config(PreprocessConfig, file)


def test_build_config_names_every_problem():
    with pytest.raises(ValueError, match="bad build settings") as caught:
        BuildConfig(methods=("nope",), crf=60, min_coverage=2.0, originals="copy", perturbations=("XX:1",))
    message = str(caught.value)
    for part in ("unknown manipulation method 'nope'", "crf must be", "min_coverage", "originals", "'XX:1'"):
        assert part in message
    with pytest.raises(ValueError, match="blend 'feather' has no option 'nosuch'"):
        BuildConfig(blend_options={"feather": {"nosuch": 1}})


def test_recorded_config_round_trips(tmp_path):
    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(b"")
    configs = [
        PreprocessConfig(crops=("face", "mouth"), sizes=(("mouth", 64),), backend_options=(("a", [1, 2]),)),
        BuildConfig(
            methods=("swap",),
            perturbations=(None, "CS:3 GB:2"),
            crf=None,
            method_options={"fomm": {"batch": 2}},
        ),
        QualityConfig(metrics=("ewarp",), weights=(("vgg16", str(weights)),)),
    ]
    for k, config in enumerate(configs):
        path = write_config(tmp_path / str(k), config)
        assert path.name == CONFIG_FILE and path.read_text().startswith(f"# {type(config).__name__}")
        assert load_config(type(config), path.parent) == config
    assert PreprocessConfig().to_dict() == config_to_dict(PreprocessConfig())  # the FaceStore's record


def test_every_field_has_a_help_and_choices_come_from_the_registries():
    from dftoolkit.faces import list_backends
    from dftoolkit.generators import list_blends
    from dftoolkit.quality.flow import list_flow_backends

    for cls in CONFIGS:
        fields = describe_config(cls)
        assert all(info.help for info in fields.values()), cls
    assert describe_config(PreprocessConfig)["frames"].type == "int"
    assert describe_config(BuildConfig)["crf"].default == 18
    assert describe_config(BuildConfig)["blends"].choices == tuple(list_blends())
    assert describe_config(QualityConfig)["flow"].choices == tuple(list_flow_backends())
    assert field_help(PreprocessConfig, "backend").endswith(f"Choices: {', '.join(list_backends())}.")


def _option(command: str, flag: str):
    click_command = typer.main.get_command(app).commands[command]
    (param,) = [p for p in click_command.params if flag in p.opts]
    return param


@pytest.mark.parametrize(
    ("command", "flag", "cls", "field"),
    [
        ("preprocess", "--frames", PreprocessConfig, "frames"),
        ("preprocess", "--crops", PreprocessConfig, "crops"),
        ("generate", "--methods", BuildConfig, "methods"),
        ("generate", "--perturb", BuildConfig, "perturbations"),
        ("generate", "--min-coverage", BuildConfig, "min_coverage"),
        ("quality", "--flow", QualityConfig, "flow"),
        ("quality", "--backbone", QualityConfig, "perceptual_backbone"),
        ("quality", "--metrics", QualityConfig, "metrics"),
    ],
)
def test_cli_option_help_is_the_field_help(command, flag, cls, field):
    assert _option(command, flag).help == field_help(cls, field)


def test_cli_defaults_come_from_the_dataclasses():
    assert _option("preprocess", "--frames").default == PreprocessConfig().frames
    assert _option("generate", "--methods").default == ",".join(BuildConfig().methods)
    assert _option("quality", "--metrics").default == ",".join(QualityConfig().metrics)


def _captured(monkeypatch, module, name: str) -> list:
    """Replace the stage function ``module.name`` by one that records its config and stops (exit 2)."""
    seen = []

    def stop(*args, **kwargs):
        seen.append(next(a for a in [*args, *kwargs.values()] if isinstance(a, CONFIGS)))
        raise ValueError("stopped")

    monkeypatch.setattr(module, name, stop)
    return seen


def test_cli_precedence_file_then_options_then_set(tmp_path, monkeypatch):
    manifest = tmp_path / "m.parquet"
    Manifest([VideoRecord("d", "v", "v.mp4", 0)], root=tmp_path).write_parquet(manifest)
    out = str(tmp_path / "out")

    file = tmp_path / "faces.yaml"
    file.write_text("frames: 8\nbackend: dlib\nmin_score: 0.6\n")
    seen = _captured(monkeypatch, preprocess_cli, "run")
    args = [
        "preprocess",
        str(manifest),
        "-o",
        out,
        "--config",
        str(file),
        "--frames",
        "4",
        "--set",
        "min_score=0.7",
    ]
    assert runner.invoke(app, [*args, "--size", "128"]).exit_code == 2
    assert seen[-1] == PreprocessConfig(frames=4, backend="dlib", min_score=0.7, sizes=(("face", 128),))

    file.write_text("methods: [swap]\nseed: 5\ncrf: 20\nblend_options: {feather: {width: 0.1}}\n")
    seen = _captured(monkeypatch, generate_cli, "build_dataset")
    args = ["generate", str(manifest), "-o", out, "--config", str(file), "--seed", "6", "--lossless"]
    assert runner.invoke(app, [*args, "--set", "feather.width=0.3", "--set", "seed=7"]).exit_code == 2
    assert seen[-1] == BuildConfig(
        methods=("swap",), seed=7, crf=None, blend_options={"feather": {"width": 0.3}}
    )

    file.write_text("metrics: [ewarp]\nframes: 4\n")
    seen = _captured(monkeypatch, quality_cli, "quality_report")
    args = ["quality", str(manifest), "-o", out, "--config", str(file), "--flow", "farneback"]
    assert runner.invoke(app, [*args, "--set", "frames=5"]).exit_code == 2
    assert seen[-1] == QualityConfig(metrics=("ewarp",), frames=5, flow="farneback")


def test_quality_report_records_its_config(samples_manifest, tmp_path):
    one = samples_manifest.filter(lambda r: r.video_id == "carphone_pristine")
    config = QualityConfig(metrics=(), frames=4)
    quality_report([one], tmp_path, config, workers=1)
    assert load_config(QualityConfig, tmp_path) == config
