"""The name -> implementation registry behind every pluggable part."""

from __future__ import annotations

from functools import partial

import pytest

from dftoolkit.corpora import describe_corpora, get_corpus, list_corpora
from dftoolkit.detectors import build_detector, describe_detectors, list_detectors
from dftoolkit.faces import describe_backends, get_backend, list_backends
from dftoolkit.generators.base import (
    describe_blends,
    describe_methods,
    get_blend,
    get_method,
    list_blends,
    list_methods,
)
from dftoolkit.generators.colour import describe_colour_transfers, get_colour_transfer, list_colour_transfers
from dftoolkit.generators.perturb import describe_perturbations, get_perturbation, list_perturbations
from dftoolkit.quality.audit import describe_audit_features, get_audit_feature, list_audit_features
from dftoolkit.quality.backbones import describe_backbones, get_backbone, list_backbones
from dftoolkit.quality.flow import describe_flow_backends, get_flow_backend, list_flow_backends
from dftoolkit.quality.scoring import describe_quality_metrics, get_quality_metric, list_quality_metrics
from dftoolkit.registry import Registry

REGISTRIES = {
    "corpora": (list_corpora, describe_corpora, get_corpus),
    "face backends": (list_backends, describe_backends, get_backend),
    "methods": (list_methods, describe_methods, partial(get_method, source=None, target=None)),
    "blends": (list_blends, describe_blends, get_blend),
    "colour transfers": (list_colour_transfers, describe_colour_transfers, get_colour_transfer),
    "perturbations": (list_perturbations, describe_perturbations, get_perturbation),
    "quality metrics": (list_quality_metrics, describe_quality_metrics, get_quality_metric),
    "flow backends": (list_flow_backends, describe_flow_backends, get_flow_backend),
    "backbones": (list_backbones, describe_backbones, get_backbone),
    "audit features": (list_audit_features, describe_audit_features, get_audit_feature),
    "detectors": (list_detectors, describe_detectors, build_detector),
}


def test_register_get_and_list():
    blends: Registry[type] = Registry("blend")

    @blends.register("paste")
    class Paste:
        """Copy the face region as is.

        More text.
        """

    @blends.register("feather", description="Alpha falling off with distance")
    class Feather:
        pass

    assert blends.get("paste") is Paste and "feather" in blends and len(blends) == 2
    assert blends.names() == ["feather", "paste"] == list(blends)
    assert blends.describe() == {
        "feather": "Alpha falling off with distance",
        "paste": "Copy the face region as is.",
    }
    assert list(blends.describe()) == blends.names()
    with pytest.raises(KeyError, match="unknown blend 'poisson'; known: feather, paste"):
        blends.get("poisson")
    with pytest.raises(KeyError, match="already registered"):
        blends.register("paste")(Feather)


@pytest.mark.parametrize("functions", REGISTRIES.values(), ids=REGISTRIES.keys())
def test_every_registry_lists_names_describes_them_and_rejects_unknown_ones(functions):
    list_x, describe_x, get_x = functions
    names = list_x()
    assert names and names == sorted(names) and all(isinstance(name, str) for name in names)
    descriptions = describe_x()
    assert list(descriptions) == names and all(isinstance(d, str) and d for d in descriptions.values())
    with pytest.raises(KeyError, match=f"known: {names[0]}"):
        get_x("no-such-name")


def test_every_generator_method_has_its_kind_in_the_core_table():
    """Quality and the detectors read a method's kind from ``dftoolkit.records`` without importing
    the generators; a registered method's kind must agree with it."""
    from dftoolkit.generators import METHODS
    from dftoolkit.records import method_kind

    assert METHODS.names()
    for name in METHODS.names():
        assert method_kind(f"{name}+feather") == METHODS.get(name).kind, name


def test_every_detector_builds_small_with_a_valid_spec():
    for name in list_detectors():
        model = build_detector(name, "small")
        assert model.name == name and model.spec.frames >= 1, name
