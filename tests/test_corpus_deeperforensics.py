"""The ``deeperforensics`` loader on tiny DeeperForensics-1.0 trees, alone and with FF++ reals."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from trees import by_id, tiny_video, write_json, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus
from dftoolkit.corpora.deeperforensics import VARIANTS

SPLITS = {"000_M101": "train", "003_W009": "val", "005_W101": "test"}
META = {
    "end_to_end_random_level.txt": "end_to_end_random_level/000_M101.mp4 GB:3\n"
    "end_to_end_random_level/003_W009.mp4 JPEG:5\nend_to_end_random_level/005_W101.mp4 CS:1\n",
    "end_to_end_mix_2_distortions.txt": "end_to_end_mix_2_distortions/000_M101.mp4 CS:2 JPEG:4\n\n"
    "end_to_end_mix_2_distortions/003_W009.mp4 GNC:1 BW:2\n",
    "end_to_end_level_3.txt": "end_to_end_level_3/000_M101.mp4 VC:3\n",
}


def make_deeperforensics(root: Path, variants: tuple[str, ...] = VARIANTS) -> Path:
    """Three fakes in every variant, split lists (one line with a variant prefix), meta, one source video."""
    for variant in variants:
        for stem in SPLITS:
            tiny_video(root / f"manipulated_videos/{variant}/{stem}.mp4")
    write_text(root / "lists/splits/train.txt", "000_M101.mp4\n")
    write_text(root / "lists/splits/val.txt", "end_to_end/003_W009.mp4\n")
    write_text(root / "lists/splits/test.txt", "005_W101.mp4\n")
    for name, text in META.items():
        write_text(root / "lists/manipulated_videos_distortions_meta" / name, text)
    tiny_video(
        root
        / "source_videos/M101/light_uniform/neutral/camera_front/M101_light_uniform_neutral_camera_front.mp4"
    )
    return root


def make_ffpp_originals(root: Path, stems: tuple[str, ...] = ("000", "001", "003", "005")) -> Path:
    """FF++ c23 YouTube originals (001 is the target of no DeeperForensics fake)."""
    for stem in stems:
        tiny_video(root / f"original_sequences/youtube/c23/videos/{stem}.mp4")
    return root


@pytest.fixture
def dfo(tmp_path: Path) -> Path:
    return make_deeperforensics(tmp_path / "DeeperForensics-1.0")


def test_fakes_of_every_variant(dfo: Path) -> None:
    manifest = index_corpus("deeperforensics", dfo)
    records = by_id(manifest)
    assert len(manifest) == len(VARIANTS) * len(SPLITS) == 33
    assert manifest.datasets == ["deeperforensics"] and {r.label for r in manifest} == {1}
    assert {r.method for r in manifest} == set(VARIANTS)
    assert not any(r.relpath.startswith("source_videos") for r in manifest)
    fake = records["end_to_end-000_M101"]
    assert (fake.method, fake.target_id, fake.source_id, fake.original_id) == (
        "end_to_end", "000", "M101", "youtube-c23-000",
    )  # fmt: skip
    assert fake.relpath == "manipulated_videos/end_to_end/000_M101.mp4"
    assert manifest.path_of(records["reenact_postprocess-003_W009"]).is_file()
    assert records["end_to_end_level_5-005_W101"].original_id == "youtube-c23-005"


def test_split_is_shared_by_every_variant(dfo: Path) -> None:
    records = index_corpus("deeperforensics", dfo)
    for stem, split in SPLITS.items():
        assert {r.split for r in records if r.video_id.endswith(f"-{stem}")} == {split}


def test_perturbation_from_meta_lines(dfo: Path) -> None:
    records = by_id(index_corpus("deeperforensics", dfo))
    assert records["end_to_end_random_level-000_M101"].perturbation == "GB:3"
    assert records["end_to_end_random_level-003_W009"].perturbation == "JPEG:5"
    assert records["end_to_end_mix_2_distortions-000_M101"].perturbation == "CS:2 JPEG:4"
    assert records["end_to_end_mix_2_distortions-003_W009"].perturbation == "GNC:1 BW:2"
    assert records["end_to_end_mix_2_distortions-005_W101"].perturbation is None
    assert records["end_to_end_level_3-000_M101"].perturbation == "VC:3"
    assert records["end_to_end_level_3-003_W009"].perturbation is None  # no meta line: type unknown
    assert records["end_to_end_level_1-000_M101"].perturbation is None
    assert records["end_to_end-000_M101"].perturbation is None


def test_variants_select(dfo: Path) -> None:
    one = index_corpus("deeperforensics", dfo, variants="end_to_end_level_3")
    assert {r.video_id for r in one} == {f"end_to_end_level_3-{stem}" for stem in SPLITS}
    two = index_corpus("deeperforensics", dfo, variants=["end_to_end", "reenact_postprocess"])
    assert len(two) == 6
    with pytest.raises(ValueError, match=r"'end_to_end_level_6'.*end_to_end, reenact_postprocess"):
        index_corpus("deeperforensics", dfo, variants=["end_to_end_level_6"])
    with pytest.raises(ValueError, match=r"no DeeperForensics variant"):
        index_corpus("deeperforensics", dfo, variants=[])


def test_ffpp_root_adds_the_ffpp_reals(dfo: Path, tmp_path: Path) -> None:
    ffpp = make_ffpp_originals(tmp_path / "FaceForensics++")
    manifest = index_corpus("deeperforensics", dfo, ffpp_root=ffpp)
    assert manifest.datasets == ["deeperforensics", "ffpp"]
    assert manifest.roots == {"deeperforensics": dfo, "ffpp": ffpp}
    reals = manifest.filter(dataset="ffpp")
    assert {r.video_id for r in reals} == {"youtube-c23-000", "youtube-c23-003", "youtube-c23-005"}
    assert {r.label for r in reals} == {0}
    for real in reals:
        assert manifest.path_of(real) == ffpp / real.relpath
        assert manifest.path_of(real).is_file()
        assert real.split == SPLITS[{"000": "000_M101", "003": "003_W009", "005": "005_W101"}[real.target_id]]
    # exactly the ffpp loader's records, split aside
    loaded = by_id(index_corpus("ffpp", ffpp, compression="c23", methods=[]))
    assert all(real == loaded[real.video_id].replace(split=real.split) for real in reals)
    fakes = manifest.filter(dataset="deeperforensics")
    assert len(fakes) == 33 and {r.original_id for r in fakes} == {r.video_id for r in reals}


def test_ffpp_reals_take_the_split_of_their_fakes_not_ffpp_pairs(dfo: Path, tmp_path: Path) -> None:
    ffpp = make_ffpp_originals(tmp_path / "ff", ("000", "001", "002", "003", "004", "005"))
    write_json(ffpp / "splits/train.json", [["004", "005"]])
    write_json(ffpp / "splits/val.json", [["001", "002"]])
    write_json(ffpp / "splits/test.json", [["000", "003"]])
    records = by_id(index_corpus("deeperforensics", dfo, ffpp_root=ffpp, variants="end_to_end"))
    assert (records["youtube-c23-000"].split, records["youtube-c23-005"].split) == ("train", "test")


def test_missing_ffpp_originals(dfo: Path, tmp_path: Path) -> None:
    ffpp = make_ffpp_originals(tmp_path / "ff", ("000", "001"))
    with pytest.raises(CorpusError, match=r"absent \(2: youtube-c23-003, youtube-c23-005\)"):
        index_corpus("deeperforensics", dfo, ffpp_root=ffpp)
    with pytest.raises(CorpusError, match="ffpp_root is not a folder"):
        index_corpus("deeperforensics", dfo, ffpp_root=tmp_path / "nowhere")


def test_one_real_with_fakes_in_two_splits(tmp_path: Path) -> None:
    root = tmp_path / "dfo"
    for stem in ("000_M101", "000_W009"):
        tiny_video(root / f"manipulated_videos/end_to_end/{stem}.mp4")
    write_text(root / "lists/splits/train.txt", "000_M101.mp4\n")
    write_text(root / "lists/splits/val.txt", "")
    write_text(root / "lists/splits/test.txt", "000_W009.mp4\n")
    assert len(index_corpus("deeperforensics", root, variants=["end_to_end"])) == 2
    ffpp = make_ffpp_originals(tmp_path / "ff")
    with pytest.raises(CorpusError, match=r"youtube-c23-000.*different splits"):
        index_corpus("deeperforensics", root, variants=["end_to_end"], ffpp_root=ffpp)


def test_without_lists_splits_and_perturbations_are_none(dfo: Path) -> None:
    shutil.rmtree(dfo / "lists")
    manifest = index_corpus("deeperforensics", dfo)
    assert len(manifest) == 33
    assert {r.split for r in manifest} == {None} and {r.perturbation for r in manifest} == {None}
    assert validate_corpus("deeperforensics", dfo).ok


def test_missing_variant_folder(dfo: Path) -> None:
    shutil.rmtree(dfo / "manipulated_videos/reenact_postprocess")
    with pytest.raises(
        CorpusError, match=r"manipulated_videos/reenact_postprocess.*validate deeperforensics"
    ):
        index_corpus("deeperforensics", dfo)
    assert len(index_corpus("deeperforensics", dfo, variants=["end_to_end"])) == 3
    report = validate_corpus("deeperforensics", dfo)
    assert [f.folder.relpath for f in report.folders if not f.ok] == [
        "manipulated_videos/reenact_postprocess"
    ]


@pytest.mark.parametrize(
    "line",
    [
        "end_to_end_random_level/000_M101.mp4 GB3",
        "end_to_end_random_level/000_M101.mp4 GB:three",
        "end_to_end_level_9/000_M101.mp4 GB:3",
        "000_M101.mp4 GB:3",
        "end_to_end_random_level/M101_000.mp4 GB:3",
    ],
)
def test_malformed_meta_line(dfo: Path, line: str) -> None:
    meta = dfo / "lists/manipulated_videos_distortions_meta/end_to_end_random_level.txt"
    write_text(meta, META["end_to_end_random_level.txt"] + line + "\n")
    with pytest.raises(CorpusError, match=rf"end_to_end_random_level\.txt: malformed line '{line}'"):
        index_corpus("deeperforensics", dfo)


def test_contradicting_meta_lines(dfo: Path) -> None:
    write_text(
        dfo / "lists/manipulated_videos_distortions_meta/extra.txt", "end_to_end_level_3/000_M101.mp4 GB:3\n"
    )
    with pytest.raises(CorpusError, match=r"extra\.txt: line .* contradicts the chain 'VC:3'"):
        index_corpus("deeperforensics", dfo)


def test_bad_split_lists(dfo: Path) -> None:
    write_text(dfo / "lists/splits/val.txt", "end_to_end/003_W009.mp4\n1 003_W009.mp4\n")
    with pytest.raises(CorpusError, match=r"val\.txt: line '1 003_W009\.mp4' is not a fake video name"):
        index_corpus("deeperforensics", dfo)
    write_text(dfo / "lists/splits/val.txt", "003_W009.mp4\n000_M101.mp4\n")
    with pytest.raises(CorpusError, match=r"val\.txt: '000_M101\.mp4' is also in .*train\.txt.*leaks"):
        index_corpus("deeperforensics", dfo)
    (dfo / "lists/splits/val.txt").unlink()
    with pytest.raises(CorpusError, match=r"val\.txt: list file not found"):
        index_corpus("deeperforensics", dfo)


def test_listed_but_absent_and_present_but_unlisted(dfo: Path) -> None:
    (dfo / "manipulated_videos/end_to_end_level_2/003_W009.mp4").unlink()
    with pytest.raises(
        CorpusError, match=r"absent \(1: manipulated_videos/end_to_end_level_2/003_W009\.mp4\)"
    ):
        index_corpus("deeperforensics", dfo)
    report = validate_corpus("deeperforensics", dfo)
    assert {f.folder.relpath: f.missing for f in report.folders if f.missing} == {
        "manipulated_videos/end_to_end_level_2": ["003_W009.mp4"]
    }
    tiny_video(dfo / "manipulated_videos/end_to_end_level_2/003_W009.mp4")
    tiny_video(dfo / "manipulated_videos/end_to_end/007_M004.mp4")
    with pytest.raises(CorpusError, match=r"in no list .*\(1: manipulated_videos/end_to_end/007_M004\.mp4\)"):
        index_corpus("deeperforensics", dfo)
    folders = {f.folder.relpath: f for f in validate_corpus("deeperforensics", dfo).folders}
    assert folders["manipulated_videos/end_to_end"].unexpected == ["007_M004.mp4"]


def test_misnamed_and_duplicate_files(dfo: Path) -> None:
    tiny_video(dfo / "manipulated_videos/end_to_end/000_M101_copy.mp4")
    with pytest.raises(
        CorpusError, match=r"not like 000_M101\.mp4 \(1: manipulated_videos/end_to_end/000_M101_copy"
    ):
        index_corpus("deeperforensics", dfo)
    (dfo / "manipulated_videos/end_to_end/000_M101_copy.mp4").unlink()
    tiny_video(dfo / "manipulated_videos/end_to_end/000_M101.avi")
    with pytest.raises(CorpusError, match="duplicate video_id 'end_to_end-000_M101'"):
        index_corpus("deeperforensics", dfo)


def test_symlink_outside_the_root_is_rejected(dfo: Path, tmp_path: Path) -> None:
    outside = tiny_video(tmp_path / "elsewhere/clip.mp4")
    link = dfo / "manipulated_videos/end_to_end_mix_4_distortions/005_W101.mp4"
    link.unlink()
    os.symlink(outside, link)
    with pytest.raises(
        CorpusError, match=r"outside the corpus root: .*end_to_end_mix_4_distortions/005_W101"
    ):
        index_corpus("deeperforensics", dfo)


def test_validate_layout_and_probe(dfo: Path) -> None:
    report = validate_corpus("deeperforensics", dfo)
    assert report.ok, report.to_dict()
    folders = {f.folder.relpath: f for f in report.folders}
    assert set(folders) == {f"manipulated_videos/{v}" for v in VARIANTS} | {
        "lists/splits",
        "lists/manipulated_videos_distortions_meta",
    }
    assert folders["manipulated_videos/end_to_end"].folder.expected == {f"{stem}.mp4" for stem in SPLITS}
    assert folders["lists/splits"].folder.expected == {"train.txt", "val.txt", "test.txt"}
    assert not folders["lists/manipulated_videos_distortions_meta"].folder.required
    assert len(validate_corpus("deeperforensics", dfo, variants="end_to_end").folders) == 3

    videos = dfo / "manipulated_videos/end_to_end_level_4"
    (videos / "000_M101.mp4").write_bytes(b"")
    (videos / "003_W009.mp4").write_bytes(os.urandom(4096))
    report = validate_corpus("deeperforensics", dfo, probe=True, variants=["end_to_end_level_4"])
    [folder] = [f for f in report.folders if f.folder.relpath == "manipulated_videos/end_to_end_level_4"]
    assert not report.ok
    assert folder.empty == ["000_M101.mp4"] and list(folder.undecodable) == ["003_W009.mp4"]
