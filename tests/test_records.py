"""VideoRecord validation."""

from __future__ import annotations

import dataclasses

import pytest

from dftoolkit.records import RecordError, VideoRecord


def record(**changes: object) -> VideoRecord:
    fields = {"dataset": "ffpp", "video_id": "000", "relpath": "videos/000.mp4", "label": 0}
    fields.update(changes)
    return VideoRecord(**fields)  # type: ignore[arg-type]


def test_valid_record_keeps_values() -> None:
    r = record(label=1, method="Deepfakes", split="test", frames=300, fps=29.97, width=640, height=480)
    assert r.key == ("ffpp", "000")
    assert (r.label, r.method, r.split, r.frames, r.fps) == (1, "Deepfakes", "test", 300, 29.97)
    assert r.to_dict()["relpath"] == "videos/000.mp4"
    assert VideoRecord.field_names()[:4] == ("dataset", "video_id", "relpath", "label")


@pytest.mark.parametrize("label", [True, False, 2, -1, "1", 1.5, None])
def test_bad_label_rejected(label: object) -> None:
    with pytest.raises(RecordError, match="label"):
        record(label=label)


@pytest.mark.parametrize(
    "relpath", ["/abs/x.mp4", "../x.mp4", "a/../../x.mp4", "C:\\x", "C:/x.mp4", "", ".", "\\\\server\\x"]
)
def test_bad_relpath_rejected(relpath: str) -> None:
    with pytest.raises(RecordError, match="relpath"):
        record(relpath=relpath)


def test_relpath_must_be_string() -> None:
    with pytest.raises(RecordError, match="relpath must be a string"):
        record(relpath=3)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a\\b\\c.mp4", "a/b/c.mp4"), ("./a//b.mp4", "a/b.mp4"), ("a/x/../b.mp4", "a/b.mp4")],
)
def test_relpath_normalised(given: str, expected: str) -> None:
    assert record(relpath=given).relpath == expected
    assert record(mask_relpath=given).mask_relpath == expected


def test_mask_relpath_checked_like_relpath() -> None:
    assert record().mask_relpath is None
    with pytest.raises(RecordError, match="mask_relpath"):
        record(mask_relpath="../mask.mp4")


@pytest.mark.parametrize("video_id", ["a/b", "a\\b", "..", ".", "", "  ", 7])
def test_bad_video_id_rejected(video_id: object) -> None:
    with pytest.raises(RecordError, match="video_id"):
        record(video_id=video_id)


@pytest.mark.parametrize("split", ["dev", "Train", ""])
def test_bad_split_rejected(split: str) -> None:
    with pytest.raises(RecordError, match="split"):
        record(split=split)


def test_fps_coerced_to_float() -> None:
    r = record(fps=25)
    assert r.fps == 25.0
    assert type(r.fps) is float


@pytest.mark.parametrize("fps", [0, -25.0, float("nan"), True, "25"])
def test_bad_fps_rejected(fps: object) -> None:
    with pytest.raises(RecordError, match="fps"):
        record(fps=fps)


@pytest.mark.parametrize("name", ["frames", "width", "height"])
@pytest.mark.parametrize("value", [-1, 1.0, True, "10"])
def test_bad_counts_rejected(name: str, value: object) -> None:
    with pytest.raises(RecordError, match=name):
        record(**{name: value})


def test_optional_strings_must_be_strings() -> None:
    with pytest.raises(RecordError, match="method"):
        record(method=1)


def test_record_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        record().label = 1  # type: ignore[misc]


def test_replace_revalidates_and_copies() -> None:
    original = record()
    changed = original.replace(split="train", relpath="x\\y.mp4")
    assert (changed.split, changed.relpath) == ("train", "x/y.mp4")
    assert original.split is None
    with pytest.raises(RecordError, match="label"):
        original.replace(label=3)
    with pytest.raises(RecordError, match="relpath"):
        original.replace(relpath="../escape.mp4")
