"""Face geometry (crops, alignment, boxes and distances of landmarks) on real faces: dlib's 68 landmarks
on the carphone clip and the sample stills."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from dftoolkit.faces.geometry import (
    CROP_KINDS,
    DEFAULT_SIZES,
    MEAN_FACE_68,
    MOUTH_STABLE_POINTS,
    STABLE_POINTS,
    TEMPLATE_5,
    aligned_matrix,
    aligned_template,
    box_matrix,
    centre_crop,
    crop_matrix,
    face_frames,
    ffhq_matrix,
    five_points,
    hull_mask,
    inter_ocular_distance,
    landmark_boxes,
    mean_face,
    mouth_matrix,
    similarity,
    transform_points,
    warp,
)
from dftoolkit.faces.tracking import smooth_landmarks
from dftoolkit.video import VideoReader


@pytest.fixture(scope="module")
def dlib_68(dlib_backend):
    """``landmarks(image) -> (68, 2)`` of the highest-scoring dlib face, or NaN rows when none."""

    def landmarks(image: np.ndarray) -> np.ndarray:
        faces = dlib_backend.analyse(image)
        if not len(faces):
            return np.full((68, 2), np.nan, np.float32)
        return faces.landmarks[int(np.argmax(faces.scores))]

    return landmarks


@pytest.fixture(scope="module")
def carphone(sample, dlib_68):
    """All 120 frames of the carphone talking head and their raw dlib landmarks (NaN where missed)."""
    frames = VideoReader(sample("carphone_pristine")).read(range(120))
    return frames, np.stack([dlib_68(frame) for frame in frames])


def _still(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _apply(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Reference: homogeneous coordinates, one matrix product per frame."""
    homogeneous = np.concatenate([points, np.ones((*points.shape[:2], 1))], -1)
    return np.einsum("nij,nkj->nki", matrices, homogeneous)


def test_five_points_take_the_documented_landmarks():
    lm = np.arange(68 * 2, dtype=np.float32).reshape(1, 68, 2)
    five = five_points(lm)[0]
    np.testing.assert_allclose(five[0], lm[0, 36:42].mean(0))
    np.testing.assert_allclose(five[1], lm[0, 42:48].mean(0))
    np.testing.assert_array_equal(five[2:], lm[0, [30, 48, 54]])


def test_landmark_boxes_and_inter_ocular_distance():
    lm = np.stack([MEAN_FACE_68, np.full((68, 2), np.nan, np.float32)])
    boxes = landmark_boxes(lm)
    assert boxes.dtype == np.float32 and np.isnan(boxes[1]).all()
    np.testing.assert_array_equal(boxes[0], [*MEAN_FACE_68.min(0), *MEAN_FACE_68.max(0)])
    iod = inter_ocular_distance(lm)
    assert iod.shape == (2,) and np.isnan(iod[1])
    assert iod[0] == pytest.approx(np.linalg.norm(MEAN_FACE_68[36:42].mean(0) - MEAN_FACE_68[42:48].mean(0)))
    assert inter_ocular_distance(2 * MEAN_FACE_68 + 7) == pytest.approx(2 * iod[0])


def test_face_frames_undo_pose_whatever_the_expression():
    """A face turned, scaled and moved, with an open mouth, maps back onto the mean face's stable
    points exactly: expression does not move them."""
    face = MEAN_FACE_68.astype(np.float64).copy()
    face[48:68, 1] += np.linspace(0, 12, 20)  # the mouth opens
    angle, scale, shift = np.radians(20), 1.7, np.array([40.0, -15.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    posed = face @ rotation.T + shift
    back = transform_points(posed[None], face_frames(posed[None]))[0]
    stable = list(STABLE_POINTS)
    np.testing.assert_allclose(back[stable], MEAN_FACE_68[stable], atol=1e-3)
    np.testing.assert_allclose(back[48:68], face[48:68], atol=1e-3)
    assert np.isnan(face_frames(np.full((1, 68, 2), np.nan))).all()


def test_similarity_recovers_known_transforms_exactly(carphone):
    rng = np.random.default_rng(0)
    _, lm = carphone
    src = lm[:16].astype(np.float64)  # real face shapes
    angle = rng.uniform(-np.pi, np.pi, 16)
    scale = rng.uniform(0.2, 5.0, 16)
    shift = rng.uniform(-200, 200, (16, 2))
    truth = np.zeros((16, 2, 3))
    truth[:, 0, :2] = np.stack([np.cos(angle), -np.sin(angle)], -1) * scale[:, None]
    truth[:, 1, :2] = np.stack([np.sin(angle), np.cos(angle)], -1) * scale[:, None]
    truth[:, :, 2] = shift
    got = similarity(src, _apply(truth, src))
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-9)
    np.testing.assert_allclose(transform_points(src, got), _apply(truth, src), atol=1e-3)

    # one shared destination (a template): frames moved away from it by the inverse come back by truth
    inverse = np.stack([cv2.invertAffineTransform(m) for m in truth])
    moved = _apply(inverse, np.broadcast_to(src[0], src.shape))
    np.testing.assert_allclose(similarity(moved, src[0]), truth, rtol=0, atol=1e-9)


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # skimage >= 0.26
def test_similarity_is_the_least_squares_fit_and_never_reflects(carphone):
    _, lm = carphone
    five = five_points(lm[:8]).astype(np.float64)
    target = aligned_template(256).astype(np.float64)
    got = similarity(five, target)
    for points, matrix in zip(five, got, strict=True):  # skimage (Umeyama, as DeepfakeBench uses)
        reference = SimilarityTransform()
        reference.estimate(points, target)
        np.testing.assert_allclose(matrix, reference.params[:2], atol=1e-8)
    mirrored = five[:, :, ::-1]  # swapping x and y is a reflection: the best proper fit leaves a residual
    fit = similarity(mirrored, target)
    assert (np.linalg.det(fit[:, :, :2]) > 0).all()
    assert (np.abs(transform_points(mirrored, fit) - target).max((1, 2)) > 5).all()


def test_similarity_nan_and_degenerate_rows():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (4, 5, 2))
    src[1, 3, 0] = np.nan  # one missing coordinate spoils its frame only
    src[2] = 7.0  # all points equal: no scale or rotation defined
    got = similarity(src, TEMPLATE_5)
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()
    assert np.isfinite(got[[0, 3]]).all()
    with pytest.raises(ValueError, match="src must be"):
        similarity(src[0], TEMPLATE_5)


def test_aligned_template_scales_arcface():
    np.testing.assert_allclose(aligned_template(112, margin=0.0), TEMPLATE_5, atol=1e-5)
    t = aligned_template(256)
    # DeepfakeBench's img_align_crop(scale=1.3) places the template this way (up to half a pixel)
    deepfakebench = (TEMPLATE_5 * 256 / 112 + 0.15 * 256) / 1.3
    assert np.abs(t - deepfakebench).max() <= 0.5
    assert abs((t[0, 0] + t[1, 0]) / 2 - 127.5) < 1.0  # eyes centred
    assert np.linalg.norm(t[1] - t[0]) == pytest.approx(35.24 * 256 / 1.3 / 112, rel=1e-3)


def test_box_matrix_equals_crop_and_resize(carphone):
    frames, lm = carphone
    frame = frames[0]
    x0, y0 = np.floor(lm[0].min(0)).astype(int)
    box = np.array([[x0, y0, x0 + 40, y0 + 40]], np.float32)  # a square, integer box on the face
    for scale in (1.0, 1.3):  # side 40 or 52: both integer, the same centre
        side = round(40 * scale)
        left, top = x0 + 20 - side // 2, y0 + 20 - side // 2
        expected = cv2.resize(frame[top : top + side, left : left + side], (256, 256))
        got = warp(frame[None], box_matrix(box, 256, scale), 256)[0]
        diff = np.abs(got.astype(int) - expected.astype(int))[4:-4, 4:-4]  # resize clamps at the crop edge
        assert diff.mean() < 0.5 and diff.max() <= 2, (scale, diff.mean(), diff.max())


def test_box_crop_off_the_frame_is_black(carphone):
    frames, _ = carphone
    frame = frames[0]  # 176x144
    box = np.array([[-20, 100, 40, 160]], np.float32)  # hangs over the left and bottom edges
    got = warp(frame[None], box_matrix(box, 60, scale=1.0), 60)[0]
    padded = cv2.copyMakeBorder(frame, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=0)
    expected = padded[130:190, 10:70]
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1
    assert (got[:, :20] == 0).all() and (got[44:] == 0).all()
    nan_box = np.full((1, 4), np.nan, np.float32)
    assert np.isnan(box_matrix(nan_box, 60)).all()
    assert (warp(frame[None], box_matrix(nan_box, 60), 60) == 0).all()


def test_aligned_matrix_lands_five_points_near_template(carphone):
    frames, lm = carphone
    ok = np.isfinite(lm).all((1, 2))
    five = five_points(transform_points(lm[ok], aligned_matrix(lm[ok], 256)))
    error = np.linalg.norm(five - aligned_template(256), axis=-1)  # (N, 5) pixels at 256
    # what remains is dlib's points against ArcFace's (a different annotation) plus pose and expression
    assert error.mean() < 6.0, error.mean()
    assert np.median(error[:, :2]) < 5.0  # the eyes
    crops = warp(frames[ok][:4], aligned_matrix(lm[ok][:4]), 256)
    assert crops.shape == (4, 256, 256, 3) and crops.mean() > 60  # the face fills the crop: no black border


def test_warp_moves_masks_and_landmarks_together(sample, dlib_68):
    image = _still(sample("astronaut"))
    lm = dlib_68(image)[None]
    for matrix in (
        aligned_matrix(lm, 256),
        ffhq_matrix(lm, 256),
        box_matrix(np.concatenate([lm.min(1), lm.max(1)], 1), 256),
    ):
        warped_mask = warp(hull_mask(lm, *image.shape[:2]), matrix, 256, interpolation=cv2.INTER_NEAREST)[0]
        mask_of_warped = hull_mask(transform_points(lm, matrix), 256, 256)[0]
        inter = np.logical_and(warped_mask, mask_of_warped).sum()
        union = np.logical_or(warped_mask, mask_of_warped).sum()
        assert union > 0 and inter / union > 0.95
        assert set(np.unique(warped_mask)) <= {0, 255}


def test_ffhq_levels_eyes_at_ffhq_height(sample, dlib_68):
    image = _still(sample("astronaut"))
    rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D((256, 256), 15, 1.0), (512, 512))
    lm = np.stack([dlib_68(image), dlib_68(rotated)])  # fresh detections on the rotated copy
    points = transform_points(lm, ffhq_matrix(lm, 256))
    eye_a, eye_b = points[:, 36:42].mean(1), points[:, 42:48].mean(1)
    assert (np.abs(eye_a[:, 1] - eye_b[:, 1]) < 2).all()
    # the square's half side is 2 |eye_to_eye| here, so the eyes sit at 3/8 and 5/8 of the width...
    eye_to_eye = np.linalg.norm(lm[:, 42:48].mean(1) - lm[:, 36:42].mean(1), axis=-1)
    mouth = (lm[:, 48] + lm[:, 54]) / 2 - (lm[:, 36:42].mean(1) + lm[:, 42:48].mean(1)) / 2
    eye_to_mouth = np.linalg.norm(mouth, axis=-1)
    assert (2.0 * eye_to_eye > 1.8 * eye_to_mouth).all()
    np.testing.assert_allclose(eye_a[:, 0], 256 * 3 / 8 - 0.5, atol=1.0)
    np.testing.assert_allclose(eye_b[:, 0], 256 * 5 / 8 - 0.5, atol=1.0)
    # ...and 0.1 eye_to_mouth above the centre, in crop pixels (FFHQ's eye line, about 0.47 of the height)
    expected_y = 127.5 - 0.1 * eye_to_mouth * 256 / (4 * eye_to_eye)
    np.testing.assert_allclose((eye_a[:, 1] + eye_b[:, 1]) / 2, expected_y, atol=1.0)
    assert (np.abs(expected_y / 256 - 0.47) < 0.01).all()
    crops = warp(np.stack([image, rotated]), ffhq_matrix(lm, 256), 256).astype(int)
    assert np.median(np.abs(crops[0] - crops[1])) <= 4  # rotation undone: the same crop


def test_mouth_crop_is_centred_and_steady(carphone):
    frames, raw = carphone
    smooth = smooth_landmarks(raw, 12)
    ok = np.isfinite(raw).all((1, 2))
    assert (~ok).sum() == 2  # dlib misses the last two frames: they must give black crops
    matrices = mouth_matrix(smooth, 96)
    assert np.isnan(matrices[~ok]).all() and np.isfinite(matrices[ok]).all()
    centre = transform_points(smooth[ok, 48:68], matrices[ok]).mean(1)
    assert np.abs(centre - 48).max() <= 0.5 + 1e-4  # cut_patch: rows round(cy) - 48 .. round(cy) + 48
    mouth = transform_points(raw[ok, 48:68], matrices[ok])
    assert mouth.min() > 4 and mouth.max() < 92  # the real mouth stays inside the crop
    crops = warp(frames, matrices, 96)
    assert crops.shape == (120, 96, 96, 3) and (crops[~ok] == 0).all()
    grey = centre_crop(np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops[ok]]), 88)
    assert grey.shape == (118, 88, 88) and 40 < grey.mean() < 220

    def jitter(m: np.ndarray) -> float:  # second difference of the crop centre, in source pixels
        inverse = np.stack([cv2.invertAffineTransform(x) for x in m])
        c = transform_points(np.full((len(m), 1, 2), 47.5), inverse)[:, 0]
        return float(np.linalg.norm(c[2:] - 2 * c[1:-1] + c[:-2], axis=-1).mean())

    unsmoothed = jitter(mouth_matrix(raw[ok], 96))
    assert jitter(matrices[ok]) < 0.5 * unsmoothed, (jitter(matrices[ok]), unsmoothed)


def test_mouth_crop_stays_inside_the_mean_face_frame(carphone):
    _, raw = carphone
    low = MEAN_FACE_68 + np.float32([0, 60])  # the mouth lands near the bottom edge of the 256 frame...
    stable = list(MOUTH_STABLE_POINTS)
    to_frame = similarity(raw[:3, stable], low[stable])  # frame -> 256x256 mean-face frame
    got = mouth_matrix(raw[:3], 96, mean_face=low)
    np.testing.assert_array_equal(got[:, :, :2], to_frame[:, :, :2])  # the crop is a pure shift of it
    centre_x = transform_points(raw[:3, 48:68], to_frame).mean(1)[:, 0]
    np.testing.assert_allclose(to_frame[:, 0, 2] - got[:, 0, 2], np.round(centre_x) - 48, atol=1e-9)
    np.testing.assert_allclose(
        to_frame[:, 1, 2] - got[:, 1, 2], 256 - 96, atol=1e-9
    )  # ...and the window is pushed back inside, as cut_patch does
    with pytest.raises(ValueError):
        mouth_matrix(raw[:1], 300)
    with pytest.raises(ValueError):
        mouth_matrix(raw[:1], 96, mean_face=np.zeros((5, 2)))


def test_mean_face_rederived_from_the_samples(sample, dlib_68):
    sets = []
    for name in ("carphone_pristine", "jesper_webcam"):
        reader = VideoReader(sample(name))
        sets.append(np.stack([dlib_68(f) for f in reader.read(range(0, reader.num_frames, 4))]))
    for name in ("astronaut", "jesper", "jesper_2", "anne_helene", "opencv_portrait_1", "opencv_portrait_2"):
        sets.append(dlib_68(_still(sample(name)))[None])
    assert np.abs(mean_face(sets) - MEAN_FACE_68).max() < 0.1
    face = MEAN_FACE_68
    assert face[36:48, 1].mean() < face[30, 1] < face[48:68, 1].mean() < face[8, 1]  # eyes, nose, mouth, chin
    np.testing.assert_allclose(five_points(face)[:2], aligned_template(256)[:2], atol=6)
    with pytest.raises(ValueError):
        mean_face([np.full((2, 68, 2), np.nan)])


def test_hull_mask_covers_the_landmarks(carphone):
    _, lm = carphone
    masks = hull_mask(lm, 144, 176)
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 255}
    ok = np.isfinite(lm).all((1, 2))
    rows, cols = np.round(lm[ok, :, 1]).astype(int), np.round(lm[ok, :, 0]).astype(int)
    assert (np.take_along_axis(masks[ok].reshape(ok.sum(), -1), rows * 176 + cols, 1) == 255).all()
    assert (masks[~ok] == 0).all()
    area = (masks[ok] > 0).sum((1, 2))
    hull_area = np.array([cv2.contourArea(cv2.convexHull(points)) for points in lm[ok]])
    assert (area >= hull_area).all() and (area < hull_area * 1.3).all()
    for mask, points in zip(masks[ok], lm[ok], strict=True):  # nothing 10 px beyond the landmarks' box
        x0, y0 = np.maximum(points.min(0).astype(int) - 10, 0)
        x1, y1 = points.max(0).astype(int) + 10
        assert mask.sum() == mask[y0:y1, x0:x1].sum()
    shifted = lm[ok] + np.float32([0.6, -0.4])  # fractional points: their nearest pixels are covered
    rows, cols = np.round(shifted[..., 1]).astype(int), np.round(shifted[..., 0]).astype(int)
    on = np.take_along_axis(hull_mask(shifted, 144, 176).reshape(ok.sum(), -1), rows * 176 + cols, 1)
    assert (on == 255).all()
    grown = hull_mask(lm[:1], 144, 176, dilate=3)
    assert (grown >= masks[:1]).all() and (grown > 0).sum() > (masks[:1] > 0).sum()


def test_centre_crop():
    images = np.arange(2 * 96 * 96, dtype=np.float32).reshape(2, 96, 96)
    np.testing.assert_array_equal(centre_crop(images, 88), images[:, 4:92, 4:92])
    odd = np.arange(97 * 96, dtype=np.float32).reshape(1, 97, 96)
    np.testing.assert_array_equal(centre_crop(odd, 88), odd[:, 4:92, 4:92])
    colour = np.zeros((1, 100, 120, 3), np.uint8)
    assert centre_crop(colour, 88).shape == (1, 88, 88, 3)
    with pytest.raises(ValueError):
        centre_crop(images, 97)


def test_crop_matrix_dispatches_with_default_sizes(carphone):
    _, lm = carphone
    lm = lm[:4]
    boxes = np.concatenate([lm.min(1), lm.max(1)], 1)
    assert CROP_KINDS == ("face", "aligned", "ffhq", "mouth")
    assert DEFAULT_SIZES == {"face": 256, "aligned": 256, "ffhq": 256, "mouth": 96}
    np.testing.assert_array_equal(crop_matrix("face", lm, boxes), box_matrix(boxes, 256, 1.3))
    np.testing.assert_array_equal(crop_matrix("aligned", lm, boxes), aligned_matrix(lm, 256))
    np.testing.assert_array_equal(crop_matrix("ffhq", lm, None, 512), ffhq_matrix(lm, 512))
    np.testing.assert_array_equal(crop_matrix("mouth", lm), mouth_matrix(lm, 96))
    with pytest.raises(ValueError, match="unknown crop kind"):
        crop_matrix("eyes", lm, boxes)
    with pytest.raises(ValueError, match="needs boxes"):
        crop_matrix("face", lm)
    with pytest.raises(ValueError, match="needs 68 landmarks"):
        crop_matrix("ffhq", None, boxes)


def test_warp_shapes(carphone):
    frames, lm = carphone
    m = aligned_matrix(lm[:2], 64)
    grey = frames[:2, :, :, 0]
    assert warp(grey, m, 64).shape == (2, 64, 64)
    assert warp(grey[..., None], m, 64).shape == (2, 64, 64, 1)
    sizes = [frames[0], cv2.resize(frames[1], (88, 72))]  # a list of different sizes
    assert warp(sizes, m, 64).shape == (2, 64, 64, 3)
    shared = warp(frames[:3], m[0], 64)  # one matrix for the clip
    np.testing.assert_array_equal(shared[0], warp(frames[:1], m[:1], 64)[0])
    assert warp(frames[:0], m[:0], 64).shape == (0, 64, 64, 3)
