"""WildDeepfake loader: extracted face sequences {real,fake}_{train,test}/<tar>/<seq>/*.png."""

from __future__ import annotations

import os
import shutil

import pytest
from trees import tiny_frames

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

SEQUENCES = {
    # relpath -> frames
    "real_train/1/0": 4,
    "real_train/1/1": 2,
    "real_train/2/0": 3,
    "real_test/1/3": 4,
    "fake_train/7/0": 4,
    "fake_train/7/12": 1,
    "fake_test/3/fake/5": 2,  # archives that unpack as <tar>/fake/<seq>/
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "deepfake_in_the_wild"
    for relpath, frames in SEQUENCES.items():
        tiny_frames(root / relpath, count=frames)
    # the downloaded archives, kept next to their extracted folders
    for archive in ("real_train/1.tar.gz", "real_train/2.tar.gz", "fake_test/3.tar.gz"):
        (root / archive).write_bytes(b"\x1f\x8b archive")
    return root


def test_one_record_per_sequence(tree):
    manifest = index_corpus("wilddeepfake", tree)
    by_id = {r.video_id: r for r in manifest}
    assert sorted(by_id) == [
        "fake_test-3-5",
        "fake_train-7-0",
        "fake_train-7-12",
        "real_test-1-3",
        "real_train-1-0",
        "real_train-1-1",
        "real_train-2-0",
    ]
    assert {r.relpath: r.frames for r in manifest} == SEQUENCES
    real, fake = by_id["real_train-1-0"], by_id["fake_test-3-5"]
    assert (real.label, real.method, real.split, real.dataset) == (0, "real", "train", "wilddeepfake")
    assert (fake.label, fake.method, fake.split) == (1, "WildDeepfake", "test")
    assert by_id["real_test-1-3"].split == "test" and by_id["fake_train-7-0"].label == 1
    assert manifest.path_of(fake) == tree / "fake_test/3/fake/5"
    assert sum(r.label for r in manifest) == 3
    assert validate_corpus("wilddeepfake", tree, probe=True).ok


def test_missing_subset_folder(tree):
    shutil.rmtree(tree / "real_test")
    with pytest.raises(CorpusError, match=r"missing folder\(s\) real_test.*dftoolkit validate wilddeepfake"):
        index_corpus("wilddeepfake", tree)
    report = validate_corpus("wilddeepfake", tree)
    assert not report.ok and [f.folder.relpath for f in report.folders if not f.exists] == ["real_test"]


def test_unextracted_archive(tree):
    (tree / "fake_train" / "9.tar.gz").write_bytes(b"\x1f\x8b archive")
    with pytest.raises(CorpusError, match=r"1 archive\(s\) not extracted: fake_train/9\.tar\.gz"):
        index_corpus("wilddeepfake", tree)
    report = validate_corpus("wilddeepfake", tree)
    missing = [f for f in report.folders if not f.exists]
    assert not report.ok and [f.folder.relpath for f in missing] == ["fake_train/9"]
    assert "fake_train/9.tar.gz" in missing[0].folder.description


def test_empty_sequence_and_stray_frames_are_errors(tree):
    (tree / "real_test" / "1" / "4").mkdir()
    with pytest.raises(CorpusError, match=r"1 folder\(s\) hold no frames: real_test/1/4"):
        index_corpus("wilddeepfake", tree)
    (tree / "real_test" / "1" / "4").rmdir()
    shutil.copy(tree / "real_train/1/0/0000.png", tree / "real_train/1/0000.png")
    with pytest.raises(CorpusError, match=r"frames outside <subset>/<tar>/<sequence>/: real_train/1\b"):
        index_corpus("wilddeepfake", tree)


def test_duplicate_sequence_ids(tree):
    tiny_frames(tree / "fake_test/3/5", count=1)  # same id as fake_test/3/fake/5
    with pytest.raises(CorpusError, match="duplicate video_id 'fake_test-3-5'"):
        index_corpus("wilddeepfake", tree)


def test_symlink_outside_root(tree, tmp_path):
    outside = tiny_frames(tmp_path / "elsewhere" / "seq", count=2)
    os.symlink(outside, tree / "fake_train" / "7" / "99")
    with pytest.raises(CorpusError, match=r"outside the corpus root: fake_train/7/99"):
        index_corpus("wilddeepfake", tree)


def test_validate_reports_empty_frames(tree):
    (tree / "real_train/2/0/0001.png").write_bytes(b"")
    report = {f.folder.relpath: f for f in validate_corpus("wilddeepfake", tree, probe=True).folders}
    assert report["real_train"].empty == ["2/0/0001.png"]
    assert not report["real_train"].ok and report["real_test"].ok


def test_validate_reports_corrupt_frames(tree):
    (tree / "fake_train/7/0/0002.png").write_bytes(os.urandom(3000))
    report = {f.folder.relpath: f for f in validate_corpus("wilddeepfake", tree, probe=True).folders}
    assert list(report["fake_train"].undecodable) == ["7/0/0002.png"]
