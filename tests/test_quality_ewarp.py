"""E_warp (Lai et al. 2018) and the optical-flow backends, on real frames of the sample videos."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from dftoolkit.checkpoints import CheckpointError
from dftoolkit.quality.ewarp import (
    backward_warp,
    ewarp,
    ewarp_pairs,
    occlusion_mask,
    pair_flows,
    video_ewarp,
)
from dftoolkit.quality.flow import (
    describe_flow_backends,
    estimate_flow,
    get_flow_backend,
    list_flow_backends,
    load_raft,
    raft_weights_path,
)
from dftoolkit.video import VideoReader, VideoWriter


def _tensor(frames: np.ndarray, size: int | None = None) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float32 in [0, 1], optionally area-resized to size²."""
    if size is not None:
        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def carphone(sample) -> np.ndarray:
    """The real talking-head clip, (120, 144, 176, 3) uint8."""
    return VideoReader(sample("carphone_pristine")).read(np.arange(120))


def _translated(frame: np.ndarray, dx: int, dy: int, count: int = 5, size: int = 96) -> np.ndarray:
    """Crop windows of one real frame moving by (dx, dy) pixels per frame: the content moves by (-dx, -dy)."""
    return np.stack(
        [frame[8 + k * dy : 8 + k * dy + size, 8 + k * dx : 8 + k * dx + size] for k in range(count)]
    )


# ---------------------------------------------------------------- plain NumPy reference of the formula


def _np_sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C, H, W) image sampled bilinearly at pixel coordinates (x, y), edge pixels replicated outside."""
    return np.stack([map_coordinates(c, [y, x], order=1, mode="nearest") for c in image])


def _np_ewarp_pairs(video: np.ndarray, fw: np.ndarray, bw: np.ndarray, occlude_outside: bool) -> tuple:
    """Loop-based E_warp of (T, 3, H, W) float64 frames with (T-1, 2, H, W) flows, and the occlusion masks."""
    t_count, _, h, w = video.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    errors, masks = [], []
    for t in range(t_count - 1):
        u, v = fw[t]
        tx, ty = xs + u, ys + v
        bu, bv = _np_sample(bw[t], tx, ty)  # w_b(x + w_f)
        warped = _np_sample(video[t + 1], tx, ty)
        occluded = np.zeros((h, w), bool)
        for i in range(h):
            for j in range(w):
                fb = (bu[i, j] + u[i, j]) ** 2 + (bv[i, j] + v[i, j]) ** 2
                mags = bu[i, j] ** 2 + bv[i, j] ** 2 + u[i, j] ** 2 + v[i, j] ** 2
                grad = 0.0
                for f in (u, v):
                    gx = f[i, j] - f[i, j + 1] if j + 1 < w else 0.0
                    gy = f[i, j] - f[i + 1, j] if i + 1 < h else 0.0
                    grad += gx**2 + gy**2
                outside = not (0 <= tx[i, j] <= w - 1 and 0 <= ty[i, j] <= h - 1)
                occluded[i, j] = (
                    fb > 0.01 * mags + 0.5
                    or grad > 0.01 * (u[i, j] ** 2 + v[i, j] ** 2) + 0.002
                    or (occlude_outside and outside)
                )
        keep = ~occluded
        total = sum(((video[t, c] - warped[c]) ** 2 * keep).sum() for c in range(3))
        errors.append(total / (3 * keep.sum()) if keep.any() else 0.0)
        masks.append(occluded)
    return np.array(errors), np.stack(masks)[:, None]


@pytest.mark.parametrize("occlude_outside", [True, False], ids=["border-occluded", "reference-border"])
def test_matches_numpy_reference_on_real_frames(carphone, occlude_outside):
    video = _tensor(carphone[60:80:4], 64)  # 5 frames 4 apart: the head turns
    fw, bw = pair_flows(video)  # DIS, computed once and given to both implementations
    assert fw.abs().max() > 2
    want, want_masks = _np_ewarp_pairs(
        video.double().numpy(), fw.double().numpy(), bw.double().numpy(), occlude_outside
    )
    got64 = ewarp_pairs(video.double(), flows=(fw.double(), bw.double()), occlude_outside=occlude_outside)
    masks = occlusion_mask(fw.double(), bw.double(), occlude_outside=occlude_outside)
    assert np.array_equal(masks.numpy(), want_masks)
    assert 0.1 < want_masks.mean() < 0.5  # the mask does something on real motion
    np.testing.assert_allclose(got64.numpy(), want, rtol=1e-9, atol=1e-12)
    got32 = ewarp_pairs(video, flows=(fw, bw), occlude_outside=occlude_outside)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), want, rtol=0, atol=1e-5)
    assert ewarp(video, flows=(fw, bw), occlude_outside=occlude_outside) == pytest.approx(
        want.mean(), abs=1e-5
    )


@pytest.mark.parametrize("size", [(64, 64), (60, 52)], ids=["64x64", "60x52"])
def test_backward_warp_agrees_with_scipy_and_is_exact_for_whole_pixels(carphone, size):
    h, w = size
    frames = _tensor(carphone[:2], 64)[..., :h, :w].contiguous()
    gen = torch.Generator().manual_seed(0)
    flow = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64) * 4  # reaches outside the frame
    ys, xs = np.mgrid[0:h, 0:w]
    want = _np_sample(frames[1].double().numpy(), xs + flow[0, 0].numpy(), ys + flow[0, 1].numpy())
    np.testing.assert_allclose(backward_warp(frames[1:].double(), flow)[0].numpy(), want, atol=1e-12)
    whole = torch.randint(-70, 70, (1, 2, h, w), generator=gen).float()  # many targets off the frame
    rows = np.clip(ys + whole[0, 1].long().numpy(), 0, h - 1)
    cols = np.clip(xs + whole[0, 0].long().numpy(), 0, w - 1)
    assert torch.equal(backward_warp(frames[1:], whole)[0], frames[1][:, rows, cols])  # bit-exact


@pytest.mark.parametrize("backend", [name for name in list_flow_backends() if name != "raft"])  # no weights
def test_flow_convention_is_forward_in_pixels(carphone, backend):
    """Windows moving right by 2 px and down by 1: the content moves by (-2, -1), and b(p + flow) ~ a(p)."""
    clip = _tensor(_translated(carphone[0], dx=2, dy=1, count=2))
    flow = estimate_flow(clip[:1], clip[1:], backend)
    assert flow.shape == (1, 2, 96, 96) and flow.dtype == torch.float32
    inner = flow[0, :, 16:-16, 16:-16]
    assert inner[0].median().item() == pytest.approx(-2, abs=0.1)
    assert inner[1].median().item() == pytest.approx(-1, abs=0.1)
    assert estimate_flow(clip[0], clip[1], backend).shape == (2, 96, 96)  # one unbatched pair
    aligned = backward_warp(clip[1:], flow)[..., 16:-16, 16:-16]
    moved = (clip[1:] - clip[:1])[..., 16:-16, 16:-16].square().mean()
    assert (aligned - clip[:1, :, 16:-16, 16:-16]).square().mean() < moved / 20


def test_static_video_is_exactly_zero(carphone):
    static = _tensor(carphone[3:4], 128).repeat(6, 1, 1, 1)
    assert ewarp(static) == 0.0
    assert (ewarp_pairs(static, flow="farneback") < 1e-6).all()  # Farneback: tiny flow on equal frames


def test_whole_pixel_translation_is_near_zero(carphone):
    moving = _tensor(carphone[:8], 96)
    natural = ewarp(moving)
    for dx, dy in ((2, 0), (1, 1), (0, 3)):
        clip = _tensor(_translated(carphone[0], dx, dy))
        forward, backward = pair_flows(clip)
        border = occlusion_mask(forward, backward).float().mean((1, 2, 3))
        assert (border > 0.015).all()  # the uncovered border is masked out
        value = ewarp(clip, flows=(forward, backward))
        assert value < 1e-4 and value < natural / 5, (dx, dy, value, natural)  # DIS: sub-pixel errors
    whole = torch.zeros(4, 2, 96, 96)
    whole[:, 0] = -2
    clip = _tensor(_translated(carphone[0], 2, 0))
    assert ewarp(clip, flows=(whole, -whole)) == 0.0  # exact flow: exactly 0


def test_brightness_flicker_is_clearly_larger(carphone):
    smooth = _tensor(carphone[:12], 128)
    gains = torch.tensor([0.8, 1.2] * (len(smooth) // 2)).view(-1, 1, 1, 1)
    flicker = (smooth * gains).clamp(0, 1)
    base = ewarp(smooth)
    assert 0 < base < 1e-3
    assert ewarp(flicker, smooth) > 20 * base  # flow of the original (the reference protocol)
    assert ewarp(flicker) > 20 * base  # flow of the flickering video itself


def test_flow_from_reference_or_from_the_video(carphone):
    """A frozen "fake" is perfectly consistent by itself (0) but not with the motion of its original."""
    original = _tensor(carphone[:8], 96)
    frozen = original[:1].repeat(8, 1, 1, 1)
    assert ewarp(frozen) == 0.0
    with_reference = ewarp(frozen, original)
    assert with_reference > 1e-4
    assert with_reference == pytest.approx(ewarp(frozen, flows=pair_flows(original)), rel=1e-6)
    assert ewarp(original, original) == ewarp(original)


def test_chunked_pairs_equal_one_batch(carphone):
    video = _tensor(carphone[:9], 64)
    assert torch.allclose(ewarp_pairs(video, batch_size=3), ewarp_pairs(video, batch_size=32), atol=1e-7)


def test_bad_inputs_are_refused(carphone):
    video = _tensor(carphone[:3], 32)
    fw, bw = pair_flows(video)
    with pytest.raises(ValueError, match="T >= 2"):
        ewarp(video[:1])
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        ewarp(video[:, :1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ewarp(video * 255)
    with pytest.raises(ValueError, match="floats"):
        ewarp((video * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="reference"):
        ewarp(video, video[:, :, :16])
    with pytest.raises(ValueError, match="not both"):
        ewarp(video, video, flows=(fw, bw))
    with pytest.raises(ValueError, match="backward flow"):
        ewarp(video, flows=(fw, bw[:1]))
    with pytest.raises(ValueError, match="finite"):
        occlusion_mask(fw, bw * float("nan"))
    with pytest.raises(KeyError, match="dis, farneback, raft"):
        ewarp(video, flow="flownet2")
    with pytest.raises(TypeError):
        estimate_flow(video[:1], video[1:2], "dis", levels=3)
    with pytest.raises(ValueError, match="preset"):
        estimate_flow(video[:1], video[1:2], "dis", preset="slow")
    with pytest.raises(ValueError, match="one shape"):
        estimate_flow(video[:1], video[1:3])
    with pytest.raises(ValueError, match=r"b must lie in \[0, 1\]"):
        estimate_flow(video[:1], video[1:2] * 2)


def test_video_ewarp_reads_the_files_like_the_tensor_api(sample, tmp_path):
    fake, original = sample("carphone_distorted"), sample("carphone_pristine")
    indices = np.arange(7)
    want = ewarp(
        _tensor(VideoReader(fake).read(indices), 64), _tensor(VideoReader(original).read(indices), 64)
    )
    got = video_ewarp(fake, original, size=64, frames=7, batch_size=2)  # 3 windows of pairs
    assert got == pytest.approx(want, rel=1e-6)
    assert video_ewarp(fake, size=64, frames=list(indices)) != pytest.approx(got, rel=1e-3)
    short = tmp_path / "short.mp4"
    with VideoWriter(short, fps=25, crf=20) as writer:
        writer.write_many(VideoReader(original).read(np.arange(10)))
    with pytest.raises(ValueError, match="10 frames") as err:
        video_ewarp(short, original, size=64)
    assert str(short) in str(err.value) and str(original) in str(err.value)
    with pytest.raises(ValueError, match="increasing"):
        video_ewarp(original, frames=[3, 1, 2])


def test_video_ewarp_refuses_different_frame_sizes(sample, tmp_path):
    original = sample("carphone_pristine")
    frames = VideoReader(original).read(np.arange(120))
    smaller = tmp_path / "smaller.mp4"
    with VideoWriter(smaller, fps=25, crf=20) as writer:
        writer.write_many(np.stack([cv2.resize(f, (88, 72)) for f in frames]))
    with pytest.raises(ValueError, match="size=") as err:
        video_ewarp(smaller, original)
    assert str(smaller) in str(err.value) and str(original) in str(err.value)
    assert video_ewarp(smaller, original, size=48, frames=4) > 0


# ---------------------------------------------------------------- RAFT: weights from disk only


class _Exploit:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def test_raft_weights_missing_names_the_file_and_folder(torch_home, carphone):
    from torchvision.models.optical_flow import Raft_Small_Weights

    path = raft_weights_path("small")
    assert path == torch_home / "raft_small_C_T_V2-01064c6d.pth"
    assert path.name == Raft_Small_Weights.DEFAULT.url.rsplit("/", 1)[1]
    clip = _tensor(carphone[:2], 32)
    with pytest.raises(FileNotFoundError) as err:
        estimate_flow(clip[:1], clip[1:], "raft")
    assert "raft_small_C_T_V2-01064c6d.pth" in str(err.value) and str(torch_home) in str(err.value)
    assert "raft_large_C_T_SKHT_V2-ff5fadd5.pth" in str(raft_weights_path("large"))
    with pytest.raises(ValueError, match="variant"):
        raft_weights_path("tiny")


def test_raft_loads_torchvision_format_weights_from_torch_home(torch_home, carphone):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    state = raft_small(weights=None).state_dict()  # random weights: shapes only, never accuracy
    torch.save(state, raft_weights_path("small"))
    model = load_raft("small")
    key = "feature_encoder.convnormrelu.0.weight"
    assert torch.equal(model.state_dict()[key], state[key])
    clip = _tensor(carphone[:3], 60)[..., :52]  # 60x52: padded to 128x128 inside
    flow = estimate_flow(clip[:2], clip[1:], "raft", num_flow_updates=2)
    assert flow.shape == (2, 2, 60, 52) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    forward, backward = pair_flows(clip, "raft", num_flow_updates=2)
    assert forward.shape == backward.shape == (2, 2, 60, 52)
    other = torch_home.parent / "mine.pth"
    torch.save(state, other)
    assert torch.equal(load_raft("small", weights=other).state_dict()[key], state[key])
    with pytest.raises(CheckpointError, match="does not fit"):
        load_raft("large", weights=other)


def test_raft_refuses_a_malicious_checkpoint(torch_home, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"feature_encoder.convnormrelu.0.weight": _Exploit(str(marker))}, raft_weights_path("small"))
    with pytest.raises(CheckpointError, match="may run code"):
        load_raft("small")
    assert not marker.exists()


def test_registry_lists_the_backends():
    assert list_flow_backends() == ["dis", "farneback", "raft"]
    assert list(describe_flow_backends()) == list_flow_backends() and all(describe_flow_backends().values())
    clip = torch.rand(2, 3, 32, 32)
    assert torch.equal(
        get_flow_backend("dis", preset="fast")(clip[0], clip[1]),
        estimate_flow(clip[0], clip[1], preset="fast"),
    )
    with pytest.raises(KeyError, match="known: dis, farneback, raft"):
        get_flow_backend("pwc")
