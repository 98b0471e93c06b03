"""Feature-space spreads of datasets: t-SNE embedding, spread statistics and the t-SNE plot.

Protocol (M2TR, Figure 6): ImageNet features (``dftoolkit.quality.backbones``) of face frames, one
sample per video (the report uses the mean feature of up to 8 face frames of each video), t-SNE to
2-D, one plot per comparison with a colour and a marker per (dataset, class).
The paper does not define "spread"; :func:`feature_spread` computes the statistics below both in
the given feature space (Euclidean distance on the features as given: L2-normalise them
beforehand for cosine geometry) and in the 2-D t-SNE embedding. Inputs are ``features (N, D)``,
``labels (N,)`` integers (0 real, 1 fake, other values allowed) and ``groups (N,)`` dataset names.

Statistics (``S`` is a set of samples, ``x_i`` their vectors, ``c_S`` their mean):

- ``centroid_distance``: ``mean_{i in S} ||x_i - c_S||_2``, for all samples, each group, each
  label, and each (group, label) cell, each around its own centroid.
- ``dispersion``: mean pairwise distance ``sum_{i != j in S} ||x_i - x_j||_2 / (|S| (|S| - 1))``
  over the same subsets; NaN when ``|S| < 2``. Same units as the centroid distance.
- ``silhouette``: ``sklearn.metrics.silhouette_score`` (Euclidean) of the labels, over all
  samples and within each group; in ``[-1, 1]``, positive when real and fake form separate
  clusters. NaN where undefined: fewer than 2 distinct labels, or as many labels as samples.
- ``overlap``: cross-dataset nearest-neighbour overlap of each pair of groups ``(A, B)``, on the
  samples of ``A`` and ``B`` only (``n = n_A + n_B``). For ``i`` in ``A``, ``f_i`` is the fraction
  of its ``k`` nearest neighbours (itself excluded, ``k`` clipped to ``n - 1``) that belong to
  ``B``; a random mix gives ``E[f_i] = n_B / (n - 1)``. Then
  ``overlap = (mean_A f / (n_B / (n - 1)) + mean_B f / (n_A / (n - 1))) / 2``:
  about 1 when the two sets are mixed, 0 when they form separate clusters (above 1 when each
  sample's neighbours come mostly from the other set). Symmetric in ``A`` and ``B``.

t-SNE (:func:`tsne_embed`): scikit-learn's Barnes-Hut t-SNE with PCA initialisation, learning
rate ``"auto"`` and ``perplexity = min(30, (N - 1) / 3)`` unless given; features with more than
50 dimensions are first reduced to 50 by PCA (the usual t-SNE practice, and much faster).
Deterministic for a seed.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from dftoolkit.fileio import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "SpreadRow",
    "SpreadStats",
    "auto_perplexity",
    "centroid_distance",
    "feature_spread",
    "mean_pairwise_distance",
    "neighbour_overlap",
    "plot_spread",
    "real_fake_silhouette",
    "spread_figure",
    "tsne_embed",
]

SPACES = ("features", "tsne")
LABEL_NAMES = {0: "real", 1: "fake"}
_MARKERS = ("o", "^", "s", "D", "v", "P", "*", "X")
_CHUNK = 1024  # rows per block of the pairwise-distance sums (bounded memory)


def _as_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    """Float64 ``(N, D)`` copy of ``features``; ValueError when not 2-D, empty or not finite."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has NaN or infinite values in {int(bad.sum())} rows (first: {int(np.argmax(bad))})"
        )
    return x


def _as_vector(values: np.ndarray, n: int, name: str) -> np.ndarray:
    """``values`` as a 1-D array of length ``n``; ValueError otherwise."""
    v = np.asarray(values)
    if v.ndim != 1 or len(v) != n:
        raise ValueError(f"{name} must be 1-D with one entry per sample ({n}), got shape {v.shape}")
    return v


def _as_labels(labels: np.ndarray, n: int) -> np.ndarray:
    v = _as_vector(labels, n, "labels")
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.bool_)):
        raise ValueError(f"labels must be integers (0 real, 1 fake), got dtype {v.dtype}")
    return v.astype(np.int64)


def _as_groups(groups: np.ndarray, n: int) -> np.ndarray:
    return _as_vector(groups, n, "groups").astype(str)


def centroid_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance of ``(N, D)`` samples to their centroid (0 for one sample)."""
    x = _as_features(features)
    return float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean())


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance over the ``N (N - 1)`` ordered pairs of distinct ``(N, D)`` samples.

    Computed in blocks of rows (memory ``O(block x N)``); NaN when ``N < 2``.
    """
    x = _as_features(features)
    n = len(x)
    if n < 2:
        return float("nan")
    total = sum(cdist(x[start : start + _CHUNK], x).sum() for start in range(0, n, _CHUNK))
    return float(total / (n * (n - 1)))


def real_fake_silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Euclidean silhouette score of ``labels`` on ``(N, D)`` features, in ``[-1, 1]``.

    NaN where the score is undefined: fewer than 2 distinct labels or one label per sample.
    """
    x = _as_features(features)
    y = _as_labels(labels, len(x))
    if not 2 <= len(np.unique(y)) <= len(x) - 1:
        return float("nan")
    return float(silhouette_score(x, y, metric="euclidean"))


def neighbour_overlap(features: np.ndarray, groups: np.ndarray, k: int = 10) -> dict[tuple[str, str], float]:
    """Cross-dataset nearest-neighbour overlap of every pair of groups (see the module docstring).

    Args:
        features: ``(N, D)`` samples.
        groups: ``(N,)`` dataset names; at least 2 distinct.
        k: neighbours per sample (>= 1; clipped to ``n_A + n_B - 1`` for each pair).

    Returns:
        ``{(A, B): overlap}`` for the sorted pairs ``A < B``; ~1 for mixed sets, ~0 for separate ones.
    """
    x = _as_features(features)
    g = _as_groups(groups, len(x))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    names = np.unique(g)
    if len(names) < 2:
        raise ValueError(f"neighbour overlap needs at least 2 groups (datasets), got {list(names)}")
    return {(a, b): _pair_overlap(x, g, a, b, k) for a, b in itertools.combinations(names.tolist(), 2)}


def _pair_overlap(x: np.ndarray, groups: np.ndarray, a: str, b: str, k: int) -> float:
    keep = (groups == a) | (groups == b)
    xs, in_b = x[keep], groups[keep] == b
    n = len(xs)
    k = min(k, n - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(xs).kneighbors(xs, return_distance=False)
    # drop each sample itself; with duplicate points it may not be listed, then drop the farthest
    own = idx == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True
    neighbours = idx[~own].reshape(n, k)
    other = in_b[neighbours] != in_b[:, None]
    frac = other.mean(axis=1)
    n_b = int(in_b.sum())
    n_a = n - n_b
    return float((frac[~in_b].mean() * (n - 1) / n_b + frac[in_b].mean() * (n - 1) / n_a) / 2)


def auto_perplexity(n: int) -> float:
    """Default t-SNE perplexity for ``n`` samples: ``min(30, (n - 1) / 3)``."""
    return min(30.0, (n - 1) / 3)


def tsne_embed(
    features: np.ndarray,
    seed: int = 0,
    perplexity: float | None = None,
    pca_dim: int = 50,
    max_iter: int = 1000,
) -> np.ndarray:
    """2-D t-SNE of ``(N, D)`` features (N >= 3, D >= 2), deterministic for a ``seed``.

    Features with ``D > pca_dim`` are first projected on their ``min(pca_dim, N)`` principal
    components; t-SNE then runs with PCA initialisation, learning rate ``"auto"`` and
    ``perplexity`` (default :func:`auto_perplexity`; must be in ``(0, N)``).

    Returns:
        ``(N, 2)`` float64 embedding.
    """
    x = _as_features(features)
    n, d = x.shape
    if n < 3 or d < 2:
        raise ValueError(f"t-SNE needs at least 3 samples of at least 2 dimensions, got shape {x.shape}")
    perplexity = auto_perplexity(n) if perplexity is None else float(perplexity)
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be in (0, {n}) for {n} samples, got {perplexity}")
    if d > pca_dim:
        x = PCA(n_components=min(pca_dim, n), random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
    )
    return tsne.fit_transform(x).astype(np.float64)


@dataclass(frozen=True)
class SpreadRow:
    """One statistic on one subset in one space.

    Attributes:
        space: ``"features"`` or ``"tsne"``.
        statistic: ``"centroid_distance"``, ``"dispersion"``, ``"silhouette"`` or ``"overlap"``.
        group: the dataset, or None for all datasets (for ``overlap``: the first of the pair).
        label: the class, or None for all classes (always None for silhouette and overlap).
        other: the second dataset of an ``overlap`` pair; None otherwise.
        n: samples the statistic was computed on.
        value: the statistic (NaN where undefined).
    """

    space: str
    statistic: str
    group: str | None
    label: int | None
    other: str | None
    n: int
    value: float


@dataclass(frozen=True, eq=False)
class SpreadStats:
    """Spread statistics of a feature set and its t-SNE embedding (see the module docstring).

    Attributes:
        rows: every statistic, in both spaces.
        embedding: ``(N, 2)`` t-SNE embedding the ``"tsne"`` rows were computed on.
        k: neighbours used by the overlap (before clipping to each pair's size).
        perplexity: the t-SNE perplexity (None when the embedding was given).
        seed: the t-SNE seed (None when the embedding was given).
    """

    rows: tuple[SpreadRow, ...]
    embedding: np.ndarray
    k: int
    perplexity: float | None
    seed: int | None

    def value(
        self,
        statistic: str,
        space: str = "features",
        group: str | None = None,
        label: int | None = None,
        other: str | None = None,
    ) -> float:
        """The value of one row; an overlap pair may be given in either order. KeyError if absent."""
        if statistic == "overlap" and group is not None and other is not None:
            group, other = sorted((group, other))
        for row in self.rows:
            if (row.space, row.statistic, row.group, row.label, row.other) == (
                space,
                statistic,
                group,
                label,
                other,
            ):
                return row.value
        raise KeyError(f"no {statistic} row for space={space} group={group} label={label} other={other}")

    def to_frame(self) -> pd.DataFrame:
        """One row per statistic: ``space, statistic, group, label, other, n, value`` (None = all)."""
        import pandas as pd

        columns = ["space", "statistic", "group", "label", "other", "n", "value"]
        frame = pd.DataFrame([asdict(r) for r in self.rows], columns=columns)
        frame["label"] = frame["label"].astype("Int64")
        return frame

    def to_dict(self) -> dict:
        """JSON-ready: the parameters and ``rows`` as dicts, NaN written as None (strict JSON)."""
        rows = [{**asdict(r), "value": None if np.isnan(r.value) else r.value} for r in self.rows]
        return {
            "n_samples": len(self.embedding),
            "k": self.k,
            "perplexity": self.perplexity,
            "seed": self.seed,
            "rows": rows,
        }


def _space_rows(space: str, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> list[SpreadRow]:
    rows = []
    subsets: list[tuple[str | None, int | None, np.ndarray]] = [(None, None, np.ones(len(x), bool))]
    subsets += [(g, None, groups == g) for g in np.unique(groups).tolist()]
    subsets += [(None, lab, labels == lab) for lab in np.unique(labels).tolist()]
    subsets += [
        (g, lab, (groups == g) & (labels == lab))
        for g in np.unique(groups).tolist()
        for lab in np.unique(labels[groups == g]).tolist()
    ]
    for group, label, mask in subsets:
        n = int(mask.sum())
        rows.append(SpreadRow(space, "centroid_distance", group, label, None, n, centroid_distance(x[mask])))
        rows.append(SpreadRow(space, "dispersion", group, label, None, n, mean_pairwise_distance(x[mask])))
    for group, label, mask in subsets:
        if label is None:
            value = real_fake_silhouette(x[mask], labels[mask])
            rows.append(SpreadRow(space, "silhouette", group, None, None, int(mask.sum()), value))
    if len(np.unique(groups)) > 1:
        for (a, b), value in neighbour_overlap(x, groups, k).items():
            n = int(((groups == a) | (groups == b)).sum())
            rows.append(SpreadRow(space, "overlap", a, None, b, n, value))
    return rows


def feature_spread(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    k: int = 10,
    embedding: np.ndarray | None = None,
    seed: int = 0,
    perplexity: float | None = None,
) -> SpreadStats:
    """Spread statistics of ``(N, D)`` features in feature space and in their 2-D t-SNE embedding.

    Args:
        features: ``(N, D)`` finite features, one row per sample (e.g. per video).
        labels: ``(N,)`` integer classes (0 real, 1 fake).
        groups: ``(N,)`` dataset names; with a single dataset no overlap rows are produced.
        k: neighbours per sample for the overlap.
        embedding: a precomputed ``(N, 2)`` t-SNE embedding; computed by :func:`tsne_embed`
            with ``seed`` and ``perplexity`` when None.

    Returns:
        :class:`SpreadStats` with the statistics defined in the module docstring.

    Raises:
        ValueError: bad shapes, lengths that differ, NaN/infinite features, ``k < 1``.
    """
    x = _as_features(features)
    y = _as_labels(labels, len(x))
    g = _as_groups(groups, len(x))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if embedding is None:
        perplexity = auto_perplexity(len(x)) if perplexity is None else float(perplexity)
        emb = tsne_embed(x, seed=seed, perplexity=perplexity)
        used_seed: int | None = seed
    else:
        emb = _as_features(embedding, "embedding")
        if emb.shape != (len(x), 2):
            raise ValueError(f"embedding must be ({len(x)}, 2), got {emb.shape}")
        perplexity, used_seed = None, None
    rows = _space_rows("features", x, y, g, k) + _space_rows("tsne", emb, y, g, k)
    return SpreadStats(tuple(rows), emb, k, perplexity, used_seed)


def spread_figure(
    embedding: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    title: str = "t-SNE of features",
    size: tuple[int, int] = (900, 700),
    unit: str = "points",
) -> Figure:
    """Scatter plot of a ``(N, 2)`` embedding, ``size = (width, height)`` pixels at 100 dpi.

    Each (dataset, label) cell has its own colour (tab10, tab20 beyond 10 cells) and its own marker
    (``o ^ s D v P * X``), so the pair is unique for up to 40 cells; its legend entry, right of the
    plot, reads ``"<dataset> <real|fake> (<points drawn> <unit>)"``. Uses matplotlib's Agg canvas
    (no global pyplot state).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    emb = _as_features(embedding, "embedding")
    if emb.shape[1] != 2:
        raise ValueError(f"embedding must be (N, 2), got {emb.shape}")
    y = _as_labels(labels, len(emb))
    g = _as_groups(groups, len(emb))
    cells = [(name, label) for name in np.unique(g).tolist() for label in np.unique(y[g == name]).tolist()]
    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.08, 0.62, 0.82))
    cmap = matplotlib.colormaps["tab10" if len(cells) <= 10 else "tab20"]
    for i, (name, label) in enumerate(cells):
        mask = (g == name) & (y == label)
        count = int(mask.sum())
        ax.scatter(
            emb[mask, 0],
            emb[mask, 1],
            s=18,
            color=cmap(i % cmap.N),
            marker=_MARKERS[i % len(_MARKERS)],
            alpha=0.8,
            label=f"{name} {LABEL_NAMES.get(label, f'label {label}')} "
            f"({count} {unit.removesuffix('s') if count == 1 else unit})",
        )
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    return fig


def plot_spread(
    embedding: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    path: str | os.PathLike[str],
    title: str = "t-SNE of features",
    size: tuple[int, int] = (900, 700),
    unit: str = "points",
) -> Path:
    """:func:`spread_figure` written atomically as a PNG of ``size = (width, height)`` pixels.

    Returns:
        ``path`` as a Path.
    """
    fig = spread_figure(embedding, labels, groups, title, size, unit)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return path
