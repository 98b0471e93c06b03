"""The shortcut audit on clips cut from a real sample video: it flags a real shortcut, invents none,
never splits a fake from its original, and says why when it cannot compute."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess.store import FaceStore, VideoFaces
from dftoolkit.quality import AuditReport, QualityConfig, audit, quality_report
from dftoolkit.quality.audit import (
    ALL_FEATURES,
    ALL_METADATA,
    FEATURES,
    _frame_stats,
    _out_of_fold,
    audit_groups,
    write_audit,
)
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoReader, VideoWriter

GROUPS, LENGTH = 30, 4  # 30 clips of 4 frames from carphone_pristine's 120: one person per clip
SIZES = ((176, 144), (128, 96), (96, 80))  # groups differ in size and rate, the classes do not
RATES = (25.0, 30.0, 15.0)
FAST = {"workers": 1, "bootstrap": 200}


@pytest.fixture(scope="module")
def clips(sample):
    """``(frames, fps)`` per group, each clip cut to one of three sizes at one of three rates."""
    frames = VideoReader(sample("carphone_pristine")).read(np.arange(GROUPS * LENGTH))
    out = []
    for i in range(GROUPS):
        w, h = SIZES[i % 3]
        x0, y0 = (176 - w) // 2 + (i % 2) * (176 - w) // 4, (144 - h) // 2
        out.append((frames[i * LENGTH : (i + 1) * LENGTH, y0 : y0 + h, x0 : x0 + w], RATES[i // 3 % 3]))
    return out


def _box(clip: np.ndarray) -> list[float]:
    """A fixed "face" box: the middle half of the width, 60% of the height."""
    h, w = clip.shape[1:3]
    return [w * 0.25, h * 0.2, w * 0.75, h * 0.8]


def _blur_box(clip: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (round(v) for v in _box(clip))
    out = clip.copy()
    for frame in out:
        frame[y0:y1, x0:x1] = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), 2.5)
    return out


def _write(path, frames, fps, **options) -> None:
    with VideoWriter(path, fps=fps, **options) as writer:
        writer.write_many(frames)


def _corpus(root, clips, kind: str, seed: int = 0) -> Manifest:
    """Per group a real and a fake of the same person.

    ``shortcut``: the same frames, the real at crf 23, the fake lossless (libx264rgb): the label
    is in the encoding. ``null``: both at crf 23, one of them mirrored, which one is called fake
    a coin flip. ``blur``: both at crf 23, the fake's face box blurred.
    """
    rng = np.random.default_rng(seed)
    records = []
    for i, (clip, fps) in enumerate(clips):
        real, fake = f"g{i:02d}_real", f"g{i:02d}_fake"
        if kind == "shortcut":
            _write(root / f"{real}.mp4", clip, fps, crf=23)
            _write(root / f"{fake}.mp4", clip, fps, lossless=True)
        else:
            versions = [clip, clip[:, :, ::-1].copy() if kind == "null" else _blur_box(clip)]
            if kind == "null" and rng.random() < 0.5:
                versions.reverse()
            _write(root / f"{real}.mp4", versions[0], fps, crf=23)
            _write(root / f"{fake}.mp4", versions[1], fps, crf=23)
        person = f"p{i:02d}"
        records.append(VideoRecord("toy", real, f"{real}.mp4", 0, method="real", target_id=person))
        records.append(
            VideoRecord("toy", fake, f"{fake}.mp4", 1, method=kind, target_id=person, original_id=real)
        )
    return Manifest(records, root=root)


@pytest.fixture(scope="module")
def shortcut(clips, tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("shortcut"), clips, "shortcut")


@pytest.fixture(scope="module")
def shortcut_report(shortcut) -> AuditReport:
    return audit(shortcut, **FAST)


def test_an_encoding_shortcut_is_flagged(shortcut_report):
    report = shortcut_report
    for feature in ("pix_fmt", "rate_control", "bit_rate", "bytes_per_frame", ALL_METADATA):
        assert report.auc(feature) > 0.95, feature
        assert feature in set(report.flagged.feature)
    # the classes share size, rate and length: no shortcut is invented there
    for feature in ("container", "resolution", "fps", "frames"):
        assert report.auc(feature) == 0.5, feature
    assert not report.rows.set_index("feature").loc[["resolution", "fps"], "flagged"].any()
    row = report.rows.set_index("feature").loc[ALL_METADATA]
    assert (row.videos, row.reals, row.fakes, row.groups, row.folds) == (60, 30, 30, 30, 5)
    assert row.ci_low <= row.auc <= row.ci_high
    assert set(report.per_video.pix_fmt) == {"yuv420p", "gbrp"}
    assert list(report.rows.feature) == [*FEATURES[:10], ALL_METADATA]  # no face rows without a store


def test_the_same_encoder_for_both_classes_is_not_flagged(clips, tmp_path):
    report = audit(_corpus(tmp_path, clips, "null"), **FAST)
    all_metadata = report.rows.set_index("feature").loc[ALL_METADATA]
    assert all_metadata.auc <= 0.65 and not all_metadata.flagged
    assert all_metadata.ci_low <= 0.5 <= all_metadata.ci_high  # indistinguishable from chance


def test_datasets_are_audited_apart_and_together(shortcut, clips, tmp_path):
    lossless = Manifest([r.replace(dataset="lossless") for r in shortcut], root=shortcut.root)
    report = audit(Manifest.concat([lossless, _corpus(tmp_path, clips, "null")]), **FAST)
    assert report.scopes == ["all", "lossless", "toy"]
    assert report.auc("pix_fmt", "lossless") > 0.95 and report.auc("pix_fmt", "toy") == 0.5
    assert 0.65 <= report.auc("pix_fmt") < 0.95  # one dataset's shortcut shows in the union, diluted
    assert write_audit(report, tmp_path / "out").files["plot"].read_bytes().startswith(b"\x89PNG")


def test_a_column_missing_from_a_training_part_is_no_error():
    x = np.array([[np.nan]] * 8 + [[1.0], [2.0]] * 4)  # bit rate unknown in the first 8 videos
    y = np.array([0, 1] * 8)
    scores = _out_of_fold(x, y, np.repeat([0, 1], 8))
    assert np.isfinite(scores).all()


def test_a_fake_and_its_original_share_a_fold(shortcut_report):
    videos = shortcut_report.per_video.set_index("video_id")
    for video_id, row in videos[videos.label == 1].iterrows():
        original = videos.loc[video_id.replace("fake", "real")]
        assert (row.group, row.fold) == (original.group, original.fold)
    assert (videos.groupby("group").fold.nunique() == 1).all()


def test_groups_follow_originals_and_targets_not_sources(tmp_path):
    def record(dataset, video_id, label, **links):
        return VideoRecord(dataset, video_id, f"{video_id}.mp4", label, **links)

    manifest = Manifest(
        [
            record("a", "alice1", 0, target_id="alice"),
            record("a", "alice2", 0, target_id="alice"),
            record("a", "bob1", 0, target_id="bob"),
            record("a", "anon", 0),
            record("a", "swap1", 1, original_id="alice1", target_id="alice", source_id="bob"),
            record("a", "swap2", 1, original_id="bob1", target_id="bob", source_id="alice"),
            record("a", "swap3", 1, original_id="anon"),
            record("b", "reenacted", 1, original_id="bob1"),  # its original is in another dataset
        ],
        root=tmp_path,
    )
    groups = dict(zip([r.video_id for r in manifest], audit_groups(manifest).tolist(), strict=True))
    assert groups["alice1"] == groups["alice2"] == groups["swap1"]
    assert groups["bob1"] == groups["swap2"] == groups["reenacted"]
    assert groups["anon"] == groups["swap3"]
    assert len({groups["alice1"], groups["bob1"], groups["anon"]}) == 3  # a source is not a link


def test_too_few_groups_or_one_class_are_not_computed(shortcut):
    two_groups = shortcut.filter(lambda r: r.video_id.startswith(("g00", "g01")))
    report = audit(two_groups, **FAST)
    assert report.rows.auc.isna().all() and not report.rows.flagged.any()
    assert report.rows.note.str.contains("2 group\\(s\\) of linked videos").all()
    reals = audit(shortcut.filter(label=0), **FAST)
    assert reals.auc(ALL_METADATA) is None
    assert set(reals.rows.note) == {"one class only (30 reals, 0 fakes)"}


def test_face_features_flag_a_blurred_face(clips, tmp_path):
    manifest = _corpus(tmp_path / "blur", clips, "blur")
    store = FaceStore.create(tmp_path / "faces", {"boxes": "fixed, for the test"})
    for record, (clip, _) in zip(manifest, [c for c in clips for _ in range(2)], strict=True):
        if record.video_id == "g00_fake":
            continue  # left out of the store: the report must say so
        n = len(clip)
        store.commit(
            VideoFaces(
                record.dataset,
                record.video_id,
                np.arange(n),
                ["ok"] * n,
                [None] * n,
                np.zeros(n, np.int64),
                np.ones(n, np.float32),
                np.array([_box(clip)] * n, np.float32),
                np.full((n, 68, 2), np.nan, np.float32),
            )
        )
    report = audit(manifest, store, frames=2, **FAST)
    rows = report.rows.set_index("feature")
    assert rows.loc["sharpness"].auc > 0.95 and rows.loc["sharpness"].flagged
    assert rows.loc[ALL_FEATURES].flagged
    for feature in ("face_size", "face_position"):  # the same boxes in both classes
        assert rows.loc[feature].auc == 0.5 and not rows.loc[feature].flagged
    assert rows.loc["sharpness"].videos == 59 and rows.loc[ALL_METADATA].videos == 60
    assert report.skipped == {"toy/g00_fake": "no face features: not in the store"}
    faces = report.per_video[report.per_video.face]
    assert (faces.sharpness_ratio[faces.label == 1] < faces.sharpness_ratio[faces.label == 0].min()).all()
    assert faces.dct_step.eq(0).all()  # video coding leaves no JPEG-style grid in the face


def test_dct_step_reads_a_jpeg_quantisation_step(sample):
    frame = VideoReader(sample("carphone_pristine")).read([0])[0]
    box = np.array([0, 0, 176, 144], np.float32)
    data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 50])[1]
    jpeg = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    # quality 50 keeps the standard luminance table: 11, 12, 14, 12, 10 at the five lowest AC
    assert _frame_stats(jpeg, box)["dct_step"] == 12
    assert _frame_stats(frame, box)["dct_step"] == 0


def test_cli_writes_the_files_and_lists_what_it_left_out(shortcut, tmp_path):
    root = shortcut.root
    (root / "broken.mp4").write_bytes(b"not a video" * 100)
    extra = [
        VideoRecord("toy", "missing", "missing.mp4", 0, target_id="p99"),
        VideoRecord("toy", "broken", "broken.mp4", 1, target_id="p98"),
    ]
    path = tmp_path / "manifest.parquet"
    Manifest([*shortcut, *extra], root=root).write_parquet(path)
    out = tmp_path / "audit"
    args = ["audit", str(path), "--out", str(out), "--workers", "1", "--bootstrap", "100"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "all metadata" in result.output and "flagged toy / pix_fmt" in result.output
    assert "left out toy/missing: not audited: FileNotFoundError" in result.output
    assert "left out toy/broken: not audited:" in result.output
    data = json.loads((out / "audit.json").read_text())
    assert {r["feature"] for r in data["rows"] if r["flagged"]} >= {"pix_fmt", ALL_METADATA}
    assert set(data["skipped"]) == {"toy/missing", "toy/broken"} and len(data["per_video"]) == 60
    assert "# Shortcut audit" in (out / "audit.md").read_text()
    assert (out / "audit.png").read_bytes().startswith(b"\x89PNG")
    strict = CliRunner().invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1
    bad = CliRunner().invoke(app, ["audit", str(tmp_path / "nope.parquet"), "--out", str(out)])
    assert bad.exit_code == 2 and "nope.parquet" in bad.output


def test_the_quality_report_has_an_audit_section(shortcut, tmp_path):
    report = quality_report([shortcut], tmp_path, QualityConfig(metrics=("audit",)), workers=1)
    assert report.audit is not None and report.audit.auc("pix_fmt") > 0.95
    assert "## Shortcut audit" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["audit"][0]["feature"] == "container"
    assert (tmp_path / "audit.png").is_file()
    quality_report([shortcut], tmp_path, QualityConfig(metrics=()), workers=1)
    assert not (tmp_path / "audit.png").exists() and "Shortcut" not in (tmp_path / "report.md").read_text()


def test_bad_arguments(shortcut, tmp_path):
    with pytest.raises(ValueError, match="flag"):
        audit(shortcut, flag=0.4)
    with pytest.raises(FileNotFoundError):
        audit(shortcut, store=tmp_path)
