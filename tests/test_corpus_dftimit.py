"""DF-TIMIT loader: {lower,higher}_quality/<subject>/<sentence>-video-<source>.avi, VidTIMIT reals."""

from __future__ import annotations

import os
import shutil

import pytest
from trees import tiny_frames, tiny_video, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

FAKES = ["fadg0/sa1-video-fram1.avi", "fadg0/sx19-video-fram1.avi", "fram1/sa1-video-fadg0.avi"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "DeepfakeTIMIT"
    for quality in ("lower_quality", "higher_quality"):
        for name in FAKES:
            tiny_video(root / quality / name)
    tiny_video(root / "higher_quality" / "fadg0" / "clip.mp4")  # a name without <sentence>-video-<source>
    return root


@pytest.fixture
def vidtimit(tmp_path):
    """VidTIMIT: fadg0 as numbered frames without suffix, fram1 as .jpg frames, mstk0 as videos."""
    root = tmp_path / "VidTIMIT"
    for sentence in ("sa1", "sx19"):
        for frame in sorted(tiny_frames(root / "fadg0" / "video" / sentence, count=3).iterdir()):
            frame.rename(frame.with_name(f"{int(frame.stem) + 1:03d}"))
    for frame in sorted(tiny_frames(root / "fram1" / "video" / "sa1", count=2).iterdir()):
        frame.rename(frame.with_suffix(".jpg"))
    write_text(root / "fadg0" / "audio" / "sa1.wav", "RIFF")
    tiny_video(root / "mstk0" / "sa2.avi")
    return root


def test_fakes_only(tree):
    manifest = index_corpus("dftimit", tree)
    by_id = {r.video_id: r for r in manifest}
    assert len(manifest) == 7 and manifest.datasets == ["dftimit"]
    lq = by_id["LQ-fadg0-sa1-video-fram1"]
    assert lq.relpath == "lower_quality/fadg0/sa1-video-fram1.avi"
    assert (lq.label, lq.method, lq.compression, lq.split) == (1, "DF-TIMIT-LQ", "LQ", None)
    assert (lq.target_id, lq.source_id, lq.original_id) == ("fadg0", "fram1", "vidtimit-fadg0-sa1")
    hq = by_id["HQ-fram1-sa1-video-fadg0"]
    assert (hq.method, hq.compression, hq.target_id, hq.source_id) == ("DF-TIMIT-HQ", "HQ", "fram1", "fadg0")
    odd = by_id["HQ-fadg0-clip"]
    assert (odd.target_id, odd.source_id, odd.original_id) == ("fadg0", None, None)
    assert sorted(r.video_id for r in index_corpus("dftimit", tree, qualities="hq")) == sorted(
        i for i in by_id if i.startswith("HQ-")
    )
    assert validate_corpus("dftimit", tree, probe=True).ok


def test_with_vidtimit_reals(tree, vidtimit):
    manifest = index_corpus("dftimit", tree, vidtimit_root=str(vidtimit), qualities=["LQ"])
    assert manifest.datasets == ["dftimit", "vidtimit"]
    assert manifest.roots == {"dftimit": tree, "vidtimit": vidtimit}
    reals = {r.video_id: r for r in manifest if r.label == 0}
    assert sorted(reals) == [
        "vidtimit-fadg0-sa1",
        "vidtimit-fadg0-sx19",
        "vidtimit-fram1-sa1",
        "vidtimit-mstk0-sa2",
    ]
    sa1 = reals["vidtimit-fadg0-sa1"]
    assert (sa1.dataset, sa1.relpath, sa1.frames, sa1.method, sa1.target_id) == (
        "vidtimit",
        "fadg0/video/sa1",
        3,
        "real",
        "fadg0",
    )
    assert reals["vidtimit-fram1-sa1"].frames == 2
    assert reals["vidtimit-mstk0-sa2"].relpath == "mstk0/sa2.avi"
    assert manifest.path_of(sa1) == vidtimit / "fadg0/video/sa1"
    fakes = [r for r in manifest if r.label == 1]
    assert len(fakes) == 3 and all(r.dataset == "dftimit" and r.original_id in reals for r in fakes)
    assert validate_corpus("dftimit", tree, probe=True, vidtimit_root=vidtimit).ok


def test_vidtimit_problems(tree, vidtimit, tmp_path):
    (vidtimit / "fram1" / "video" / "sx20").mkdir()
    (vidtimit / "mcem0").mkdir()
    with pytest.raises(
        CorpusError, match=r"neither video/<sentence>/ nor videos: mcem0.*no frames: fram1/video/sx20"
    ):
        index_corpus("dftimit", tree, vidtimit_root=vidtimit)
    with pytest.raises(CorpusError, match="VidTIMIT root"):
        index_corpus("dftimit", tree, vidtimit_root=tmp_path / "nope")
    report = validate_corpus("dftimit", tree, vidtimit_root=tmp_path / "nope")
    assert not report.ok and [f.folder.relpath for f in report.folders if not f.exists] == ["../nope"]


def test_missing_quality_folder_and_bad_option(tree):
    shutil.rmtree(tree / "lower_quality")
    with pytest.raises(CorpusError, match=r"missing folder\(s\) lower_quality.*dftoolkit validate dftimit"):
        index_corpus("dftimit", tree)
    assert len(index_corpus("dftimit", tree, qualities=("HQ",))) == 4
    assert not validate_corpus("dftimit", tree).ok
    with pytest.raises(ValueError, match="qualities must be among LQ, HQ"):
        index_corpus("dftimit", tree, qualities=["MQ"])


def test_misplaced_and_duplicate_videos(tree):
    tiny_video(tree / "lower_quality" / "sa1-video-fram1.avi")
    with pytest.raises(CorpusError, match=r"not in <quality>/<subject>/: lower_quality/sa1-video-fram1\.avi"):
        index_corpus("dftimit", tree)
    os.remove(tree / "lower_quality" / "sa1-video-fram1.avi")
    tiny_video(tree / "lower_quality" / "fadg0" / "sa1-video-fram1.mp4")
    with pytest.raises(CorpusError, match="duplicate video_id 'LQ-fadg0-sa1-video-fram1'"):
        index_corpus("dftimit", tree)


def test_symlink_outside_root(tree, tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "x.avi")
    os.symlink(outside, tree / "higher_quality" / "fram1" / "sx19-video-fadg0.avi")
    with pytest.raises(
        CorpusError, match=r"outside the corpus root: higher_quality/fram1/sx19-video-fadg0\.avi"
    ):
        index_corpus("dftimit", tree)


def test_validate_reports_empty_and_corrupt(tree, vidtimit):
    (tree / "lower_quality/fadg0/sa1-video-fram1.avi").write_bytes(b"")
    (tree / "higher_quality/fram1/sa1-video-fadg0.avi").write_bytes(os.urandom(3000))
    (vidtimit / "fadg0/video/sx19/002").write_bytes(os.urandom(3000))
    report = validate_corpus("dftimit", tree, probe=True, vidtimit_root=vidtimit)
    folders = {f.folder.relpath: f for f in report.folders}
    assert folders["lower_quality"].empty == ["fadg0/sa1-video-fram1.avi"]
    assert list(folders["higher_quality"].undecodable) == ["fram1/sa1-video-fadg0.avi"]
    assert list(folders["../VidTIMIT/fadg0/video"].undecodable) == ["sx19/002"]
    assert folders["../VidTIMIT/fram1/video"].ok and folders["../VidTIMIT/mstk0"].found == 1
    assert not report.ok
