"""warp_crops (kornia) against cv2.warpAffine and an exact bilinear reference, on real face frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from dftoolkit.faces.geometry import aligned_matrix, box_matrix, ffhq_matrix, landmark_boxes
from dftoolkit.faces.tensor_warp import warp_crops
from dftoolkit.video import VideoReader

FRAMES = np.arange(0, 120, 17)


@pytest.fixture(scope="module")
def faces(sample, track) -> tuple[np.ndarray, np.ndarray]:
    """Real frames of carphone (176x144) as float32 ``(N, H, W, 3)`` in [0, 1], and their landmarks."""
    lm = track("carphone_pristine").landmarks[FRAMES]
    assert np.isfinite(lm).all()
    return VideoReader(sample("carphone_pristine")).read(FRAMES).astype(np.float32) / 255, lm


def _matrices(lm: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Crops of three kinds: an enlarged box (upscaling), FFHQ (rotated, leaves the frame), ArcFace."""
    return {
        "box": (box_matrix(landmark_boxes(lm), 256), 256),
        "ffhq": (ffhq_matrix(lm, 256), 256),
        "aligned": (aligned_matrix(lm, 112), 112),
    }


def _tensor(frames: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).to(dtype).contiguous()


def _exact(frames: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """Float64 bilinear sampling at the inverse-mapped crop pixels, zero outside the frame (SciPy)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for frame, m in zip(frames.astype(np.float64), matrices, strict=True):
        inv = cv2.invertAffineTransform(m)
        sx, sy = (inv[i, 0] * xs + inv[i, 1] * ys + inv[i, 2] for i in range(2))
        channels = [map_coordinates(frame[..., c], [sy, sx], order=1, mode="grid-constant") for c in range(3)]
        out.append(np.stack(channels, -1))
    return np.stack(out)


@pytest.mark.parametrize("kind", ["box", "ffhq", "aligned"])
def test_matches_cv2_warp_affine_on_real_faces(faces, kind):
    frames, lm = faces
    matrices, size = _matrices(lm)[kind]
    got = warp_crops(_tensor(frames), matrices, size)
    assert got.shape == (len(FRAMES), 3, size, size) and got.dtype == torch.float32
    got = got.permute(0, 2, 3, 1).numpy()
    want = np.stack(
        [
            cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for f, m in zip(frames, matrices, strict=True)
        ]
    )
    # OpenCV rounds the sampling positions to 1/32 px: up to ~3/255 on sharp edges, tiny on average
    diff = np.abs(got - want)
    assert diff.max() < 0.02 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    np.testing.assert_array_equal((got == 0).all(-1), (want == 0).all(-1))  # the same black outside
    if kind == "ffhq":
        assert (want == 0).all(-1).any()  # this crop does leave the frame


@pytest.mark.parametrize("kind", ["box", "ffhq", "aligned"])
def test_is_exact_bilinear_in_float64(faces, kind):
    frames, lm = faces
    matrices, size = _matrices(lm)[kind]
    want = _exact(frames, matrices, size)
    got64 = warp_crops(_tensor(frames, torch.float64), matrices, size).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got64, want, rtol=0, atol=1e-10)
    got32 = warp_crops(_tensor(frames), torch.from_numpy(matrices), size).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got32, want, rtol=0, atol=5e-5)


def test_nan_shared_and_half_matrices(faces):
    frames, lm = faces
    matrices, size = _matrices(lm)["box"]
    x = _tensor(frames)
    whole = warp_crops(x, matrices, size)
    missing = matrices.copy()
    missing[2] = np.nan  # no face in that frame: a black crop, the others unchanged
    crops = warp_crops(x, missing, size)
    assert (crops[2] == 0).all()
    torch.testing.assert_close(crops[[0, 1, 3]], whole[[0, 1, 3]], rtol=0, atol=0)
    torch.testing.assert_close(warp_crops(x, matrices[0], size)[0], whole[0], rtol=0, atol=0)
    half = warp_crops(x.half(), matrices, size)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), whole, rtol=0, atol=2e-3)


def test_bad_inputs_raise():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) float tensor"):
        warp_crops(x[0], np.eye(2, 3), 8)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) float tensor"):
        warp_crops((x * 255).to(torch.uint8), np.eye(2, 3), 8)
    with pytest.raises(ValueError, match=r"matrices must be \(N, 2, 3\)"):
        warp_crops(x, np.zeros((3, 2, 3)), 8)
    with pytest.raises(ValueError, match="size must be >= 1"):
        warp_crops(x, np.eye(2, 3), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(faces):
    frames, lm = faces
    matrices, size = _matrices(lm)["ffhq"]
    cpu = warp_crops(_tensor(frames), matrices, size)
    gpu = warp_crops(_tensor(frames).cuda(), matrices, size)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
