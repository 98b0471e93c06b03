"""Face crops of batched frame tensors on their device (GPU), with kornia.

The tensor counterpart of :func:`dftoolkit.faces.geometry.warp` for frames already on an accelerator:
the same ``(N, 2, 3)`` matrices (OpenCV's ``warpAffine`` convention, source pixel -> crop pixel, pixel
centres at integers), bilinear sampling, black outside the frame, and a black crop for a NaN matrix
(no face). It equals ``cv2.warpAffine(..., flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)``
up to OpenCV's 1/32-pixel quantisation of the sampling positions. Like it, sampling does not low-pass:
shrinking a face by more than about 2x aliases.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["warp_crops"]


def warp_crops(frames: Tensor, matrices: np.ndarray | Tensor, size: int) -> Tensor:
    """Warp each frame by its matrix into a ``size`` x ``size`` crop, on the frames' device.

    Args:
        frames: ``(N, C, H, W)`` float (e.g. RGB in [0, 1]; any range); float16/bfloat16 are warped
            in float32 (a half-precision grid is off by a sizeable fraction of a pixel).
        matrices: ``(N, 2, 3)`` source -> crop pixel affines (``dst = M @ [x, y, 1]``), or one
            ``(2, 3)`` for all frames; numpy or tensor, any float dtype.
            A row with a non-finite entry gives an all-zero crop.
        size: crop side in pixels, >= 1.

    Returns:
        ``(N, C, size, size)`` in the frames' dtype and device.

    Raises:
        ValueError: bad shapes, a non-float ``frames`` or ``size < 1``.
    """
    from kornia.geometry.transform import warp_affine  # lazy: importing kornia adds ~0.2 s to the CLI start

    if not isinstance(frames, Tensor) or frames.ndim != 4 or not frames.is_floating_point():
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must be an (N, C, H, W) float tensor, got {shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n, dtype = len(frames), frames.dtype
    work = frames if dtype in (torch.float32, torch.float64) else frames.float()
    m = torch.as_tensor(matrices).to(device=work.device, dtype=work.dtype)
    if m.shape == (2, 3):
        m = m.expand(n, 2, 3)
    if m.shape != (n, 2, 3):
        raise ValueError(f"matrices must be (N, 2, 3) = {(n, 2, 3)} or (2, 3), got {tuple(m.shape)}")
    finite = torch.isfinite(m).all((1, 2))
    m = torch.where(finite[:, None, None], m, torch.eye(2, 3, dtype=m.dtype, device=m.device))
    crops = warp_affine(work, m, (size, size), mode="bilinear", padding_mode="zeros", align_corners=True)
    return crops.masked_fill_(~finite[:, None, None, None], 0).to(dtype)
