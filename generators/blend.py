"""Blends: merge a manipulation's rendering into the target frame inside the mask.

Registered with :func:`~dftoolkit.generators.base.register_blend` (import this module to register):

- ``naive``: paste the rendering where ``mask > 0.5``.
- ``feather``: alpha-composite with :func:`feather_alpha` (0 outside, ramping up with the distance
  to the mask's edge, 1 deep inside).
- ``poisson``: gradient-domain cloning (``cv2.seamlessClone``, normal or mixed gradients), then
  composited with the mask as alpha.
- ``rct``, ``lct``, ``mkl``, ``idt``, ``sot``: the rendering's masked pixels recoloured to the
  colour distribution of the target's pixels under the same mask
  (:func:`~dftoolkit.generators.colour.colour_transfer`), then feathered as ``feather`` does.

Every blend takes ``(H, W, 3)`` uint8 rendering and target and an ``(H, W)`` float mask in [0, 1],
returns ``(H, W, 3)`` uint8 equal to ``target`` exactly wherever ``mask == 0`` (an all-zero mask
returns the target unchanged), and raises ValueError on mismatched shapes or dtypes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import cv2
import numpy as np

from dftoolkit.generators.base import Blend, register_blend
from dftoolkit.generators.colour import COLOUR_TRANSFERS, SPACES, colour_transfer

__all__ = [
    "ColourTransferBlend",
    "FeatherBlend",
    "IDTBlend",
    "LCTBlend",
    "MKLBlend",
    "NaiveBlend",
    "PoissonBlend",
    "RCTBlend",
    "SOTBlend",
    "check_blend_inputs",
    "composite",
    "feather_alpha",
]

UNITS = ("relative", "pixels")
POISSON_MODES = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


def check_blend_inputs(rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Validate a blend's inputs; returns the mask as float32.

    Raises:
        ValueError: ``rendered``/``target`` not both ``(H, W, 3)`` uint8 of one shape, ``mask`` not
            ``(H, W)``, or mask values outside [0, 1] (NaN included).
    """
    for name, image in (("rendered", rendered), ("target", target)):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name} must be an (H, W, 3) array, got {getattr(image, 'shape', type(image))}")
        if image.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if rendered.shape != target.shape:
        raise ValueError(f"rendered {rendered.shape} and target {target.shape} differ in shape")
    mask = np.asarray(mask)
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must be {target.shape[:2]}, got {mask.shape}")
    if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
        raise ValueError(f"mask must be a float (or bool) array in [0, 1], got {mask.dtype}")
    mask = mask.astype(np.float32)
    if mask.size and not (mask.min() >= 0 and mask.max() <= 1):  # NaN fails both
        raise ValueError("mask values must lie in [0, 1]")
    return mask


def _window(region: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The box of a non-empty ``(H, W)`` bool region grown by ``margin`` px and clipped to the image;
    None for an empty region. Blends work inside it, so their cost follows the face, not the frame."""
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if not len(rows):
        return None
    h, w = region.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def _feathered(
    rendered: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    width: float,
    unit: str,
    recolour: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Feather-composite inside the region's box (one pixel of margin keeps the distances exact),
    the rendering first passed through ``recolour(rendered, target, mask)`` (crops) when given."""
    window = _window(mask > 0.5, 1)
    if window is None:
        return target.copy()
    top = rendered[window] if recolour is None else recolour(rendered[window], target[window], mask[window])
    out = target.copy()
    out[window] = composite(top, target[window], feather_alpha(mask[window], width, unit))
    return out


def feather_alpha(mask: np.ndarray, width: float = 0.1, unit: str = "relative") -> np.ndarray:
    """Alpha that ramps up from the mask's edge: ``min(d / width_px, 1) * mask``.

    ``d`` is the exact Euclidean distance from a pixel of the region ``mask > 0.5`` to the nearest
    pixel outside it (1 on the region's outermost pixels, 0 outside); the image border is not an edge,
    so a face cut by the frame stays opaque there. Multiplying by ``mask`` keeps a soft mask's falloff.

    Args:
        mask: ``(H, W)`` float in [0, 1].
        width: ramp width: a fraction of the region's size ``sqrt(area)`` (``unit="relative"``) or
            pixels (``unit="pixels"``); > 0.
        unit: ``"relative"`` or ``"pixels"``.

    Returns:
        ``(H, W)`` float32 in [0, 1]: 0 where ``mask <= 0.5``, non-decreasing with ``d``, ``mask``
        where ``d >= width_px``.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    mask = np.asarray(mask, np.float32)
    region = (mask > 0.5).astype(np.uint8)
    area = int(region.sum())
    if area == 0:
        return np.zeros(mask.shape, np.float32)
    width_px = width * np.sqrt(area) if unit == "relative" else width
    distance = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.minimum(distance / max(width_px, 1e-6), 1).astype(np.float32) * mask * region


def composite(rendered: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * rendered + (1 - alpha) * target`` rounded to uint8; exactly ``target`` where alpha is 0.

    Args:
        rendered, target: ``(H, W, 3)`` uint8.
        alpha: ``(H, W)`` float in [0, 1].
    """
    a = np.asarray(alpha, np.float32)[..., None]
    mixed = target + a * (rendered.astype(np.float32) - target)
    return np.where(a > 0, np.clip(np.round(mixed), 0, 255).astype(np.uint8), target)


@register_blend
class NaiveBlend(Blend):
    """Paste the rendering where mask > 0.5."""

    name = "naive"
    description = "paste the rendering where mask > 0.5"

    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = check_blend_inputs(rendered, target, mask)
        region = mask > 0.5
        out = target.copy()
        window = _window(region, 0)
        if window is not None:
            out[window] = np.where(region[window][..., None], rendered[window], target[window])
        return out


@register_blend
class FeatherBlend(Blend):
    """Alpha-composite with an alpha ramping up from the mask's edge (distance transform).

    Args:
        width: ramp width, relative to ``sqrt(mask area)`` or in pixels (see :func:`feather_alpha`).
        unit: ``"relative"`` or ``"pixels"``.
    """

    name = "feather"
    description = "alpha ramping up with the distance to the mask's edge"

    def __init__(self, width: float = 0.1, unit: str = "relative") -> None:
        feather_alpha(np.zeros((1, 1), np.float32), width, unit)  # validates the options
        self.width = float(width)
        self.unit = unit

    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = check_blend_inputs(rendered, target, mask)
        return _feathered(rendered, target, mask, self.width, self.unit)

    def params(self) -> dict[str, Any]:
        return {"width": self.width, "unit": self.unit}


@register_blend
class PoissonBlend(Blend):
    """Poisson (gradient-domain) cloning of the rendering into the target (``cv2.seamlessClone``).

    The region ``mask > 0.5`` is cloned from a crop around it. Where the crop meets the image border,
    images and mask are padded by replication, so a face cut by the frame is cloned up to the frame
    and the solver's fixed boundary (target values) lies outside it. OpenCV takes the rendering's
    gradients only a few pixels inside the mask and solves with the target as boundary; the result is
    then composited with the mask as alpha, so the output is the target wherever ``mask == 0``.
    Regions thinner than about 7 px hold no rendering gradient after OpenCV's erosion and come back
    (nearly) as the target; boxes under 3 px, which OpenCV cannot solve, come back as the target.

    Args:
        mode: ``"normal"`` (the rendering's gradients, ``NORMAL_CLONE``) or ``"mixed"`` (the stronger
            of the rendering's and the target's gradients, ``MIXED_CLONE``).
    """

    name = "poisson"
    description = "Poisson cloning (cv2.seamlessClone), normal or mixed gradients"

    margin = 4  # pixels of context around the mask's box

    def __init__(self, mode: str = "normal") -> None:
        if mode not in POISSON_MODES:
            raise ValueError(f"mode must be one of {tuple(POISSON_MODES)}, got {mode!r}")
        self.mode = mode

    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = check_blend_inputs(rendered, target, mask)
        region = mask > 0.5
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        if not len(rows) or rows[-1] - rows[0] < 2 or cols[-1] - cols[0] < 2:
            return target.copy()  # OpenCV fails on boxes under 3 px (and would erode them away)
        (h, w), m = mask.shape, self.margin
        y0, y1, x0, x1 = rows[0] - m, rows[-1] + m + 1, cols[0] - m, cols[-1] + m + 1
        pads = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))  # the margin beyond the border
        window = np.s_[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]

        def crop(image: np.ndarray) -> np.ndarray:
            return cv2.copyMakeBorder(np.ascontiguousarray(image[window]), *pads, cv2.BORDER_REPLICATE)

        src, dst, clone_mask = crop(rendered), crop(target), crop(region.astype(np.uint8) * 255)
        bx, by, bw, bh = cv2.boundingRect(clone_mask)
        centre = (bx + bw // 2, by + bh // 2)  # seamlessClone places the mask's box centred here
        cloned = cv2.seamlessClone(src, dst, clone_mask, centre, POISSON_MODES[self.mode])
        cloned = cloned[pads[0] : cloned.shape[0] - pads[1], pads[2] : cloned.shape[1] - pads[3]]
        out = target.copy()
        out[window] = composite(cloned, target[window], mask[window])
        return out

    def params(self) -> dict[str, Any]:
        return {"mode": self.mode}


class ColourTransferBlend(Blend):
    """Recolour the rendering's masked pixels to the statistics of the target's pixels under the same
    mask (``mask > 0.5``; :func:`~dftoolkit.generators.colour.colour_transfer` with ``method``), then
    feather-composite (:func:`feather_alpha`).

    Args:
        width, unit: the feather ramp (see :class:`FeatherBlend`).
        space: ``"lab"`` or ``"rgb"``; None: the method's default (Lab for ``rct``, RGB otherwise).
        seed: seeds ``idt``/``sot`` (each call restarts from it: the same inputs give the same frame).
        options: the colour-transfer method's own options (e.g. ``lct``'s ``mode``).
    """

    method: ClassVar[str]

    def __init__(
        self,
        width: float = 0.1,
        unit: str = "relative",
        space: str | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None:
        entry = COLOUR_TRANSFERS.get(self.method)
        feather_alpha(np.zeros((1, 1), np.float32), width, unit)  # validates the options
        space = entry.space if space is None else space
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        defaults = _transfer_defaults(self.method)
        unknown = set(options) - set(defaults)
        if unknown:
            raise ValueError(f"{self.method} has no option(s) {sorted(unknown)}; it has {sorted(defaults)}")
        self.width, self.unit, self.space, self.seed = float(width), unit, space, int(seed)
        self.options = {**defaults, **options}
        self.seeded = entry.seeded
        # one run on two pixels, so that bad option values fail here rather than on the first frame
        two = np.array([[0.2, 0.5, 0.7], [0.6, 0.3, 0.1]])
        entry.function(two, two, **self.options, **({"seed": 0} if self.seeded else {}))

    def __call__(self, rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mask = check_blend_inputs(rendered, target, mask)

        def recolour(rendered: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
            method, options = self.method, self.options
            return colour_transfer(rendered, target, mask, mask, method, self.seed, self.space, **options)

        return _feathered(rendered, target, mask, self.width, self.unit, recolour)

    def params(self) -> dict[str, Any]:
        seed = {"seed": self.seed} if self.seeded else {}
        return {"width": self.width, "unit": self.unit, "space": self.space, **seed, **self.options}

    @classmethod
    def option_names(cls) -> list[str]:
        """The feather and colour options, then the colour-transfer method's own."""
        return [*super().option_names(), *_transfer_defaults(cls.method)]


def _transfer_defaults(method: str) -> dict[str, Any]:
    """The options of colour-transfer ``method`` (past its two inputs; not its seed) and their defaults."""
    parameters = list(inspect.signature(COLOUR_TRANSFERS.get(method).function).parameters.items())[2:]
    return {k: p.default for k, p in parameters if k != "seed"}


@register_blend
class RCTBlend(ColourTransferBlend):
    name = method = "rct"
    description = "Reinhard colour transfer (Lab mean/std) to the target's masked region, feathered"


@register_blend
class LCTBlend(ColourTransferBlend):
    name = method = "lct"
    description = "linear colour transfer (covariance) to the target's masked region, feathered"


@register_blend
class MKLBlend(ColourTransferBlend):
    name = method = "mkl"
    description = "Monge-Kantorovich linear colour transfer to the target's masked region, feathered"


@register_blend
class IDTBlend(ColourTransferBlend):
    name = method = "idt"
    description = "iterative distribution transfer to the target's masked region, feathered"


@register_blend
class SOTBlend(ColourTransferBlend):
    name = method = "sot"
    description = "sliced optimal transport colour transfer to the target's masked region, feathered"
