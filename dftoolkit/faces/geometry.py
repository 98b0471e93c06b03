"""Face geometry: crops as affine warps, alignment to the mean face, boxes and distances of landmarks.

One ``(N, 2, 3)`` matrix per frame moves frames, masks and landmarks alike.

A matrix maps source pixel coordinates to crop pixel coordinates (OpenCV's ``warpAffine`` convention:
pixel centres at integers, so pixel ``i`` spans ``[i - 0.5, i + 0.5]``); landmarks use the same
convention. Matrices are float64; NaN landmarks or boxes (no face) give NaN matrices, and :func:`warp`
turns those into black crops.

The crop kinds (:data:`CROP_KINDS`) and the detectors that use them (see ``DETECTORS.md``):

- ``face``: the detector box squared and enlarged (1.3x by default, as STIL and M2TR); no rotation.
- ``aligned``: five points mapped to the ArcFace template by a similarity.
- ``ffhq``: the FFHQ / pSp alignment (StyleFlow).
- ``mouth``: the LipForensics mouth crop (grey at load time, centre-cropped 96 -> 88).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "ALIGNED_MARGIN",
    "CROP_KINDS",
    "DEFAULT_SIZES",
    "MEAN_FACE_68",
    "MOUTH_FRAME",
    "MOUTH_STABLE_POINTS",
    "STABLE_POINTS",
    "TEMPLATE_5",
    "aligned_matrix",
    "aligned_template",
    "box_matrix",
    "centre_crop",
    "crop_matrix",
    "face_frames",
    "ffhq_matrix",
    "five_points",
    "hull_mask",
    "inter_ocular_distance",
    "landmark_boxes",
    "mean_face",
    "mouth_matrix",
    "similarity",
    "transform_points",
    "warp",
]

CROP_KINDS = ("face", "aligned", "ffhq", "mouth")
DEFAULT_SIZES = {"face": 256, "aligned": 256, "ffhq": 256, "mouth": 96}  # default output side per kind

TEMPLATE_5 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)
"""ArcFace's 5-point template for a 112x112 crop (InsightFace ``face_align.arcface_dst``; Deng et al.,
CVPR 2019): the eye on the image's left, the other eye, nose tip, left and right mouth corners."""

ALIGNED_MARGIN = 0.15  # aligned_template's default, as DeepfakeBench's img_align_crop(scale=1.3)

MOUTH_STABLE_POINTS = (33, 36, 39, 42, 45)  # LipForensics' stable points: nose base, eye corners
MOUTH_FRAME = 256  # LipForensics warps to the mean face in a 256x256 frame, then cuts the mouth

STABLE_POINTS = (27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45)
"""iBUG points that expression barely moves: the nose (bridge, tip, base) and the eye corners."""

# fmt: off
MEAN_FACE_68 = np.array([
    [54.0, 124.9], [54.6, 144.4], [56.5, 163.6], [60.3, 182.7], [67.4, 200.5], [78.8, 215.8],
    [93.7, 227.8], [109.5, 238.2], [127.5, 240.9], [145.5, 238.2], [161.3, 227.8], [176.2, 215.8],
    [187.6, 200.5], [194.7, 182.7], [198.5, 163.6], [200.4, 144.4], [201.0, 124.9], [66.7, 113.9],
    [76.0, 104.9], [89.3, 102.4], [103.1, 104.5], [115.9, 109.5], [139.1, 109.5], [151.9, 104.5],
    [165.7, 102.4], [179.0, 104.9], [188.3, 113.9], [127.5, 121.4], [127.5, 134.0], [127.5, 146.5],
    [127.5, 159.2], [112.1, 166.5], [119.5, 169.3], [127.5, 171.8], [135.5, 169.3], [142.9, 166.5],
    [83.0, 123.2], [90.8, 118.9], [100.2, 118.8], [109.0, 124.8], [99.8, 126.0], [90.5, 126.2],
    [146.0, 124.8], [154.8, 118.8], [164.2, 118.9], [172.0, 123.2], [164.5, 126.2], [155.2, 126.0],
    [98.8, 188.2], [109.4, 184.5], [119.8, 182.6], [127.5, 184.3], [135.2, 182.6], [145.6, 184.5],
    [156.2, 188.2], [146.0, 198.4], [135.7, 202.6], [127.5, 203.5], [119.3, 202.6], [109.0, 198.4],
    [103.1, 188.9], [119.8, 187.3], [127.5, 188.0], [135.2, 187.3], [151.9, 188.9], [135.3, 194.4],
    [127.5, 195.4], [119.7, 194.4],
], np.float32)
# fmt: on
"""A 68-point mean face in a 256x256 frame, for the ``mouth`` crop (LipForensics uses the LRW
``20words_mean_face.npy``, which cannot be downloaded here; pass it as ``mean_face`` to reproduce the
authors' crops exactly). Made by :func:`mean_face` from dlib's 68 landmarks (HOG detector upsampled
once, its highest-scoring face) on the real sample media, one mean per source: carphone_pristine and
jesper_webcam (every 4th frame), astronaut, jesper, jesper_2, anne_helene, opencv_portrait_1 and
opencv_portrait_2; so it lies in the ``aligned`` frame of :func:`aligned_template` (256 px, default
margin), mirror-symmetrised and rounded to 0.1 px. ``tests/test_faces_geometry.py`` re-derives it."""


def five_points(lm68: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` iBUG landmarks -> ``(..., 5, 2)`` ArcFace order: the subject's right eye centre
    (mean of 36-41, on the image's left), left eye centre (mean of 42-47), nose tip (30), mouth corners
    (48, 54)."""
    lm = np.asarray(lm68, np.float32)
    return np.stack(
        [
            lm[..., 36:42, :].mean(-2),
            lm[..., 42:48, :].mean(-2),
            lm[..., 30, :],
            lm[..., 48, :],
            lm[..., 54, :],
        ],
        axis=-2,
    )


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` landmarks -> ``(N, 4)`` float32 boxes ``x0, y0, x1, y1`` (NaN rows stay NaN)."""
    lm = np.asarray(landmarks, np.float32)
    return np.concatenate([lm.min(axis=1), lm.max(axis=1)], axis=1)


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` landmarks -> ``(...)`` float64 distance between the two eye centres (means of
    points 36-41 and 42-47), in the landmarks' units; NaN stays NaN."""
    lm = np.asarray(landmarks, np.float64)
    return np.linalg.norm(lm[..., 36:42, :].mean(-2) - lm[..., 42:48, :].mean(-2), axis=-1)


def aligned_template(size: int = 256, margin: float = ALIGNED_MARGIN) -> np.ndarray:
    """:data:`TEMPLATE_5` scaled to a ``size`` x ``size`` crop: ``(5, 2)`` float32 pixels.

    The 112x112 ArcFace frame becomes the centred square of side ``size / (1 + 2 * margin)``, leaving
    ``margin`` of that side free on every edge. The default 0.15 (the ArcFace frame fills the central
    1/1.3 of the crop) is DeepfakeBench's ``img_align_crop(scale=1.3)`` and keeps the jaw and brows in
    the crop; 0 gives ArcFace's tight crop. Scaling is about pixel edges, so ``margin=0`` and
    ``size=112`` give :data:`TEMPLATE_5` back.
    """
    inner = size / (1 + 2 * margin)
    return ((TEMPLATE_5 + 0.5) * (inner / 112) + (size - inner) / 2 - 0.5).astype(np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; never a reflection) per frame.

    Umeyama's solution, which in 2-D has a closed form: with centred points as complex numbers,
    ``a + ib = sum(conj(src) * dst) / sum(|src|^2)`` and the linear part is ``[[a, -b], [b, a]]``.

    Args:
        src: ``(N, K, 2)`` points, K >= 2.
        dst: ``(K, 2)`` (shared) or ``(N, K, 2)`` points.

    Returns:
        ``(N, 2, 3)`` float64 matrices mapping ``src`` onto ``dst``; NaN for a frame whose points hold
        a NaN or all coincide.
    """
    src = np.asarray(src, np.float64)
    if src.ndim != 3 or src.shape[-1] != 2 or src.shape[1] < 2:
        raise ValueError(f"src must be (N, K >= 2, 2), got {src.shape}")
    dst = np.broadcast_to(np.asarray(dst, np.float64), src.shape)
    src_mean, dst_mean = src.mean(1), dst.mean(1)
    s, d = src - src_mean[:, None], dst - dst_mean[:, None]
    var = (s**2).sum((1, 2))
    var = np.where(var > 0, var, np.nan)
    a = (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(1) / var
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / var
    tx = dst_mean[:, 0] - (a * src_mean[:, 0] - b * src_mean[:, 1])
    ty = dst_mean[:, 1] - (b * src_mean[:, 0] + a * src_mean[:, 1])
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], 1)


def transform_points(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Apply ``(N, 2, 3)`` (or one ``(2, 3)``) matrices to ``(N, K, 2)`` points: ``(N, K, 2)`` float32."""
    p = np.asarray(points, np.float64)
    m = np.asarray(matrices, np.float64)
    out = p @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]
    return out.astype(np.float32)


def face_frames(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` landmarks -> ``(N, 2, 3)`` float64 similarities taking their :data:`STABLE_POINTS`
    onto :data:`MEAN_FACE_68`'s (pixels -> mean-face units): the face frame in which expressions of
    different people and head poses compare; NaN for a frame with NaN landmarks."""
    lm = np.asarray(landmarks, np.float64)
    return similarity(lm[:, STABLE_POINTS], MEAN_FACE_68[list(STABLE_POINTS)])


def _quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """``(N, 4, 2)`` square corners (upper-left, lower-left, lower-right, upper-right, in the crop's
    orientation) -> matrices onto the outer edges of a ``size`` x ``size`` crop."""
    lo, hi = -0.5, size - 0.5
    return similarity(quad, np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]]))


def box_matrix(boxes: np.ndarray, size: int, scale: float = 1.3) -> np.ndarray:
    """The usual face crop: a square of side ``scale * max(w, h)`` around each box centre -> ``size``.

    Box edges follow array slicing (``image[y0:y1, x0:x1]``), so an integer square box with
    ``scale=1`` warps like ``cv2.resize(image[y0:y1, x0:x1], (size, size))`` (but samples the true
    neighbours at the crop's edge, where ``resize`` repeats the edge pixels).

    Args:
        boxes: ``(N, 4)`` ``x0, y0, x1, y1`` pixels; NaN rows give NaN matrices.
        size: crop side in pixels.
        scale: enlargement of the box's longer side.

    Returns:
        ``(N, 2, 3)`` float64.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2 - 0.5  # slicing edges -> pixel-centre coordinates
    half = scale * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    half = np.where(half > 0, half, np.nan)[:, None]
    signs = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]], np.float64)
    return _quad_matrix(centre[:, None] + signs * half[:, None], size)


def aligned_matrix(lm68: np.ndarray, size: int = 256) -> np.ndarray:
    """``(N, 68, 2)`` landmarks -> ``(N, 2, 3)``: :func:`five_points` onto :func:`aligned_template`."""
    return similarity(five_points(lm68), aligned_template(size))


def ffhq_matrix(lm68: np.ndarray, size: int = 256) -> np.ndarray:
    """FFHQ alignment (Karras et al.'s ``recreate_aligned_images``, as pSp and StyleFlow use it).

    An oriented square is built from the eyes and mouth: ``x`` points along the eye line, corrected by
    the eye-to-mouth direction turned 90 degrees, and has half-side ``max(2 |eye_to_eye|,
    1.8 |eye_to_mouth|)``; ``y`` is ``x`` turned 90 degrees; the centre is ``eye_avg + 0.1
    eye_to_mouth``. Its corners map to the crop's outer edges. The original's blurred padding for
    squares that leave the frame is not reproduced: pixels outside the frame are black.

    Args:
        lm68: ``(N, 68, 2)`` landmarks.
        size: crop side in pixels.

    Returns:
        ``(N, 2, 3)`` float64.
    """
    lm = np.asarray(lm68, np.float64)
    eye_a, eye_b = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    eye_avg = (eye_a + eye_b) / 2
    eye_to_eye = eye_b - eye_a
    eye_to_mouth = (lm[:, 48] + lm[:, 54]) / 2 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    half = np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0, np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)
    x *= half[:, None]
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return _quad_matrix(np.stack([c - x - y, c - x + y, c + x + y, c + x - y], 1), size)


def _rot90(v: np.ndarray) -> np.ndarray:
    """Turn ``(..., 2)`` vectors by 90 degrees: ``(x, y) -> (-y, x)``."""
    return np.stack([-v[..., 1], v[..., 0]], -1)


def mouth_matrix(lm68: np.ndarray, size: int = 96, mean_face: np.ndarray | None = None) -> np.ndarray:
    """LipForensics' mouth crop (``preprocessing/crop_mouths.py``) as one matrix per frame.

    The five :data:`MOUTH_STABLE_POINTS` are mapped onto the mean face (a 256x256 frame) by a
    similarity; the crop is the ``size`` x ``size`` window of that frame centred on the mean of the
    warped mouth landmarks 48-67, its centre rounded to whole pixels and moved inside the frame where
    it would leave it (the authors' ``cut_patch``; they raise where it leaves by more than 5 px). The
    authors smooth the landmarks over the next 12 frames for the similarity but centre the crop on the
    raw mouth; here ``lm68`` (smoothed by the caller, see
    :func:`dftoolkit.faces.tracking.smooth_landmarks`) serves both, which steadies the crop.
    Greyscale conversion and the 88x88 centre crop happen at load time.

    Args:
        lm68: ``(N, 68, 2)`` landmarks, already smoothed over time.
        size: crop side in pixels, at most 256.
        mean_face: ``(68, 2)`` mean face in a 256x256 frame; default :data:`MEAN_FACE_68`.

    Returns:
        ``(N, 2, 3)`` float64.
    """
    if not 0 < size <= MOUTH_FRAME:
        raise ValueError(f"mouth crop size must be in 1..{MOUTH_FRAME}, got {size}")
    mean = MEAN_FACE_68 if mean_face is None else np.asarray(mean_face, np.float64)
    if mean.shape != (68, 2):
        raise ValueError(f"mean_face must be (68, 2), got {mean.shape}")
    lm = np.asarray(lm68, np.float64)
    stable = list(MOUTH_STABLE_POINTS)
    m = similarity(lm[:, stable], mean[stable])
    centre = transform_points(lm[:, 48:68], m).mean(1).astype(np.float64)
    half = size // 2
    origin = np.round(np.clip(centre, half, MOUTH_FRAME - (size - half))) - half
    m[:, :, 2] -= origin
    return m


def crop_matrix(
    kind: str,
    lm68: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    size: int | None = None,
    scale: float = 1.3,
) -> np.ndarray:
    """``(N, 2, 3)`` matrices for a crop kind of :data:`CROP_KINDS`.

    ``face`` needs ``boxes`` (``(N, 4)``), the others ``lm68`` (``(N, 68, 2)``; smoothed for ``mouth``).
    ``size`` defaults to :data:`DEFAULT_SIZES` of the kind; ``scale`` is the ``face`` crop's enlargement
    of the box (:func:`box_matrix`) and is ignored by the other kinds.
    """
    if kind not in CROP_KINDS:
        raise ValueError(f"unknown crop kind {kind!r}; choose from {CROP_KINDS}")
    size = DEFAULT_SIZES[kind] if size is None else size
    if kind == "face":
        if boxes is None:
            raise ValueError("the face crop needs boxes")
        return box_matrix(boxes, size, scale)
    if lm68 is None:
        raise ValueError(f"the {kind} crop needs 68 landmarks")
    build = {"aligned": aligned_matrix, "ffhq": ffhq_matrix, "mouth": mouth_matrix}[kind]
    return build(lm68, size)


def warp(
    images: np.ndarray | Sequence[np.ndarray],
    matrices: np.ndarray,
    size: int,
    interpolation: int = cv2.INTER_LINEAR,
    border: int = cv2.BORDER_CONSTANT,
) -> np.ndarray:
    """Warp each image by its matrix into a ``size`` x ``size`` crop (``cv2.warpAffine``).

    Pixels from outside the image are black (``border`` constant) or as ``border`` says. A NaN matrix
    (no face) gives an all-zero crop. For ``{0, 255}`` masks use ``cv2.INTER_NEAREST`` to keep them
    binary (linear gives soft edges). Bilinear sampling does not low-pass: shrinking a face by more
    than about 2x aliases.

    Args:
        images: ``(N, H, W[, C])`` array or a list of N such images (sizes may differ).
        matrices: ``(N, 2, 3)``, or one ``(2, 3)`` for all images (a fixed box per clip).
        size: crop side in pixels.
        interpolation: an OpenCV ``INTER_*`` flag.
        border: an OpenCV ``BORDER_*`` mode.

    Returns:
        ``(N, size, size[, C])`` with the images' dtype.
    """
    n = len(images)
    m = np.broadcast_to(np.asarray(matrices, np.float64), (n, 2, 3))
    if n == 0:
        shape = images.shape[3:] if isinstance(images, np.ndarray) else ()
        dtype = images.dtype if isinstance(images, np.ndarray) else np.uint8
        return np.zeros((0, size, size, *shape), dtype)
    first = np.asarray(images[0])
    out = np.zeros((n, size, size, *first.shape[2:]), first.dtype)
    for i in range(n):
        if np.isfinite(m[i]).all():
            crop = cv2.warpAffine(
                np.asarray(images[i]),
                m[i],
                (size, size),
                flags=interpolation,
                borderMode=border,
                borderValue=0,
            )
            out[i] = crop.reshape(out.shape[1:])  # OpenCV drops a trailing channel axis of 1
    return out


def hull_mask(lm68: np.ndarray, height: int, width: int, dilate: int = 0) -> np.ndarray:
    """Filled convex hull of the 68 landmarks per frame: ``(N, height, width)`` uint8 in {0, 255}.

    The default manipulation-region mask where a corpus ships none. The hull runs through the pixels
    that hold the landmarks, so every landmark inside the image lies on the mask. ``dilate`` grows it
    by that many pixels (elliptical kernel). Frames with NaN landmarks stay all zero.
    """
    lm = np.asarray(lm68, np.float64)
    out = np.zeros((len(lm), height, width), np.uint8)
    kernel = (
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)) if dilate else None
    )
    for i, points in enumerate(lm):
        if not np.isfinite(points).all():
            continue
        cv2.fillConvexPoly(out[i], cv2.convexHull(np.round(points).astype(np.int32)), 255)
        if kernel is not None:
            out[i] = cv2.dilate(out[i], kernel)
    return out


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` window of ``(N, H, W[, C])`` images (e.g. LipForensics' 96 -> 88)."""
    h, w = images.shape[1:3]
    if size > min(h, w):
        raise ValueError(f"cannot centre-crop {size}x{size} from {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size]


def mean_face(landmark_sets: Sequence[np.ndarray], size: int = 256) -> np.ndarray:
    """A 68-point mean face in the ``aligned`` frame of a ``size`` crop, as :data:`MEAN_FACE_68` was made.

    Each set (``(N_i, 68, 2)``, one source: a video or a still) is aligned by :func:`aligned_matrix`
    and averaged over its valid frames; the sources are averaged with equal weight, and the result is
    made mirror-symmetric about the crop's vertical centre line (iBUG's left-right point pairs).

    Returns:
        ``(68, 2)`` float32.
    """
    means = []
    for lm in landmark_sets:
        aligned = transform_points(lm, aligned_matrix(lm, size))
        aligned = aligned[np.isfinite(aligned).all((1, 2))]
        if len(aligned):
            means.append(aligned.mean(0))
    if not means:
        raise ValueError("no valid landmarks to average")
    face = np.mean(means, 0)
    mirrored = face[_IBUG_MIRROR] * [-1, 1] + [size - 1, 0]
    return ((face + mirrored) / 2).astype(np.float32)


_IBUG_MIRROR = np.array(
    [
        *range(16, -1, -1),  # jaw
        *range(26, 16, -1),  # brows
        *(27, 28, 29, 30, 35, 34, 33, 32, 31),  # nose
        *(45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40),  # eyes
        *(54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65),  # mouth
    ]
)  # index of each iBUG point's mirror image (left <-> right)
