"""The ``ffpp`` loader on tiny FaceForensics++ / DeepFakeDetection trees in the official layout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from trees import by_id, tiny_video, write_json, write_text

from dftoolkit.corpora import CorpusError, index_corpus, validate_corpus

PAIRS = {"train": [["000", "003"]], "val": [["001", "002"]], "test": [["004", "005"]]}
YOUTUBE = ("000", "001", "002", "003", "004", "005", "999")  # 999 is in no pair
YOUTUBE_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FAKES = ("000_003", "003_000", "001_002", "002_001", "004_005", "005_004")
ACTORS = ("01__kitchen_pan", "01__podium_speech_happy", "02__kitchen_pan")
DFD_FAKES = ("01_02__kitchen_pan__YVGY8LOK", "02_01__kitchen_pan__ISF9SP4G")
PER_COMPRESSION = len(YOUTUBE) + len(ACTORS) + len(YOUTUBE_METHODS) * len(FAKES) + len(DFD_FAKES)


def make_ffpp(root: Path, compressions: tuple[str, ...] = ("c23",)) -> Path:
    """FF++ with all six methods: 7 YouTube originals, 3 DFD actor scenes, 6 fakes per method, 2 DFD fakes."""
    for c in compressions:
        for stem in YOUTUBE:
            tiny_video(root / f"original_sequences/youtube/{c}/videos/{stem}.mp4")
        for stem in ACTORS:
            tiny_video(root / f"original_sequences/actors/{c}/videos/{stem}.mp4")
        for method in YOUTUBE_METHODS:
            for stem in FAKES:
                tiny_video(root / f"manipulated_sequences/{method}/{c}/videos/{stem}.mp4")
        for stem in DFD_FAKES:
            tiny_video(root / f"manipulated_sequences/DeepFakeDetection/{c}/videos/{stem}.mp4")
    for stem in FAKES:
        tiny_video(root / f"manipulated_sequences/Deepfakes/masks/videos/{stem}.mp4")
    tiny_video(root / "manipulated_sequences/Face2Face/masks/videos/000_003.mp4")
    tiny_video(root / f"manipulated_sequences/DeepFakeDetection/masks/videos/{DFD_FAKES[0]}.mp4")
    for split, pairs in PAIRS.items():
        write_json(root / "splits" / f"{split}.json", pairs)
    return root


@pytest.fixture
def ffpp(tmp_path: Path) -> Path:
    return make_ffpp(tmp_path / "FaceForensics++")


def test_default_indexes_c23_originals_and_all_methods(ffpp: Path) -> None:
    manifest = index_corpus("ffpp", ffpp)
    records = by_id(manifest)
    assert len(manifest) == PER_COMPRESSION == 42
    assert manifest.datasets == ["ffpp"]
    assert {r.compression for r in manifest} == {"c23"}
    assert sum(r.label == 0 for r in manifest) == len(YOUTUBE) + len(ACTORS)
    assert {r.method for r in manifest if r.label == 0} == {"youtube", "actors"}
    assert {r.method for r in manifest if r.label == 1} == set(YOUTUBE_METHODS) | {"DeepFakeDetection"}

    real = records["youtube-c23-000"]
    assert (real.label, real.method, real.target_id, real.source_id, real.original_id) == (
        0, "youtube", "000", None, None,
    )  # fmt: skip
    assert real.relpath == "original_sequences/youtube/c23/videos/000.mp4"
    fake = records["Deepfakes-c23-000_003"]
    assert (fake.label, fake.method, fake.target_id, fake.source_id) == (1, "Deepfakes", "000", "003")
    assert fake.original_id == "youtube-c23-000" and fake.original_id in records
    assert records["NeuralTextures-c23-003_000"].original_id == "youtube-c23-003"
    assert manifest.path_of(fake) == ffpp / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4"


def test_deepfakedetection_actors_and_fakes(ffpp: Path) -> None:
    records = by_id(index_corpus("ffpp", ffpp))
    actor = records["actors-c23-01__kitchen_pan"]
    assert (actor.label, actor.method, actor.target_id) == (0, "actors", "01")
    assert records["actors-c23-02__kitchen_pan"].target_id == "02"
    fake = records["DeepFakeDetection-c23-01_02__kitchen_pan__YVGY8LOK"]
    assert (fake.label, fake.target_id, fake.source_id) == (1, "01", "02")
    assert fake.original_id == "actors-c23-01__kitchen_pan"
    assert records[fake.original_id].label == 0
    assert (
        records["DeepFakeDetection-c23-02_01__kitchen_pan__ISF9SP4G"].original_id
        == "actors-c23-02__kitchen_pan"
    )
    assert {r.split for r in records.values() if r.method in ("actors", "DeepFakeDetection")} == {None}


def test_splits_cover_both_fake_directions_and_both_originals(ffpp: Path) -> None:
    records = by_id(index_corpus("ffpp", ffpp))
    for split, [[a, b]] in PAIRS.items():
        for method in YOUTUBE_METHODS:
            assert records[f"{method}-c23-{a}_{b}"].split == split
            assert records[f"{method}-c23-{b}_{a}"].split == split
        assert records[f"youtube-c23-{a}"].split == split
        assert records[f"youtube-c23-{b}"].split == split
    assert records["youtube-c23-999"].split is None  # on disk but in no pair: no split, no error


def test_masks_are_linked_where_they_exist(ffpp: Path) -> None:
    manifest = index_corpus("ffpp", ffpp)
    records = by_id(manifest)
    deepfake = records["Deepfakes-c23-004_005"]
    assert deepfake.mask_relpath == "manipulated_sequences/Deepfakes/masks/videos/004_005.mp4"
    assert manifest.mask_path_of(deepfake).is_file()
    assert (
        records["Face2Face-c23-000_003"].mask_relpath
        == "manipulated_sequences/Face2Face/masks/videos/000_003.mp4"
    )
    assert records["Face2Face-c23-003_000"].mask_relpath is None
    assert {r.mask_relpath for r in manifest.filter(method="FaceShifter")} == {None}
    assert {r.mask_relpath for r in manifest if r.label == 0} == {None}
    dfd = records[f"DeepFakeDetection-c23-{DFD_FAKES[0]}"]
    assert dfd.mask_relpath == f"manipulated_sequences/DeepFakeDetection/masks/videos/{DFD_FAKES[0]}.mp4"


def test_compression_all_gives_one_record_per_level(tmp_path: Path) -> None:
    root = make_ffpp(tmp_path / "ff", ("raw", "c23", "c40"))
    manifest = index_corpus("ffpp", root, compression="all")
    assert len(manifest) == 3 * PER_COMPRESSION
    ids = {r.video_id for r in manifest}
    assert {"youtube-raw-000", "youtube-c23-000", "youtube-c40-000"} <= ids
    assert {"Deepfakes-raw-000_003", "Deepfakes-c23-000_003", "Deepfakes-c40-000_003"} <= ids
    for r in manifest.filter(label=1):
        if r.method != "DeepFakeDetection":
            assert r.original_id == f"youtube-{r.compression}-{r.target_id}"
            assert r.relpath.startswith(f"manipulated_sequences/{r.method}/{r.compression}/videos/")
    # the raw and c40 fakes share the compression-free mask
    masks = {by_id(manifest)[f"Deepfakes-{c}-000_003"].mask_relpath for c in ("raw", "c23", "c40")}
    assert masks == {"manipulated_sequences/Deepfakes/masks/videos/000_003.mp4"}
    two = index_corpus("ffpp", root, compression=["c40", "raw"])
    assert len(two) == 2 * PER_COMPRESSION
    assert {r.compression for r in two} == {"raw", "c40"}


def test_methods_and_originals_select(ffpp: Path) -> None:
    only = index_corpus("ffpp", ffpp, methods=["Deepfakes", "FaceSwap"])
    assert {r.method for r in only} == {"youtube", "Deepfakes", "FaceSwap"}  # no actors without DFD
    assert len(only) == len(YOUTUBE) + 2 * len(FAKES)
    assert {r.method for r in index_corpus("ffpp", ffpp, methods="Face2Face")} == {"youtube", "Face2Face"}
    reals = index_corpus("ffpp", ffpp, methods=[])
    assert {r.video_id for r in reals} == {f"youtube-c23-{s}" for s in YOUTUBE}
    dfd = index_corpus("ffpp", ffpp, methods=["DeepFakeDetection"], originals=False)
    assert {r.method for r in dfd} == {"DeepFakeDetection"} and len(dfd) == len(DFD_FAKES)
    with pytest.raises(ValueError, match=r"'Deepfake'.*valid: Deepfakes, Face2Face"):
        index_corpus("ffpp", ffpp, methods=["Deepfake"])
    with pytest.raises(ValueError, match="compression must be one of raw, c23, c40"):
        index_corpus("ffpp", ffpp, compression="c32")


def test_actors_required_only_with_deepfakedetection(ffpp: Path) -> None:
    shutil.rmtree(ffpp / "original_sequences/actors")
    assert len(index_corpus("ffpp", ffpp, methods=["Deepfakes"])) == len(YOUTUBE) + len(FAKES)
    with pytest.raises(CorpusError, match="original_sequences/actors/c23/videos"):
        index_corpus("ffpp", ffpp)
    assert not validate_corpus("ffpp", ffpp).ok
    assert validate_corpus("ffpp", ffpp, methods=["Deepfakes"]).ok


def test_missing_method_folder(ffpp: Path) -> None:
    shutil.rmtree(ffpp / "manipulated_sequences/FaceShifter")
    with pytest.raises(
        CorpusError, match=r"manipulated_sequences/FaceShifter/c23/videos.*dftoolkit validate ffpp"
    ):
        index_corpus("ffpp", ffpp)
    with pytest.raises(CorpusError, match="original_sequences/youtube/c40/videos"):
        index_corpus("ffpp", ffpp, compression="c40")
    report = validate_corpus("ffpp", ffpp)
    [folder] = [f for f in report.folders if not f.exists and f.folder.required]
    assert folder.folder.relpath == "manipulated_sequences/FaceShifter/c23/videos"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[["000", "003"]', "malformed JSON"),
        ('{"000": "003"}', "expected a list of id pairs"),
        ('["000", "003"]', "entry 0 is not a pair"),
        ('[["000", "003", "004"]]', "entry 0 is not a pair"),
        ('[["000", 3]]', "entry 0 is not a pair"),
    ],
)
def test_malformed_split_file(ffpp: Path, content: str, message: str) -> None:
    write_text(ffpp / "splits/train.json", content)
    with pytest.raises(CorpusError, match=rf"splits/train\.json: {message}"):
        index_corpus("ffpp", ffpp)
    assert any("train.json" in problem for problem in validate_corpus("ffpp", ffpp).problems)


def test_id_in_two_splits_is_a_leak(ffpp: Path) -> None:
    write_json(ffpp / "splits/test.json", [["004", "005"], ["000", "006"]])
    with pytest.raises(CorpusError, match=r"test\.json: id '000' is also in .*train\.json.*leaks"):
        index_corpus("ffpp", ffpp)


def test_missing_split_file_and_absent_splits(ffpp: Path, tmp_path: Path) -> None:
    (ffpp / "splits/val.json").unlink()
    with pytest.raises(CorpusError, match=r"val\.json: metadata file not found"):
        index_corpus("ffpp", ffpp)
    splits = shutil.move(ffpp / "splits", tmp_path / "my_splits")
    write_json(Path(splits) / "val.json", PAIRS["val"])
    assert {r.split for r in index_corpus("ffpp", ffpp)} == {None}
    custom = by_id(index_corpus("ffpp", ffpp, splits_dir=splits))
    assert custom["Face2Face-c23-002_001"].split == "val"
    with pytest.raises(CorpusError, match="splits_dir is not a folder"):
        index_corpus("ffpp", ffpp, splits_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "relpath",
    [
        "original_sequences/youtube/c23/videos/foo.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/000.mp4",
        "original_sequences/actors/c23/videos/01_kitchen_pan.mp4",
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__kitchen_pan.mp4",
    ],
)
def test_misnamed_file_is_an_error(ffpp: Path, relpath: str) -> None:
    tiny_video(ffpp / relpath)
    with pytest.raises(CorpusError, match=rf"naming convention \(1: {relpath}\)"):
        index_corpus("ffpp", ffpp)


def test_files_the_splits_imply_must_exist(ffpp: Path) -> None:
    (ffpp / "manipulated_sequences/Deepfakes/c23/videos/005_004.mp4").unlink()
    (ffpp / "original_sequences/youtube/c23/videos/001.mp4").unlink()
    with pytest.raises(
        CorpusError, match=r"absent \(2: .*youtube/c23/videos/001\.mp4, .*Deepfakes/c23/videos/005_004"
    ):
        index_corpus("ffpp", ffpp)
    assert len(index_corpus("ffpp", ffpp, methods=["Face2Face"], originals=False)) == len(FAKES)
    report = validate_corpus("ffpp", ffpp)
    assert not report.ok
    missing = {f.folder.relpath: f.missing for f in report.folders if f.missing}
    assert missing == {
        "original_sequences/youtube/c23/videos": ["001.mp4"],
        "manipulated_sequences/Deepfakes/c23/videos": ["005_004.mp4"],
    }


def test_same_video_in_two_containers_is_a_duplicate(ffpp: Path) -> None:
    tiny_video(ffpp / "original_sequences/youtube/c23/videos/000.avi")
    with pytest.raises(CorpusError, match="duplicate video_id 'youtube-c23-000'"):
        index_corpus("ffpp", ffpp)


def test_symlink_outside_the_root_is_rejected(ffpp: Path, tmp_path: Path) -> None:
    outside = tiny_video(tmp_path / "elsewhere/clip.mp4")
    target = ffpp / "manipulated_sequences/Face2Face/c23/videos/001_002.mp4"
    target.unlink()
    os.symlink(outside, target)
    with pytest.raises(
        CorpusError, match=r"1 path\(s\) lead outside the corpus root: .*Face2Face/c23/videos/001_002"
    ):
        index_corpus("ffpp", ffpp)


def test_validate_complete_tree_and_layout(ffpp: Path) -> None:
    report = validate_corpus("ffpp", ffpp)
    assert report.ok, report.to_dict()
    folders = {f.folder.relpath: f for f in report.folders}
    assert "manipulated_sequences/FaceShifter/masks/videos" not in folders
    assert not folders["manipulated_sequences/Deepfakes/masks/videos"].folder.required
    youtube = folders["original_sequences/youtube/c23/videos"]
    assert youtube.folder.expected == {f"{s}.mp4" for pair in PAIRS.values() for s in pair[0]}
    assert youtube.unexpected == ["999.mp4"]  # present, in no pair: reported, not an error
    assert len(folders["manipulated_sequences/FaceSwap/c23/videos"].folder.expected) == len(FAKES)
    assert folders["manipulated_sequences/DeepFakeDetection/c23/videos"].folder.expected is None
    assert folders["splits"].folder.expected == {"train.json", "val.json", "test.json"}
    assert folders["original_sequences/actors/c23/videos"].found == len(ACTORS)
    names = {
        f.folder.relpath for f in validate_corpus("ffpp", ffpp, compression="all", originals=False).folders
    }
    assert "manipulated_sequences/NeuralTextures/raw/videos" in names
    assert not any(name.startswith("original_sequences") for name in names)


def test_validate_reports_misnamed_files_as_unexpected(ffpp: Path) -> None:
    tiny_video(ffpp / "manipulated_sequences/Deepfakes/c23/videos/000.mp4")
    write_text(ffpp / "manipulated_sequences/Deepfakes/c23/videos/notes.txt", "x")
    folders = {f.folder.relpath: f for f in validate_corpus("ffpp", ffpp).folders}
    assert folders["manipulated_sequences/Deepfakes/c23/videos"].unexpected == ["000.mp4", "notes.txt"]


def test_validate_probe_finds_empty_and_corrupt_files(ffpp: Path) -> None:
    videos = ffpp / "manipulated_sequences/NeuralTextures/c23/videos"
    (videos / "000_003.mp4").write_bytes(b"")
    (videos / "001_002.mp4").write_bytes(os.urandom(4096))
    report = validate_corpus("ffpp", ffpp, probe=True, methods=["NeuralTextures"])
    assert not report.ok
    [folder] = [
        f for f in report.folders if f.folder.relpath == "manipulated_sequences/NeuralTextures/c23/videos"
    ]
    assert folder.empty == ["000_003.mp4"]
    assert list(folder.undecodable) == ["001_002.mp4"]
    assert all(f.ok for f in report.folders if f is not folder and f.folder.relpath != "splits")
