"""Colour transfer: give a set of pixels the colour distribution of another set (written from the papers).

Per-method functions map ``(N, 3)`` float pixels ``source`` towards the distribution of ``(M, 3)``
float pixels ``reference`` and return ``(N, 3)`` float64 (any 3-channel space, no clipping):

- :func:`rct`: Reinhard et al. 2001, "Color transfer between images": per channel,
  ``(x - mean_s) / std_s * std_r + mean_r``.
- :func:`lct`: linear transfer ``A (x - mean_s) + mean_r`` with ``A C_s A^T = C_r`` (covariances),
  ``A = L_r L_s^-1`` from Cholesky factors or ``A = C_r^1/2 C_s^-1/2`` (symmetric square roots).
- :func:`mkl`: Pitié & Kokaram 2007, "The linear Monge-Kantorovitch linear colour mapping": the
  linear map with ``A C_s A = C_r`` that moves pixels least in mean squared distance,
  ``A = C_s^-1/2 (C_s^1/2 C_r C_s^1/2)^1/2 C_s^-1/2``.
- :func:`idt`: Pitié, Kokaram & Dahyot 2005, "N-dimensional probability density function transfer":
  per iteration a random rotation, then each rotated axis matched by 1-D quantile mapping.
- :func:`sot`: sliced optimal transport (Rabin et al. 2011; Bonneel et al. 2015): per iteration
  random directions, 1-D sorted (quantile) matching along each, a step along the mean displacement.

The 1-D matching used by ``idt`` and ``sot`` maps a value to the reference quantile at its mid-rank
in the source, so equal source values (common in uint8 images) map to equal outputs.

:func:`colour_transfer` applies a method to ``(H, W, 3)`` images with optional masks, in a working
space: ``"lab"`` is OpenCV's float CIE L*a*b* (D65) of RGB in [0, 1] (L in [0, 100], a and b about
[-128, 127]), not the paper's log-LMS l-alpha-beta; ``"rgb"`` is RGB in [0, 1]. ``rct`` works in Lab
by default (its channels are nearly decorrelated, the reason the paper used l-alpha-beta); the others
match the joint distribution and work in RGB by default, as the face-swap tools do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dftoolkit.registry import Registry

__all__ = [
    "COLOUR_TRANSFERS",
    "SPACES",
    "ColourTransfer",
    "colour_transfer",
    "describe_colour_transfers",
    "get_colour_transfer",
    "idt",
    "lct",
    "list_colour_transfers",
    "match_1d",
    "mkl",
    "random_rotations",
    "rct",
    "sot",
]

SPACES = ("lab", "rgb")


def _pixels(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
        raise ValueError(f"{name} must be (N >= 1, 3) pixels, got {x.shape}")
    return x


def _stats(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(3,)`` and covariance ``(3, 3)`` (population) with ``eps`` added on the diagonal."""
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / len(x) + eps * np.eye(3)


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for ``(P, Q)`` x ``(Q, N)`` with a small ``Q``, as Q broadcast products: BLAS is slow (and
    thread-bound) on such shapes."""
    out = a[:, 0, None] * b[0]
    for q in range(1, a.shape[1]):
        out += a[:, q, None] * b[q]
    return out


def _sqrtm(c: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric (inverse) square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 1e-12)
    return (v * (w**-0.5 if inverse else w**0.5)) @ v.T


def rct(source: np.ndarray, reference: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Reinhard transfer: match each channel's mean and standard deviation.

    Args:
        source: ``(N, 3)`` pixels to recolour.
        reference: ``(M, 3)`` pixels with the wanted statistics.
        eps: added to the source's standard deviation (a flat channel stays flat).
    """
    x, y = _pixels(source, "source"), _pixels(reference, "reference")
    return (x - x.mean(0)) / (x.std(0) + eps) * y.std(0) + y.mean(0)


def lct(source: np.ndarray, reference: np.ndarray, mode: str = "cholesky", eps: float = 1e-6) -> np.ndarray:
    """Linear colour transfer: match the mean and the 3x3 covariance.

    Args:
        source, reference: ``(N, 3)`` and ``(M, 3)`` pixels.
        mode: ``"cholesky"`` (``A = L_r L_s^-1``) or ``"sqrt"`` (``A = C_r^1/2 C_s^-1/2``).
        eps: ridge added to both covariances (regularises flat or tiny regions).
    """
    x, y = _pixels(source, "source"), _pixels(reference, "reference")
    mu_s, c_s = _stats(x, eps)
    mu_r, c_r = _stats(y, eps)
    if mode == "cholesky":
        a = np.linalg.cholesky(c_r) @ np.linalg.inv(np.linalg.cholesky(c_s))
    elif mode == "sqrt":
        a = _sqrtm(c_r) @ _sqrtm(c_s, inverse=True)
    else:
        raise ValueError(f"lct mode must be 'cholesky' or 'sqrt', got {mode!r}")
    return _mix(a, (x - mu_s).T).T + mu_r


def mkl(source: np.ndarray, reference: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Monge-Kantorovich linear transfer: the mean and covariance of ``reference`` with the least
    mean squared displacement (the optimal transport map between Gaussians).

    Args:
        source, reference: ``(N, 3)`` and ``(M, 3)`` pixels.
        eps: ridge added to both covariances.
    """
    x, y = _pixels(source, "source"), _pixels(reference, "reference")
    mu_s, c_s = _stats(x, eps)
    mu_r, c_r = _stats(y, eps)
    root = _sqrtm(c_s)
    inv_root = _sqrtm(c_s, inverse=True)
    a = inv_root @ _sqrtm(root @ c_r @ root) @ inv_root
    return _mix(a, (x - mu_s).T).T + mu_r


def random_rotations(n: int, rng: np.random.Generator, dim: int = 3) -> np.ndarray:
    """``(n, dim, dim)`` rotations drawn uniformly (Haar) by QR of Gaussian matrices."""
    q, r = np.linalg.qr(rng.standard_normal((n, dim, dim)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[:, :, 0] *= det[:, None]  # proper rotations (det +1)
    return q


def match_1d(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1-D optimal transport per row: each source value -> the reference quantile at its mid-rank.

    Args:
        source: ``(K, N)`` values (K independent 1-D distributions).
        reference: ``(K, M)`` values.

    Returns:
        ``(K, N)`` float64: ``F_r^-1(F_s(v))`` with ``F_s(v)`` the mid-rank of ``v`` among the
        source values (ties map together) and ``F_r^-1`` interpolated between sorted reference values.
    """
    source, reference = np.asarray(source), np.asarray(reference)
    n, m = source.shape[1], reference.shape[1]
    out = np.empty(source.shape, np.float64)
    for k, (s, r) in enumerate(zip(source, reference, strict=True)):
        order = np.argsort(s)
        ordered = s[order]
        first = np.r_[True, ordered[1:] != ordered[:-1]]  # starts of runs of equal values
        starts = np.flatnonzero(first)
        mid = ((starts + np.r_[starts[1:], n]) / (2 * n))[np.cumsum(first) - 1]  # mid-rank in (0, 1)
        pos = np.clip(mid * m - 0.5, 0, m - 1)  # fractional index into the sorted reference
        i = pos.astype(np.int64)
        ref = np.sort(r)
        ref = np.append(ref, ref[-1])
        out[k, order] = ref[i] + (pos - i) * (ref[i + 1] - ref[i])
    return out


def idt(source: np.ndarray, reference: np.ndarray, iterations: int = 10, seed: int = 0) -> np.ndarray:
    """Iterative distribution transfer: ``iterations`` random rotations, each followed by 1-D
    quantile matching of the three rotated axes (converges to the reference's 3-D distribution).

    Args:
        source, reference: ``(N, 3)`` and ``(M, 3)`` pixels.
        iterations: number of rotations.
        seed: seeds the rotations.
    """
    x, y = _pixels(source, "source"), _pixels(reference, "reference")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)  # (3, N), (3, M)
    for rotation in random_rotations(iterations, np.random.default_rng(seed)):
        xs = _mix(rotation.T, xt)  # coordinates on the rotated axes
        xt += _mix(rotation, match_1d(xs, _mix(rotation.T, yt)) - xs)
    return xt.T


def sot(
    source: np.ndarray,
    reference: np.ndarray,
    iterations: int = 20,
    projections: int = 4,
    step: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Sliced optimal transport: per iteration ``projections`` random unit directions ``theta_k``;
    ``x += step * 3 / K * sum_k (match_1d(x . theta_k) - x . theta_k) theta_k`` (a stochastic
    gradient step on the sliced Wasserstein distance; with 3 orthonormal directions and step 1 it is
    one ``idt`` iteration).

    Args:
        source, reference: ``(N, 3)`` and ``(M, 3)`` pixels.
        iterations: number of steps.
        projections: random directions per step.
        step: step size in (0, 2).
        seed: seeds the directions.
    """
    x, y = _pixels(source, "source"), _pixels(reference, "reference")
    if iterations < 1 or projections < 1:
        raise ValueError(f"iterations and projections must be >= 1, got {iterations}, {projections}")
    if not 0 < step < 2:
        raise ValueError(f"step must be in (0, 2), got {step}")
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)  # (3, N), (3, M)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        theta = rng.standard_normal((projections, 3))
        theta /= np.linalg.norm(theta, axis=1, keepdims=True)
        xs = _mix(theta, xt)  # (K, N)
        xt += (step * 3 / projections) * _mix(theta.T, match_1d(xs, _mix(theta, yt)) - xs)
    return xt.T


@dataclass(frozen=True)
class ColourTransfer:
    """A colour-transfer method: its ``(N, 3)`` function, default working space, whether it is seeded."""

    function: Callable[..., np.ndarray]
    space: str
    seeded: bool


COLOUR_TRANSFERS: Registry[ColourTransfer] = Registry("colour transfer")
COLOUR_TRANSFERS.register("rct", "Reinhard: per-channel mean and std (Lab)")(
    ColourTransfer(rct, "lab", False)
)
COLOUR_TRANSFERS.register("lct", "linear: mean and covariance (Cholesky or square root)")(
    ColourTransfer(lct, "rgb", False)
)
COLOUR_TRANSFERS.register("mkl", "Monge-Kantorovich linear: mean and covariance, least displacement")(
    ColourTransfer(mkl, "rgb", False)
)
COLOUR_TRANSFERS.register("idt", "iterative distribution transfer: random rotations + 1-D matching")(
    ColourTransfer(idt, "rgb", True)
)
COLOUR_TRANSFERS.register("sot", "sliced optimal transport: random projections + 1-D matching")(
    ColourTransfer(sot, "rgb", True)
)


def list_colour_transfers() -> list[str]:
    """The registered colour-transfer names, sorted."""
    return COLOUR_TRANSFERS.names()


def describe_colour_transfers() -> dict[str, str]:
    """Colour-transfer name -> one-line description."""
    return COLOUR_TRANSFERS.describe()


def get_colour_transfer(name: str) -> ColourTransfer:
    """The colour-transfer method registered as ``name`` (apply it with :func:`colour_transfer`)."""
    return COLOUR_TRANSFERS.get(name)


def _unit_float(image: np.ndarray, name: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 or float in [0, 1] -> float32 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3), got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float, got {image.dtype}")
    if image.size and not (np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1):
        raise ValueError(f"float {name} must lie in [0, 1]")
    return image.astype(np.float32)


def _region(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``(H, W)`` bool: where ``mask > 0.5`` (everywhere for None)."""
    if mask is None:
        return np.ones(shape[:2], bool)
    mask = np.asarray(mask)
    if mask.shape != shape[:2]:
        raise ValueError(f"{name} must be {shape[:2]}, got {mask.shape}")
    return mask > 0.5


def _to_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """``(N, 3)`` float32 RGB in [0, 1] -> ``(N, 3)`` in ``space``."""
    return cv2.cvtColor(rgb[:, None], cv2.COLOR_RGB2Lab)[:, 0] if space == "lab" else rgb


def _from_space(x: np.ndarray, space: str) -> np.ndarray:
    """``(N, 3)`` in ``space`` -> float32 RGB clipped to [0, 1]."""
    x = x.astype(np.float32)
    if space == "lab":
        x = cv2.cvtColor(x[:, None], cv2.COLOR_Lab2RGB)[:, 0]
    return np.clip(x, 0, 1)


def colour_transfer(
    image: np.ndarray,
    reference: np.ndarray,
    image_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    method: str = "rct",
    seed: int = 0,
    space: str | None = None,
    **options: Any,
) -> np.ndarray:
    """Recolour the masked pixels of ``image`` to the colour distribution of the masked pixels of
    ``reference``.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 in [0, 255] or float in [0, 1].
        reference: ``(H', W', 3)`` RGB, uint8 or float in [0, 1] (its size may differ).
        image_mask: ``(H, W)`` mask; pixels with ``mask > 0.5`` give the source statistics and are the
            only ones changed. None: the whole image.
        reference_mask: ``(H', W')`` mask; pixels with ``mask > 0.5`` give the reference statistics.
            None: the whole reference.
        method: a name in :data:`COLOUR_TRANSFERS` (``rct``, ``lct``, ``mkl``, ``idt``, ``sot``).
        seed: seeds the random rotations/directions of ``idt`` and ``sot`` (ignored by the others).
        space: ``"lab"`` (OpenCV float L*a*b*) or ``"rgb"`` ([0, 1]); None: the method's default.
        options: the method's own options (``lct``'s ``mode``, ``idt``'s ``iterations``, ...).

    Returns:
        ``(H, W, 3)`` with ``image``'s dtype: uint8 rounded, float clipped to [0, 1]; equal to
        ``image`` outside ``image_mask`` (and everywhere when ``image_mask`` selects nothing).

    Raises:
        ValueError: bad shapes, dtypes, ranges, method or space, or a reference mask selecting nothing.
    """
    if method not in COLOUR_TRANSFERS:
        raise ValueError(f"unknown colour transfer {method!r}; known: {', '.join(COLOUR_TRANSFERS.names())}")
    entry = COLOUR_TRANSFERS.get(method)
    space = entry.space if space is None else space
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    src, ref = _unit_float(image, "image"), _unit_float(reference, "reference")
    inside = _region(image_mask, src.shape, "image_mask")
    ref_inside = _region(reference_mask, ref.shape, "reference_mask")
    if not ref_inside.any():
        raise ValueError("reference_mask selects no pixel")
    out = np.array(image, copy=True)
    if not inside.any():
        return out
    if entry.seeded:
        options["seed"] = seed
    moved = entry.function(_to_space(src[inside], space), _to_space(ref[ref_inside], space), **options)
    rgb = _from_space(moved, space)
    out[inside] = np.round(rgb * 255).astype(np.uint8) if out.dtype == np.uint8 else rgb.astype(out.dtype)
    return out
