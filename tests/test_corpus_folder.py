"""Folder loader: any tree with real/ and fake/, or videos listed in a CSV."""

from __future__ import annotations

import os

import pytest
from trees import tiny_video, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

VIDEOS = ["real/a.mp4", "real/youtube/b.mp4", "fake/c.mp4", "fake/Deepfakes/d.mp4", "fake/FaceSwap/x/e.avi"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "My Corpus!"
    for relpath in VIDEOS:
        tiny_video(root / relpath)
    write_text(root / "real" / "notes.txt", "not a video")
    return root


def test_folder_mode(tree):
    manifest = index_corpus("folder", tree)
    assert manifest.datasets == ["My_Corpus"]
    rows = {r.video_id: (r.relpath, r.label, r.method) for r in manifest}
    assert rows == {
        "real-a": ("real/a.mp4", 0, "real"),
        "real-youtube-b": ("real/youtube/b.mp4", 0, "real"),
        "fake-c": ("fake/c.mp4", 1, "fake"),
        "fake-Deepfakes-d": ("fake/Deepfakes/d.mp4", 1, "Deepfakes"),
        "fake-FaceSwap-x-e": ("fake/FaceSwap/x/e.avi", 1, "FaceSwap"),
    }
    assert all(r.split is None and r.target_id is None for r in manifest)
    assert index_corpus("folder", tree, dataset="mine").datasets == ["mine"]
    report = validate_corpus("folder", tree, probe=True)
    assert report.ok and [f.found for f in report.folders] == [2, 3]


def test_folder_mode_needs_real_or_fake(tree):
    os.rename(tree / "real", tree / "reals")
    assert {r.label for r in index_corpus("folder", tree)} == {1}  # fake/ alone is enough
    os.rename(tree / "fake", tree / "fakes")
    with pytest.raises(CorpusError, match=r"neither real/ nor fake/ found.*csv=<file>"):
        index_corpus("folder", tree)
    report = validate_corpus("folder", tree)
    assert not report.ok and "neither real/ nor fake/" in report.problems[0]


def test_folder_mode_id_collision(tree):
    tiny_video(tree / "fake" / "Deepfakes-d.mov")
    with pytest.raises(
        CorpusError, match=r"fake/Deepfakes-d\.mov and fake/Deepfakes/d\.mp4 both make video_id"
    ):
        index_corpus("folder", tree)


def test_folder_mode_symlink_outside_root(tree, tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "x.mp4")
    os.symlink(outside, tree / "fake" / "leak.mp4")
    with pytest.raises(CorpusError, match=r"outside the corpus root: fake/leak\.mp4"):
        index_corpus("folder", tree)


def test_samples_csv_as_in_the_demo(tmp_path):
    root = tmp_path / "samples"
    for name in ("carphone_pristine.mp4", "akiyo.avi"):
        tiny_video(root / "videos" / name)
    write_text(
        root / "samples.csv",
        "path,label,target_id,method\nvideos/carphone_pristine.mp4,0,carphone,real\nvideos/akiyo.avi,0,,real\n",
    )
    manifest = index_corpus("folder", root, csv="samples.csv", dataset="samples")
    rows = {r.video_id: (r.dataset, r.relpath, r.label, r.method, r.target_id) for r in manifest}
    assert rows == {
        "videos-carphone_pristine": ("samples", "videos/carphone_pristine.mp4", 0, "real", "carphone"),
        "videos-akiyo": ("samples", "videos/akiyo.avi", 0, "real", None),
    }
    assert manifest.root == root
    report = validate_corpus("folder", root, probe=True, csv="samples.csv")
    assert report.ok and [(f.folder.relpath, f.found) for f in report.folders] == [("videos", 2)]


def test_csv_with_every_column(tree, tmp_path):
    tiny_video(tree / "masks" / "d.mp4")
    csv = write_text(
        tmp_path / "lists" / "all.csv",  # outside the root, given by absolute path
        "\ufeffPath, label ,video_id,split,method,compression,target_id,source_id,original_id,mask_path,"
        "perturbation,frames,fps,width,height\n"
        "real/a.mp4,REAL,a,Train,,c23,p1,,,,,8,25,64,48\n"
        "\n"
        'fake/Deepfakes/d.mp4,1,,test,Deepfakes,,p1,p2,a,masks/d.mp4,"CS:3 GB:2",,,,\n'
        "fake/c.mp4,fake,,,,,,,,,,,,,\n",
    )
    manifest = index_corpus("folder", tree, csv=csv)
    a, d, c = manifest
    assert (a.video_id, a.label, a.split, a.method, a.compression, a.target_id) == (
        "a",
        0,
        "train",
        "real",
        "c23",
        "p1",
    )
    assert (a.frames, a.fps, a.width, a.height) == (8, 25.0, 64, 48)
    assert (d.video_id, d.label, d.split, d.method, d.source_id, d.original_id) == (
        "fake-Deepfakes-d",
        1,
        "test",
        "Deepfakes",
        "p2",
        "a",
    )
    assert (d.mask_relpath, d.perturbation, d.frames) == ("masks/d.mp4", "CS:3 GB:2", None)
    assert (c.video_id, c.method, c.split, c.target_id) == ("fake-c", "fake", None, None)
    assert len(manifest) == 3  # real/youtube/b.mp4 is not listed, so not indexed


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("real/a.mp4,maybe", r"line 3: label must be 0, 1, real or fake, got 'maybe'"),
        (",1", "line 3: empty path"),
        ("/data/real/a.mp4,0", r"line 3: path '/data/real/a\.mp4' must be relative"),
        ("../outside.mp4,0", r"line 3: path '\.\./outside\.mp4' escapes the corpus root"),
        ("real/a.mp4,0,dev", r"line 3: split must be one of train, val, test or empty, got 'dev'"),
        ("real/a.mp4,0,train,extra", r"line 3: 4 fields, but the header has 3"),
        ("real/youtube/b.mp4,0,,", "line 3: 4 fields"),
        ('real/a.mp4,0,"train', r"line 3: malformed CSV"),
    ],
)
def test_csv_bad_rows_name_file_and_line(tree, row, message):
    write_text(tree / "videos.csv", f"path,label,split\nfake/c.mp4,1,\n{row}\n")
    with pytest.raises(CorpusError, match=r"videos\.csv: " + message):
        index_corpus("folder", tree, csv="videos.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty CSV"),
        ("real/a.mp4,0\n", r"line 1: the header must name the columns path,label"),
        ("path,lable\nreal/a.mp4,0\n", r"line 1: the header must name .* got path,lable"),
        ("path,label,colour\nreal/a.mp4,0,red\n", "line 1: the header .* got path,label,colour"),
        (
            "path,label,video_id\nreal/a.mp4,0,x\nfake/c.mp4,1,x\n",
            r"line 3: video_id 'x' already used on line 2",
        ),
        ("path,label,video_id\nreal/a.mp4,0,a:b\n", r"line 2: video_id 'a:b' must be usable as a file name"),
        ("path,label,frames\nreal/a.mp4,0,8.5\n", "line 2: frames must be an integer, got '8.5'"),
        ("path,label,fps\nreal/a.mp4,0,fast\n", "line 2: fps must be a number"),
    ],
)
def test_csv_bad_header_and_values(tree, text, message):
    write_text(tree / "videos.csv", text)
    with pytest.raises(CorpusError, match=r"videos\.csv: " + message):
        index_corpus("folder", tree, csv="videos.csv")


def test_csv_missing_files_and_file(tree):
    with pytest.raises(CorpusError, match=r"nope\.csv: CSV file not found"):
        index_corpus("folder", tree, csv="nope.csv")
    write_text(
        tree / "videos.csv",
        "path,label,mask_path\nreal/a.mp4,0,\nreal/gone.mp4,0,\nfake/c.mp4,1,masks/c.mp4\n",
    )
    with pytest.raises(
        CorpusError, match=r"2 listed file\(s\) missing under .*: real/gone\.mp4, masks/c\.mp4"
    ):
        index_corpus("folder", tree, csv="videos.csv")
    folders = {f.folder.relpath: f for f in validate_corpus("folder", tree, csv="videos.csv").folders}
    assert folders["real"].missing == ["gone.mp4"] and folders["real"].unexpected == ["notes.txt"]
    assert not folders["masks"].exists and folders["masks"].missing == ["c.mp4"]
    assert folders["fake"].missing == [] and folders["fake"].unexpected == []


def test_csv_symlink_outside_root(tree, tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "x.mp4")
    os.symlink(outside, tree / "real" / "leak.mp4")
    write_text(tree / "videos.csv", "path,label\nreal/leak.mp4,0\n")
    with pytest.raises(CorpusError, match=r"outside the corpus root: real/leak\.mp4"):
        index_corpus("folder", tree, csv="videos.csv")


def test_validate_reports_empty_and_corrupt(tree):
    (tree / "real/youtube/b.mp4").write_bytes(b"")
    (tree / "fake/Deepfakes/d.mp4").write_bytes(os.urandom(3000))
    real, fake = validate_corpus("folder", tree, probe=True).folders
    assert real.empty == ["youtube/b.mp4"] and list(fake.undecodable) == ["Deepfakes/d.mp4"]
    write_text(tree / "videos.csv", "path,label\nreal/youtube/b.mp4,0\nfake/Deepfakes/d.mp4,1\n")
    folders = validate_corpus("folder", tree, probe=True, csv="videos.csv").folders
    assert [(f.folder.relpath, f.empty, list(f.undecodable)) for f in folders] == [
        ("fake/Deepfakes", [], ["d.mp4"]),
        ("real/youtube", ["b.mp4"], []),
    ]


def test_label_mode_gives_every_video_one_label(tree):
    manifest = index_corpus("folder", tree, label="fake")
    assert {r.video_id: (r.relpath, r.label, r.method) for r in manifest} == {
        "real-a": ("real/a.mp4", 1, "fake"),  # the folders' names mean nothing in label mode
        "real-youtube-b": ("real/youtube/b.mp4", 1, "fake"),
        "fake-c": ("fake/c.mp4", 1, "fake"),
        "fake-Deepfakes-d": ("fake/Deepfakes/d.mp4", 1, "fake"),
        "fake-FaceSwap-x-e": ("fake/FaceSwap/x/e.avi", 1, "fake"),
    }
    assert {r.label for r in index_corpus("folder", tree / "real", label=0)} == {0}
    assert validate_corpus("folder", tree, label="real").ok
    with pytest.raises(CorpusError, match="label must be 0, 1, real or fake, got 'maybe'"):
        index_corpus("folder", tree, label="maybe")
    with pytest.raises(CorpusError, match="not both"):
        index_corpus("folder", tree, label="fake", csv="list.csv")
    (tree / "empty").mkdir()
    with pytest.raises(CorpusError, match="no video files"):
        index_corpus("folder", tree / "empty", label="fake")
