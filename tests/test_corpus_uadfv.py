"""UADFV loader: UADFV/{real,fake}/, reals 0000.mp4, fakes 0000_fake.mp4."""

from __future__ import annotations

import os

import pytest
from trees import tiny_video

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus


@pytest.fixture
def parent(tmp_path):
    """The folder holding UADFV/: reals 0000, 0001; fakes 0000_fake, 0001_fake, 0002_fake (real absent)."""
    for name in (
        "real/0000.mp4",
        "real/0001.mp4",
        "fake/0000_fake.mp4",
        "fake/0001_fake.mp4",
        "fake/0002_fake.mp4",
    ):
        tiny_video(tmp_path / "UADFV" / name)
    return tmp_path


@pytest.mark.parametrize("inside", [False, True], ids=["parent", "UADFV"])
def test_both_root_forms(parent, inside):
    root = parent / "UADFV" if inside else parent
    prefix = "" if inside else "UADFV/"
    manifest = index_corpus("uadfv", root)
    by_id = {r.video_id: r for r in manifest}
    assert sorted(by_id) == ["0000", "0000_fake", "0001", "0001_fake", "0002_fake"]
    real, fake = by_id["0001"], by_id["0001_fake"]
    assert (real.relpath, real.label, real.method, real.target_id, real.original_id) == (
        f"{prefix}real/0001.mp4",
        0,
        "real",
        "0001",
        None,
    )
    assert (fake.relpath, fake.label, fake.method, fake.target_id, fake.original_id) == (
        f"{prefix}fake/0001_fake.mp4",
        1,
        "UADFV",
        "0001",
        "0001",
    )
    orphan = by_id["0002_fake"]  # its real is missing: still indexed
    assert (orphan.original_id, orphan.target_id) == ("0002", "0002")
    assert all(r.split is None and r.dataset == "uadfv" for r in manifest)
    assert manifest.path_of(fake) == parent / "UADFV" / "fake" / "0001_fake.mp4"
    report = validate_corpus("uadfv", root, probe=True)
    assert report.ok and [f.folder.relpath for f in report.folders] == [f"{prefix}real", f"{prefix}fake"]


def test_missing_folder(parent):
    (parent / "UADFV" / "fake").rename(parent / "UADFV" / "fakes")
    with pytest.raises(CorpusError, match=r"missing folder\(s\) fake/.*dftoolkit validate uadfv"):
        index_corpus("uadfv", parent)
    assert not validate_corpus("uadfv", parent).ok


@pytest.mark.parametrize("name", ["fake/0003.mp4", "real/0004_fake.mp4", "real/extra/0005.mp4"])
def test_misnamed_files(parent, name):
    tiny_video(parent / "UADFV" / name)
    with pytest.raises(CorpusError, match=rf"1 file\(s\) do not follow UADFV naming .*: UADFV/{name}"):
        index_corpus("uadfv", parent)


def test_duplicate_stems(parent):
    tiny_video(parent / "UADFV" / "real" / "0000.avi")
    with pytest.raises(CorpusError, match="duplicate video_id '0000'"):
        index_corpus("uadfv", parent)


def test_symlink_outside_root(parent, tmp_path_factory):
    outside = tiny_video(tmp_path_factory.mktemp("elsewhere") / "x.mp4")
    os.symlink(outside, parent / "UADFV" / "real" / "0002.mp4")
    with pytest.raises(CorpusError, match=r"outside the corpus root: UADFV/real/0002\.mp4"):
        index_corpus("uadfv", parent)


def test_validate_reports_empty_and_corrupt(parent):
    (parent / "UADFV/real/0000.mp4").write_bytes(b"")
    (parent / "UADFV/fake/0001_fake.mp4").write_bytes(os.urandom(3000))
    real, fake = validate_corpus("uadfv", parent, probe=True).folders
    assert real.empty == ["0000.mp4"] and list(fake.undecodable) == ["0001_fake.mp4"]
    assert not real.ok and not fake.ok
