"""Detector metrics: AUC, AP and EER equal scikit-learn's and a brute force, one class gives None with
the reason, the video rules match hand computations, breakdowns score fake-only methods against
their dataset's reals, the bootstrap is seeded, and the files are valid JSON and readable PNGs."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)

from dftoolkit.bootstrap import resample_counts
from dftoolkit.detectors.metrics import (
    METRICS_FILES,
    _weighted_auc,
    auc_interval,
    binary_metrics,
    equal_error_rate,
    evaluate_scores,
    video_scores,
    write_metrics,
)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _brute_eer(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """EER by counting: the one place where FNR - FPR reaches 0 on the straight segments between
    the operating points of every threshold; the threshold of the point with the smallest gap."""
    thresholds = np.r_[np.inf, np.unique(p)[::-1]]
    fpr = np.array([(p[y == 0] >= t).mean() for t in thresholds])
    fnr = np.array([(p[y == 1] < t).mean() for t in thresholds])
    gap = fnr - fpr
    crossings = []
    for k in range(len(thresholds) - 1):
        if gap[k] > 0 >= gap[k + 1]:
            share = gap[k] / (gap[k] - gap[k + 1])
            at_fpr = fpr[k] + share * (fpr[k + 1] - fpr[k])
            assert at_fpr == pytest.approx(fnr[k] + share * (fnr[k + 1] - fnr[k]), abs=1e-12)
            crossings.append(at_fpr)
    assert len(crossings) == 1
    nearest = min(range(len(thresholds)), key=lambda k: (abs(gap[k]), thresholds[k]))
    return crossings[0], thresholds[nearest]


def _cases() -> list:
    rng = np.random.default_rng(7)
    cases = []
    for seed, n in enumerate((7, 40, 301)):
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        p = np.clip(rng.normal(0.4 + 0.2 * y, 0.25), 0, 1)
        cases.append(pytest.param(y, p, id=f"random-{n}"))
        cases.append(pytest.param(y, np.round(p, 1), id=f"tied-{n}"))
        cases.append(pytest.param(y, np.round(rng.random(n) * 3) / 3, id=f"few-values-{seed}"))
    return cases


@pytest.mark.parametrize(("y", "p"), _cases())
def test_metrics_equal_scikit_learn_and_brute_force(y, p):
    metrics = binary_metrics(y, p)
    assert metrics["auc"] == roc_auc_score(y, p)
    assert metrics["ap"] == average_precision_score(y, p)
    eer, threshold = _brute_eer(y, p)
    assert metrics["eer"] == pytest.approx(eer, abs=1e-12)
    assert metrics["eer_threshold"] == threshold
    assert metrics["acc@eer"] == accuracy_score(y, p >= threshold)
    assert metrics["acc@0.5"] == accuracy_score(y, p > 0.5)
    assert metrics["f1@0.5"] == pytest.approx(f1_score(y, p > 0.5), abs=1e-12)
    assert metrics["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-9)
    assert (metrics["n"], metrics["n_real"], metrics["n_fake"]) == (len(y), (y == 0).sum(), y.sum())
    assert metrics["undefined"] == {}


def test_eer_matches_the_interpolated_roc_root_and_hand_values():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = rng.beta(2 + y, 3 - y)
    fpr, tpr, _ = roc_curve(y, p)
    root = brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1, xtol=1e-14)
    assert equal_error_rate(y, p)[0] == pytest.approx(root, abs=1e-9)
    # FNR - FPR: 1, 1/2, 0 (at threshold 0.6), ...: EER 1/2 exactly at a point
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])) == (0.5, 0.6)
    # 1/2 at 0.7 (FPR 1/3), -1/3 at 0.3 (FPR 1/3): crossing at FPR 1/3, 0.7 the nearer point
    eer, threshold = equal_error_rate(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.3, 0.8]))
    assert (eer, threshold) == (pytest.approx(1 / 3), 0.7)


def test_one_class_gives_none_with_the_reason():
    reals = binary_metrics([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    reason = "one class only (4 reals, 0 fakes)"
    for key in ("auc", "ap", "eer", "eer_threshold", "acc@eer"):
        assert reals[key] is None and reals["undefined"][key] == reason
    assert reals["f1@0.5"] is None and "no fake" in reals["undefined"]["f1@0.5"]
    assert reals["acc@0.5"] == 1.0
    assert reals["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.7, 0.6])))
    fakes = binary_metrics([1, 1], [0.9, 0.2])
    assert fakes["auc"] is None and fakes["f1@0.5"] == pytest.approx(2 / 3)
    json.dumps(reals, allow_nan=False)
    with pytest.raises(ValueError, match="probabilities"):
        binary_metrics([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="labels must be 0"):
        binary_metrics([0, 2], [0.5, 0.5])


def _table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["dataset", "video_id", "label", "logit", "method"])


HAND = _table(
    [
        ("ff", "v1", 1, 0.0, "Deepfakes"),
        ("ff", "v1", 1, 4.0, "Deepfakes"),
        ("ff", "v2", 0, -1.0, None),
        ("ff", "v2", 0, -1.0, None),
        ("ff", "v2", 0, 2.0, None),
    ]
)


def test_video_rules_match_hand_computations():
    by_probability = video_scores(HAND, "mean_probability")
    by_logit = video_scores(HAND, "mean_logit")
    assert list(by_probability.columns) == [
        "dataset",
        "video_id",
        "label",
        "method",
        "probability",
        "n_scores",
    ]
    assert by_probability.video_id.tolist() == ["v1", "v2"]
    assert by_probability.label.tolist() == [1, 0] and by_probability.n_scores.tolist() == [2, 3]
    assert by_probability.method.tolist() == ["Deepfakes", None]
    assert by_probability.probability.tolist() == pytest.approx(
        [(0.5 + _sigmoid(4)) / 2, (2 * _sigmoid(-1) + _sigmoid(2)) / 3]
    )
    assert by_logit.probability.tolist() == pytest.approx([_sigmoid(2), 0.5])
    assert (by_logit.probability - by_probability.probability).abs().min() > 0.02
    assert video_scores(HAND.drop(columns="method"), "mean_logit").method.tolist() == [None, None]


def test_a_video_whose_label_or_method_varies_is_refused_by_name():
    mixed = HAND.copy()
    mixed.loc[4, "label"] = 1
    with pytest.raises(ValueError, match=r"label .* varies in ff/v2"):
        video_scores(mixed, "mean_logit")
    mixed = HAND.copy()
    mixed.loc[1, "method"] = "FaceSwap"
    with pytest.raises(ValueError, match=r"method .* varies in ff/v1"):
        evaluate_scores(mixed, "mean_logit")
    bad = HAND.copy()
    bad.loc[3, "logit"] = np.nan
    with pytest.raises(ValueError, match="ff/v2 has a logit that is not a finite number"):
        video_scores(bad, "mean_logit")
    with pytest.raises(ValueError, match="rule must be one of"):
        video_scores(HAND, "median")
    with pytest.raises(ValueError, match="lacks column"):
        video_scores(HAND.drop(columns="logit"), "mean_logit")


def _corpus(seed: int = 0) -> pd.DataFrame:
    """ff: 6 reals, Deepfakes and FaceSwap fakes (fake-only methods); dfdc: method "x" tags both
    classes; onlyfake: fakes without reals. 3 frames per video, fakes scoring higher."""
    rng = np.random.default_rng(seed)
    videos = [("ff", f"r{i}", 0, "youtube") for i in range(6)]
    videos += [("ff", f"d{i}", 1, "Deepfakes") for i in range(5)]
    videos += [("ff", f"s{i}", 1, "FaceSwap") for i in range(4)]
    videos += [("dfdc", f"x{i}", i % 2, "x") for i in range(8)]
    videos += [("onlyfake", f"o{i}", 1, "m") for i in range(3)]
    rows = [(d, v, y, rng.normal(1.5 * y - 0.5), m) for d, v, y, m in videos for _ in range(3)]
    return _table(rows)


def test_per_method_breakdown_against_the_reals():
    table = _corpus()
    report = evaluate_scores(table, "mean_probability", bootstrap=50)
    videos = report.videos
    rows = {(r["dataset"], r["method"]): r for r in report.per_method}
    assert set(rows) == {("ff", "Deepfakes"), ("ff", "FaceSwap"), ("dfdc", "x"), ("onlyfake", "m")}
    for method in ("Deepfakes", "FaceSwap"):
        row = rows[("ff", method)]
        scored = videos[(videos.dataset == "ff") & ((videos.method == method) | (videos.label == 0))]
        assert row["reals_from"] == "dataset" and (row["n_real"], row["n"]) == (6, len(scored))
        assert row["auc"] == roc_auc_score(scored.label, scored.probability)
    dfdc = rows[("dfdc", "x")]
    assert dfdc["reals_from"] == "method" and (dfdc["n_real"], dfdc["n_fake"]) == (4, 4)
    alone = rows[("onlyfake", "m")]
    assert alone["auc"] is None and alone["auc_ci"] is None
    assert alone["undefined"]["auc_ci"] == "one class only (0 reals, 3 fakes)"
    assert [r["dataset"] for r in report.per_dataset] == ["dfdc", "ff", "onlyfake"]
    assert report.video["n"] == 26 and report.frame["n"] == 78
    assert report.frame["auc"] == roc_auc_score(table.label, 1 / (1 + np.exp(-table.logit)))


def test_bootstrap_interval_holds_the_auc_and_is_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = rng.beta(2 + y, 3 - y)
    low, high = auc_interval(y, p, draws=500, seed=4)
    assert low < roc_auc_score(y, p) < high
    assert auc_interval(y, p, draws=500, seed=4) == (low, high) != auc_interval(y, p, draws=500, seed=5)
    assert auc_interval(y, y * 0.5 + 0.2, draws=20) == (1.0, 1.0)
    first, again = (evaluate_scores(_corpus(), "mean_logit", bootstrap=200, seed=3) for _ in range(2))
    assert first.to_dict() == again.to_dict()
    for row in [first.video, *first.per_dataset, *first.per_method]:
        if row["auc"] is not None:
            assert row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]


def test_each_resampling_auc_is_the_auc_of_the_resampled_videos():
    rng = np.random.default_rng(2)
    fake, real = np.round(rng.random(30), 1), np.sort(np.round(rng.random(20) * 0.8, 1))
    w_fake, w_real = resample_counts(rng, 30, 6), resample_counts(rng, 20, 6)
    expected = [
        roc_auc_score(np.repeat([1] * 30 + [0] * 20, counts), np.repeat(np.r_[fake, real], counts))
        for counts in np.concatenate([w_fake, w_real], axis=1).astype(int)
    ]
    assert _weighted_auc(fake, real, w_fake, w_real) == pytest.approx(expected, abs=1e-12)


def test_write_metrics_writes_json_with_the_initialisation_and_pngs(tmp_path):
    report = evaluate_scores(_corpus(), "mean_logit", bootstrap=50)
    files = write_metrics(report, tmp_path / "out", initialisation="path sha256:abc123")
    assert sorted(p.name for p in files.values()) == sorted(METRICS_FILES)
    text = files["json"].read_text()
    data = json.loads(text)
    assert next(iter(data)) == "initialisation" and data["initialisation"] == "path sha256:abc123"
    assert data["settings"]["rule"] == "mean_logit" and len(data["videos"]) == 26
    assert data["video"]["auc"] == report.video["auc"] and "NaN" not in text
    for name in ("roc", "scores"):
        image = cv2.imread(str(files[name]))
        assert image is not None and image.shape[0] > 100
    with pytest.raises(TypeError):
        write_metrics(report, tmp_path / "other")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="initialisation"):
        write_metrics(report, tmp_path / "other", initialisation=" ")
    assert not (tmp_path / "other").exists()
