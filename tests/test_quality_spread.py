"""Feature-space spreads (t-SNE, spread statistics, plot) and landmark jitter, on real media.

Features are real and computed offline: HOG descriptors of skimage's LFW subset (100 faces, then
100 non-faces, 25x25 grey) and of face crops from a sample video; landmarks come from the
mediapipe cascade on the sample videos.
"""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest
from skimage.feature import hog

from dftoolkit.faces.geometry import landmark_boxes
from dftoolkit.faces.tracking import face_track
from dftoolkit.quality.spread import (
    feature_spread,
    neighbour_overlap,
    plot_spread,
    real_fake_silhouette,
    tsne_embed,
)
from dftoolkit.quality.temporal import landmark_jitter, landmark_jitter_series, video_landmark_jitter
from dftoolkit.video import VideoReader

FACES = np.r_[np.zeros(100, np.int64), np.ones(100, np.int64)]  # lfw_subset: faces then non-faces


def _hog(images: np.ndarray) -> np.ndarray:
    """``(N, 25, 25)`` grey images in [0, 1] -> ``(N, 576)`` HOG descriptors."""
    return np.stack(
        [hog(im, orientations=9, pixels_per_cell=(5, 5), cells_per_block=(2, 2)) for im in images]
    )


@pytest.fixture(scope="module")
def lfw_hog(sample) -> np.ndarray:
    images = np.load(sample("lfw_subset"))
    assert images.shape == (200, 25, 25)
    return _hog(images)


@pytest.fixture(scope="module")
def video_hog(sample, track) -> np.ndarray:
    """HOG of 25x25 grey face crops of every 3rd frame of carphone_pristine (one person)."""
    path = sample("carphone_pristine")
    frames = np.arange(0, 120, 3)
    boxes = landmark_boxes(track("carphone_pristine").landmarks[frames])
    crops = []
    for frame, (x0, y0, x1, y1) in zip(VideoReader(path).read(frames), boxes, strict=True):
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.55 * max(x1 - x0, y1 - y0)
        crop = frame[int(max(cy - half, 0)) : int(cy + half), int(max(cx - half, 0)) : int(cx + half)]
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        crops.append(cv2.resize(grey, (25, 25), interpolation=cv2.INTER_AREA) / 255.0)
    return _hog(np.stack(crops))


# --- spread statistics ---------------------------------------------------------------------------


def test_faces_and_non_faces_separate_far_more_than_a_random_relabelling(lfw_hog):
    silhouette = real_fake_silhouette(lfw_hog, FACES)
    rng = np.random.default_rng(0)
    shuffled = [real_fake_silhouette(lfw_hog, rng.permutation(FACES)) for _ in range(5)]
    assert silhouette > 0.05
    assert silhouette > max(shuffled) + 0.05


def test_overlap_is_about_one_for_random_halves_and_low_for_faces_vs_non_faces(lfw_hog):
    halves = np.where(np.random.default_rng(1).permutation(200) < 100, "a", "b")
    mixed = neighbour_overlap(lfw_hog, halves)[("a", "b")]
    separate = neighbour_overlap(lfw_hog, np.where(FACES == 0, "faces", "other"))[("faces", "other")]
    assert mixed > 0.8
    assert separate < 0.5 and separate < mixed - 0.4


def test_statistics_on_a_tiny_input_match_numpy():
    x = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [10, 10], [12, 10]], float)
    labels = np.array([0, 0, 1, 1, 0, 0])
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    stats = feature_spread(x, labels, groups, k=1, embedding=x)
    for space in ("features", "tsne"):
        assert stats.value("centroid_distance", space, group="a") == pytest.approx(np.sqrt(2))
        every = np.linalg.norm(x - x.mean(0), axis=1).mean()
        assert stats.value("centroid_distance", space) == pytest.approx(every)
        fake = x[labels == 1]
        assert stats.value("centroid_distance", space, label=1) == pytest.approx(
            np.linalg.norm(fake - fake.mean(0), axis=1).mean()
        )
        # the square's 6 pairs: 4 sides of 2 and 2 diagonals of 2 sqrt(2)
        assert stats.value("dispersion", space, group="a") == pytest.approx((8 + 4 * np.sqrt(2)) / 6)
        assert stats.value("dispersion", space, group="b", label=0) == pytest.approx(2.0)
        assert stats.value("overlap", space, group="b", other="a") == 0.0  # pair order does not matter
        assert np.isnan(stats.value("silhouette", space, group="b"))  # one class only: undefined
        assert np.isfinite(stats.value("silhouette", space, group="a"))
    assert stats.perplexity is None and stats.seed is None


def test_overlap_with_duplicate_points():
    # the neighbour search may list copies of a sample instead of the sample itself
    x = np.r_[np.zeros((6, 3)), np.ones((6, 3))]
    assert neighbour_overlap(x, np.repeat(["a", "b"], 6), k=2) == {("a", "b"): 0.0}
    mixed = neighbour_overlap(np.zeros((12, 3)), np.tile(["a", "b"], 6), k=11)
    assert mixed == {("a", "b"): pytest.approx(1.0)}  # all neighbours: exactly the random-mix rate


def test_feature_spread_on_three_real_sets(lfw_hog, video_hog):
    faces = lfw_hog[:100]
    features = np.concatenate([faces, video_hog])
    halves = np.where(np.random.default_rng(2).permutation(100) < 50, "lfw_a", "lfw_b")
    groups = np.concatenate([halves, np.full(len(video_hog), "carphone")])
    labels = np.r_[np.zeros(100, np.int64), np.ones(len(video_hog), np.int64)]
    stats = feature_spread(features, labels, groups, k=10, seed=0)

    assert stats.embedding.shape == (len(features), 2)
    for space in ("features", "tsne"):
        same = stats.value("overlap", space, group="lfw_a", other="lfw_b")
        assert same > 0.8
        assert stats.value("overlap", space, group="lfw_a", other="carphone") < same - 0.4
        # one person in one video spreads less than 100 people
        assert stats.value("dispersion", space, group="carphone") < stats.value("dispersion", space, label=0)
        assert stats.value("silhouette", space) > 0.05

    frame = stats.to_frame()
    assert list(frame.columns) == ["space", "statistic", "group", "label", "other", "n", "value"]
    # per space: 1 all + 3 groups + 2 labels + 3 cells = 9 subsets x 2 statistics, 4 silhouettes, 3 pairs
    assert (frame.groupby("space").size() == 9 * 2 + 4 + 3).all()
    overlap = frame[(frame.statistic == "overlap") & (frame.space == "features")]
    assert set(zip(overlap.group, overlap.other, strict=True)) == {
        ("carphone", "lfw_a"),
        ("carphone", "lfw_b"),
        ("lfw_a", "lfw_b"),
    }
    data = json.loads(json.dumps(stats.to_dict(), allow_nan=False))
    assert data["n_samples"] == len(features) and data["perplexity"] == 30.0 and data["seed"] == 0
    assert len(data["rows"]) == len(frame)


def test_tsne_is_deterministic_for_a_seed(lfw_hog):
    first = tsne_embed(lfw_hog, seed=3)
    assert first.shape == (200, 2) and np.isfinite(first).all()
    assert np.array_equal(first, tsne_embed(lfw_hog, seed=3))
    # the embedding keeps the faces apart from the non-faces
    assert real_fake_silhouette(first, FACES) > real_fake_silhouette(lfw_hog, FACES)


def test_plot_is_a_png_of_the_requested_size(lfw_hog, tmp_path):
    embedding = tsne_embed(lfw_hog[::2], seed=0)
    groups = np.where(np.arange(100) % 4 < 2, "lfw", "other")
    out = plot_spread(embedding, FACES[::2], groups, tmp_path / "plots" / "tsne.png", "LFW", size=(640, 480))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (640, 480)
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # points, legend and text were drawn
    assert [p.name for p in out.parent.iterdir()] == ["tsne.png"]  # no temporary file left


def test_each_dataset_and_class_has_its_own_look_and_an_exact_count(lfw_hog):
    from dftoolkit.quality.spread import spread_figure

    embedding = tsne_embed(lfw_hog[::4], seed=0)
    labels, groups = FACES[::4], np.where(np.arange(50) % 3 == 0, "lfw", "other")
    fig = spread_figure(embedding, labels, groups, "LFW faces", unit="images")
    ax = fig.axes[0]
    cells = [(g, y) for g in ("lfw", "other") for y in (0, 1)]
    counts = [int(((groups == g) & (labels == y)).sum()) for g, y in cells]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"{g} {('real', 'fake')[y]} ({n} images)" for (g, y), n in zip(cells, counts, strict=True)
    ]
    assert [len(points.get_offsets()) for points in ax.collections] == counts  # legend = points drawn
    colours = {tuple(points.get_facecolor()[0]) for points in ax.collections}
    markers = {points.get_paths()[0].vertices.tobytes() for points in ax.collections}
    assert len(colours) == len(markers) == len(cells)
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 > ax.get_window_extent().x1  # beside the plot
    assert ax.get_title() == "LFW faces"


def test_bad_inputs_raise_clear_errors(lfw_hog):
    x, groups = lfw_hog[:10], np.array(["a"] * 5 + ["b"] * 5)
    labels = np.zeros(10, np.int64)
    with pytest.raises(ValueError, match=r"labels must be 1-D with one entry per sample \(10\)"):
        feature_spread(x, labels[:9], groups)
    with pytest.raises(ValueError, match="groups must be 1-D"):
        feature_spread(x, labels, groups[:3])
    with pytest.raises(ValueError, match="labels must be integers"):
        feature_spread(x, labels.astype(float), groups)
    bad = x.copy()
    bad[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 rows \(first: 4\)"):
        feature_spread(bad, labels, groups)
    with pytest.raises(ValueError, match="at least 2 groups"):
        neighbour_overlap(x, np.full(10, "a"))
    with pytest.raises(ValueError, match="k must be >= 1"):
        neighbour_overlap(x, groups, k=0)
    with pytest.raises(ValueError, match=r"embedding must be \(10, 2\)"):
        feature_spread(x, labels, groups, embedding=x[:, :3])
    with pytest.raises(ValueError, match="at least 3 samples"):
        tsne_embed(x[:2])
    with pytest.raises(ValueError, match="perplexity must be in"):
        tsne_embed(x, perplexity=10)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        tsne_embed(x[0])
    with pytest.raises(ValueError, match=r"embedding must be \(N, 2\)"):
        plot_spread(x, labels, groups, "unused.png")


# --- landmark jitter ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_landmarks(sample, cascade) -> np.ndarray:
    """carphone_pristine's main face, raw (unsmoothed) landmarks ``(120, 68, 2)``."""
    landmarks = face_track(sample("carphone_pristine"), cascade, smooth=1).landmarks
    assert np.isfinite(landmarks).all()  # the face is found in every frame
    return landmarks


def test_real_jitter_is_below_noisy_and_shuffled_versions(raw_landmarks):
    real = landmark_jitter(raw_landmarks)
    rng = np.random.default_rng(0)
    noisy = landmark_jitter(
        raw_landmarks + rng.normal(0, 0.5, raw_landmarks.shape)
    )  # ~2% of the eye distance
    shuffled = landmark_jitter(raw_landmarks[rng.permutation(len(raw_landmarks))])
    assert 0 < real < 0.05
    assert noisy > 2 * real
    assert shuffled > 5 * real


def test_smoothed_track_jitters_less_than_the_raw_one(raw_landmarks, track):
    assert landmark_jitter(track("carphone_pristine").landmarks) < 0.5 * landmark_jitter(raw_landmarks)


def test_rigid_motion_of_real_landmarks_gives_no_jitter(raw_landmarks):
    rng = np.random.default_rng(3)
    n, face = len(raw_landmarks), raw_landmarks[0].astype(np.float64)
    shift = np.cumsum(rng.normal(0, 3, (n, 2)), axis=0)[:, None]  # a jerky random walk, pixels
    translated = face[None] + shift
    assert landmark_jitter(translated) < 1e-9
    assert landmark_jitter(translated, align="none") > 0.1  # without alignment it would count

    angle, scale = np.cumsum(rng.normal(0, 0.05, n)), np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    centre = face.mean(axis=0)
    moved = np.einsum("tij,pj->tpi", rotation, face - centre) + centre + shift
    assert landmark_jitter(moved, align="similarity") < 1e-9
    assert landmark_jitter(moved) > 0.01  # translation alone leaves the rotation and scale


def test_frames_without_a_face_are_skipped(raw_landmarks):
    full = landmark_jitter_series(raw_landmarks)
    assert np.isnan(full[[0, -1]]).all() and np.isfinite(full[1:-1]).all()
    holed = raw_landmarks.copy()
    holed[[0, 50, 51]] = np.nan
    series = landmark_jitter_series(holed)
    undefined = [0, 1, 49, 50, 51, 52, len(holed) - 1]
    assert np.isnan(series[undefined]).all()
    kept = np.setdiff1d(np.arange(len(holed)), undefined)
    np.testing.assert_allclose(series[kept], full[kept])
    assert landmark_jitter(holed) == pytest.approx(full[kept].mean())

    alternate = raw_landmarks.copy()
    alternate[::2] = np.nan  # never 3 consecutive frames with a face
    assert np.isnan(landmark_jitter(alternate))
    assert np.isnan(landmark_jitter(raw_landmarks[:2]))
    assert np.isnan(landmark_jitter(np.full((10, 68, 2), np.nan)))


def test_video_jitter_uses_the_raw_landmarks(sample, cascade, raw_landmarks, track):
    value = video_landmark_jitter(sample("carphone_pristine"), cascade)
    assert value == pytest.approx(landmark_jitter(raw_landmarks))
    assert value != pytest.approx(landmark_jitter(track("carphone_pristine").landmarks))


def test_video_jitter_of_the_reference_boxes(sample, cascade, raw_landmarks):
    """Given a tracked face's boxes (as a FaceStore keeps them), jitter scores the face at them."""
    path = sample("carphone_pristine")
    frames = VideoReader(path).read(range(40))
    boxes = np.stack([faces.boxes[faces.largest()] for faces in cascade.detect_video(frames)])
    value = video_landmark_jitter(path, cascade, boxes=boxes)
    assert value == pytest.approx(landmark_jitter(raw_landmarks[:40]), rel=0.3)
    assert video_landmark_jitter(path, cascade, frames=40, boxes=boxes) == value
    assert np.isnan(video_landmark_jitter(path, cascade, boxes=np.full((40, 4), 1000.0)))  # no face there
    with pytest.raises(ValueError, match="frames=30 but 40 reference boxes"):
        video_landmark_jitter(path, cascade, frames=30, boxes=boxes)
    with pytest.raises(ValueError, match="200 reference boxes for 120 frames"):
        video_landmark_jitter(path, cascade, boxes=np.full((200, 4), np.nan))


def test_bad_landmarks_raise(raw_landmarks):
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        landmark_jitter(raw_landmarks[0])
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        landmark_jitter(np.zeros((5, 68, 3)))
    with pytest.raises(ValueError, match="align must be one of"):
        landmark_jitter(raw_landmarks, align="affine")
