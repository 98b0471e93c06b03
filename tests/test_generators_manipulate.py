"""Weight-free manipulations: piecewise-affine warping, landmark face swap, landmark reenactment,
on the real sample media (carphone as the target, jesper's webcam video and the astronaut as sources)."""

from __future__ import annotations

import dataclasses
import itertools
import json

import cv2
import numpy as np
import pytest

from dftoolkit.faces.geometry import MEAN_FACE_68, face_frames, hull_mask, similarity, transform_points
from dftoolkit.faces.tracking import FaceTrack
from dftoolkit.generators.base import get_method, list_methods
from dftoolkit.generators.material import face_patches, still_patches
from dftoolkit.generators.reenact import LandmarkReenact, choose_neutral, mouth_gap
from dftoolkit.generators.swap import LandmarkSwap, normalised_shapes
from dftoolkit.generators.warping import (
    face_ring,
    face_triangles,
    fold_free_fraction,
    piecewise_affine,
    region_mask,
    signed_areas,
    with_ring,
)
from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader

FRAMES = 10


@pytest.fixture(scope="module")
def target(track):
    return track("carphone_pristine")


@pytest.fixture(scope="module")
def frames(sample):
    return VideoReader(sample("carphone_pristine")).read(list(range(FRAMES)))


@pytest.fixture(scope="module")
def jesper_track(track):
    return track("jesper_webcam")


@pytest.fixture(scope="module")
def driver(sample, jesper_track):
    return face_patches(VideoReader(sample("jesper_webcam")), jesper_track, max_patches=16)


@pytest.fixture(scope="module")
def astronaut(cascade):
    image = cv2.cvtColor(cv2.imread(str(sample_path("astronaut"))), cv2.COLOR_BGR2RGB)
    return still_patches(image, cascade)


def _composite(rendered, frame):
    """The rendering alpha-blended into the frame by its mask (what the feather/naive blends do)."""
    alpha = rendered.mask[..., None]
    return np.round(rendered.image * alpha + frame * (1 - alpha)).astype(np.uint8)


def _main_landmarks(cascade, image):
    faces = cascade.detect(image)
    assert len(faces), "no face re-detected"
    return faces.landmarks[int(np.argmax(faces.boxes[:, 2] - faces.boxes[:, 0]))]


def _ncc(a, b, where):
    a, b = a[where].astype(np.float64), b[where].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _grey(image):
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _steady(rendered):
    """Soft IoU of consecutive masks: the masks follow the smoothed landmarks without flicker."""
    masks = [r.mask for r in rendered]
    return min(np.minimum(a, b).sum() / np.maximum(a, b).sum() for a, b in itertools.pairwise(masks))


def _check_rendering(rendered, frame, landmarks):
    """Shape, dtype, mask range and cover, untouched outside the mask, changed inside."""
    image, mask = rendered.image, rendered.mask
    assert image.shape == frame.shape and image.dtype == np.uint8
    assert mask.shape == frame.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1 and mask.max() == pytest.approx(1.0)
    hull = hull_mask(landmarks[None], *frame.shape[:2])[0] > 0
    assert (mask[hull] > 0).mean() >= 0.95
    np.testing.assert_array_equal(image[mask == 0], frame[mask == 0])
    return np.abs(image.astype(int) - frame.astype(int)).sum(-1)[mask > 0.5].mean()


# -- warping -----------------------------------------------------------------------------------


def test_face_triangles_fixed_and_cover_the_ring():
    tri = face_triangles(1.5)
    assert face_triangles(1.5) is tri and not tri.flags.writeable
    assert tri.shape[1] == 3 and tri.dtype == np.int32
    assert set(tri.ravel().tolist()) == set(range(95))
    points = with_ring(MEAN_FACE_68, 1.5)
    areas = signed_areas(points, tri)
    assert (areas > 0).all()  # counter-clockwise in the mean face
    hull = cv2.contourArea(cv2.convexHull(points))
    assert areas.sum() == pytest.approx(hull, rel=1e-4)  # a triangulation of the ring's hull
    assert face_triangles(1.3).shape != tri.shape or not np.array_equal(face_triangles(1.3), tri)
    with pytest.raises(ValueError, match="scale"):
        face_ring(MEAN_FACE_68, 1.0)


def test_face_ring_encloses_the_landmarks(target):
    lm = target.landmarks[:FRAMES]
    ring = face_ring(lm, 1.5)
    assert ring.shape == (FRAMES, 27, 2)
    for points, outer in zip(lm, ring, strict=True):
        contour = cv2.convexHull(outer)
        assert all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in points)


def test_piecewise_affine_moves_points_exactly():
    """A coordinate image warped by a smooth, fold-free map: each destination point shows its source
    point's coordinates (to remap's 1/32 px sampling grid)."""
    height, width = 144, 176
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    coords = np.dstack([xs, ys])
    src = with_ring(MEAN_FACE_68 * 0.45 + (30, 10), 1.5)
    dst = np.round(src + np.stack([3 * np.sin(src[:, 1] / 15), 2 * np.cos(src[:, 0] / 20)], 1))
    tri = face_triangles(1.5)
    assert (signed_areas(dst, tri) > 0).all()
    warped, coverage = piecewise_affine(coords, src, dst, tri, (height, width))
    assert warped.shape == coords.shape and warped.dtype == np.float32 and coverage.dtype == bool
    x, y = dst[:, 0].astype(int), dst[:, 1].astype(int)
    assert coverage[y, x].all()
    np.testing.assert_allclose(warped[y, x], src, atol=0.05)
    assert not coverage[0, 0] and (warped[~coverage] == 0).all()
    # one channel in, one channel out
    grey, _ = piecewise_affine(coords[..., 0], src, dst, tri, (height, width))
    assert grey.shape == (height, width)
    np.testing.assert_array_equal(grey, warped[..., 0])


def test_piecewise_affine_equals_an_affine_warp_on_a_real_face(target, frames):
    """With every destination point an affine image of its source point, the piecewise warp is that
    affine warp: equal to cv2.warpAffine inside the covered region."""
    frame = frames[0]
    height, width = frame.shape[:2]
    src = with_ring(target.landmarks[0], 1.5)
    angle, scale = np.radians(12), 1.15
    centre = src[:68].mean(0)
    lin = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.hstack([lin, (centre - lin @ centre + (4, -3))[:, None]])
    dst = transform_points(src[None], matrix[None])[0]
    warped, coverage = piecewise_affine(frame, src, dst, face_triangles(1.5), (height, width))
    expected = cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR)
    diff = np.abs(warped.astype(int) - expected.astype(int))[coverage]
    assert coverage.sum() > 0.9 * cv2.contourArea(cv2.convexHull(dst))
    assert diff.mean() < 0.2 and np.percentile(diff, 99.9) <= 3
    assert (warped[~coverage] == 0).all()


def test_piecewise_affine_rejects_bad_input(frames, target):
    src = with_ring(target.landmarks[0])
    tri = face_triangles()
    with pytest.raises(ValueError, match="src_points and dst_points"):
        piecewise_affine(frames[0], src, src[:68], tri, (144, 176))
    bad = src.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        piecewise_affine(frames[0], src, bad, tri, (144, 176))
    with pytest.raises(ValueError, match="triangles"):
        piecewise_affine(frames[0], src, src, tri + 1, (144, 176))
    # a destination entirely outside the output, or collapsed to a point: nothing covered
    for dst in (src + 1000, np.full_like(src, 50)):
        warped, coverage = piecewise_affine(frames[0], src, dst, tri, (144, 176))
        assert warped.shape == frames[0].shape and not coverage.any() and not warped.any()


def test_fold_free_fraction_stops_at_the_ring(target):
    lm = target.landmarks[0]
    ring = face_ring(lm, 1.5)
    src = np.concatenate([lm, ring])
    tri = face_triangles(1.5)
    assert fold_free_fraction(src, src, tri) == 1.0
    dst = src.copy()
    dst[8] += (0, 3 * (ring[8, 1] - lm[8, 1]))  # the chin pushed three ring gaps down: through the ring
    a = fold_free_fraction(src, dst, tri)
    assert 0.2 < a < 0.5  # it reaches the ring after one gap of three
    areas = signed_areas(src, tri)
    moved = signed_areas(src + a * (dst - src), tri)
    assert (np.sign(moved) == np.sign(areas))[np.abs(areas) >= 0.5].all()
    assert not (np.sign(signed_areas(dst, tri)) == np.sign(areas))[np.abs(areas) >= 0.5].all()


def test_region_mask_soft_inside_the_polygon(target):
    lm = target.landmarks[0]
    hull = cv2.convexHull(lm)
    mask = region_mask(hull, (144, 176), erode=2, sigma=1)
    inside = hull_mask(lm[None], 144, 176)[0] > 0
    assert mask.dtype == np.float32 and mask.max() == 1.0 and mask.min() == 0.0
    assert (mask[~inside] < 0.05).all()  # zero outside up to the rounding of the hull's pixels
    assert ((mask > 0) & (mask < 1)).sum() > 0  # a soft edge
    hard = region_mask(hull, (144, 176))
    assert set(np.unique(hard).tolist()) == {0.0, 1.0} and (mask <= hard).all()
    with pytest.raises(ValueError, match=">= 0"):
        region_mask(hull, (144, 176), erode=-1)


# -- swap ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swaps(driver, astronaut, target, frames):
    out = {}
    for name, source in (("jesper", driver), ("astronaut", astronaut)):
        method = LandmarkSwap(source, target)
        out[name] = (method, [method.render(t, frames[t]) for t in range(FRAMES)])
    return out


@pytest.mark.parametrize("source", ["jesper", "astronaut"])
def test_swap_renders_the_face_region(swaps, target, frames, source):
    _, rendered = swaps[source]
    for t, r in enumerate(rendered):
        assert _check_rendering(r, frames[t], target.landmarks[t]) > 20
    assert _steady(rendered) > 0.9


@pytest.mark.parametrize("source", ["jesper", "astronaut"])
def test_swap_keeps_the_target_landmarks(swaps, target, frames, cascade, source):
    """Re-detected on the swapped frames, the landmarks are where the target's were."""
    _, rendered = swaps[source]
    errors = [
        np.linalg.norm(
            _main_landmarks(cascade, _composite(r, frames[t])) - target.landmarks[t], axis=1
        ).mean()
        for t, r in enumerate(rendered)
    ]
    assert np.mean(errors) < 1.5 and max(errors) < 2.5  # px, on a face about 48 px tall


@pytest.mark.parametrize("source", ["jesper", "astronaut"])
def test_swap_region_shows_the_source(swaps, target, frames, source):
    """Inside the mask, the swap correlates with the source crop placed by one similarity (an
    independent, rougher alignment) more than with the target's own face."""
    method, rendered = swaps[source]
    height, width = frames[0].shape[:2]
    for t, r in enumerate(rendered):
        i = method.crop_index(t)
        lm = method.source.landmarks[i]
        matrix = similarity(lm[None], target.landmarks[t])[0]
        placed = cv2.warpAffine(method.source.images[i], matrix, (width, height), flags=cv2.INTER_LINEAR)
        core = r.mask > 0.99
        to_source = _ncc(_grey(r.image), _grey(placed), core)
        to_target = _ncc(_grey(r.image), _grey(frames[t]), core)
        assert to_source > 0.7 and to_source > to_target + 0.4


def test_swap_nearest_picks_the_matching_crop(driver, jesper_track, target):
    """Swapping jesper onto himself: at a frame a crop was cut from, that crop is the nearest."""
    method = LandmarkSwap(driver, jesper_track, match="nearest")
    for k, t in enumerate(driver.frame_indices):
        assert method.crop_index(int(t)) == k
    shapes = normalised_shapes(driver.landmarks)
    assert np.abs(shapes - MEAN_FACE_68).mean() < 10  # near the mean face, in its 256-px frame
    sequence = LandmarkSwap(driver, target)
    assert [sequence.crop_index(t) for t in range(20)] == [driver.at(t) for t in range(20)]


def test_swap_nearest_renders(driver, target, frames):
    method = LandmarkSwap(driver, target, match="nearest")
    for t in range(3):
        assert _check_rendering(method.render(t, frames[t]), frames[t], target.landmarks[t]) > 20


def test_swap_params_and_bad_input(driver, target, frames):
    method = get_method("swap", driver, target, match="nearest", erode=0.05)
    assert isinstance(method, LandmarkSwap) and method.kind == "swap"
    params = json.loads(json.dumps(method.params()))
    assert params == {"match": "nearest", "ring_scale": 1.4, "erode": 0.05, "feather": 0.02}
    assert LandmarkSwap(driver, target, **params).params() == params
    with pytest.raises(ValueError, match="match"):
        LandmarkSwap(driver, target, match="random")
    with pytest.raises(ValueError, match="erode"):
        LandmarkSwap(driver, target, erode=-0.1)
    with pytest.raises(ValueError, match="frame must be"):
        method.render(0, frames[0][:100])
    with pytest.raises(IndexError):
        method.render(len(target), frames[0])


# -- reenact ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reenacted(driver, target, frames):
    method = LandmarkReenact(driver, target)
    return method, [method.render(t, frames[t]) for t in range(FRAMES)]


def test_reenact_renders_inside_the_ring(reenacted, target, frames):
    method, rendered = reenacted
    changed = 0
    for t, r in enumerate(rendered):
        moved = np.linalg.norm(method.new_landmarks(t) - target.landmarks[t], axis=1).mean()
        difference = _check_rendering(r, frames[t], target.landmarks[t])
        if moved > 0.5:
            assert difference > 1
            changed += 1
        ring = face_ring(target.landmarks[t], method.ring_scale)
        assert (r.mask[hull_mask(ring[None], *frames[t].shape[:2])[0] == 0] < 0.05).all()
        # identity at the ring: the soft band of the mask shows the frame nearly unchanged
        band = (r.mask > 0) & (r.mask < 0.5)
        assert np.abs(r.image.astype(int) - frames[t].astype(int))[band].mean() < 3
    assert changed >= FRAMES // 2
    assert _steady(rendered) > 0.9


def test_reenact_moves_the_face_to_the_new_landmarks(reenacted, target, frames, cascade):
    """Landmarks re-detected on the reenacted frames lie nearer L'_t than L_t."""
    method, rendered = reenacted
    to_new, to_old = [], []
    for t, r in enumerate(rendered):
        found = _main_landmarks(cascade, _composite(r, frames[t]))
        to_new.append(np.linalg.norm(found - method.new_landmarks(t), axis=1).mean())
        to_old.append(np.linalg.norm(found - target.landmarks[t], axis=1).mean())
    assert np.mean(to_new) < 0.8 * np.mean(to_old)


def test_reenact_neutral_and_motion(driver, target, frames):
    shapes = transform_points(driver.landmarks, face_frames(driver.landmarks))
    gaps = mouth_gap(shapes)
    mouth = choose_neutral(shapes, "mouth")
    assert gaps[mouth] == gaps.min() and gaps.max() > gaps[mouth] + 2  # jesper talks
    mean = choose_neutral(shapes, "mean")
    assert np.abs(shapes[mean] - shapes.mean(0)).mean() <= np.abs(shapes - shapes.mean(0)).mean()
    assert choose_neutral(shapes, 3) == 3
    for bad in ("open", 99, True):
        with pytest.raises(ValueError, match="neutral"):
            choose_neutral(shapes, bad)

    method = LandmarkReenact(driver, target, neutral=5)
    t = next(t for t in range(40) if driver.at(t) == 5)  # the driver at rest: nothing moves
    np.testing.assert_allclose(method.new_landmarks(t), target.landmarks[t], atol=1e-3)

    still = LandmarkReenact(driver, target, strength=0, motion=False)
    r = still.render(2, frames[2])
    np.testing.assert_array_equal(r.image, frames[2])  # an identity warp samples the frame exactly

    clamped = LandmarkReenact(driver, target, strength=0, max_rotation=0.5, max_scale=0, max_shift=0)
    angles = []
    for t in range(16):
        m = similarity(target.landmarks[t][None], clamped.new_landmarks(t))[0]
        angles.append(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        assert np.hypot(m[0, 0], m[1, 0]) == pytest.approx(1.0, abs=1e-4)
    assert max(np.abs(angles)) == pytest.approx(0.5, abs=1e-3)  # jesper turns more than 0.5 degrees


def test_reenact_params_and_bad_input(driver, astronaut, target, frames):
    method = get_method("reenact", driver, target, strength=1.5, neutral="mean", motion=False)
    assert isinstance(method, LandmarkReenact) and method.kind == "reenact"
    params = json.loads(json.dumps(method.params()))
    assert params["strength"] == 1.5 and params["neutral"] == "mean" and params["motion"] is False
    assert LandmarkReenact(driver, target, **params).params() == params
    with pytest.raises(ValueError, match="two face crops"):
        LandmarkReenact(astronaut, target)
    with pytest.raises(ValueError, match=">= 0"):
        LandmarkReenact(driver, target, strength=-1)
    with pytest.raises(ValueError, match="frame must be"):
        method.render(0, frames[0].astype(np.float32))


# -- both ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name in list_methods() if name != "fomm"])  # fomm needs weights
def test_frame_without_a_face_is_untouched(name, driver, target, frames):
    landmarks = target.landmarks.copy()
    landmarks[4] = np.nan
    track = dataclasses.replace(target, landmarks=landmarks)
    assert isinstance(track, FaceTrack) and not track.found[4]
    method = get_method(name, driver, track)
    r = method.render(4, frames[4])
    np.testing.assert_array_equal(r.image, frames[4])
    assert r.mask.shape == (144, 176) and not r.mask.any()
    assert r.image is not frames[4]
    before = frames[5].copy()
    assert method.render(5, frames[5]).mask.any()
    np.testing.assert_array_equal(frames[5], before)  # the face is drawn into a copy
