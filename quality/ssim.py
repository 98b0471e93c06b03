"""SSIM and Mask-SSIM on batched tensors, with the reference settings of Wang et al. 2004.

SSIM (Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004) compares local statistics of two images::

    SSIM(x, y) = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))

with Gaussian-weighted means, variances and covariance (population statistics; an ``win_size``-tap
window of standard deviation ``sigma``, separable), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` and ``L`` the
data range. The defaults (sigma 1.5, 11 taps, k1 0.01, k2 0.03) are the paper's and those of
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``,
which this module reproduces: the same map (borders included) and the same per-image mean.

Borders: the full map (:func:`ssim_map`) extends the images by half-sample symmetric reflection
(``d c b a | a b c d``, SciPy's ``reflect`` mode, what skimage uses); every mean (:func:`ssim`,
:func:`mask_ssim`) is taken over the valid region only, the map without its ``(win_size - 1) // 2``
pixel border (skimage crops the same border), so no reflected pixel enters a score.

Mask-SSIM (the fake frame against the same-index frame of its original, in the manipulated region)
has two protocols in the literature, both offered (:data:`PROTOCOLS`):

- ``inside``: the SSIM map of the unmasked images, averaged inside the mask (a mask-weighted mean
  over channels and valid pixels). Mask pixels in the border strip are not counted.
- ``masked-image``: both images multiplied by the mask, SSIM averaged over the whole (valid) image;
  the pose-transfer code that coined the name. The zero background scores 1, which inflates it.

On CPU the Gaussian filtering runs in OpenCV (``cv2.filter2D``, the same reflected borders) on buffers
allocated once per call, and a batch is processed in slices of about ``_CPU_SLICE_BYTES`` of
statistics (one 256x256 RGB frame; every slice by the same vectorised ops) so they stay in the cache;
elsewhere (CUDA) the whole batch goes through kornia's separable filter at once
(``kornia.filters.filter2d_separable`` with ``valid`` padding, on statistics this module reflects
itself: kornia has no half-sample symmetric border). Results depend on the device and batch size only
by float rounding.
Every output is clamped to SSIM's range [-1, 1]: in float32, identical images can otherwise score
1 + 1e-6. These are metrics: no gradients are recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch

from dftoolkit.video import VideoReader

__all__ = ["PROTOCOLS", "PROTOCOL_DESCRIPTIONS", "mask_ssim", "ssim", "ssim_map", "video_mask_ssim"]

PROTOCOL_DESCRIPTIONS = {
    "inside": "SSIM map of the unmasked images, mask-weighted mean inside the mask (border strip excluded)",
    "masked-image": (
        "both images multiplied by the mask, SSIM mean over the whole image (inflated by the zero background)"
    ),
}
PROTOCOLS = tuple(PROTOCOL_DESCRIPTIONS)

_CPU_SLICE_BYTES = 4 << 20  # statistics per CPU slice (one 256x256 RGB frame): buffers stay in the cache
_OPENCV_ON_CPU = True  # False: CPU tensors take the kornia path too (how the tests check that path)
_RANGE_SLACK = 1e-6  # [0, 1] inputs may overshoot by float rounding (e.g. bilinear warps)


def _check_settings(data_range: float, sigma: float, win_size: int, k1: float, k2: float) -> None:
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd number, got {win_size}")
    if not (k1 > 0 and k2 > 0):
        raise ValueError(f"k1 and k2 must be positive, got {k1}, {k2}")


def _check_pair(
    x: torch.Tensor, y: torch.Tensor, win_size: int, names: tuple[str, str] = ("x", "y")
) -> torch.dtype:
    """Shapes, devices and dtypes of two image batches; returns the dtype the maths runs in."""
    for name, t in zip(names, (x, y), strict=True):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(
                f"{name} must be a float tensor, got {t.dtype} (convert uint8 frames with / 255)"
            )
    if x.shape != y.shape:
        raise ValueError(f"the images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.device != y.device:
        raise ValueError(f"the images are on different devices: {x.device} vs {y.device}")
    h, w = x.shape[-2:]
    if min(h, w) < win_size:
        raise ValueError(f"images of {h}x{w} are smaller than the {win_size}-pixel SSIM window")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _taps(win_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised ``win_size``-tap Gaussian of standard deviation ``sigma`` (computed in float64)."""
    t = torch.arange(win_size, dtype=torch.float64) - win_size // 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _reflect(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims by ``r`` with half-sample symmetric reflection (``d c b a | a b c d``)."""
    for dim in (-2, -1):
        n = x.shape[dim]
        i = torch.arange(-r, n + r, device=x.device) % (2 * n)
        x = x.index_select(dim, torch.where(i < n, i, 2 * n - 1 - i))
    return x


def _slice_frames(n: int, planes: int, h: int, w: int, element_size: int, device: torch.device) -> int:
    """Frames per slice: all at once on accelerators, about ``_CPU_SLICE_BYTES`` of statistics on CPU."""
    if device.type != "cpu":
        return max(n, 1)
    return max(1, min(n, _CPU_SLICE_BYTES // (planes * h * w * element_size)))


def _combine(
    mx: torch.Tensor,
    my: torch.Tensor,
    sq: torch.Tensor,
    xy: torch.Tensor,
    out: torch.Tensor,
    c1: float,
    c2: float,
) -> torch.Tensor:
    """The SSIM formula from the filtered ``x``, ``y``, ``x^2 + y^2`` and ``x y`` (all overwritten),
    written into ``out``."""
    a1 = torch.mul(mx, my, out=out)
    b1 = mx.mul_(mx).addcmul_(my, my)
    a2 = xy.sub_(a1).mul_(2).add_(c2)  # 2 s_xy + C2
    b2 = sq.sub_(b1).add_(c2)  # s_x^2 + s_y^2 + C2
    a1.mul_(2).add_(c1).mul_(a2)
    return a1.div_(b1.add_(c1).mul_(b2))


def _maps(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    data_range: float,
    sigma: float,
    win_size: int,
    k1: float,
    k2: float,
    full: bool,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """SSIM maps of ``x * weight`` and ``y * weight`` (``weight`` None: of ``x`` and ``y``), slice by slice.

    Yields ``(frames, map)``: the map ``(k, C, H, W)`` with reflected borders if ``full``, else the
    valid ``(k, C, H - 2r, W - 2r)``. On CPU the map is a view of buffers reused by the next slice:
    use it before advancing.
    """
    n, c, h, w = x.shape
    step = _slice_frames(n, 4 * c, h, w, x.element_size(), x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    if x.device.type == "cpu" and _OPENCV_ON_CPU:
        yield from _maps_cpu(x, y, weight, sigma, win_size, c1, c2, full, step)
        return
    from kornia.filters import filter2d_separable  # lazy: importing kornia adds ~0.2 s to the CLI start

    r = win_size // 2
    g = _taps(win_size, sigma, x.dtype, x.device)[None]  # (1, win_size), for both axes
    for start in range(0, n, step):
        s = slice(start, start + step)
        xs, ys = (x[s], y[s]) if weight is None else (x[s] * weight[s], y[s] * weight[s])
        stats = torch.cat([xs, ys, xs * xs + ys * ys, xs * ys], 1)  # s_x^2 + s_y^2 is all the map needs
        if full:
            stats = _reflect(stats, r)
        v = filter2d_separable(stats.flatten(0, 1)[None], g, g, padding="valid")  # planes as channels
        mx, my, sq, xy = v.view(len(xs), 4 * c, *v.shape[-2:]).split(c, 1)
        yield s, _combine(mx, my, sq, xy, torch.empty_like(mx), c1, c2)


def _maps_cpu(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    sigma: float,
    win_size: int,
    c1: float,
    c2: float,
    full: bool,
    step: int,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """:func:`_maps` on CPU: OpenCV's filters into three buffers allocated once per call.

    A slice's statistics are laid out ``(H, k, 4, C, W)``: seen as an ``(H, k 4 C W)`` image, its
    columns are the columns of every plane, so one vertical filter call covers them all; seen as
    ``(H k 4 C, W)``, its rows are the rows of every plane, so one horizontal call does. Borders are
    ``cv2.BORDER_REFLECT`` (``d c b a | a b c d``), skimage's. No memory is allocated per slice (fresh
    large allocations cost a page fault per 4 KiB on every slice).
    """
    n, c, h, w = x.shape
    r = win_size // 2
    size = h * step * 4 * c * w
    stats_buf, filtered_buf, out_buf = x.new_empty(size), x.new_empty(size), x.new_empty(size // 4)
    taps = _taps(win_size, sigma, torch.float64, x.device).numpy()
    rows, cols = (slice(None), slice(None)) if full else (slice(r, h - r), slice(r, w - r))
    for start in range(0, n, step):
        s, k = slice(start, start + step), min(step, n - start)
        stats = stats_buf[: h * k * 4 * c * w].view(h, k, 4, c, w)
        sx, sy, sq, sxy = stats.unbind(2)
        xs, ys = x[s].permute(2, 0, 1, 3), y[s].permute(2, 0, 1, 3)
        if weight is None:
            sx.copy_(xs)
            sy.copy_(ys)
        else:
            m = weight[s].permute(2, 0, 1, 3)
            torch.mul(xs, m, out=sx)
            torch.mul(ys, m, out=sy)
        torch.mul(sx, sx, out=sq).addcmul_(sy, sy)  # s_x^2 + s_y^2 is all the map needs
        torch.mul(sx, sy, out=sxy)
        filtered = filtered_buf[: stats.numel()].view(stats.shape)
        src, mid = stats.numpy(), filtered.numpy()  # views: OpenCV writes into the buffers
        border = cv2.BORDER_REFLECT
        cv2.filter2D(
            src.reshape(h, -1), -1, taps[:, None], dst=mid.reshape(h, -1), borderType=border
        )  # columns
        cv2.filter2D(mid.reshape(-1, w), -1, taps[None], dst=src.reshape(-1, w), borderType=border)  # rows
        mx, my, sq, xy = (t[rows, ..., cols] for t in stats.unbind(2))
        out = out_buf[: h * k * c * w].view(h, k, c, w)[rows, ..., cols]
        yield s, _combine(mx, my, sq, xy, out, c1, c2).permute(1, 2, 0, 3)


@torch.no_grad()
def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel SSIM of two image batches (skimage's ``full=True`` map, per channel).

    Borders are computed on images extended by half-sample symmetric reflection, as skimage does;
    the ``(win_size - 1) // 2`` pixels next to the edges are therefore less reliable and every mean
    in this module leaves them out.

    Args:
        x, y: ``(N, C, H, W)`` float images, ``H, W >= win_size``; float16/bfloat16 are computed in float32.
        data_range: ``max - min`` of the images' value range (1 for [0, 1] images, 255 for 8-bit).
        sigma: standard deviation of the Gaussian window, pixels.
        win_size: taps of the window (odd); 11 for sigma 1.5 as in the paper and skimage.
        k1, k2: the stabilising constants, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``.

    Returns:
        ``(N, C, H, W)`` SSIM in [-1, 1] (1: identical).
    """
    _check_settings(data_range, sigma, win_size, k1, k2)
    dtype = _check_pair(x, y, win_size)
    x, y = x.to(dtype), y.to(dtype)
    out = torch.empty_like(x)
    for s, local in _maps(x, y, None, data_range, sigma, win_size, k1, k2, full=True):
        out[s] = local
    return out.clamp_(-1, 1)


@torch.no_grad()
def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM per image: the map averaged over channels and the valid region.

    Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range, channel_axis=...)``, which crops the
    ``(win_size - 1) // 2`` border before averaging. Arguments as :func:`ssim_map`.

    Returns:
        ``(N,)`` in the images' float dtype.
    """
    _check_settings(data_range, sigma, win_size, k1, k2)
    dtype = _check_pair(x, y, win_size)
    x, y = x.to(dtype), y.to(dtype)
    out = x.new_empty(len(x))
    for s, local in _maps(x, y, None, data_range, sigma, win_size, k1, k2, full=False):
        out[s] = local.mean((1, 2, 3))
    return out.clamp_(-1, 1)


def _check_unit(name: str, t: torch.Tensor) -> None:
    if t.numel() == 0:
        return
    lo, hi = torch.aminmax(t.detach())
    if not (lo >= -_RANGE_SLACK and hi <= 1 + _RANGE_SLACK):  # also catches NaN
        raise ValueError(f"{name} must lie in [0, 1], got values in [{float(lo):.4g}, {float(hi):.4g}]")


@torch.no_grad()
def mask_ssim(
    fake: torch.Tensor,
    real: torch.Tensor,
    mask: torch.Tensor,
    protocol: str = "inside",
    *,
    sigma: float = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mask-SSIM of fake frames against the same-index frames of their originals (data range 1).

    Protocols (:data:`PROTOCOLS`):

    - ``inside``: ``sum(S * m) / (C * sum(m))`` over the valid region, ``S`` the SSIM map of the
      unmasked images; mask pixels within ``(win_size - 1) // 2`` of the image edge are dropped (a
      mask touching the border is scored on its inner part only). NaN when no mask weight is left.
    - ``masked-image``: mean SSIM (as :func:`ssim`) of ``fake * m`` against ``real * m``. NaN when
      the mask is all zero (two black images would score a meaningless 1).

    Soft masks weight the pixels (``inside``) or fade the images (``masked-image``).

    Args:
        fake, real: ``(N, 3, H, W)`` float images in [0, 1] (any channel count is accepted).
        mask: ``(N, 1, H, W)`` float in [0, 1], 1 = manipulated.
        protocol: ``inside`` or ``masked-image``.
        sigma, win_size, k1, k2: SSIM settings, as :func:`ssim_map`.

    Returns:
        ``(N,)`` in [0, 1] for real images (negative only for anti-correlated ones), NaN where empty.

    Raises:
        ValueError: unknown protocol, bad shapes, devices or dtypes, values outside [0, 1].
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown Mask-SSIM protocol {protocol!r}; choose from {PROTOCOLS}")
    _check_settings(1.0, sigma, win_size, k1, k2)
    dtype = _check_pair(fake, real, win_size, ("fake", "real"))
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point():
        raise ValueError(f"mask must be a float tensor in [0, 1], got {getattr(mask, 'dtype', type(mask))}")
    n, _, h, w = fake.shape
    if tuple(mask.shape) != (n, 1, h, w):
        raise ValueError(f"mask must be (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(mask.shape)}")
    if mask.device != fake.device:
        raise ValueError(f"the mask is on {mask.device}, the images on {fake.device}")
    for name, t in (("fake", fake), ("real", real), ("mask", mask)):
        _check_unit(name, t)
    fake, real, mask = fake.to(dtype), real.to(dtype), mask.to(dtype)
    r = win_size // 2
    if protocol == "masked-image":
        empty = mask.amax((1, 2, 3)) <= 0
        maps = _maps(fake, real, mask, 1.0, sigma, win_size, k1, k2, full=False)
    else:
        inner = mask[:, :, r : h - r, r : w - r]
        weight = inner.sum((1, 2, 3))
        empty = weight <= 0
        maps = _maps(fake, real, None, 1.0, sigma, win_size, k1, k2, full=False)
    out = fake.new_empty(n)
    for s, local in maps:
        if protocol == "masked-image":
            out[s] = local.mean((1, 2, 3))
        else:
            out[s] = local.mul_(inner[s]).sum((1, 2, 3)) / (weight[s] * local.shape[1])
    return out.masked_fill_(empty, math.nan).clamp_(-1, 1)  # NaN stays NaN


def _frame_indices(frames: Sequence[int] | np.ndarray | None, total: int) -> np.ndarray:
    if frames is None:
        return np.arange(total)
    wanted = np.asarray(frames)
    if wanted.ndim != 1 or (wanted.size and not np.issubdtype(wanted.dtype, np.integer)):
        raise ValueError(f"frames must be a 1-D sequence of integer indices, got {wanted!r}")
    if wanted.size and (wanted.min() < 0 or wanted.max() >= total):
        raise ValueError(f"frame indices must lie in [0, {total}), got {wanted.min()}..{wanted.max()}")
    return wanted.astype(np.int64)


def video_mask_ssim(
    fake_path: str | os.PathLike[str],
    original_path: str | os.PathLike[str],
    mask_path: str | os.PathLike[str],
    protocol: str = "inside",
    batch: int = 32,
    frames: Sequence[int] | np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Mask-SSIM of a fake video against its original, frame by frame, streaming ``batch`` frames.

    Frame ``t`` of the fake is compared with frame ``t`` of the original inside frame ``t`` of the
    mask video (white = manipulated; the mean of its RGB channels / 255 is the mask, so soft masks
    stay soft). The three videos are decoded once, in step.

    Args:
        fake_path, original_path, mask_path: the three videos, same size and frame count.
        protocol: one of :data:`PROTOCOLS`.
        batch: frame pairs scored per :func:`mask_ssim` call.
        frames: indices to score (any order, repeats allowed); default every frame.
        device: where the maths runs.

    Returns:
        ``(T,)`` float64, one value per requested frame, NaN where that frame's mask is empty.

    Raises:
        ValueError: the videos differ in frame count or size (naming them), bad ``frames``/``batch``.
        VideoDecodeError: a frame cannot be decoded.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown Mask-SSIM protocol {protocol!r}; choose from {PROTOCOLS}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    readers = [VideoReader(p) for p in (fake_path, original_path, mask_path)]
    counts = [r.num_frames for r in readers]
    if len(set(counts)) > 1:
        raise ValueError(
            f"frame counts differ: fake {fake_path} has {counts[0]}, original {original_path} {counts[1]}, "
            f"mask {mask_path} {counts[2]}"
        )
    sizes = [r.shape[:2] for r in readers]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"frame sizes (H, W) differ: fake {fake_path} {sizes[0]}, original {original_path} {sizes[1]}, "
            f"mask {mask_path} {sizes[2]}"
        )
    wanted = _frame_indices(frames, counts[0])
    unique = np.unique(wanted)
    if unique.size == 0:
        return np.zeros(0)
    streams = [r.iter_frames(None if frames is None else unique) for r in readers]
    scores = []
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        fake, real, mask = (torch.from_numpy(np.stack(k)).to(device) for k in zip(*pending, strict=True))
        fake = fake.permute(0, 3, 1, 2).float().div_(255)
        real = real.permute(0, 3, 1, 2).float().div_(255)
        mask = mask.float().mean(-1, keepdim=True).permute(0, 3, 1, 2).div_(255)
        scores.append(mask_ssim(fake, real, mask, protocol).double().cpu().numpy())
        pending.clear()

    for (_, fake), (_, real), (_, mask) in zip(*streams, strict=True):
        pending.append((fake, real, mask))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    values = np.concatenate(scores)
    return values[np.searchsorted(unique, wanted)]
