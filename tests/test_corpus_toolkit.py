"""Toolkit loader: a corpus written by dftoolkit, <root>/manifest.parquet plus the files it lists."""

from __future__ import annotations

import os
import shutil

import pytest
from trees import tiny_video

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord

RECORDS = [
    VideoRecord("srdf", "000", "originals/000.mp4", 0, method="real", split="train", target_id="000"),
    VideoRecord("srdf", "001", "originals/001.mp4", 0, method="real", split="test", target_id="001"),
    VideoRecord(
        "srdf",
        "fsgan-000_001",
        "fsgan/videos/000_001.mp4",
        1,
        method="FSGAN",
        split="train",
        target_id="000",
        source_id="001",
        original_id="000",
        mask_relpath="fsgan/masks/000_001.mp4",
        perturbation="CS:3",
    ),
    VideoRecord(
        "srdf", "fomm-001_000", "fomm/videos/001_000.mp4", 1, method="FOMM", split="test", original_id="001"
    ),
]


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "generated"
    for record in RECORDS:
        for relpath in (record.relpath, record.mask_relpath):
            if relpath:
                tiny_video(root / relpath)
    Manifest(RECORDS, root).write_parquet(root / "manifest.parquet")
    return root


def test_index_returns_the_manifest(corpus, tmp_path):
    manifest = index_corpus("toolkit", corpus)
    assert manifest.records == tuple(RECORDS) and manifest.root == corpus
    fake = manifest[2]
    assert manifest.mask_path_of(fake) == corpus / "fsgan/masks/000_001.mp4"
    moved = shutil.copytree(corpus, tmp_path / "moved")  # records are relative to the root
    assert index_corpus("toolkit", moved).path_of(fake) == moved / fake.relpath
    renamed = index_corpus("toolkit", corpus, dataset="mine")
    assert renamed.datasets == ["mine"] and [r.video_id for r in renamed] == [r.video_id for r in RECORDS]
    report = validate_corpus("toolkit", corpus, probe=True)
    assert report.ok
    folders = {f.folder.relpath: f.folder.expected for f in report.folders}
    assert folders == {
        "fomm/videos": frozenset({"001_000.mp4"}),
        "fsgan/masks": frozenset({"000_001.mp4"}),
        "fsgan/videos": frozenset({"000_001.mp4"}),
        "originals": frozenset({"000.mp4", "001.mp4"}),
    }


def test_missing_listed_files(corpus):
    os.remove(corpus / "originals/001.mp4")
    os.remove(corpus / "fsgan/masks/000_001.mp4")
    with pytest.raises(
        CorpusError, match=r"2 file\(s\) listed in manifest\.parquet are missing: .*000_001\.mp4"
    ):
        index_corpus("toolkit", corpus)
    report = validate_corpus("toolkit", corpus)
    assert not report.ok
    assert {f.folder.relpath: f.missing for f in report.folders if f.missing} == {
        "originals": ["001.mp4"],
        "fsgan/masks": ["000_001.mp4"],
    }


def test_missing_and_malformed_manifest(corpus):
    (corpus / "manifest.parquet").write_bytes(os.urandom(500))
    with pytest.raises(CorpusError, match=r"manifest\.parquet: not a readable Parquet file"):
        index_corpus("toolkit", corpus)
    assert "not a readable Parquet file" in validate_corpus("toolkit", corpus).problems[0]
    os.remove(corpus / "manifest.parquet")
    with pytest.raises(CorpusError, match=r"manifest\.parquet: not found.*dftoolkit validate toolkit"):
        index_corpus("toolkit", corpus)
    (root,) = validate_corpus("toolkit", corpus).folders
    assert root.missing == ["manifest.parquet"] and not root.ok


def test_duplicates_after_renaming(corpus):
    other = VideoRecord("other", "000", "originals/001.mp4", 0)
    Manifest([*RECORDS, other], corpus).write_parquet(corpus / "manifest.parquet")
    assert len(index_corpus("toolkit", corpus)) == 5
    with pytest.raises(CorpusError, match="duplicate video_id '000' in dataset 'mine'"):
        index_corpus("toolkit", corpus, dataset="mine")


def test_symlink_outside_root(corpus, tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "x.mp4")
    os.remove(corpus / "originals/000.mp4")
    os.symlink(outside, corpus / "originals/000.mp4")
    with pytest.raises(CorpusError, match=r"outside the corpus root: originals/000\.mp4"):
        index_corpus("toolkit", corpus)


def test_validate_reports_empty_and_corrupt(corpus):
    (corpus / "originals/000.mp4").write_bytes(b"")
    (corpus / "fomm/videos/001_000.mp4").write_bytes(os.urandom(3000))
    folders = {f.folder.relpath: f for f in validate_corpus("toolkit", corpus, probe=True).folders}
    assert folders["originals"].empty == ["000.mp4"]
    assert list(folders["fomm/videos"].undecodable) == ["001_000.mp4"]
    assert folders["fsgan/videos"].ok
