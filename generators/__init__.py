"""SR-DF-style synthesis: ``dftoolkit.generators``.

>>> from dftoolkit.generators import BuildConfig, build_dataset, list_blends, list_methods, perturb_video
>>> corpus = build_dataset(reals, "srdf/", blends=["feather", "rct"])  # doctest: +SKIP
>>> corpus = build_dataset(reals, "srdf/", BuildConfig(methods=("swap",)), workers=4)  # doctest: +SKIP

A fake is a manipulation (:mod:`.swap`, :mod:`.reenact`: landmark warping with no weights;
:mod:`.fomm`: First Order Motion Model from a checkpoint) blended into the target frame
(:mod:`.blend`: paste, feather, Poisson, colour transfer; :mod:`.dovenet`: a harmonisation network),
optionally post-processed (:mod:`.perturb`: the DeeperForensics perturbations and FF++ compressions).
:func:`build_dataset` runs them over the pairs of a real corpus into the toolkit corpus layout, as a
:class:`BuildConfig` says.
"""

from dftoolkit.generators import blend, dovenet, fomm, reenact, swap  # noqa: F401 - importing registers them
from dftoolkit.generators.base import (
    BLENDS,
    METHODS,
    Blend,
    FacePatches,
    Manipulation,
    Rendered,
    describe_blends,
    describe_methods,
    get_blend,
    get_method,
    list_blends,
    list_methods,
    register_blend,
    register_method,
)
from dftoolkit.generators.builder import BuildReport, build_dataset, choose_pairs
from dftoolkit.generators.config import BuildConfig
from dftoolkit.generators.perturb import perturb_video

__all__ = [
    "BLENDS",
    "METHODS",
    "Blend",
    "BuildConfig",
    "BuildReport",
    "FacePatches",
    "Manipulation",
    "Rendered",
    "build_dataset",
    "choose_pairs",
    "describe_blends",
    "describe_methods",
    "get_blend",
    "get_method",
    "list_blends",
    "list_methods",
    "perturb_video",
    "register_blend",
    "register_method",
]
