"""Detector metrics: frame and video AUC, AP, EER, accuracy, F1 and log-loss, per dataset and method,
with bootstrap intervals on the video AUC; written as JSON with ROC and score-histogram plots.

Conventions (label 1 = fake; a score is the probability of fake, ``sigmoid(logit)``, in [0, 1]):

- **AUC** and **AP**: scikit-learn's ``roc_auc_score`` and ``average_precision_score``.
- **EER** (:func:`equal_error_rate`): the error where FPR = FNR on scikit-learn's ROC curve
  (``drop_intermediate=False``) joined by straight lines: between the last point with
  FNR > FPR and the next one, FNR - FPR falls linearly to <= 0 and the EER is the FPR (= FNR)
  where it is 0. Its threshold is that of the nearer of those two ROC points (smaller
  ``|FNR - FPR|``, a tie to the lower threshold), one of the scores.
- **acc@0.5**, **f1@0.5**: fake when p > 0.5 (logit > 0); F1 of the fake class.
  **acc@eer**: fake when p >= the EER threshold.
- **log_loss**: mean binary cross-entropy in nats, p clipped to [:data:`EPS`, 1 - :data:`EPS`].
- **Undefined**: with one class AUC, AP, EER, its threshold and acc@eer are None (never NaN),
  as is F1 when no video is fake or called fake; ``undefined`` names each with the reason.

Video scores (:func:`video_scores`) are keyed by (dataset, video_id), the rows of a video being its
frames or clips, by the detector's rule (:data:`~dftoolkit.detectors.base.VIDEO_SCORES`):
``mean_probability`` the mean of ``sigmoid(logit)``, ``mean_logit`` the sigmoid of the mean logit.

Breakdowns (:func:`evaluate_scores`): frame (row) and video metrics over everything; video metrics
per dataset, and per (dataset, method) for each method that has fakes: a group holding both classes
is scored alone, a fake-only group against all the reals of its dataset (``reals_from`` says which);
a group without fakes (the reals' own tag) is no method row. Every video row carries ``auc_ci``: the
95 % percentile interval of the AUC over ``bootstrap`` resamplings of the videos, fakes and reals
resampled separately (each keeps its count), seeded by ``seed`` (the same for every row).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import expit

from dftoolkit.bootstrap import percentile_interval, resample_counts
from dftoolkit.detectors.base import VIDEO_SCORES
from dftoolkit.fileio import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "EPS",
    "METRICS_FILES",
    "MetricsReport",
    "auc_interval",
    "binary_metrics",
    "equal_error_rate",
    "evaluate_scores",
    "video_scores",
    "write_metrics",
]

EPS = 1e-7
"""Probabilities are clipped to [EPS, 1 - EPS] for the log-loss (at most 16.1 nats per score)."""
METRICS_FILES = ("metrics.json", "roc.png", "scores.png")
"""What :func:`write_metrics` writes."""
_RANKING = ("auc", "ap", "eer", "eer_threshold", "acc@eer")  # need both classes
_COLUMNS = ("dataset", "video_id", "label", "logit")
_CHUNK = 64  # bootstrap resamplings computed at once


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)`` of ``(N,)`` labels (both classes) and scores, by the rule of the module."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    gap = 1 - tpr - fpr  # FNR - FPR: 1 at the first point (threshold inf), -1 at the last, decreasing
    j = int(np.argmax(gap <= 0))
    i = j - 1
    eer = fpr[i] + gap[i] / (gap[i] - gap[j]) * (fpr[j] - fpr[i])
    return float(eer), float(thresholds[j if -gap[j] <= gap[i] else i])


def binary_metrics(labels: Any, scores: Any) -> dict[str, Any]:
    """Metrics of ``(N,)`` labels (0 real, 1 fake) and scores (probability of fake, [0, 1]).

    Returns:
        ``n``, ``n_real``, ``n_fake``; ``auc``, ``ap``, ``eer``, ``eer_threshold``, ``acc@0.5``,
        ``acc@eer``, ``f1@0.5``, ``log_loss`` (floats, None where undefined); ``undefined``:
        metric -> why it is None. The rules are the module's.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels)
    p = np.asarray(scores, np.float64)
    if y.ndim != 1 or y.shape != p.shape or not len(y):
        raise ValueError(f"labels and scores must be 1-D of one length >= 1, got {y.shape} and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got {sorted(set(y.tolist()) - {0, 1})[:5]}")
    if not (np.isfinite(p) & (p >= 0) & (p <= 1)).all():
        raise ValueError("scores must be probabilities in [0, 1]")
    y = y.astype(np.int64)
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    called = p > 0.5
    tp, fp = int((called & (y == 1)).sum()), int((called & (y == 0)).sum())
    f1_denominator = n_fake + tp + fp  # 2 tp + fp + fn
    clipped = np.clip(p, EPS, 1 - EPS)
    out: dict[str, Any] = {
        "n": len(y),
        "n_real": n_real,
        "n_fake": n_fake,
        "auc": None,
        "ap": None,
        "eer": None,
        "eer_threshold": None,
        "acc@0.5": float((called == y).mean()),
        "acc@eer": None,
        "f1@0.5": 2 * tp / f1_denominator if f1_denominator else None,
        "log_loss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
        "undefined": {},
    }
    if not f1_denominator:
        out["undefined"]["f1@0.5"] = "no fake, and none scored above 0.5"
    if not n_real or not n_fake:
        out["undefined"].update(dict.fromkeys(_RANKING, f"one class only ({n_real} reals, {n_fake} fakes)"))
        return out
    out["auc"] = float(roc_auc_score(y, p))
    out["ap"] = float(average_precision_score(y, p))
    out["eer"], out["eer_threshold"] = equal_error_rate(y, p)
    out["acc@eer"] = float(((p >= out["eer_threshold"]) == y).mean())
    return out


def _weighted_auc(fake: np.ndarray, real: np.ndarray, w_fake: np.ndarray, w_real: np.ndarray) -> np.ndarray:
    """``(D,)`` AUC of each resampling: ``fake`` ``(F,)`` and sorted ``real`` ``(R,)`` scores, each
    drawn ``w_fake`` ``(D, F)`` and ``w_real`` ``(D, R)`` times (rows summing to F and R); ties 1/2."""
    below = np.searchsorted(real, fake, "left")
    up_to = np.searchsorted(real, fake, "right")
    cumulative = np.concatenate([np.zeros((len(w_real), 1)), np.cumsum(w_real, axis=1)], axis=1)
    wins = (cumulative[:, below] + cumulative[:, up_to]) / 2  # (D, F) reals beaten by each fake
    return (w_fake * wins).sum(axis=1) / (len(fake) * len(real))


def auc_interval(labels: Any, scores: Any, *, draws: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile interval of the AUC of ``(N,)`` labels (both classes) and scores over
    ``draws`` resamplings, the fakes and the reals each resampled with replacement (seeded)."""
    y = np.asarray(labels)
    p = np.asarray(scores, np.float64)
    fake, real = p[y == 1], np.sort(p[y == 0])
    if not len(fake) or not len(real) or draws < 1:
        raise ValueError(
            f"need both classes and draws >= 1, got {len(real)} reals, {len(fake)} fakes, {draws}"
        )
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            _weighted_auc(
                fake, real, resample_counts(rng, len(fake), size), resample_counts(rng, len(real), size)
            )
            for size in (min(_CHUNK, draws - start) for start in range(0, draws, _CHUNK))
        ]
    )
    return percentile_interval(values)  # never None: every resampling holds both classes


# -- video scores ----------------------------------------------------------------------------------


def _checked(frame_table: pd.DataFrame) -> pd.DataFrame:
    """dataset, video_id, label (int64), logit (float64) and method (None where absent) of every
    row; a ValueError naming the problem (and a video) otherwise."""
    missing = [c for c in _COLUMNS if c not in frame_table.columns]
    if missing:
        raise ValueError(f"the score table lacks column(s) {missing}; it needs {list(_COLUMNS)}[, method]")
    if frame_table.empty:
        raise ValueError("the score table holds no row")
    table = frame_table[list(_COLUMNS)].copy()
    table["method"] = frame_table["method"] if "method" in frame_table.columns else None
    if table.dataset.isna().any() or table.video_id.isna().any():
        raise ValueError("dataset and video_id must be given on every row")
    table["logit"] = pd.to_numeric(table.logit, errors="coerce").astype(np.float64)
    for bad, what in (
        (~np.isfinite(table.logit), "a logit that is not a finite number"),
        (~table.label.isin((0, 1)), "a label other than 0 (real) and 1 (fake)"),
    ):
        if bad.any():
            first = table[bad].iloc[0]
            raise ValueError(f"video {first.dataset}/{first.video_id} has {what} ({bad.sum()} row(s) in all)")
    table["label"] = table.label.astype(np.int64)
    return table


def _aggregate(table: pd.DataFrame, rule: str) -> pd.DataFrame:
    """One row per (dataset, video_id) of a :func:`_checked` table, in order of first appearance."""
    if rule not in VIDEO_SCORES:
        raise ValueError(f"rule must be one of {VIDEO_SCORES}, got {rule!r}")
    grouped = table.assign(probability=expit(table.logit)).groupby(["dataset", "video_id"], sort=False)
    for column in ("label", "method"):
        counts = grouped[column].nunique(dropna=False)
        if (counts > 1).any():
            names = ", ".join(f"{d}/{v}" for d, v in counts.index[counts > 1][:5])
            raise ValueError(f"a video's {column} must be the same on all its rows; it varies in {names}")
    videos = grouped.agg(
        label=("label", "first"),
        method=("method", "first"),
        mean_logit=("logit", "mean"),
        mean_probability=("probability", "mean"),
        n_scores=("logit", "size"),
    ).reset_index()
    score = videos.mean_probability if rule == "mean_probability" else expit(videos.mean_logit)
    return pd.DataFrame(
        {
            "dataset": videos.dataset,
            "video_id": videos.video_id,
            "label": videos.label.astype(np.int64),
            "method": videos.method.astype(object).where(videos.method.notna(), None),
            "probability": score.astype(np.float64),
            "n_scores": videos.n_scores.astype(np.int64),
        }
    )


def video_scores(frame_table: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Video probabilities of fake from frame (or clip) scores.

    Args:
        frame_table: rows ``dataset``, ``video_id``, ``label`` (0/1, the same on all a video's
            rows), ``logit`` (finite, positive = fake) and optionally ``method`` (the same too).
        rule: ``"mean_probability"`` or ``"mean_logit"`` (a detector's ``spec.video_score``).

    Returns:
        One row per (dataset, video_id), in order of first appearance: ``dataset``, ``video_id``,
        ``label``, ``method`` (None where not given), ``probability`` ([0, 1]) and ``n_scores``
        (rows averaged). A ValueError names the video when a label or method varies.
    """
    return _aggregate(_checked(frame_table), rule)


# -- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsReport:
    """What :func:`evaluate_scores` found (metric dicts as :func:`binary_metrics`'s).

    Attributes:
        frame: metrics of every row's ``sigmoid(logit)``.
        video: video metrics over all videos, with ``auc_ci``.
        per_dataset: ``{"dataset", **video metrics, "auc_ci"}`` per dataset, sorted.
        per_method: ``{"dataset", "method", "reals_from", **video metrics, "auc_ci"}`` per (dataset,
            method) with fakes; ``reals_from`` ``"method"`` (its own) or ``"dataset"`` (all of them).
        videos: :func:`video_scores`'s table.
        settings: ``rule``, ``bootstrap``, ``seed``, ``threshold`` (0.5) and ``log_loss_eps``.
    """

    frame: dict[str, Any]
    video: dict[str, Any]
    per_dataset: list[dict[str, Any]]
    per_method: list[dict[str, Any]]
    videos: pd.DataFrame
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain Python values, None for missing): settings, the metrics, the videos."""
        videos = self.videos.astype(object).where(self.videos.notna(), None)
        return {
            "settings": self.settings,
            "frame": self.frame,
            "video": self.video,
            "per_dataset": self.per_dataset,
            "per_method": self.per_method,
            "videos": videos.to_dict(orient="records"),
        }


def _video_metrics(videos: pd.DataFrame, bootstrap: int, seed: int) -> dict[str, Any]:
    """:func:`binary_metrics` of ``videos`` with ``auc_ci`` (``[low, high]`` or None)."""
    y, p = videos.label.to_numpy(), videos.probability.to_numpy()
    metrics = binary_metrics(y, p)
    metrics["auc_ci"] = None
    if metrics["auc"] is None:
        metrics["undefined"]["auc_ci"] = metrics["undefined"]["auc"]
    else:
        metrics["auc_ci"] = list(auc_interval(y, p, draws=bootstrap, seed=seed))
    return metrics


def evaluate_scores(
    frame_table: pd.DataFrame, rule: str, *, bootstrap: int = 1000, seed: int = 0
) -> MetricsReport:
    """Frame and video metrics of a detector's scores, overall, per dataset and per method.

    Args:
        frame_table: as :func:`video_scores` takes it (a row per frame or clip).
        rule: how a video's rows combine (:data:`~dftoolkit.detectors.base.VIDEO_SCORES`).
        bootstrap: resamplings for the 95 % interval of each video AUC (>= 1).
        seed: seeds the resamplings.

    Example:
        >>> report = evaluate_scores(scores, detector.spec.video_score)  # doctest: +SKIP
        >>> report.video["auc"], report.video["auc_ci"]  # doctest: +SKIP
    """
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1, got {bootstrap}")
    table = _checked(frame_table)
    videos = _aggregate(table, rule)
    per_dataset, per_method = [], []
    for dataset, of_dataset in videos.groupby("dataset", sort=True):
        per_dataset.append({"dataset": dataset, **_video_metrics(of_dataset, bootstrap, seed)})
        reals = of_dataset[of_dataset.label == 0]
        for method, group in of_dataset.groupby("method", sort=True, dropna=False):
            if not (group.label == 1).any():
                continue
            own = (group.label == 0).any()
            scored = group if own else pd.concat([group, reals])
            per_method.append(
                {
                    "dataset": dataset,
                    "method": None if pd.isna(method) else method,
                    "reals_from": "method" if own else "dataset",
                    **_video_metrics(scored, bootstrap, seed),
                }
            )
    return MetricsReport(
        frame=binary_metrics(table.label.to_numpy(), expit(table.logit.to_numpy())),
        video=_video_metrics(videos, bootstrap, seed),
        per_dataset=per_dataset,
        per_method=per_method,
        videos=videos,
        settings={"rule": rule, "bootstrap": bootstrap, "seed": seed, "threshold": 0.5, "log_loss_eps": EPS},
    )


# -- files -----------------------------------------------------------------------------------------


def write_metrics(
    report: MetricsReport, out_dir: str | os.PathLike[str], *, initialisation: str
) -> dict[str, Path]:
    """Write :data:`METRICS_FILES` into ``out_dir`` atomically: ``metrics.json`` (``initialisation``,
    the tool, then :meth:`MetricsReport.to_dict`), ``roc.png`` (video ROC curves) and ``scores.png``
    (histograms of the video probabilities by class).

    Args:
        initialisation: where the detector's weights came from, e.g. ``"random"`` or
            ``"path sha256:..."``; required so that no result omits it.

    Returns:
        ``{"json", "roc", "scores"}`` -> path.
    """
    from dftoolkit import __version__

    if not isinstance(initialisation, str) or not initialisation.strip():
        raise ValueError(f"initialisation must name where the weights came from, got {initialisation!r}")
    out = Path(out_dir)
    files = dict(zip(("json", "roc", "scores"), (out / name for name in METRICS_FILES), strict=True))
    _plot_roc(report, files["roc"])
    _plot_scores(report, files["scores"])
    data = {"initialisation": initialisation, "tool": f"dftoolkit {__version__}", **report.to_dict()}
    atomic_write_text(files["json"], json.dumps(data, indent=1, allow_nan=False))
    return files


def _scopes(report: MetricsReport) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """``(name, videos, metrics)``: all videos (``"all"``) when several datasets, then each dataset."""
    videos = report.videos
    scopes = [(row["dataset"], videos[videos.dataset == row["dataset"]], row) for row in report.per_dataset]
    if len(scopes) > 1:
        scopes.insert(0, ("all", videos, report.video))
    return scopes


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _plot_roc(report: MetricsReport, path: Path) -> None:
    """Video ROC curve of each scope with both classes, its EER point; the chance diagonal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(5.5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for name, videos, metrics in _scopes(report):
        if metrics["auc"] is None:
            continue
        fpr, tpr, _ = roc_curve(videos.label, videos.probability)
        (line,) = ax.plot(fpr, tpr, linewidth=2 if name == "all" else 1.2)
        line.set_label(f"{name}: AUC {metrics['auc']:.3f}, EER {metrics['eer']:.3f}")
        ax.plot(metrics["eer"], 1 - metrics["eer"], "o", color=line.get_color(), markersize=4)
    ax.set_xlim(-0.01, 1.01)  # curves along the axes stay visible
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (reals called fake)")
    ax.set_ylabel("true positive rate (fakes called fake)")
    ax.set_title(f"Video ROC ({report.settings['rule']}; dots: EER)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no scope holds both classes", ha="center", color="grey")
    _save(fig, path)


def _plot_scores(report: MetricsReport, path: Path) -> None:
    """Histogram of the video probabilities of fake by class, one panel per scope; 0.5 and EER
    threshold lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scopes = _scopes(report)
    fig = Figure(figsize=(4.5 * len(scopes), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(scopes), squeeze=False)[0]
    bins = np.linspace(0, 1, 21)
    for ax, (name, videos, metrics) in zip(axes, scopes, strict=True):
        for label, kind, colour in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
            values = videos.probability[videos.label == label]
            ax.hist(values, bins=bins, color=colour, alpha=0.5, label=f"{kind} ({len(values)})")
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        if metrics["eer_threshold"] is not None:
            ax.axvline(
                metrics["eer_threshold"], color="black", linestyle="--", linewidth=1, label="EER threshold"
            )
        ax.set_xlim(0, 1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("video probability of fake")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("videos")
    fig.suptitle(f"Video scores by class ({report.settings['rule']})", fontsize=10)
    _save(fig, path)
