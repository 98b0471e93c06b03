"""Reference detectors on one interface (:mod:`.base`): ``dftoolkit.detectors``.

>>> from dftoolkit.detectors import build_detector, list_detectors, load_official_checkpoint
>>> model = build_detector("stil", "small")                                    # doctest: +SKIP
>>> model = load_official_checkpoint("lipforensics", "lipforensics_ff.pth")    # doctest: +SKIP

The detectors, one module each: ``ddl``, ``lipforensics``, ``m2tr``, ``stil`` and ``styleflow``.
Torch datasets over a FaceStore in :mod:`.data`; training in :mod:`.train`, scoring in
:mod:`.evaluate`, metrics in :mod:`.metrics`.
"""

from dftoolkit.detectors import ddl, lipforensics, m2tr, stil, styleflow  # noqa: F401 - importing registers them
from dftoolkit.detectors.base import (
    DETECTORS,
    Detector,
    InputSpec,
    build_detector,
    describe_detectors,
    detector_recipe,
    detector_recipes,
    list_detectors,
    load_official_checkpoint,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "InputSpec",
    "build_detector",
    "describe_detectors",
    "detector_recipe",
    "detector_recipes",
    "list_detectors",
    "load_official_checkpoint",
]
