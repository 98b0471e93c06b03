"""What every generator shares: the face material, the manipulation and blend interfaces, registries.

A fake frame is made in two steps:

1. a :class:`Manipulation` *renders* the manipulated face into frame ``t`` of the target video and
   says where, with a soft mask;
2. a :class:`Blend` merges the rendering into the untouched target frame inside that mask
   (paste, feathering, Poisson, colour transfer, a harmonisation network).

Any manipulation combines with any blend. Frames are ``(H, W, 3)`` uint8 RGB; masks are
``(H, W)`` float32 in [0, 1]; landmarks are ``(68, 2)`` float32 ``x, y`` pixels in iBUG order.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.records import METHOD_KINDS
from dftoolkit.registry import Registry
from dftoolkit.video.sampling import ping_pong

__all__ = [
    "BLENDS",
    "KINDS",
    "METHODS",
    "Blend",
    "FacePatches",
    "Manipulation",
    "Rendered",
    "check_options",
    "describe_blends",
    "describe_methods",
    "get_blend",
    "get_method",
    "list_blends",
    "list_methods",
    "register_blend",
    "register_method",
]

KINDS = ("swap", "reenact")


@dataclass(frozen=True)
class FacePatches:
    """Face material of a source (a video or a still): square crops around the face.

    Only frames with a face are kept, in their order in the source.

    Attributes:
        images: ``(S, P, P, 3)`` uint8 RGB crops (``S >= 1``).
        landmarks: ``(S, 68, 2)`` float32 pixels of the crops (no NaN).
        frame_indices: ``(S,)`` int64 frame of the source each crop comes from (0 for a still).
    """

    images: np.ndarray
    landmarks: np.ndarray
    frame_indices: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise ValueError("FacePatches needs at least one face crop")
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be (S, P, P, 3) uint8, got {self.images.shape} {self.images.dtype}"
            )
        if self.landmarks.shape != (n, 68, 2) or np.isnan(self.landmarks).any():
            raise ValueError(f"landmarks must be ({n}, 68, 2) without NaN, got {self.landmarks.shape}")
        if self.frame_indices.shape != (n,):
            raise ValueError(f"frame_indices must be ({n},), got {self.frame_indices.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def at(self, t: int) -> int:
        """Which crop to use at target frame ``t``: :func:`~dftoolkit.video.sampling.ping_pong`, so a
        short source never jumps."""
        return int(ping_pong(t, len(self.images)))


@dataclass(frozen=True)
class Rendered:
    """One manipulated frame before blending.

    Attributes:
        image: ``(H, W, 3)`` uint8: the manipulated face drawn over the target frame; equal to
            the target frame where ``mask`` is 0.
        mask: ``(H, W)`` float32 in [0, 1]: the manipulated region (all zero when the target
            has no face in this frame; the frame is then left untouched).
    """

    image: np.ndarray
    mask: np.ndarray


class Manipulation(ABC):
    """Renders a manipulated face into each frame of a target video.

    ``kind`` ``swap``: the face in the target is replaced by the source's identity, following the
    target's pose and expression. ``kind`` ``reenact``: the target's own face is moved to follow the
    source's expression and head motion. Either way the output has the target's frames, length and
    size, and the target is the fake's ``original``.

    Subclasses take the material in ``__init__(source, target, **params)`` and keep every
    parameter they use in :meth:`params` (recorded in the provenance of each fake).
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, source: FacePatches, target: FaceTrack) -> None:
        self.source = source
        self.target = target

    @abstractmethod
    def render(self, t: int, frame: np.ndarray) -> Rendered:
        """Frame ``t`` of the target, ``(H, W, 3)`` uint8, with the manipulated face drawn in."""

    def params(self) -> dict[str, Any]:
        """The parameters of this instance (JSON-serialisable)."""
        return {}

    @classmethod
    def option_names(cls) -> list[str]:
        """The parameters ``__init__`` takes besides the material (what ``--set NAME.OPTION`` may set)."""
        return _keywords(cls.__init__)

    def close(self) -> None:  # noqa: B027 - optional hook: release models
        """Release models (optional)."""


class Blend(ABC):
    """Merges a rendering into the target frame inside the mask.

    The result equals ``target`` wherever ``mask`` is 0. Options go to ``__init__`` and are listed
    by :meth:`params` for the provenance.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 rendering and target, ``(H, W)`` float32 mask -> ``(H, W, 3)`` uint8."""

    def params(self) -> dict[str, Any]:
        """The options of this instance (JSON-serialisable)."""
        return {}

    @classmethod
    def option_names(cls) -> list[str]:
        """The options ``__init__`` takes (what ``--set NAME.OPTION`` may set)."""
        return _keywords(cls.__init__)


def _keywords(init: Callable[..., None]) -> list[str]:
    """Names of the parameters of ``init`` that can be passed by keyword, but for the material."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    skip = ("self", "source", "target")
    return [
        p.name for p in inspect.signature(init).parameters.values() if p.kind in kinds and p.name not in skip
    ]


METHODS: Registry[type[Manipulation]] = Registry("manipulation method")
BLENDS: Registry[type[Blend]] = Registry("blend")


def register_method(cls: type[Manipulation]) -> type[Manipulation]:
    """Class decorator: register a :class:`Manipulation` under its ``name``, and its kind in
    :data:`~dftoolkit.records.METHOD_KINDS` (where quality and the detectors look kinds up)."""
    if cls.kind not in KINDS:
        raise ValueError(f"{cls.__name__}.kind must be one of {KINDS}, got {cls.kind!r}")
    known = METHOD_KINDS.setdefault(cls.name, cls.kind)
    if known != cls.kind:
        raise ValueError(f"{cls.__name__}: method {cls.name!r} is a {known!r} method, not {cls.kind!r}")
    METHODS.register(cls.name, cls.description)(cls)
    return cls


def register_blend(cls: type[Blend]) -> type[Blend]:
    """Class decorator: register a :class:`Blend` under its ``name``."""
    BLENDS.register(cls.name, cls.description)(cls)
    return cls


def list_methods() -> list[str]:
    """The registered manipulation method names, sorted."""
    return METHODS.names()


def describe_methods() -> dict[str, str]:
    """Manipulation method name -> one-line description (its ``kind``: ``METHODS.get(name).kind``)."""
    return METHODS.describe()


def get_method(name: str, source: FacePatches, target: FaceTrack, **options: Any) -> Manipulation:
    """A new manipulation registered as ``name``, of ``source`` onto ``target``, built with ``options``."""
    return METHODS.get(name)(source, target, **options)


def list_blends() -> list[str]:
    """The registered blend names, sorted."""
    return BLENDS.names()


def describe_blends() -> dict[str, str]:
    """Blend name -> one-line description."""
    return BLENDS.describe()


def get_blend(name: str, **options: Any) -> Blend:
    """A new blend registered as ``name``, built with ``options`` (an unknown option: ValueError)."""
    cls = BLENDS.get(name)
    _check_options("blend", name, cls, options)
    return cls(**options)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Check, before any work, that ``name`` is a manipulation method or blend taking every option of
    ``options``: ValueError otherwise, listing the names or options there are."""
    if name in METHODS:
        _check_options("manipulation method", name, METHODS.get(name), options)
    elif name in BLENDS:
        _check_options("blend", name, BLENDS.get(name), options)
    else:
        raise ValueError(
            f"no manipulation method or blend {name!r}; methods: {', '.join(METHODS.names())}; "
            f"blends: {', '.join(BLENDS.names())}"
        )


def _check_options(
    kind: str, name: str, cls: type[Manipulation] | type[Blend], options: Mapping[str, Any]
) -> None:
    valid = cls.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(valid) or 'none'}"
        )
