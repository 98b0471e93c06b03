"""Reference detectors on one interface (:mod:`.base`): ``dftoolkit.detectors``.

>>> from dftoolkit.detectors import build_detector, list_detectors, load_official_checkpoint
>>> model = build_detector("stil", "small")                                    # doctest: +SKIP
>>> model = load_official_checkpoint("lipforensics", "lipforensics_ff.pth")    # doctest: +SKIP

Built so far: ``lipforensics`` and ``stil``; torch datasets over a FaceStore in :mod:`.data`; metrics
in :mod:`.metrics`.
"""

from dftoolkit.detectors import lipforensics, stil  # noqa: F401 - importing registers them
from dftoolkit.detectors.base import (
    DETECTORS,
    Detector,
    InputSpec,
    build_detector,
    describe_detectors,
    list_detectors,
    load_official_checkpoint,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "InputSpec",
    "build_detector",
    "describe_detectors",
    "list_detectors",
    "load_official_checkpoint",
]
