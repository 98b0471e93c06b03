"""DFDC (full, with nested and zero-padded parts and the public test set) and DFDC preview loaders."""

from __future__ import annotations

import os

import numpy as np
import pytest
from trees import by_folder, by_id, tiny_video, write_json, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

# part 0 ships flat; part 1 nested one folder more, with a zero-padded outer name.
PART_0 = {
    "vudstovrck.mp4": {"label": "REAL", "split": "train", "original": None},
    "aagfhgtpmv.mp4": {"label": "FAKE", "split": "train", "original": "vudstovrck.mp4"},
    "aapnvogymq.mp4": {"label": "FAKE", "split": "train", "original": "vudstovrck.mp4"},
}
PART_1 = {
    "xmkwsnuzyq.mp4": {"label": "REAL", "split": "train"},
    "abarnvbtwb.mp4": {"label": "FAKE", "split": "train", "original": "xmkwsnuzyq.mp4"},
    "beboztfcme.mp4": {"label": "FAKE", "split": "train", "original": "qzvlsmqrmn.mp4"},  # in another part
}
PART_0_DIR = "dfdc_train_part_0"
PART_1_DIR = "dfdc_train_part_01/dfdc_train_part_1"
LABELS_CSV = "filename,label\naassnaulhq.mp4,1\naayfryxljh.mp4,0\n"


def make_part(root, folder, metadata):
    for name in metadata:
        tiny_video(root / folder / name)
    write_json(root / folder / "metadata.json", metadata)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "dfdc"
    make_part(root, PART_0_DIR, PART_0)
    make_part(root, PART_1_DIR, PART_1)
    for name in ("aassnaulhq.mp4", "aayfryxljh.mp4"):
        tiny_video(root / "test" / name)
    write_text(root / "test" / "labels.csv", LABELS_CSV)
    return root


def fields(record):
    return (record.label, record.method, record.target_id, record.source_id, record.original_id, record.split)


def test_index_full_corpus_flat_nested_and_test_set(root):
    manifest = index_corpus("dfdc", root)
    records = by_id(manifest)
    assert len(manifest) == 8 and manifest.datasets == ["dfdc"]
    real, fake = records["vudstovrck"], records["aagfhgtpmv"]
    assert fields(real) == (0, "real", "vudstovrck", None, None, "train")
    assert fields(fake) == (1, "DFDC", "vudstovrck", None, "vudstovrck", "train")
    assert fake.relpath == "dfdc_train_part_0/aagfhgtpmv.mp4" and fake.compression is None
    nested = records["abarnvbtwb"]
    assert nested.relpath == "dfdc_train_part_01/dfdc_train_part_1/abarnvbtwb.mp4"
    assert manifest.path_of(nested).is_file() and nested.original_id == "xmkwsnuzyq"
    assert records["beboztfcme"].original_id == "qzvlsmqrmn"  # kept though that original is not here
    assert records["xmkwsnuzyq"].split == "train"  # no original, no split key needed
    test_fake, test_real = records["aassnaulhq"], records["aayfryxljh"]
    assert fields(test_fake) == (1, "DFDC", "aassnaulhq", None, None, "test")
    assert fields(test_real) == (0, "real", "aayfryxljh", None, None, "test")
    assert test_fake.relpath == "test/aassnaulhq.mp4"
    assert sorted(r.split for r in manifest).count("test") == 2


def test_test_dir_option(root, tmp_path):
    (root / "test").rename(root / "dfdc_test")
    assert {r.split for r in index_corpus("dfdc", root)} == {"train"}  # no default test/ folder
    assert len(index_corpus("dfdc", root, test_dir="dfdc_test")) == 8
    assert len(index_corpus("dfdc", root, test_dir=root / "dfdc_test")) == 8
    with pytest.raises(CorpusError, match=r"test_dir is not a folder"):
        index_corpus("dfdc", root, test_dir="test")
    (tmp_path / "outside").mkdir()
    with pytest.raises(CorpusError, match=r"test_dir must be inside the corpus root"):
        index_corpus("dfdc", root, test_dir=tmp_path / "outside")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,label\naassnaulhq.mp4,1\n", r"line 1: expected the header 'filename,label'"),
        ("filename,label\naassnaulhq.mp4,1\naayfryxljh.mp4,FAKE\n", r"line 3: expected '<file>,<0 real"),
        ("filename,label\naassnaulhq.mp4,1\naassnaulhq.mp4,0\n", r"line 3: 'aassnaulhq.mp4' is listed twice"),
    ],
)
def test_malformed_test_labels(root, text, message):
    write_text(root / "test" / "labels.csv", text)
    with pytest.raises(CorpusError, match=r"labels.csv: " + message):
        index_corpus("dfdc", root)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"aagfhgtpmv.mp4": {"label": "FAKE",', r"malformed JSON"),
        ('["aagfhgtpmv.mp4"]', r"expected an object mapping video file names"),
        ('{"vudstovrck.mp4": "REAL"}', r"'vudstovrck.mp4': expected an object with 'label'"),
        (
            '{"vudstovrck.mp4": {"label": "real"}}',
            r"'vudstovrck.mp4': label must be 'FAKE' or 'REAL', got 'real'",
        ),
        ('{"vudstovrck.mp4": {"label": ["REAL"]}}', r"'vudstovrck.mp4': label must be"),
        ('{"aagfhgtpmv.mp4": {"label": "FAKE", "original": null}}', r"'aagfhgtpmv.mp4': a FAKE needs its"),
        ('{"vudstovrck.mp4": {"label": "REAL", "split": "dev"}}', r"'vudstovrck.mp4': split must be one of"),
    ],
)
def test_malformed_metadata_names_file_and_key(root, content, message):
    write_text(root / PART_0_DIR / "metadata.json", content)
    with pytest.raises(CorpusError, match=r"dfdc_train_part_0/metadata.json: " + message):
        index_corpus("dfdc", root)
    report = validate_corpus("dfdc", root)
    assert not report.ok and "metadata.json" in report.problems[0]


def test_part_without_metadata(root):
    (root / PART_0_DIR / "metadata.json").unlink()
    with pytest.raises(CorpusError, match=r"dfdc_train_part_0/metadata.json: metadata file not found"):
        index_corpus("dfdc", root)
    part = by_folder(validate_corpus("dfdc", root))[PART_0_DIR]
    assert part.missing == ["metadata.json"] and not part.ok


def test_duplicate_video_across_two_parts_names_both(root):
    make_part(root, "dfdc_train_part_2", {"aagfhgtpmv.mp4": PART_0["aagfhgtpmv.mp4"]})
    both = r"aagfhgtpmv \(dfdc_train_part_0/aagfhgtpmv.mp4 and dfdc_train_part_2/aagfhgtpmv.mp4\)"
    with pytest.raises(CorpusError, match=r"1 video id\(s\) occur twice: " + both):
        index_corpus("dfdc", root)


def test_same_part_twice_padded_and_unpadded(root):
    make_part(root, "dfdc_train_part_00", {"zzzzzzzzzz.mp4": {"label": "REAL"}})
    with pytest.raises(CorpusError, match=r"part 0 occurs twice"):
        index_corpus("dfdc", root)


def test_listed_file_missing_and_unlisted_file_present(root):
    (root / PART_1_DIR / "abarnvbtwb.mp4").unlink()
    example = r"dfdc_train_part_01/dfdc_train_part_1/abarnvbtwb.mp4.*dftoolkit validate dfdc"
    with pytest.raises(
        CorpusError, match=r"1 file\(s\) listed in metadata.json / labels.csv are not on disk: " + example
    ):
        index_corpus("dfdc", root)
    report = validate_corpus("dfdc", root)
    assert by_folder(report)[PART_1_DIR].missing == ["abarnvbtwb.mp4"]
    assert not report.ok
    tiny_video(root / PART_1_DIR / "abarnvbtwb.mp4")
    tiny_video(root / PART_0_DIR / "stray00000.mp4")
    with pytest.raises(
        CorpusError, match=r"1 video\(s\) on disk are not in .*dfdc_train_part_0/stray00000.mp4"
    ):
        index_corpus("dfdc", root)


def test_no_parts_is_an_error(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(CorpusError, match=r"no dfdc_train_part_\* folders and no test set"):
        index_corpus("dfdc", tmp_path)
    assert not validate_corpus("dfdc", tmp_path).ok


def test_escaping_symlink(root, tmp_path):
    outside = tiny_video(tmp_path / "elsewhere" / "secretvide.mp4")
    os.symlink(outside, root / PART_0_DIR / "secretvide.mp4")
    write_json(root / PART_0_DIR / "metadata.json", {**PART_0, "secretvide.mp4": {"label": "REAL"}})
    with pytest.raises(CorpusError, match=r"lead outside the corpus root: dfdc_train_part_0/secretvide.mp4"):
        index_corpus("dfdc", root)


def test_validate_full_layout(root):
    report = validate_corpus("dfdc", root)
    assert report.ok and not report.problems
    folders = by_folder(report)
    assert folders[PART_1_DIR].folder.expected == {*PART_1, "metadata.json"}
    assert folders[PART_1_DIR].found == 4 and not folders[PART_1_DIR].unexpected
    assert folders["test"].folder.expected == {"aassnaulhq.mp4", "aayfryxljh.mp4", "labels.csv"}
    absent = folders["dfdc_train_part_49"]
    assert not absent.exists and not absent.folder.required and absent.ok
    assert len(report.folders) == 51  # parts 0..49 + test


def test_validate_probe_reports_empty_and_corrupt_videos(root):
    (root / PART_0_DIR / "aapnvogymq.mp4").write_bytes(b"")
    (root / PART_1_DIR / "beboztfcme.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    folders = by_folder(validate_corpus("dfdc", root, probe=True))
    assert folders[PART_0_DIR].empty == ["aapnvogymq.mp4"]
    assert "beboztfcme.mp4" in folders[PART_1_DIR].undecodable
    assert "abarnvbtwb.mp4" not in folders[PART_1_DIR].undecodable


# -- preview --------------------------------------------------------------------------------------

PREVIEW = {
    "original_videos/643049/1955256_A_001.mp4": {"label": "real", "set": "train"},
    "original_videos/643049/1955256_A_002.mp4": {"label": "real", "set": "test"},
    "method_A/643049/643049_A/1955256_A_001.mp4": {"label": "fake", "set": "train"},
    "method_B/643049/643049_B/1955256_B_001.mp4": {"label": "fake", "set": "test"},
    "method_B/701312/701312_B/1956102_B_004.mp4": {"label": "fake", "set": "train"},
}


@pytest.fixture
def preview(tmp_path):
    root = tmp_path / "dfdc_preview_set"
    for relpath in PREVIEW:
        tiny_video(root / relpath)
    write_json(root / "dataset.json", PREVIEW)
    return root


def test_index_preview(preview):
    manifest = index_corpus("dfdc-preview", preview)
    records = by_id(manifest)
    assert len(manifest) == 5 and manifest.datasets == ["dfdc-preview"]
    fake = records["method_A-643049-643049_A-1955256_A_001"]
    assert (fake.label, fake.method, fake.target_id, fake.split) == (1, "method_A", "643049", "train")
    assert fake.relpath == "method_A/643049/643049_A/1955256_A_001.mp4"
    real = records["original_videos-643049-1955256_A_002"]
    assert (real.label, real.method, real.target_id, real.split) == (0, "real", "643049", "test")
    assert records["method_B-701312-701312_B-1956102_B_004"].target_id == "701312"
    assert sorted({r.method for r in manifest}) == ["method_A", "method_B", "real"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"label": "FAKE", "set": "train"}, r"label must be 'real' or 'fake', got 'FAKE'"),
        ({"label": "real", "set": "train"}, r"label 'real' disagrees with its folder method_A/"),
        ({"label": "fake", "set": "val"}, r"set must be 'train' or 'test', got 'val'"),
        ("fake", r"expected an object with 'label' and 'set'"),
    ],
)
def test_preview_bad_entries_name_file_and_key(preview, entry, message):
    key = "method_A/643049/643049_A/1955256_A_001.mp4"
    write_json(preview / "dataset.json", {**PREVIEW, key: entry})
    with pytest.raises(CorpusError, match=rf"dataset.json: '{key}': {message}"):
        index_corpus("dfdc-preview", preview)


def test_preview_missing_folder_files_and_metadata(preview):
    (preview / "method_B" / "701312" / "701312_B" / "1956102_B_004.mp4").unlink()
    missing = (
        r"1 file\(s\) listed in dataset.json are not on disk: method_B/701312/701312_B/1956102_B_004.mp4"
    )
    with pytest.raises(CorpusError, match=missing):
        index_corpus("dfdc-preview", preview)
    report = validate_corpus("dfdc-preview", preview)
    folders = by_folder(report)
    assert folders["method_B"].missing == ["701312/701312_B/1956102_B_004.mp4"] and not report.ok
    assert folders["original_videos"].ok and folders[""].ok
    (preview / "dataset.json").unlink()
    with pytest.raises(CorpusError, match=r"dataset.json: metadata file not found"):
        index_corpus("dfdc-preview", preview)
    assert by_folder(validate_corpus("dfdc-preview", preview))[""].missing == ["dataset.json"]
    for path in sorted((preview / "method_A").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (preview / "method_A").rmdir()
    with pytest.raises(CorpusError, match=r"missing folder\(s\) method_A/.*dftoolkit validate dfdc-preview"):
        index_corpus("dfdc-preview", preview)


def test_preview_validate_complete(preview):
    report = validate_corpus("dfdc-preview", preview)
    assert report.ok
    folders = by_folder(report)
    assert folders["method_A"].folder.expected == {"643049/643049_A/1955256_A_001.mp4"}
    assert folders["original_videos"].found == 2 and not folders["original_videos"].unexpected
