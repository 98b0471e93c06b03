"""E_warp: the flow-warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency").

For the frames ``V_t`` of a video (RGB floats in [0, 1]) and the forward/backward flows ``w_f``
(``t -> t+1``) and ``w_b`` (``t+1 -> t``) of the REFERENCE video (the original, when given; else of
the video itself)::

    E_warp(V_t, V_t+1) = sum_i M_t(i) ||V_t(i) - warp(V_t+1)(i)||^2 / (3 sum_i M_t(i))

``warp(V_t+1)(x) = V_t+1(x + w_f(x))`` (:func:`backward_warp`), ``M_t = 1 - occlusion`` and the
normaliser counts non-occluded pixels x 3 channels, as the authors' evaluation code does: a pair's
value is the mean squared error per channel of [0, 1] RGB over non-occluded pixels (0 when every
pixel is occluded). The video's E_warp is the mean over its ``T - 1`` consecutive pairs; lower is
smoother. :func:`occlusion_mask` marks a pixel occluded when

- the forward-backward check fails: ``|w_b(x + w_f) + w_f|^2 > 0.01 (|w_b(x + w_f)|^2 + |w_f|^2) + 0.5``;
- it lies on a motion boundary of ``w_f = (u, v)``: ``|grad u|^2 + |grad v|^2 > 0.01 |w_f|^2 + 0.002``,
  gradients as forward differences ``f(x) - f(x + 1)`` along x and y, 0 on the last column/row;
- (border rule, ``occlude_outside=True``, the default) its target ``x + w_f`` lies outside the frame
  (beyond the outermost pixel centres): it leaves the view, so frame ``t+1`` holds nothing to compare.
  The reference code instead samples the clamped border there and keeps such pixels when the flows
  agree; ``occlude_outside=False`` reproduces that.

Bilinear sampling takes pixel centres at integer coordinates and clamps the four neighbours to the
frame (edge replication, like the reference's ``Resample2d``); it is exact for whole-pixel flows.
The reference used FlowNet2; here the flow comes from :mod:`dftoolkit.quality.flow` (OpenCV DIS by
default), so absolute values are comparable only between runs with the same backend and size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dftoolkit.quality.flow import estimate_flow
from dftoolkit.video import VideoReader

__all__ = ["backward_warp", "ewarp", "ewarp_pairs", "occlusion_mask", "pair_flows", "video_ewarp"]

_FB_RELATIVE, _FB_ABSOLUTE = 0.01, 0.5  # forward-backward check (Lai et al. 2018)
_MB_RELATIVE, _MB_ABSOLUTE = 0.01, 0.002  # motion-boundary check


def _check_flow(flow: Tensor, n: int, h: int, w: int, name: str = "flow") -> None:
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"{name} must be (N, 2, H, W) = {(n, 2, h, w)}, got {tuple(flow.shape)}")
    if not flow.is_floating_point() or not torch.isfinite(flow).all():
        raise ValueError(f"{name} must hold finite floats (pixels)")


def _targets(flow: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, 2, H, W)`` flow -> the ``(N, H, W)`` coordinates ``x + u`` and ``y + v`` it points to."""
    h, w = flow.shape[-2:]
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype)
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(h, 1)
    return xs + flow[:, 0], ys + flow[:, 1]


def _bilinear(image: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``(N, C, H, W)`` sampled bilinearly at pixel coordinates ``(N, H, W)`` x, y, clamped to the frame
    (which equals replicating the edge pixels outward); exact where x and y are whole numbers.

    ``kornia.geometry.transform.remap`` normalises x to ``g = 2 x / (size - 1) - 1`` and ``grid_sample``
    (``align_corners=True``) maps g back by ``(g + 1) (size - 1) / 2``; with ``size - 1`` a power of two
    both are exact for whole-number x, so the image is padded to such sizes (the padding only ever
    gets weight 0).
    """
    from kornia.geometry.transform import remap  # lazy: importing kornia adds ~0.2 s to the CLI start

    h, w = image.shape[-2:]
    pad_h, pad_w = ((1 << (n - 1).bit_length()) + 1 - n for n in (h, w))
    padded = F.pad(image, (0, pad_w, 0, pad_h))
    return remap(padded, x.clamp(0, w - 1), y.clamp(0, h - 1), align_corners=True)


def backward_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at ``p + flow(p)``: ``out[n, :, y, x] = image[n, :, y + flow_y, x + flow_x]``.

    With the forward flow from frame ``a`` to frame ``b`` (:func:`~dftoolkit.quality.flow.estimate_flow`),
    ``backward_warp(b, flow)`` is ``b`` brought onto ``a``'s pixel grid.

    Args:
        image: ``(N, C, H, W)`` floats (any range; e.g. RGB frames or a flow field).
        flow: ``(N, 2, H, W)`` displacements in pixels, channel 0 = x (right), 1 = y (down).

    Returns:
        ``(N, C, H, W)`` in the promoted dtype of both: bilinear, pixel centres at integers, neighbours
        outside the frame replaced by the nearest edge pixel; exact (no rounding) for whole-pixel flows.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (N, C, H, W), got {tuple(image.shape)}")
    n, _, h, w = image.shape
    _check_flow(flow, n, h, w)
    dtype = torch.promote_types(image.dtype, flow.dtype)
    return _bilinear(image.to(dtype), *_targets(flow.to(dtype)))


def _sq(flow: Tensor) -> Tensor:
    """``(N, 2, H, W)`` -> ``(N, 1, H, W)`` squared magnitude per pixel."""
    return flow.square().sum(1, keepdim=True)


def _occluded(forward: Tensor, back_at_target: Tensor, x: Tensor, y: Tensor, occlude_outside: bool) -> Tensor:
    """The occlusion tests on ``w_f``, ``w_b(x + w_f)`` and the targets ``x, y`` of :func:`_targets`."""
    magnitudes = _sq(back_at_target) + _sq(forward)
    occluded = _sq(back_at_target + forward) > _FB_RELATIVE * magnitudes + _FB_ABSOLUTE
    dx = torch.zeros_like(forward)
    dy = torch.zeros_like(forward)
    dx[..., :-1] = forward[..., :-1] - forward[..., 1:]
    dy[..., :-1, :] = forward[..., :-1, :] - forward[..., 1:, :]
    occluded |= _sq(dx) + _sq(dy) > _MB_RELATIVE * _sq(forward) + _MB_ABSOLUTE
    if occlude_outside:
        h, w = forward.shape[-2:]
        occluded |= ((x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)).unsqueeze(1)
    return occluded


def occlusion_mask(forward: Tensor, backward: Tensor, *, occlude_outside: bool = True) -> Tensor:
    """Pixels of frame ``t`` with no reliable match in frame ``t+1`` (module docstring: the two tests
    of Lai et al. and the border rule).

    Args:
        forward: ``(N, 2, H, W)`` flow ``w_f`` from frame ``t`` to ``t+1``, pixels (x, y).
        backward: ``(N, 2, H, W)`` flow ``w_b`` from frame ``t+1`` to ``t``.
        occlude_outside: also mark pixels whose target ``x + w_f`` lies outside the frame.

    Returns:
        ``(N, 1, H, W)`` bool, True = occluded (``M_t`` of E_warp is its negation).
    """
    if forward.dim() != 4:
        raise ValueError(f"forward flow must be (N, 2, H, W), got {tuple(forward.shape)}")
    n, _, h, w = forward.shape
    _check_flow(forward, n, h, w, "forward flow")
    _check_flow(backward, n, h, w, "backward flow")
    dtype = torch.promote_types(forward.dtype, backward.dtype)
    forward, backward = forward.to(dtype), backward.to(dtype)
    x, y = _targets(forward)
    return _occluded(forward, _bilinear(backward, x, y), x, y, occlude_outside)


def _check_video(video: Tensor, name: str = "video") -> None:
    if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[1] != 3 or len(video) < 2:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"{name} must be (T, 3, H, W) RGB frames with T >= 2, got {shape}")
    if not video.is_floating_point():
        raise ValueError(f"{name} must be floats in [0, 1], got dtype {video.dtype}")
    if not torch.isfinite(video).all() or video.min() < 0 or video.max() > 1:
        raise ValueError(f"{name} must lie in [0, 1], got [{video.min():.4g}, {video.max():.4g}]")


def pair_flows(frames: Tensor, flow: str = "dis", **options: Any) -> tuple[Tensor, Tensor]:
    """Forward and backward flows of the ``T - 1`` consecutive pairs of ``(T, 3, H, W)`` frames in [0, 1].

    Returns ``(forward, backward)``, each ``(T - 1, 2, H, W)`` float32: ``forward[t]`` from frame ``t``
    to ``t + 1``, ``backward[t]`` from ``t + 1`` to ``t`` (backend ``flow`` with ``options``, one batch).
    """
    _check_video(frames, "frames")
    both = estimate_flow(
        torch.cat([frames[:-1], frames[1:]]), torch.cat([frames[1:], frames[:-1]]), flow, **options
    )
    return both[: len(frames) - 1], both[len(frames) - 1 :]


def _pair_errors(video: Tensor, forward: Tensor, backward: Tensor, occlude_outside: bool) -> Tensor:
    """E_warp of the ``T - 1`` pairs of ``(T, 3, H, W)`` frames with validated ``(T - 1, 2, H, W)`` flows."""
    dtype = torch.promote_types(torch.promote_types(video.dtype, forward.dtype), backward.dtype)
    video, forward, backward = video.to(dtype), forward.to(dtype), backward.to(dtype)
    x, y = _targets(forward)
    sampled = _bilinear(torch.cat([video[1:], backward], 1), x, y)  # frame t+1 and w_b at x + w_f
    valid = ~_occluded(forward, sampled[:, 3:], x, y, occlude_outside)
    squared = (video[:-1] - sampled[:, :3]).square() * valid
    count = valid.sum((1, 2, 3)).to(dtype) * video.shape[1]
    return torch.where(count > 0, squared.sum((1, 2, 3)) / count.clamp(min=1), 0)


def ewarp_pairs(
    video: Tensor,
    reference: Tensor | None = None,
    flow: str = "dis",
    *,
    flows: tuple[Tensor, Tensor] | None = None,
    flow_options: Mapping[str, Any] | None = None,
    occlude_outside: bool = True,
    batch_size: int = 8,
) -> Tensor:
    """E_warp of each consecutive frame pair (module docstring).

    Args:
        video: ``(T, 3, H, W)`` RGB floats in [0, 1], T >= 2 (e.g. a fake video).
        reference: ``(T, 3, H, W)`` frames the flow is computed on (the original of a fake: the
            reference protocol); None computes the flow on ``video`` itself.
        flow: the flow backend (:data:`~dftoolkit.quality.flow.FLOW_BACKENDS`), with ``flow_options``.
        flows: precomputed ``(forward, backward)`` flows, each ``(T - 1, 2, H, W)`` pixels (as
            :func:`pair_flows` returns); then no flow is computed and ``reference`` must be None.
        occlude_outside: the border rule of :func:`occlusion_mask` (False: the reference code's).
        batch_size: pairs whose flows, masks and errors are computed at once (bounds memory).

    Returns:
        ``(T - 1,)`` tensor in the promoted dtype of ``video`` and the flows (float32 for float32
        frames): mean squared error per channel over non-occluded pixels, [0, 1] RGB units.
    """
    _check_video(video)
    if reference is not None:
        _check_video(reference, "reference")
        if reference.shape != video.shape:
            raise ValueError(
                f"reference {tuple(reference.shape)} must have the video's shape {tuple(video.shape)}"
            )
        if flows is not None:
            raise ValueError("give either reference (flow computed on it) or flows, not both")
    if flows is not None:
        for name, f in zip(("forward", "backward"), flows, strict=True):
            _check_flow(f, len(video) - 1, *video.shape[2:], name=f"{name} flow")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = video if reference is None else reference
    errors = []
    for start in range(0, len(video) - 1, batch_size):
        stop = min(start + batch_size, len(video) - 1)  # pairs start..stop-1 use frames start..stop
        if flows is None:
            forward, backward = pair_flows(source[start : stop + 1], flow, **(flow_options or {}))
        else:
            forward, backward = flows[0][start:stop], flows[1][start:stop]
        forward, backward = forward.to(video.device), backward.to(video.device)
        errors.append(_pair_errors(video[start : stop + 1], forward, backward, occlude_outside))
    return torch.cat(errors)


def ewarp(
    video: Tensor,
    reference: Tensor | None = None,
    flow: str = "dis",
    **options: Any,
) -> float:
    """E_warp of a video: the mean of :func:`ewarp_pairs` over its ``T - 1`` pairs (same arguments).

    ``video`` is ``(T, 3, H, W)`` RGB floats in [0, 1]; the flow comes from ``reference`` (the
    original video) when given, else from ``video``. Mean squared error per channel of [0, 1] RGB
    over non-occluded pixels; lower is smoother; 0 for a static video (DIS gives 0 flow on equal frames).
    """
    return float(ewarp_pairs(video, reference, flow, **options).double().mean())


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frame.shape[:2] == size:
        return frame
    shrink = size[0] * size[1] < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _indices(frames: int | Sequence[int] | None, count: int, path: Path) -> np.ndarray:
    if frames is None:
        return np.arange(count)
    if isinstance(frames, int):
        return np.arange(min(frames, count))
    indices = np.asarray(frames, np.int64).reshape(-1)
    if len(indices) and (np.any(np.diff(indices) <= 0) or indices[0] < 0 or indices[-1] >= count):
        raise ValueError(f"frames must be increasing indices in [0, {count}) of {path}, got {frames}")
    return indices


def _windows(
    streams: Sequence[Iterator[np.ndarray]], length: int, device: str | torch.device
) -> Iterator[list[Tensor]]:
    """Consecutive windows of ``length`` frames (one per stream) overlapping by one frame, as tensors."""
    window: list[tuple[np.ndarray, ...]] = []
    for frames in zip(*streams, strict=True):
        window.append(frames)
        if len(window) == length:
            yield [_tensor(list(column), device) for column in zip(*window, strict=True)]
            window = window[-1:]
    if len(window) > 1:
        yield [_tensor(list(column), device) for column in zip(*window, strict=True)]


def _tensor(frames: list[np.ndarray], device: str | torch.device) -> Tensor:
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().div_(255)


def video_ewarp(
    path: str | os.PathLike[str],
    reference_path: str | os.PathLike[str] | None = None,
    flow: str = "dis",
    size: int | tuple[int, int] | None = None,
    frames: int | Sequence[int] | None = None,
    *,
    flow_options: Mapping[str, Any] | None = None,
    occlude_outside: bool = True,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> float:
    """E_warp of the video file ``path`` (:func:`ewarp`), decoded frame by frame with :class:`VideoReader`.

    Args:
        path: the video to score (e.g. a fake).
        reference_path: its original: the flow is computed on it (frame ``i`` pairs with frame ``i``);
            None computes the flow on ``path`` itself.
        flow: the flow backend, with ``flow_options``.
        size: frames resized to ``(height, width)`` (an int: square) before anything else (OpenCV area
            interpolation when shrinking, bilinear when enlarging), e.g. 256; None keeps the size.
        frames: the first ``frames`` frames (an int), or increasing frame indices whose consecutive
            entries form the pairs; None: every frame.
        occlude_outside, batch_size: as in :func:`ewarp_pairs` (``batch_size`` pairs are held in memory).
        device: where the frames, warps and masks are computed.

    Raises:
        ValueError: the two files differ in frame count or (without ``size``) frame size, naming
            both; fewer than two frames.
    """
    readers = [VideoReader(path)] + ([VideoReader(reference_path)] if reference_path is not None else [])
    if len(readers) == 2:
        video, ref = readers
        if video.num_frames != ref.num_frames:
            raise ValueError(
                f"{video.path} has {video.num_frames} frames but its reference {ref.path} has "
                f"{ref.num_frames}: E_warp pairs frame i of both"
            )
        if size is None and video.shape != ref.shape:
            raise ValueError(
                f"{video.path} is {video.shape[1]}x{video.shape[0]} but its reference {ref.path} is "
                f"{ref.shape[1]}x{ref.shape[0]}: pass size= to resize both"
            )
    hw = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    indices = _indices(frames, readers[0].num_frames, readers[0].path)
    if len(indices) < 2:
        raise ValueError(f"E_warp needs at least 2 frames of {readers[0].path}, got {len(indices)}")
    streams = [(_resize(f, hw) for _, f in r.iter_frames(indices)) for r in readers]
    errors = []
    for window in _windows(streams, batch_size + 1, device):
        errors.append(
            ewarp_pairs(
                window[0],
                window[1] if len(window) == 2 else None,
                flow,
                flow_options=flow_options,
                occlude_outside=occlude_outside,
                batch_size=batch_size,
            )
        )
    return float(torch.cat(errors).double().mean())
