"""SSIM / Mask-SSIM against skimage on real frames, the two protocols, the video helper, bad inputs."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from dftoolkit.faces.geometry import box_matrix, hull_mask, landmark_boxes, transform_points, warp
from dftoolkit.generators import build_dataset
from dftoolkit.generators.material import PATCH_SCALE
from dftoolkit.quality.ssim import (
    PROTOCOL_DESCRIPTIONS,
    PROTOCOLS,
    mask_ssim,
    ssim,
    ssim_map,
    video_mask_ssim,
)
from dftoolkit.video import VideoReader, VideoWriter

# the module itself: the package exports a function of the same name
ssim_module = importlib.import_module("dftoolkit.quality.ssim")

SKIMAGE = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
PAD = 5  # (11 - 1) // 2
FRAMES = np.arange(0, 120, 17)  # 8 frames spread over the clip


def _tensor(frames: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    """``(N, H, W, C)`` float64 in [0, 1] -> ``(N, C, H, W)`` tensor."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).to(dtype).contiguous()


def _reference(fake: np.ndarray, real: np.ndarray, mask: np.ndarray, protocol: str) -> np.ndarray:
    """skimage's full map per frame, then the protocol's masked mean, in float64."""
    out = []
    for f, r, m in zip(fake, real, mask, strict=True):
        if protocol == "masked-image":
            f, r = f * m[..., None], r * m[..., None]
        _, full = structural_similarity(f, r, channel_axis=2, full=True, **SKIMAGE)
        inner, w = full[PAD:-PAD, PAD:-PAD], m[PAD:-PAD, PAD:-PAD, None]
        if protocol == "masked-image":
            out.append(inner.mean() if m.any() else np.nan)
        else:
            out.append((inner * w).sum() / (w.sum() * 3) if w.sum() > 0 else np.nan)
    return np.array(out)


@pytest.fixture(params=["opencv", "kornia"])
def cpu_path(request, monkeypatch) -> str:
    """Both CPU code paths: OpenCV's filters (the default) and the kornia filter path CUDA takes."""
    monkeypatch.setattr(ssim_module, "_OPENCV_ON_CPU", request.param == "opencv")
    return request.param


@pytest.fixture(scope="module")
def carphone(sample) -> tuple[np.ndarray, np.ndarray]:
    """Real frame pairs: pristine (the original) and heavily compressed (the degraded copy), [0, 1]."""
    pristine = VideoReader(sample("carphone_pristine")).read(FRAMES) / 255.0
    distorted = VideoReader(sample("carphone_distorted")).read(FRAMES) / 255.0
    return distorted, pristine


@pytest.fixture(scope="module")
def face_crops(sample, track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """256x256 face crops of the pair (one box for the clip) and the landmark-hull masks in {0, 1}."""
    lm = track("carphone_pristine").landmarks[FRAMES]
    assert np.isfinite(lm).all()
    matrix = box_matrix(np.median(landmark_boxes(lm), axis=0)[None], 256, PATCH_SCALE)[0]
    pristine = warp(VideoReader(sample("carphone_pristine")).read(FRAMES), matrix, 256) / 255.0
    distorted = warp(VideoReader(sample("carphone_distorted")).read(FRAMES), matrix, 256) / 255.0
    masks = hull_mask(transform_points(lm, matrix), 256, 256) / 255.0
    assert 0.1 < masks.mean() < 0.6
    return distorted, pristine, masks


# --- SSIM itself -------------------------------------------------------------------------------------


def test_map_and_mean_match_skimage_on_real_frames(carphone, cpu_path):
    fake, real = carphone
    refs = [
        structural_similarity(f, r, channel_axis=2, full=True, **SKIMAGE)
        for f, r in zip(fake, real, strict=True)
    ]
    ref_mean = np.array([m for m, _ in refs])
    ref_map = np.stack([s for _, s in refs]).transpose(0, 3, 1, 2)
    assert 0.5 < ref_mean.min() < ref_mean.max() < 0.95  # a real, clearly degraded pair
    x64, y64 = _tensor(fake, torch.float64), _tensor(real, torch.float64)
    np.testing.assert_allclose(ssim(x64, y64).numpy(), ref_mean, atol=1e-10)
    np.testing.assert_allclose(ssim_map(x64, y64).numpy(), ref_map, atol=1e-8)  # borders included
    x32, y32 = _tensor(fake), _tensor(real)
    mean32 = ssim(x32, y32)
    assert mean32.dtype == torch.float32
    np.testing.assert_allclose(mean32.numpy(), ref_mean, atol=1e-4)
    np.testing.assert_allclose(ssim_map(x32, y32).numpy(), ref_map, atol=2e-3)


def test_data_range_and_settings_follow_skimage(carphone, cpu_path):
    fake, real = carphone
    x, y = _tensor(fake[:2] * 255, torch.float64), _tensor(real[:2] * 255, torch.float64)
    settings = {**SKIMAGE, "data_range": 255.0, "sigma": 1.0, "K1": 0.02, "K2": 0.05}
    ref = [
        structural_similarity(f, r, channel_axis=2, **settings)
        for f, r in zip(fake[:2] * 255, real[:2] * 255, strict=True)
    ]
    # skimage's window for sigma 1 has 2 * int(3.5 + 0.5) + 1 = 9 taps
    ours = ssim(x, y, data_range=255.0, sigma=1.0, win_size=9, k1=0.02, k2=0.05)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)


def test_identical_images_score_one(face_crops):
    _, real, masks = face_crops
    x, m = _tensor(real).requires_grad_(), _tensor(masks[..., None])  # a metric: no graph, no error
    np.testing.assert_allclose(ssim(x, x.clone()).numpy(), 1.0, atol=1e-6)
    for protocol in PROTOCOLS:
        np.testing.assert_allclose(mask_ssim(x, x.clone(), m, protocol).numpy(), 1.0, atol=1e-6)


# --- Mask-SSIM protocols -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocols_match_skimage_map_then_masking(face_crops, protocol, cpu_path):
    fake, real, masks = face_crops
    ref = _reference(fake, real, masks, protocol)
    ours = mask_ssim(_tensor(fake), _tensor(real), _tensor(masks[..., None]), protocol)
    assert ours.shape == (len(FRAMES),) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)
    ours64 = mask_ssim(*(_tensor(a, torch.float64) for a in (fake, real, masks[..., None])), protocol)
    np.testing.assert_allclose(ours64.numpy(), ref, atol=1e-10)


def test_soft_mask_weights_like_the_reference(face_crops, cpu_path):
    fake, real, masks = face_crops
    soft = np.clip(masks * 0.7 + np.linspace(0, 0.3, 256)[None, None, :], 0, 1)
    for protocol in PROTOCOLS:
        ours = mask_ssim(_tensor(fake), _tensor(real), _tensor(soft[..., None]), protocol)
        np.testing.assert_allclose(ours.numpy(), _reference(fake, real, soft, protocol), atol=1e-4)


def test_masked_image_is_inflated_by_the_zero_background(face_crops):
    fake, real, masks = face_crops
    x, y, m = _tensor(fake), _tensor(real), _tensor(masks[..., None])
    inside, masked = mask_ssim(x, y, m, "inside"), mask_ssim(x, y, m, "masked-image")
    whole = ssim(x, y)
    assert (masked > inside).all(), (masked, inside)
    assert (masked > whole).all()  # the black background scores 1
    assert (inside < 0.95).all()  # the face of a heavily compressed copy is clearly degraded


def test_empty_mask_gives_nan_for_that_item_only(face_crops):
    fake, real, masks = face_crops
    m = masks[:3].copy()
    m[1] = 0
    border = np.zeros((256, 256))
    border[:, :PAD] = 1  # only the strip the valid region leaves out
    m[2] = border
    x, y, mt = _tensor(fake[:3]), _tensor(real[:3]), _tensor(m[..., None])
    inside = mask_ssim(x, y, mt, "inside").numpy()
    assert np.isfinite(inside[0]) and np.isnan(inside[1]) and np.isnan(inside[2])
    masked = mask_ssim(x, y, mt, "masked-image").numpy()
    assert np.isfinite(masked[0]) and np.isnan(masked[1]) and np.isfinite(masked[2])
    np.testing.assert_allclose(masked, _reference(fake[:3], real[:3], m, "masked-image"), atol=1e-4)


def test_mask_touching_the_border_counts_its_inner_part(face_crops):
    fake, real, _ = face_crops
    m = np.zeros((2, 256, 256))
    m[:, :40, :] = 1  # a band along the top edge
    x, y = _tensor(fake[:2]), _tensor(real[:2])
    ours = mask_ssim(x, y, _tensor(m[..., None]), "inside").numpy()
    np.testing.assert_allclose(ours, _reference(fake[:2], real[:2], m, "inside"), atol=1e-4)
    inner_only = m.copy()
    inner_only[:, :PAD] = 0
    np.testing.assert_allclose(ours, mask_ssim(x, y, _tensor(inner_only[..., None]), "inside").numpy())


def test_batch_slices_and_dtypes_agree(face_crops, cpu_path, monkeypatch):
    fake, real, masks = (a[:3] for a in face_crops)
    x, y, m = _tensor(fake), _tensor(real), _tensor(masks[..., None])
    for protocol in PROTOCOLS:
        whole = mask_ssim(x, y, m, protocol)
        single = torch.cat(
            [mask_ssim(x[i : i + 1], y[i : i + 1], m[i : i + 1], protocol) for i in range(len(x))]
        )
        with monkeypatch.context() as patch:
            patch.setattr(ssim_module, "_CPU_SLICE_BYTES", 1 << 30)  # the whole batch in one slice
            sliced = mask_ssim(x, y, m, protocol)
        torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-5)  # kernels may block sums differently
        torch.testing.assert_close(single, whole, rtol=0, atol=1e-5)
        channels_last = [t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) for t in (x, y, m)]
        torch.testing.assert_close(mask_ssim(*channels_last, protocol), whole, rtol=0, atol=1e-6)
        double = mask_ssim(x.double(), y.double(), m.double(), protocol)
        assert double.dtype == torch.float64
        np.testing.assert_allclose(whole.numpy(), double.numpy(), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(face_crops):
    fake, real, masks = face_crops
    args = [_tensor(a) for a in (fake, real, masks[..., None])]
    for protocol in PROTOCOLS:
        cpu = mask_ssim(*args, protocol)
        gpu = mask_ssim(*(a.cuda() for a in args), protocol)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)


def test_protocols_are_described():
    assert PROTOCOLS == ("inside", "masked-image")
    assert all(len(PROTOCOL_DESCRIPTIONS[p]) > 20 and "\n" not in PROTOCOL_DESCRIPTIONS[p] for p in PROTOCOLS)


# --- bad inputs ----------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(face_crops):
    fake, real, masks = face_crops
    x, y, m = _tensor(fake[:2]), _tensor(real[:2]), _tensor(masks[:2, ..., None])
    cases = [
        (lambda: mask_ssim(x, y, m, "outside"), "unknown Mask-SSIM protocol"),
        (lambda: mask_ssim(x[0], y[0], m[0]), r"fake must be \(N, C, H, W\)"),
        (lambda: mask_ssim(x, y[:1], m), "differ in shape"),
        (lambda: mask_ssim(x, y, m.expand(-1, 3, -1, -1)), r"mask must be \(N, 1, H, W\)"),
        (lambda: mask_ssim(x, y, m[:1]), r"mask must be \(N, 1, H, W\)"),
        (lambda: mask_ssim(x * 255, y, m), r"fake must lie in \[0, 1\]"),
        (lambda: mask_ssim(x, y - 0.5, m), r"real must lie in \[0, 1\]"),
        (lambda: mask_ssim(x, y, m * 255), r"mask must lie in \[0, 1\]"),
        (lambda: mask_ssim(x, y.clone().index_fill_(2, torch.tensor([7]), torch.nan), m), "real must lie"),
        (lambda: mask_ssim((x * 255).to(torch.uint8), y, m), "must be a float tensor"),
        (lambda: mask_ssim(x, y, m > 0.5), "mask must be a float tensor"),
        (
            lambda: mask_ssim(x[..., :10, :10], y[..., :10, :10], m[..., :10, :10]),
            "smaller than the 11-pixel",
        ),
        (lambda: mask_ssim(x, y, m, win_size=10), "positive odd"),
        (lambda: ssim(x, y, sigma=0), "sigma must be positive"),
        (lambda: ssim(x, y, data_range=-1), "data_range must be positive"),
        (lambda: ssim_map(x.numpy(), y), "must be a torch.Tensor"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --- the video helper on a real generated fake ----------------------------------------------------------


@pytest.fixture(scope="module")
def generated(samples_manifest, tmp_path_factory):
    """A swap fake of carphone (naive blend, lossless), its original and its mask video."""
    reals = samples_manifest.filter(lambda r: r.video_id in ("carphone_pristine", "jesper_webcam"))
    out = tmp_path_factory.mktemp("fakes")
    built = build_dataset(reals, out, methods=["swap"], blends=["naive"], crf=None, workers=1)
    originals = {r.video_id: r for r in built if r.label == 0}
    fake = next(r for r in built.filter(label=1) if r.original_id == "carphone_pristine")
    return out / fake.relpath, out / originals[fake.original_id].relpath, out / fake.mask_relpath


@pytest.mark.slow
def test_video_helper_scores_a_real_fake_frame_by_frame(generated):
    fake, original, mask = generated
    frames = VideoReader(fake).num_frames
    scores = {p: video_mask_ssim(fake, original, mask, p, batch=16) for p in PROTOCOLS}
    inside, masked = scores["inside"], scores["masked-image"]
    assert inside.shape == masked.shape == (frames,) and inside.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(inside), np.isnan(masked))
    valid = np.isfinite(inside)
    assert valid.sum() > 0.8 * frames
    assert ((inside[valid] >= 0) & (masked[valid] <= 1)).all()
    assert inside[valid].mean() < 0.9  # a swapped face is far from the original inside the mask
    assert (masked[valid] > inside[valid]).all()  # the zero background inflates the other protocol
    clean = video_mask_ssim(original, original, mask, "inside", batch=40)
    np.testing.assert_array_equal(np.isnan(clean), ~valid)  # NaN exactly where the mask is empty
    np.testing.assert_allclose(clean[valid], 1.0, atol=1e-6)
    # frame by frame it equals mask_ssim on the decoded frames, in any requested order
    pick = [30, 3, 30, 71]
    decoded = [VideoReader(p).read(pick) / 255.0 for p in (fake, original, mask)]
    direct = mask_ssim(_tensor(decoded[0]), _tensor(decoded[1]), _tensor(decoded[2].mean(-1, keepdims=True)))
    np.testing.assert_allclose(
        video_mask_ssim(fake, original, mask, frames=pick, batch=3), direct.numpy(), atol=1e-6
    )


def test_video_helper_rejects_mismatched_videos(sample, tmp_path):
    fake, original = sample("carphone_distorted"), sample("carphone_pristine")
    short = tmp_path / "short_mask.mp4"
    with VideoWriter(short, fps=25, lossless=True) as writer:
        writer.write_many(VideoReader(original).read(np.arange(5)))
    with pytest.raises(ValueError, match=r"frame counts differ.*short_mask\.mp4 5"):
        video_mask_ssim(fake, original, short)
    with pytest.raises(ValueError, match=r"frame counts differ.*jesper_webcam.*68"):
        video_mask_ssim(fake, sample("jesper_webcam"), original)
    with pytest.raises(ValueError, match="unknown Mask-SSIM protocol"):
        video_mask_ssim(fake, original, original, "outside")
    with pytest.raises(ValueError, match=r"frame indices must lie in \[0, 120\)"):
        video_mask_ssim(fake, original, original, frames=[0, 10_000])
    with pytest.raises(ValueError, match="batch must be >= 1"):
        video_mask_ssim(fake, original, original, batch=0)
