"""Dense optical flow between frame pairs, from a registry of backends (for E_warp and other metrics).

Convention (every backend): ``flow = estimate_flow(a, b)`` is the FORWARD flow from ``a`` to ``b`` in
pixels, ``flow[:, 0]`` horizontal (x, to the right) and ``flow[:, 1]`` vertical (y, down), with pixel
centres at integer coordinates, such that, writing ``(u, v) = flow[n, :, y, x]``,
``a[n, :, y, x] ~ b[n, :, y + v, x + u]`` (bilinear between pixels).
:func:`dftoolkit.quality.ewarp.backward_warp` with this flow brings ``b`` onto ``a``'s grid.

Backends (:data:`FLOW_BACKENDS`, pick one by name):

- ``dis`` (default): OpenCV's Dense Inverse Search (Kroeger et al. 2016), no weights, on 8-bit grey
  frames (BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded); ``preset="medium"`` by default
  (``"ultrafast"``, ``"fast"``, ``"medium"``: OpenCV's ``DISOpticalFlow_PRESET_*``).
- ``farneback``: OpenCV's Farneback polynomial-expansion flow, no weights, on the same grey frames.
- ``raft``: RAFT (Teed & Deng 2020) from torchvision, ``variant="small"`` or ``"large"``, with
  torchvision's pretrained weights read from disk only (:func:`raft_weights_path`; never downloaded).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dftoolkit.checkpoints import fit_state_dict, load_weights
from dftoolkit.registry import Registry

__all__ = [
    "DIS_PRESETS",
    "FLOW_BACKENDS",
    "FlowBackend",
    "describe_flow_backends",
    "estimate_flow",
    "get_flow_backend",
    "list_flow_backends",
    "load_raft",
    "raft_weights_path",
]

FlowBackend = Callable[..., Tensor]
"""``backend(a, b, **options)``: validated ``(N, 3, H, W)`` floats in [0, 1] -> ``(N, 2, H, W)`` float32."""

FLOW_BACKENDS: Registry[FlowBackend] = Registry("optical flow backend")

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
"""Preset name -> OpenCV's ``DISOpticalFlow`` preset (faster ones search coarser and iterate less)."""

_LUMA = (0.299, 0.587, 0.114)
_RAFT_MULTIPLE = 8  # RAFT's feature maps are 1/8 of the input: H and W are padded up to multiples of 8
_RAFT_MIN_SIZE = 128  # and its 4-level correlation pyramid needs feature maps of at least 16 x 16


def estimate_flow(a: Tensor, b: Tensor, backend: str = "dis", **options: Any) -> Tensor:
    """Forward optical flow from ``a`` to ``b`` (module docstring: ``a(p) ~ b(p + flow(p))``).

    Args:
        a: ``(N, 3, H, W)`` (or one ``(3, H, W)`` frame) RGB floats in [0, 1]: the first frame of each pair.
        b: the second frames, same shape as ``a``.
        backend: a name in :data:`FLOW_BACKENDS` (``"dis"``, ``"farneback"``, ``"raft"``).
        **options: the backend's options (e.g. ``preset="fast"`` for ``dis``; ``variant``, ``weights``,
            ``device`` for ``raft``); an unknown option is a TypeError.

    Returns:
        ``(N, 2, H, W)`` (or ``(2, H, W)``) float32 on ``a``'s device, in pixels, channel 0 = x, 1 = y.

    Raises:
        KeyError: unknown backend (the message lists the known ones).
        ValueError: shapes that differ or are not RGB frames, or values outside [0, 1].
    """
    impl = FLOW_BACKENDS.get(backend)
    if a.shape != b.shape:
        raise ValueError(f"frame pairs must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    single = a.dim() == 3
    if single:
        a, b = a[None], b[None]
    if a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) or (3, H, W) RGB frames, got {tuple(a.shape)}")
    for name, x in (("a", a), ("b", b)):
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floats in [0, 1], got dtype {x.dtype}")
        if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ValueError(f"{name} must lie in [0, 1], got [{x.min():.4g}, {x.max():.4g}]")
    if not len(a):
        return a.new_zeros(0, 2, *a.shape[2:], dtype=torch.float32)
    flow = impl(a, b, **options).to(a.device, torch.float32)
    return flow[0] if single else flow


def list_flow_backends() -> list[str]:
    """The registered optical-flow backend names, sorted."""
    return FLOW_BACKENDS.names()


def describe_flow_backends() -> dict[str, str]:
    """Optical-flow backend name -> one-line description."""
    return FLOW_BACKENDS.describe()


def get_flow_backend(name: str, **options: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """``flow(a, b)``: :func:`estimate_flow` with the backend registered as ``name`` and ``options``."""
    FLOW_BACKENDS.get(name)
    return partial(estimate_flow, backend=name, **options)


def _grey_u8(frames: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, H, W)`` uint8 BT.601 luma."""
    luma = torch.einsum("nchw,c->nhw", frames.detach().float().cpu(), torch.tensor(_LUMA))
    return (luma * 255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def _pairwise(
    a: Tensor, b: Tensor, make: Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]
) -> Tensor:
    """Run an OpenCV flow on each pair; ``(N, 2, H, W)`` float32.

    ``make()`` returns a ``one_pair(grey_a, grey_b) -> (H, W, 2)`` function with its own state. The pairs
    are shared among ``cv2.getNumThreads()`` threads (OpenCV releases the GIL; each thread makes its
    own ``one_pair``): on 2 cores, DIS at 256x256 runs about 1.4x faster than with OpenCV's own
    threads alone. Set ``cv2.setNumThreads(1)`` to keep it on one core (the report's workers do).
    """
    pairs = list(zip(_grey_u8(a), _grey_u8(b), strict=True))
    threads = max(1, min(cv2.getNumThreads(), len(pairs)))

    def run(chunk: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        one_pair = make()
        return [one_pair(ga, gb) for ga, gb in chunk]

    if threads == 1:
        flows = run(pairs)
    else:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(run, [pairs[k::threads] for k in range(threads)]))
        flows = [None] * len(pairs)
        for k, part in enumerate(parts):
            flows[k::threads] = part
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()


@FLOW_BACKENDS.register("dis")
def dis_flow(a: Tensor, b: Tensor, *, preset: str = "medium") -> Tensor:
    """OpenCV DIS optical flow on grey uint8 frames (no weights); ``preset`` in :data:`DIS_PRESETS`."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(DIS_PRESETS)}")

    def make() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        return lambda ga, gb: dis.calc(ga, gb, None)

    return _pairwise(a, b, make)


@FLOW_BACKENDS.register("farneback")
def farneback_flow(
    a: Tensor,
    b: Tensor,
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
) -> Tensor:
    """OpenCV Farneback optical flow on grey uint8 frames (no weights; OpenCV's tutorial settings)."""
    return _pairwise(
        a,
        b,
        lambda: (
            lambda ga, gb: cv2.calcOpticalFlowFarneback(
                ga, gb, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0
            )
        ),
    )


def _raft_weights_enum(variant: str) -> Any:
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    enums = {"small": Raft_Small_Weights, "large": Raft_Large_Weights}
    if variant not in enums:
        raise ValueError(f"unknown RAFT variant {variant!r}; choose from {sorted(enums)}")
    return enums[variant].DEFAULT


def raft_weights_path(variant: str = "small") -> Path:
    """Where torchvision caches the default RAFT weights: ``$TORCH_HOME/hub/checkpoints/<file>``.

    ``<file>`` is torchvision's own name (``raft_small_C_T_V2-01064c6d.pth`` for ``"small"``,
    ``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` for ``"large"`` with torchvision 0.29); the folder is
    ``torch.hub.get_dir()/checkpoints``, read when called (so ``TORCH_HOME`` set later counts).
    """
    name = Path(_raft_weights_enum(variant).url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_raft(
    variant: str = "small",
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """torchvision's ``raft_small``/``raft_large`` with weights from disk, in eval mode on ``device``.

    Args:
        variant: ``"small"`` or ``"large"``.
        weights: a state dict file in torchvision's format (``torch.save(model.state_dict())``);
            default :func:`raft_weights_path` (torchvision's download cache). Nothing is downloaded.
        device: where the model runs.

    Raises:
        FileNotFoundError: no weights file (the message names the file, its folder and its URL).
        CheckpointError: a pickle that may run code (refused unread), or keys/shapes of another model.
    """
    from torchvision.models.optical_flow import raft_large, raft_small

    enum = _raft_weights_enum(variant)
    path = Path(weights) if weights is not None else raft_weights_path(variant)
    hint = (
        f"expected {path.name} in {path.parent}: download {enum.url} into that folder "
        "(torchvision's cache, $TORCH_HOME/hub/checkpoints) or pass weights=PATH; it is never downloaded here"
    )
    state = load_weights(path, what=f"RAFT-{variant} weights", hint=hint)
    model = (raft_small if variant == "small" else raft_large)(weights=None, progress=False)
    fit_state_dict(model, state, where=f"{path}: torchvision raft_{variant}", hint=hint)
    return model.to(device).eval()


def _raft_model(variant: str, weights: str | None, device: str) -> torch.nn.Module:
    """:func:`load_raft`, memoised on (variant, file, its size and mtime, device)."""
    path = Path(weights) if weights is not None else raft_weights_path(variant)
    stat = path.stat() if path.is_file() else None
    key = (variant, str(path), stat and (stat.st_size, stat.st_mtime_ns), device)
    if key not in _RAFT_MODELS:
        model = load_raft(variant, weights, device)
        _RAFT_MODELS.clear()  # one model held at a time
        _RAFT_MODELS[key] = model
    return _RAFT_MODELS[key]


_RAFT_MODELS: dict[tuple, torch.nn.Module] = {}


@FLOW_BACKENDS.register("raft")
def raft_flow(
    a: Tensor,
    b: Tensor,
    *,
    variant: str = "small",
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    num_flow_updates: int = 12,
    batch_size: int = 8,
) -> Tensor:
    """torchvision RAFT (``variant`` small/large) with weights from disk (:func:`load_raft`).

    Frames are mapped to [-1, 1] (torchvision's RAFT preset), padded at the right and bottom by edge
    replication up to multiples of 8 and at least 128 x 128 (RAFT's minimum), and the flow is
    cropped back; ``num_flow_updates`` refinement iterations; pairs run ``batch_size`` at a time on
    ``device`` (default ``a``'s device). The loaded model is kept for later calls with the same
    variant, file and device (the file is re-read if it changes).
    """
    device = torch.device(device) if device is not None else a.device
    model = _raft_model(variant, None if weights is None else str(weights), str(device))
    h, w = a.shape[-2:]
    padded = [max(-(-n // _RAFT_MULTIPLE) * _RAFT_MULTIPLE, _RAFT_MIN_SIZE) for n in (h, w)]
    pad = (0, padded[1] - w, 0, padded[0] - h)
    out = []
    with torch.inference_mode():
        for i in range(0, len(a), batch_size):
            x, y = (F.pad(t[i : i + batch_size].to(device).float() * 2 - 1, pad, "replicate") for t in (a, b))
            out.append(model(x, y, num_flow_updates=num_flow_updates)[-1][..., :h, :w])
    return torch.cat(out)
