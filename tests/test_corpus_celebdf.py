"""Celeb-DF v2/v1 loader on trees in the official layout: inverted test-list labels, ids, splits, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from trees import by_folder, by_id, tiny_video, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

VIDEOS = {
    "Celeb-real": ["id0_0000", "id0_0001", "id1_0000", "id2_0003"],
    "YouTube-real": ["00170", "00171"],
    "Celeb-synthesis": ["id0_id1_0000", "id1_id0_0000", "id2_id0_0003", "id0_id2_0001"],
}
# The official list: 1 = REAL, 0 = FAKE.
TEST_LIST = """1 YouTube-real/00170.mp4
0 Celeb-synthesis/id0_id1_0000.mp4
1 Celeb-real/id2_0003.mp4
0 Celeb-synthesis/id2_id0_0003.mp4
"""


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    for folder, stems in VIDEOS.items():
        for stem in stems:
            tiny_video(root / folder / f"{stem}.mp4")
    write_text(root / "List_of_testing_videos.txt", TEST_LIST)
    return root


def fields(record):
    return (record.label, record.method, record.target_id, record.source_id, record.original_id, record.split)


def test_index_converts_the_inverted_labels_and_reads_identities(root):
    manifest = index_corpus("celebdf-v2", root)
    records = by_id(manifest)
    assert len(manifest) == 10 and manifest.datasets == ["celebdf-v2"]
    youtube, fake = records["00170"], records["id0_id1_0000"]
    assert fields(youtube) == (0, "YouTube-real", "youtube-00170", None, None, "test")  # "1" in the list
    assert fields(fake) == (1, "Celeb-synthesis", "id0", "id1", "id0_0000", "test")  # "0" in the list
    assert fake.relpath == "Celeb-synthesis/id0_id1_0000.mp4" and fake.compression is None
    assert records["id2_id0_0003"].original_id == "id2_0003"
    assert fields(records["id0_0001"]) == (0, "Celeb-real", "id0", None, None, "train")
    assert fields(records["00171"]) == (0, "YouTube-real", "youtube-00171", None, None, "train")
    tests = sorted(r.video_id for r in manifest if r.split == "test")
    assert tests == ["00170", "id0_id1_0000", "id2_0003", "id2_id0_0003"]
    assert {r.split for r in manifest} == {"train", "test"}
    assert sum(r.label for r in manifest) == 4
    assert manifest.path_of(fake) == root / "Celeb-synthesis" / "id0_id1_0000.mp4"


def test_v1_has_the_same_layout_under_its_own_name(root):
    manifest = index_corpus("celebdf-v1", root)
    assert manifest.datasets == ["celebdf-v1"] and len(manifest) == 10
    assert by_id(manifest)["id1_id0_0000"].original_id == "id1_0000"


def test_test_list_option(root, tmp_path):
    unsplit = index_corpus("celebdf-v2", root, test_list=None)
    assert {r.split for r in unsplit} == {None}
    moved = write_text(tmp_path / "lists" / "my_test.txt", "0 Celeb-synthesis/id1_id0_0000.mp4\n")
    (root / "List_of_testing_videos.txt").unlink()
    custom = index_corpus("celebdf-v2", root, test_list=moved)
    assert [r.video_id for r in custom if r.split == "test"] == ["id1_id0_0000"]
    with pytest.raises(
        CorpusError, match=r"List_of_testing_videos.txt: the official test list is missing.*None"
    ):
        index_corpus("celebdf-v2", root)


def test_a_label_that_disagrees_with_the_folder_is_an_error(root):
    # "1" means REAL in this file, but Celeb-synthesis/ holds fakes.
    write_text(
        root / "List_of_testing_videos.txt", "1 YouTube-real/00170.mp4\n1 Celeb-synthesis/id0_id1_0000.mp4\n"
    )
    with pytest.raises(
        CorpusError, match=r"List_of_testing_videos.txt: line 2 .*means real.*Celeb-synthesis"
    ):
        index_corpus("celebdf-v2", root)
    write_text(root / "List_of_testing_videos.txt", "0 YouTube-real/00170.mp4\n")
    with pytest.raises(CorpusError, match=r"line 1 .*means fake"):
        index_corpus("celebdf-v2", root)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 YouTube-real/00170.mp4\n2 Celeb-real/id0_0000.mp4\n", r"line 2 .*label must be 1 \(real\) or 0"),
        ("1 YouTube-real/00170.mp4 extra\n", r"line 1 .*expected '<label> <relative path>'"),
        ("YouTube-real/00170.mp4\n", r"line 1 .*expected '<label> <relative path>'"),
        ("1 other/00170.mp4\n", r"line 1 .*not a video of Celeb-real/"),
        ("1 ../YouTube-real/00170.mp4\n", r"line 1 .*escapes"),
    ],
)
def test_malformed_test_list_lines_name_file_and_line(root, text, message):
    write_text(root / "List_of_testing_videos.txt", text)
    with pytest.raises(CorpusError, match=r"List_of_testing_videos.txt: " + message):
        index_corpus("celebdf-v2", root)


def test_missing_folder_names_it_and_suggests_validate(root):
    for path in (root / "YouTube-real").iterdir():
        path.unlink()
    (root / "YouTube-real").rmdir()
    with pytest.raises(
        CorpusError, match=r"missing folder\(s\) YouTube-real/.*dftoolkit validate celebdf-v2"
    ):
        index_corpus("celebdf-v2", root)
    report = validate_corpus("celebdf-v2", root)
    assert not report.ok
    youtube = by_folder(report)["YouTube-real"]
    assert not youtube.exists and youtube.missing == ["00170.mp4"]


def test_misnamed_videos_are_reported_not_dropped(root):
    tiny_video(root / "Celeb-real" / "interview.mp4")
    tiny_video(root / "Celeb-synthesis" / "id0_0002.mp4")  # a real name in the fake folder
    with pytest.raises(CorpusError, match=r"2 video\(s\) do not follow.*Celeb-real/interview.mp4"):
        index_corpus("celebdf-v2", root)


def test_listed_test_video_absent_from_disk(root):
    (root / "Celeb-real" / "id2_0003.mp4").unlink()
    with pytest.raises(
        CorpusError, match=r"1 listed video\(s\) are not on disk.*Celeb-real/id2_0003.mp4.*validate"
    ):
        index_corpus("celebdf-v2", root)
    report = validate_corpus("celebdf-v2", root)
    celeb_real = by_folder(report)["Celeb-real"]
    assert celeb_real.missing == ["id2_0003.mp4"] and not report.ok


def test_duplicate_video_ids_and_escaping_symlinks(root, tmp_path):
    tiny_video(root / "Celeb-real" / "id0_0000.avi")
    with pytest.raises(CorpusError, match=r"duplicate video_id 'id0_0000'"):
        index_corpus("celebdf-v2", root)
    (root / "Celeb-real" / "id0_0000.avi").unlink()
    outside = tiny_video(tmp_path / "elsewhere" / "id9_0000.mp4")
    os.symlink(outside, root / "Celeb-real" / "id9_0000.mp4")
    with pytest.raises(CorpusError, match=r"lead outside the corpus root: Celeb-real/id9_0000.mp4"):
        index_corpus("celebdf-v2", root)


def test_validate_layout_and_test_list(root):
    report = validate_corpus("celebdf-v2", root)
    assert report.ok and not report.problems
    folders = by_folder(report)
    assert set(folders) == {"Celeb-real", "YouTube-real", "Celeb-synthesis", ""}
    assert folders["Celeb-synthesis"].folder.expected == {"id0_id1_0000.mp4", "id2_id0_0003.mp4"}
    assert folders[""].found == 1 and folders[""].folder.expected == {"List_of_testing_videos.txt"}
    (root / "List_of_testing_videos.txt").unlink()
    report = validate_corpus("celebdf-v2", root)
    assert not report.ok and by_folder(report)[""].missing == ["List_of_testing_videos.txt"]
    write_text(root / "List_of_testing_videos.txt", "7 Celeb-real/id0_0000.mp4\n")
    report = validate_corpus("celebdf-v2", root)
    assert not report.ok and "line 1" in report.problems[0]


def test_validate_probe_reports_empty_and_corrupt_videos(root):
    (root / "Celeb-real" / "id0_0001.mp4").write_bytes(b"")
    (root / "Celeb-synthesis" / "id0_id2_0001.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    report = validate_corpus("celebdf-v2", root, probe=True)
    folders = by_folder(report)
    assert folders["Celeb-real"].empty == ["id0_0001.mp4"]
    assert list(folders["Celeb-synthesis"].undecodable) == ["id0_id2_0001.mp4"]
    assert folders["YouTube-real"].ok and not report.ok


def test_complete_tree_validates_clean_with_probe(root):
    # Train videos are not in the test list; they must not be reported as unexpected, and the
    # test list itself is metadata, not a video to decode.
    report = validate_corpus("celebdf-v2", root, probe=True)
    assert report.ok, report.to_dict()
    assert all(not f.unexpected for f in report.folders)
