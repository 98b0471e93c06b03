"""Piecewise-affine warping on 68 facial landmarks, for the weight-free manipulations.

A face is cut into triangles whose corners are landmarks; each triangle of the output samples the
input through its own affine map, so the warp moves every landmark exactly where it is told and is
continuous across triangle edges. The triangles are fixed for the 68-point iBUG layout plus an outer
:func:`face_ring` (:func:`face_triangles`, a Delaunay triangulation of the mean face, computed once),
so a video is cut the same way in every frame, which keeps the warp temporally stable.

Points are ``x, y`` pixels with pixel centres at integers (OpenCV's convention, as
:mod:`dftoolkit.faces.geometry`).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

from dftoolkit.faces.geometry import MEAN_FACE_68

__all__ = [
    "CONTOUR",
    "face_ring",
    "face_triangles",
    "fold_free_fraction",
    "paste",
    "piecewise_affine",
    "pixel_box",
    "region_mask",
    "signed_areas",
    "with_ring",
]

CONTOUR = (*range(17), *range(26, 16, -1))
"""The face's outline in the iBUG layout, in order around it: jaw 0-16, then the brows 26 down to 17."""

_SUBPIXEL = 4  # fractional bits of the vertices given to cv2.fillConvexPoly / fillPoly
_MIN_AREA = 0.5  # square pixels: destination triangles this thin are lines, left to their neighbours


def face_ring(landmarks: np.ndarray, scale: float = 1.5) -> np.ndarray:
    """An outer ring around the face: the :data:`CONTOUR` points enlarged ``scale`` times about their mean.

    The ring's hull contains the outline's hull (for ``scale >= 1``), so a warp whose ring points do not
    move is the identity on and outside the ring.

    Args:
        landmarks: ``(..., 68, 2)`` pixels.
        scale: distance of each ring point from the centre over its outline point's, > 1.

    Returns:
        ``(..., 27, 2)`` float32, in :data:`CONTOUR` order.
    """
    if not scale > 1:
        raise ValueError(f"ring scale must be > 1, got {scale}")
    contour = np.asarray(landmarks, np.float64)[..., CONTOUR, :]
    centre = contour.mean(-2, keepdims=True)
    return np.ascontiguousarray(centre + scale * (contour - centre), np.float32)


def with_ring(landmarks: np.ndarray, scale: float = 1.5) -> np.ndarray:
    """``(..., 68, 2)`` landmarks -> ``(..., 95, 2)`` float32: the landmarks, then their :func:`face_ring`."""
    lm = np.asarray(landmarks, np.float32)
    return np.concatenate([lm, face_ring(lm, scale)], -2)


@lru_cache(maxsize=8)
def _triangles(scale: float) -> np.ndarray:
    points = with_ring(MEAN_FACE_68, scale).astype(np.float64)
    tri = Delaunay(points).simplices.astype(np.int32)
    a = signed_areas(points, tri)
    tri[a < 0] = tri[a < 0][:, ::-1]  # counter-clockwise in the mean face (y down: positive area)
    tri.setflags(write=False)
    return tri


def face_triangles(scale: float = 1.5) -> np.ndarray:
    """The fixed triangulation of the 95 points of :func:`with_ring` (68 landmarks + 27 ring points).

    Delaunay triangulation of :data:`~dftoolkit.faces.geometry.MEAN_FACE_68` and its ring, each
    triangle ordered to have positive :func:`signed_areas` in the mean face; cached per ``scale``.
    It covers the ring's convex hull.

    Returns:
        ``(T, 3)`` int32 point indices, read-only.
    """
    return _triangles(float(scale))


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed areas of triangles, positive when ``(x, y)`` corners turn counter-clockwise on screen.

    Args:
        points: ``(..., K, 2)``.
        triangles: ``(T, 3)`` indices into ``K``.

    Returns:
        ``(..., T)`` float64 square pixels.
    """
    p = np.asarray(points, np.float64)[..., triangles, :]  # (..., T, 3, 2)
    u, v = p[..., 1, :] - p[..., 0, :], p[..., 2, :] - p[..., 0, :]
    return (u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]) / 2


def fold_free_fraction(
    src: np.ndarray,
    dst: np.ndarray,
    triangles: np.ndarray,
    check: np.ndarray | None = None,
    steps: int = 10,
    min_area: float = 0.5,
) -> float:
    """The largest ``a`` in [0, 1] for which ``src + a * (dst - src)`` folds none of the checked triangles.

    A triangle folds when its signed area changes sign from ``src``; triangles that are degenerate in
    ``src`` (``|area| < min_area`` square pixels) cannot fold. ``a`` is found by bisection (``steps``
    halvings, so it is within ``2**-steps`` below the true bound).

    Args:
        src, dst: ``(K, 2)`` points.
        triangles: ``(T, 3)`` indices.
        check: ``(T,)`` bool, the triangles to check (default all).
    """
    src = np.asarray(src, np.float64)
    move = np.asarray(dst, np.float64) - src
    a0 = signed_areas(src, triangles)
    keep = np.abs(a0) >= min_area
    if check is not None:
        keep &= np.asarray(check, bool)

    def ok(a: float) -> bool:
        return bool(np.all(signed_areas(src + a * move, triangles)[keep] * np.sign(a0[keep]) > 0))

    if ok(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def pixel_box(points: np.ndarray, out_shape: tuple[int, int], margin: int = 1) -> tuple[slice, slice]:
    """The window of pixels within ``margin`` of ``(K, 2)`` points' bounding box, clipped to an
    ``(H, W)`` image: ``(rows, columns)`` slices (possibly empty)."""
    x0, y0, x1, y1 = _bounds(np.asarray(points, np.float64), *out_shape, margin)
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


def _bounds(points: np.ndarray, height: int, width: int, margin: int = 1) -> tuple[int, int, int, int]:
    """Integer ``x0, y0, x1, y1`` (exclusive ends) of the pixels near ``points``, clipped to the frame."""
    lo = np.floor(points.min(0)).astype(int) - margin
    hi = np.ceil(points.max(0)).astype(int) + margin + 1
    return max(lo[0], 0), max(lo[1], 0), min(hi[0], width), min(hi[1], height)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * (1 << _SUBPIXEL)).astype(np.int32)


def piecewise_affine(
    image: np.ndarray,
    src_points: np.ndarray,
    dst_points: np.ndarray,
    triangles: np.ndarray,
    out_shape: tuple[int, int],
    border: int = cv2.BORDER_REPLICATE,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that each ``src_points`` triangle lands on its ``dst_points`` triangle.

    Every output pixel inside a destination triangle samples ``image`` (bilinear) through that
    triangle's affine map, so ``dst_points[k]`` shows ``image`` at ``src_points[k]``. Triangle ids are
    rasterised once over the destination's bounding box (where triangles overlap, the later one in
    ``triangles`` wins; degenerate ones, under 0.5 square pixels, are left to their neighbours, whose
    rasterised edges cover them), per-pixel source coordinates come from the per-triangle affines in
    one vectorised step, and one ``cv2.remap`` samples the image (to its 1/32 px grid). Sampling does
    not low-pass: shrinking by more than about 2x aliases.

    Args:
        image: ``(h, w[, C])`` uint8 or float32.
        src_points: ``(K, 2)`` pixels of ``image``.
        dst_points: ``(K, 2)`` pixels of the output.
        triangles: ``(T, 3)`` int indices into ``K`` (e.g. :func:`face_triangles`).
        out_shape: ``(H, W)`` of the output.
        border: OpenCV ``BORDER_*`` mode for source pixels outside ``image``.

    Returns:
        ``(H, W[, C])`` warped image with ``image``'s dtype (zero outside the triangles), and the
        ``(H, W)`` bool coverage (pixels inside a destination triangle).
    """
    src = np.asarray(src_points, np.float64)
    dst = np.asarray(dst_points, np.float64)
    tri = np.asarray(triangles)
    if src.ndim != 2 or src.shape[1] != 2 or dst.shape != src.shape:
        raise ValueError(f"src_points and dst_points must both be (K, 2), got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.size == 0 or tri.min() < 0 or tri.max() >= len(src):
        raise ValueError(f"triangles must be (T, 3) indices into {len(src)} points, got {tri.shape}")
    height, width = (int(s) for s in out_shape)
    warped = np.zeros((height, width, *image.shape[2:]), image.dtype)
    coverage = np.zeros((height, width), bool)
    x0, y0, x1, y1 = _bounds(dst, height, width)
    if x1 <= x0 or y1 <= y0:
        return warped, coverage

    tri = tri[np.abs(signed_areas(dst, tri)) >= _MIN_AREA]
    if len(tri) == 0:
        return warped, coverage
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    for k, poly in enumerate(_fixed(dst[tri] - (x0, y0))):
        cv2.fillConvexPoly(ids, poly, k, lineType=cv2.LINE_8, shift=_SUBPIXEL)
    inside = ids >= 0

    # dst -> src affine per triangle: [x y 1] @ coef = [sx sy], flattened to (ax, ay, bx, by, cx, cy)
    hom = np.concatenate([dst[tri], np.ones((len(tri), 3, 1))], -1)  # (T, 3, 3)
    coef = np.linalg.solve(hom, src[tri]).reshape(-1, 6).astype(np.float32)
    c = coef[np.maximum(ids, 0)]  # (h, w, 6)
    xs = np.arange(x0, x1, dtype=np.float32)[None]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    map_x = xs * c[..., 0] + ys * c[..., 2] + c[..., 4]
    map_y = xs * c[..., 1] + ys * c[..., 3] + c[..., 5]
    sampled = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)
    sampled = sampled.reshape(*inside.shape, *image.shape[2:])  # remap drops a trailing axis of 1
    view = warped[y0:y1, x0:x1]
    view[inside] = sampled[inside]
    coverage[y0:y1, x0:x1] = inside
    return warped, coverage


def region_mask(
    polygon: np.ndarray, out_shape: tuple[int, int], erode: float = 0.0, sigma: float = 0.0
) -> np.ndarray:
    """A soft mask of a polygon: filled, eroded by ``erode`` px, Gaussian-blurred by ``sigma`` px, and
    cut to the polygon (so it is zero outside it). Computed in the window ``pixel_box(polygon,
    out_shape, 2)``, outside which it is zero.

    Args:
        polygon: ``(K, 2)`` vertices in order (pass ``cv2.convexHull`` of points for their hull).
        out_shape: ``(H, W)`` of the mask.
        erode: erosion radius in pixels (elliptical kernel; rounded to whole pixels), >= 0.
        sigma: blur standard deviation in pixels, >= 0 (0: a hard edge).

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    if erode < 0 or sigma < 0:
        raise ValueError(f"erode and sigma must be >= 0, got {erode} and {sigma}")
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    height, width = (int(s) for s in out_shape)
    mask = np.zeros((height, width), np.float32)
    if not np.isfinite(poly).all():
        raise ValueError("polygon vertices must be finite")
    rows, cols = pixel_box(poly, (height, width), 2)
    filled = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.uint8)
    if filled.size == 0:
        return mask
    cv2.fillPoly(filled, [_fixed(poly - (cols.start, rows.start))], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL)
    soft = filled
    radius = round(erode)
    if radius > 0:
        soft = cv2.erode(soft, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    soft = soft.astype(np.float32)
    if sigma > 0:
        soft = cv2.GaussianBlur(soft, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    mask[rows, cols] = np.minimum(soft, 1) * filled  # a blur may overshoot 1 by rounding
    return mask


def paste(
    image: np.ndarray,
    mask: np.ndarray,
    warped: np.ndarray,
    coverage: np.ndarray,
    window: tuple[slice, slice],
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``warped`` into ``image`` where the mask is positive, after cutting the mask to the
    ``coverage`` of the warp; both are changed in place, inside ``window`` (a :func:`pixel_box`, outside
    which ``mask`` must be zero), so the work is proportional to the face, not the frame.

    Args:
        image: ``(H, W, C)`` frame to draw into.
        mask: ``(H, W)`` float32 soft mask.
        warped, coverage: what :func:`piecewise_affine` returned.
        window: ``(rows, columns)`` slices.

    Returns:
        ``(image, mask)``: ``image`` equals its old self wherever ``mask`` is 0.
    """
    soft = mask[window]
    soft *= coverage[window]
    inside = soft > 0
    image[window][inside] = warped[window][inside]
    return image, mask
