"""The name -> implementation registry behind every pluggable part."""

from __future__ import annotations

import pytest

from dftoolkit.registry import Registry


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
    assert [(e.name, e.description) for e in blends.entries()] == [
        ("feather", "Alpha falling off with distance"),
        ("paste", "Copy the face region as is."),
    ]
    with pytest.raises(KeyError, match="unknown blend 'poisson'; known: feather, paste"):
        blends.get("poisson")
    with pytest.raises(KeyError, match="already registered"):
        blends.register("paste")(Feather)
