"""The shared loader machinery: layout validation, manifest building, file listing, probing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from trees import tiny_frames, tiny_video

from dftoolkit.corpora import describe_corpora, get_corpus, list_corpora
from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    list_files,
    read_json,
    read_lines,
)
from dftoolkit.probing import probe_manifest
from dftoolkit.records import VideoRecord


class Toy(Corpus):
    """real/ must hold a.mp4 and b.mp4; fake/ holds any videos; extras/ is optional."""

    name = "toy"
    description = "a test corpus"

    def index(self, root: Path):
        records = [VideoRecord("toy", Path(n).stem, f"real/{n}", 0) for n in list_files(root / "real")]
        return build_manifest(records, root)

    def layout(self, root: Path):
        return [
            ExpectedFolder("real", expected=frozenset({"a.mp4", "b.mp4"})),
            ExpectedFolder("fake"),
            ExpectedFolder("extras", required=False),
        ]


def test_every_loader_of_the_issue_is_registered():
    names = {"ffpp", "celebdf-v1", "celebdf-v2", "dfdc", "dfdc-preview", "deeperforensics", "wilddeepfake",
             "dftimit", "uadfv", "toolkit", "folder"}  # fmt: skip
    assert names <= set(list_corpora())
    descriptions = describe_corpora()
    assert list(descriptions) == list_corpora() and all(descriptions.values())
    assert all(isinstance(get_corpus(n), Corpus) for n in list_corpora())


def test_validate_reports_missing_unexpected_empty_and_undecodable(tmp_path):
    tiny_video(tmp_path / "real" / "a.mp4")
    (tmp_path / "real" / "notes.txt").write_text("hi")
    tiny_video(tmp_path / "real" / "c.mp4")  # not in the expected list
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "empty.mp4").write_bytes(b"")
    (tmp_path / "fake" / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    report = Toy().validate(tmp_path)
    real, fake, extras = report.folders
    assert (real.exists, real.found, real.missing) == (True, 2, ["b.mp4"])
    assert real.unexpected == ["c.mp4", "notes.txt"]
    assert fake.empty == ["empty.mp4"] and fake.undecodable == {}
    assert not extras.exists and extras.ok  # optional
    assert not report.ok
    probed = Toy().validate(tmp_path, probe=True)
    assert list(probed.folders[1].undecodable) == ["junk.mp4"]
    assert probed.to_dict()["folders"][0]["missing"] == ["b.mp4"]


def test_validate_complete_tree_and_missing_required_folder(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        tiny_video(tmp_path / "real" / name)
    assert not Toy().validate(tmp_path).ok  # fake/ is required
    tiny_video(tmp_path / "fake" / "x.mp4")
    assert Toy().validate(tmp_path, probe=True).ok


def test_build_manifest_rejects_escaping_symlinks_and_duplicates(tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "secret.mp4")
    root = tmp_path / "corpus"
    tiny_video(root / "real" / "a.mp4")
    (root / "real").joinpath("b.mp4").symlink_to(outside)
    with pytest.raises(CorpusError, match=r"outside the corpus root: real/b\.mp4"):
        Toy().index(root)
    records = [VideoRecord("toy", "a", "real/a.mp4", 0), VideoRecord("toy", "a", "real/b.mp4", 0)]
    with pytest.raises(CorpusError, match="duplicate video_id 'a'"):
        build_manifest(records, tmp_path / "elsewhere")


def test_list_files(tmp_path):
    tiny_video(tmp_path / "x" / "B.MP4")
    tiny_video(tmp_path / "x" / "a.mp4")
    tiny_video(tmp_path / "x" / "sub" / "c.avi")
    (tmp_path / "x" / "d.txt").write_text("")
    assert list(list_files(tmp_path / "x")) == ["B.MP4", "a.mp4"]
    assert list(list_files(tmp_path / "x", recursive=True)) == ["B.MP4", "a.mp4", "sub/c.avi"]
    assert list(list_files(tmp_path / "missing")) == []


def test_metadata_readers_name_the_file(tmp_path):
    bad = tmp_path / "metadata.json"
    bad.write_text('{"a.mp4": {"label": ')
    with pytest.raises(CorpusError, match=r"metadata\.json: malformed JSON"):
        read_json(bad)
    with pytest.raises(CorpusError, match="not found"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "list.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CorpusError, match=r"list\.txt: not a UTF-8"):
        read_lines(tmp_path / "list.txt")


@pytest.mark.parametrize("workers", [1, 2])
def test_probe_manifest_fills_fields_and_records_failures(tmp_path, workers):
    tiny_video(tmp_path / "real" / "a.mp4")
    tiny_frames(tmp_path / "real" / "seq", count=3)
    (tmp_path / "real" / "broken.mp4").write_bytes(os.urandom(3000))
    records = [
        VideoRecord("toy", "a", "real/a.mp4", 0),
        VideoRecord("toy", "seq", "real/seq", 0),
        VideoRecord("toy", "broken", "real/broken.mp4", 0),
    ]
    filled, failures = probe_manifest(build_manifest(records, tmp_path), workers=workers)
    a, seq, broken = filled
    assert (a.frames, a.fps, a.width, a.height) == (8, 25.0, 64, 48)
    assert (seq.frames, seq.width, seq.height) == (3, 64, 48)
    assert broken.frames is None and list(failures) == [("toy", "broken")]
    assert "broken.mp4" in failures[("toy", "broken")]
