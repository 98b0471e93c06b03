"""Colour transfer and blends on real faces: a sample portrait with another person's face warped onto it
(MediaPipe landmarks, similarity warp, convex-hull mask), and a colour-shifted carphone frame whose mask
is cut by the frame's border."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from dftoolkit.faces.geometry import hull_mask, similarity
from dftoolkit.generators.base import describe_blends, get_blend, list_blends
from dftoolkit.generators.blend import FeatherBlend, PoissonBlend, check_blend_inputs, feather_alpha
from dftoolkit.generators.colour import (
    colour_transfer,
    describe_colour_transfers,
    get_colour_transfer,
    idt,
    lct,
    list_colour_transfers,
    match_1d,
    mkl,
    random_rotations,
    rct,
    sot,
)
from dftoolkit.samples import sample_stills
from dftoolkit.video import VideoReader

BLEND_NAMES = tuple(name for name in list_blends() if name != "dovenet")  # every blend but the trained one
TRANSFERS = tuple(list_colour_transfers())


def _landmarks(cascade, image: np.ndarray) -> np.ndarray:
    faces = cascade.detect(image)
    assert len(faces), "no face found in a sample with a face"
    return faces.landmarks[int(np.argmax(faces.scores))]


def _still(name: str) -> np.ndarray:
    path = next(p for p, _ in sample_stills() if p.name == name)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def swap(cascade):
    """Jesper's face (pale, bright) warped onto the OpenCV portrait (tanned, darker) and their hull masks.

    Returns ``(rendered, target, mask, source, source_mask)``: ``rendered`` equals ``target`` outside
    the target's hull mask (as a manipulation's rendering does).
    """
    target, source = _still("opencv_portrait_1.jpg"), _still("jesper_2.jpg")
    lm_t, lm_s = _landmarks(cascade, target), _landmarks(cascade, source)
    h, w = target.shape[:2]
    warped = cv2.warpAffine(source, similarity(lm_s[None], lm_t)[0], (w, h), flags=cv2.INTER_LINEAR)
    mask = hull_mask(lm_t[None], h, w)[0].astype(np.float32) / 255
    rendered = np.where(mask[..., None] > 0, warped, target)
    source_mask = hull_mask(lm_s[None], *source.shape[:2])[0].astype(np.float32) / 255
    return rendered, target, mask, source, source_mask


@pytest.fixture(scope="module")
def shifted(cascade, sample):
    """A carphone frame, its face hull moved onto the left border (cut by it), and a colour-shifted copy
    of the frame inside that mask: ``(rendered, target, mask)``."""
    target = VideoReader(sample("carphone_pristine")).read([0])[0]
    lm = _landmarks(cascade, target)
    lm = lm - [lm[:, 0].min() + 15, 0]  # the hull now starts 15 px left of the frame
    mask = hull_mask(lm[None], *target.shape[:2])[0].astype(np.float32) / 255
    assert mask[:, 0].any() and mask.sum() > 500
    shift = np.clip(target.astype(np.int16) + np.array([30, -10, -25]), 0, 255).astype(np.uint8)
    return np.where(mask[..., None] > 0, shift, target), target, mask


def _lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(N, 3)`` OpenCV float Lab of the pixels where ``mask > 0.5``."""
    rgb = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image.astype(np.float32)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[mask > 0.5].astype(np.float64)


def _swd(x: np.ndarray, y: np.ndarray) -> float:
    """Sliced Wasserstein-2 distance between ``(N, 3)`` and ``(M, 3)`` pixel sets (64 fixed directions)."""
    theta = np.random.default_rng(12345).standard_normal((64, 3))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    q = (np.arange(256) + 0.5) / 256

    def quantiles(p: np.ndarray) -> np.ndarray:  # nearest-rank quantiles of each projection
        return np.sort(p @ theta.T, axis=0)[(q * len(p)).astype(int)]

    return float(np.sqrt(np.mean((quantiles(x) - quantiles(y)) ** 2)))


def _seam(image: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute colour step (summed over channels) between 4-neighbours across the region's edge."""
    image = image.astype(np.float32)
    steps = []
    for axis in (0, 1):
        crosses = region[:-1] != region[1:] if axis == 0 else region[:, :-1] != region[:, 1:]
        diff = np.abs(np.diff(image, axis=axis)).sum(-1)
        steps.append(diff[crosses])
    return float(np.concatenate(steps).mean())


# -- colour transfer on pixel arrays -------------------------------------------------------------


@pytest.fixture(scope="module")
def pixels(swap):
    """Float RGB [0, 1] pixels of the two real faces: ``(source (N, 3), reference (M, 3))``."""
    _, target, mask, source, source_mask = swap
    return source[source_mask > 0.5] / 255.0, target[mask > 0.5] / 255.0


def test_rct_matches_channel_moments(pixels):
    x, y = pixels
    out = rct(x, y)
    np.testing.assert_allclose(out.mean(0), y.mean(0), atol=1e-9)
    np.testing.assert_allclose(out.std(0), y.std(0), rtol=1e-4)
    assert np.abs(x.mean(0) - y.mean(0)).max() > 0.03  # the faces really differ


@pytest.mark.parametrize(
    ("transfer", "options"), [(lct, {}), (lct, {"mode": "sqrt"}), (mkl, {})], ids=["lct", "lct-sqrt", "mkl"]
)
def test_linear_transfers_match_mean_and_covariance(pixels, transfer, options):
    x, y = pixels
    out = transfer(x, y, **options)
    np.testing.assert_allclose(out.mean(0), y.mean(0), atol=1e-9)
    np.testing.assert_allclose(np.cov(out.T, bias=True), np.cov(y.T, bias=True), atol=1e-5)
    assert np.abs(np.cov(x.T) - np.cov(y.T)).max() > 1e-3


def test_mkl_moves_pixels_least(pixels):
    """Monge-Kantorovich: among linear maps with the reference's covariance, the least displacement."""
    x, y = pixels
    cost = {name: np.mean(np.sum((f(x, y) - x) ** 2, 1)) for name, f in [("mkl", mkl), ("lct", lct)]}
    cost["sqrt"] = np.mean(np.sum((lct(x, y, mode="sqrt") - x) ** 2, 1))
    assert cost["mkl"] < 0.99 * min(cost["lct"], cost["sqrt"]), cost


def test_idt_and_sot_match_the_whole_distribution(pixels):
    x, y = pixels
    start = _swd(x, y)
    linear = min(_swd(f(x, y), y) for f in (rct, lct, mkl))
    for name, f in (("idt", idt), ("sot", sot)):
        d = _swd(f(x, y), y)
        assert d < start / 20 and d < linear / 5, (name, start, linear, d)


def test_match_1d_is_monotone_exact_and_keeps_ties():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=(2, 1000)), 1)  # many ties
    r = rng.exponential(size=(2, 1500))
    out = match_1d(s, r)
    for k in range(2):
        order = np.argsort(s[k], kind="stable")
        assert np.all(np.diff(out[k, order]) >= 0)
        for v in np.unique(s[k])[:5]:
            assert np.ptp(out[k, s[k] == v]) == 0
    same = rng.normal(size=(1, 500))
    np.testing.assert_allclose(match_1d(same, same), same, atol=1e-12)  # identity on the same set
    rot = random_rotations(4, np.random.default_rng(1))
    np.testing.assert_allclose(
        rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1)


def test_seeded_transfers_are_deterministic(pixels):
    x, y = pixels[0][:3000], pixels[1]
    for f in (idt, sot):
        np.testing.assert_array_equal(f(x, y, seed=3), f(x, y, seed=3))
        assert np.abs(f(x, y, seed=3) - f(x, y, seed=4)).max() > 1e-4


# -- colour transfer on images -------------------------------------------------------------------


def test_rct_image_moves_lab_moments_within_one_unit(swap):
    _, target, mask, source, source_mask = swap
    out = colour_transfer(source, target, source_mask, mask, method="rct")
    assert out.dtype == np.uint8
    got, want, before = _lab(out, source_mask), _lab(target, mask), _lab(source, source_mask)
    assert np.abs(before.mean(0) - want.mean(0)).max() > 5  # Lab means differ by > 5 units before
    np.testing.assert_allclose(got.mean(0), want.mean(0), atol=1.0)
    np.testing.assert_allclose(got.std(0), want.std(0), atol=1.0)
    np.testing.assert_array_equal(out[source_mask == 0], source[source_mask == 0])


@pytest.mark.parametrize("method", ["lct", "mkl"])
def test_linear_image_transfer_matches_rgb_covariance(swap, method):
    _, target, mask, source, source_mask = swap
    out = colour_transfer(source / 255.0, target / 255.0, source_mask, mask, method=method)
    assert out.dtype == np.float64 and out.min() >= 0 and out.max() <= 1
    got, want = out[source_mask > 0.5], target[mask > 0.5] / 255.0
    rounded = colour_transfer(source, target, source_mask, mask, method=method)[source_mask > 0.5] / 255.0

    def cov_error(x: np.ndarray) -> float:
        return float(np.linalg.norm(np.cov(x.T) - np.cov(want.T)) / np.linalg.norm(np.cov(want.T)))

    assert cov_error(source[source_mask > 0.5] / 255.0) > 0.5
    for x in (got, rounded):  # the bright reference face: ~5% of pixels leave [0, 1] and are clipped
        np.testing.assert_allclose(x.mean(0), want.mean(0), atol=1.5 / 255)
        assert cov_error(x) < 0.04


def test_image_transfer_options(swap):
    _, target, mask, source, source_mask = swap
    lab = colour_transfer(source, target, source_mask, mask, method="mkl", space="lab")
    rgb = colour_transfer(source, target, source_mask, mask, method="mkl")
    assert np.abs(lab.astype(int) - rgb).max() > 2  # the space is used
    a = colour_transfer(source, target, source_mask, mask, method="idt", seed=1, iterations=3)
    b = colour_transfer(source, target, source_mask, mask, method="idt", seed=1, iterations=3)
    c = colour_transfer(source, target, source_mask, mask, method="idt", seed=2, iterations=3)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    whole = colour_transfer(source, target, method="rct")  # no masks: whole images
    ones_s, ones_t = np.ones(source.shape[:2]), np.ones(target.shape[:2])
    np.testing.assert_array_equal(whole, colour_transfer(source, target, ones_s, ones_t, method="rct"))
    assert np.abs(whole.astype(int) - colour_transfer(source, target, ones_s, mask)).mean() > 5
    np.testing.assert_array_equal(colour_transfer(source, target, np.zeros(source.shape[:2]), mask), source)


def test_colour_transfer_bad_inputs(swap):
    _, target, mask, source, source_mask = swap
    with pytest.raises(ValueError, match="unknown colour transfer"):
        colour_transfer(source, target, method="nope")
    with pytest.raises(ValueError, match="space"):
        colour_transfer(source, target, method="rct", space="hsv")
    with pytest.raises(ValueError, match="reference_mask selects no pixel"):
        colour_transfer(source, target, source_mask, np.zeros_like(mask))
    with pytest.raises(ValueError, match="image_mask must be"):
        colour_transfer(source, target, mask, mask)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colour_transfer(source.astype(np.float32), target)  # 0..255 floats
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        colour_transfer(source[..., 0], target)
    with pytest.raises(ValueError, match="cholesky"):
        colour_transfer(source, target, method="lct", mode="qr")
    with pytest.raises(ValueError, match=r"\(N >= 1, 3\)"):
        rct(np.zeros((0, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="step"):
        sot(np.zeros((4, 3)), np.ones((4, 3)), step=2.5)
    assert TRANSFERS == ("idt", "lct", "mkl", "rct", "sot")
    assert list(describe_colour_transfers()) == list(TRANSFERS) and all(describe_colour_transfers().values())
    assert all(get_colour_transfer(name).space in ("lab", "rgb") for name in TRANSFERS)


# -- blends --------------------------------------------------------------------------------------


def test_every_blend_is_registered():
    assert {"naive", "feather", "poisson", *TRANSFERS} <= set(BLEND_NAMES)
    assert list(describe_blends()) == list_blends() and all(describe_blends().values())


@pytest.mark.parametrize("name", BLEND_NAMES)
def test_blend_keeps_outside_and_changes_inside(swap, name):
    rendered, target, mask, _, _ = swap
    blend = get_blend(name)
    out = blend(rendered, target, mask)
    assert out.shape == target.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], target[mask == 0])
    inside = np.abs(out.astype(np.int16) - target)[mask > 0.5].mean()
    assert inside > 10, inside  # another person's face is really there
    np.testing.assert_array_equal(blend(rendered, target, mask), out)  # deterministic
    params = blend.params()
    assert json.loads(json.dumps(params)) == params
    np.testing.assert_array_equal(blend(rendered, target, np.zeros_like(mask)), target)


@pytest.mark.parametrize("name", TRANSFERS)
def test_colour_transfer_blends_take_the_targets_colours(swap, name):
    rendered, target, mask, _, _ = swap
    want = _lab(target, mask).mean(0)
    naive = np.linalg.norm(_lab(get_blend("naive")(rendered, target, mask), mask).mean(0) - want)
    blended = np.linalg.norm(_lab(get_blend(name)(rendered, target, mask), mask).mean(0) - want)
    assert naive > 8 and blended < naive / 4, (naive, blended)


def test_feather_alpha_ramps_with_the_distance_to_the_edge(swap):
    _, _, mask, _, _ = swap
    region = mask > 0.5
    distance = distance_transform_edt(region)
    for width, unit, width_px in ((12, "pixels", 12), (0.1, "relative", 0.1 * np.sqrt(region.sum()))):
        alpha = feather_alpha(mask, width, unit)
        assert alpha.dtype == np.float32 and np.all(alpha[~region] == 0)
        order = np.argsort(distance[region], kind="stable")
        assert np.all(np.diff(alpha[region][order]) >= -1e-5)  # monotone towards the inside
        assert np.all(alpha[distance >= width_px + 1e-3] == 1)
        ramp = region & (distance < width_px - 1e-3)
        assert ramp.sum() > 100 and np.all(alpha[ramp] < 1) and np.all(alpha[ramp] > 0)
    np.testing.assert_allclose(  # float32: one rounding step apart at most
        feather_alpha(mask * 0.8, 12, "pixels"), 0.8 * feather_alpha(mask, 12, "pixels"), rtol=1e-6
    )


def test_feather_blend_pastes_deep_inside_and_mixes_on_the_ramp(swap):
    rendered, target, mask, _, _ = swap
    out = FeatherBlend(width=8, unit="pixels")(rendered, target, mask)
    distance = distance_transform_edt(mask > 0.5)
    np.testing.assert_array_equal(out[distance >= 8], rendered[distance >= 8])
    ring = (distance > 0) & (distance < 8)
    lo, hi = np.minimum(rendered, target)[ring], np.maximum(rendered, target)[ring]
    assert np.all(out[ring] >= lo) and np.all(out[ring] <= hi)
    assert (out[ring] != rendered[ring]).mean() > 0.5


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_poisson_is_continuous_at_the_seam(swap, mode):
    rendered, target, mask, _, _ = swap
    region = mask > 0.5
    naive = _seam(get_blend("naive")(rendered, target, mask), region)
    poisson = _seam(PoissonBlend(mode)(rendered, target, mask), region)
    natural = _seam(target, region)  # the real face's own edge (jaw, hairline)
    assert poisson < 0.5 * naive and poisson < 1.2 * natural, (poisson, naive, natural)


@pytest.mark.parametrize("name", BLEND_NAMES)
def test_blends_on_a_mask_cut_by_the_border(shifted, name):
    """A colour-shifted copy of the frame: pasting shows the shift, Poisson and colour transfer undo it."""
    rendered, target, mask = shifted
    out = get_blend(name)(rendered, target, mask)
    np.testing.assert_array_equal(out[mask == 0], target[mask == 0])
    error = np.abs(out.astype(np.int16) - target)[mask > 0.5].mean()
    shift = np.abs(rendered.astype(np.int16) - target)[mask > 0.5].mean()
    if name in ("naive", "feather"):
        assert error > 0.8 * shift
    else:
        assert error < 0.4 * shift, (error, shift)


@pytest.mark.parametrize("name", BLEND_NAMES)
def test_blends_survive_tiny_masks(swap, name):
    rendered, target, mask, _, _ = swap
    ys, xs = np.nonzero(mask > 0.5)
    y, x = int(ys.mean()), int(xs.mean())
    for size in (1, 2, 3, 8):
        tiny = np.zeros_like(mask)
        tiny[y : y + size, x : x + size] = 1
        out = get_blend(name)(rendered, target, tiny)
        np.testing.assert_array_equal(out[tiny == 0], target[tiny == 0])
    line = np.zeros_like(mask)
    line[y, x - 40 : x + 40] = 1
    out = get_blend(name)(rendered, target, line)
    np.testing.assert_array_equal(out[line == 0], target[line == 0])


@pytest.mark.parametrize("name", BLEND_NAMES)
def test_blends_reject_bad_inputs(swap, name):
    rendered, target, mask, _, _ = swap
    blend = get_blend(name)
    bad = [
        (rendered[:-1], target, mask, "differ in shape"),
        (rendered, target, mask[:-1], "mask must be"),
        (rendered.astype(np.float32), target, mask, "uint8"),
        (rendered, target[..., 0], mask, r"\(H, W, 3\)"),
        (rendered, target, mask * 2, r"\[0, 1\]"),
        (rendered, target, np.where(mask > 0, np.nan, 0), r"\[0, 1\]"),
        (rendered, target, mask.astype(str), "float"),
    ]
    for r, t, m, message in bad:
        with pytest.raises(ValueError, match=message):
            blend(r, t, m)


def test_blend_options_are_validated_and_listed():
    assert get_blend("feather", width=5, unit="pixels").params() == {"width": 5.0, "unit": "pixels"}
    assert get_blend("poisson", mode="mixed").params() == {"mode": "mixed"}
    assert get_blend("lct", mode="sqrt").params()["mode"] == "sqrt"
    assert get_blend("rct").params() == {"width": 0.1, "unit": "relative", "space": "lab", "eps": 1e-6}
    sot_params = get_blend("sot", seed=7).params()
    assert sot_params["seed"] == 7 and {"iterations", "projections", "step"} <= set(sot_params)
    assert get_blend("idt").params()["space"] == "rgb"
    for name, options, message in [
        ("feather", {"unit": "furlongs"}, "unit"),
        ("feather", {"width": 0}, "width"),
        ("poisson", {"mode": "monochrome"}, "mode"),
        ("lct", {"mode": "qr"}, "cholesky"),
        ("idt", {"iterations": 0}, "iterations"),
        ("rct", {"bogus": 1}, "no option"),
        ("rct", {"space": "hsv"}, "space"),
    ]:
        with pytest.raises(ValueError, match=message):
            get_blend(name, **options)
    assert (
        check_blend_inputs(
            np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), np.eye(2, dtype=bool)
        ).dtype
        == np.float32
    )


def test_poisson_clones_up_to_the_frame(swap):
    """Cut the frame through the middle of the face: the rendering's detail reaches the frame's edge."""
    rendered, target, mask, _, _ = swap
    cut = int(np.nonzero(mask.any(0))[0].mean())
    rendered, target, mask = (np.ascontiguousarray(a[:, cut:]) for a in (rendered, target, mask))
    out = PoissonBlend()(rendered, target, mask)
    rows = np.nonzero(mask[:, 0] > 0.5)[0][8:-8]

    def edge_detail(image: np.ndarray) -> np.ndarray:  # vertical steps along the first 3 columns
        return np.diff(image[rows, :3].astype(np.float32), axis=0).ravel()

    to_rendered = np.abs(edge_detail(out) - edge_detail(rendered)).mean()
    to_target = np.abs(edge_detail(out) - edge_detail(target)).mean()
    assert to_rendered < 0.5 * to_target, (to_rendered, to_target)
