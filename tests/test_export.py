"""Export: Hugging Face folder and card, Parquet, CSV and DeepfakeBench JSON, each written atomically."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

import dftoolkit
from dftoolkit.cli import app
from dftoolkit.export import DEFAULT_FORMATS, EXPORT_FORMATS, export_manifest
from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.records import SPLITS, VideoRecord
from dftoolkit.video import VideoReader


def ffpp_records(n_ids: int = 6) -> list[VideoRecord]:
    """FF++-like: originals ``000``.. (train, then val, then test by pair) and Deepfakes ``a_b`` / ``b_a``."""
    splits = ["train", "train", "val", "val", "test", "test"]
    records = []
    for i in range(n_ids):
        target, source = f"{i:03d}", f"{i ^ 1:03d}"
        split = splits[i * len(splits) // n_ids]
        records.append(
            VideoRecord(
                "ffpp",
                target,
                f"original_sequences/youtube/c23/videos/{target}.mp4",
                0,
                "youtube",
                "c23",
                split,
                target,
            )
        )
        records.append(
            VideoRecord(
                "ffpp",
                f"{target}_{source}",
                f"manipulated_sequences/Deepfakes/c23/videos/{target}_{source}.mp4",
                1,
                method="Deepfakes",
                compression="c23",
                split=split,
                target_id=target,
                source_id=source,
                original_id=target,
                mask_relpath=f"manipulated_sequences/Deepfakes/masks/videos/{target}_{source}.mp4",
                frames=396,
                fps=29.97,
                width=640,
                height=480,
            )
        )
    return records


@pytest.fixture
def manifest(tmp_path) -> Manifest:
    root = tmp_path / "FaceForensics++"
    manifest = Manifest(ffpp_records(), root=root)
    for record in manifest:
        path = root / record.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return manifest


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_all_formats(manifest, tmp_path):
    out = tmp_path / "export"
    written = export_manifest(manifest, out)
    assert written == {"hf": out / "hf", "parquet": out / "manifest.parquet", "csv": out / "manifest.csv"}
    assert DEFAULT_FORMATS == ("hf", "parquet", "csv")
    assert EXPORT_FORMATS == ("hf", "parquet", "csv", "dfb")
    assert sorted(p.name for p in out.iterdir()) == ["hf", "manifest.csv", "manifest.parquet"]

    loaded = datasets.load_from_disk(str(out / "hf"))
    assert isinstance(loaded, datasets.DatasetDict)
    assert {name: len(part) for name, part in loaded.items()} == {"train": 4, "val": 4, "test": 4}
    label = loaded["train"].features["label"]
    assert isinstance(label, datasets.ClassLabel)
    assert label.names == ["real", "fake"]
    row = loaded["test"][1]
    assert (row["video_id"], row["label"], row["original_id"], row["fps"]) == ("004_005", 1, "004", 29.97)
    assert row["root"] == str(manifest.root)
    assert Path(row["path"]) == manifest.root / row["relpath"] and Path(row["path"]).is_file()
    info = loaded["test"].info
    assert info.version == datasets.Version(dftoolkit.__version__) and "ffpp" in info.description

    back = Manifest.read_parquet(out / "manifest.parquet")
    assert back.records == manifest.records
    assert back.root == manifest.root


def test_csv_columns_and_paths(manifest, tmp_path):
    written = export_manifest(manifest, tmp_path / "export", formats=["csv"])
    with open(written["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*VideoRecord.field_names(), "path", "label_name"]
    assert len(rows) == len(manifest)
    for row, record in zip(rows, manifest, strict=True):
        assert row["video_id"] == record.video_id
        assert Path(row["path"]) == manifest.root / record.relpath
        assert Path(row["path"]).is_file()
        assert row["label_name"] == ("fake" if record.label else "real")
    assert rows[0]["original_id"] == ""  # a real: missing values are empty cells
    assert rows[1]["frames"] == "396"
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["manifest.csv"]


def test_records_without_split_give_a_plain_dataset(manifest, tmp_path):
    unsplit = manifest.map_records(lambda r: r.replace(split=None) if r.video_id == "000" else r)
    export_manifest(unsplit, tmp_path / "export", formats=("hf",))
    loaded = datasets.load_from_disk(str(tmp_path / "export" / "hf"))
    assert isinstance(loaded, datasets.Dataset)
    assert len(loaded) == len(manifest)
    assert loaded.features["label"].names == ["real", "fake"]


def test_empty_manifest_round_trips(tmp_path):
    export_manifest(Manifest([]), tmp_path / "export")
    assert len(datasets.load_from_disk(str(tmp_path / "export" / "hf"))) == 0
    assert len(Manifest.read_parquet(tmp_path / "export" / "manifest.parquet")) == 0


def test_reexport_replaces_previous_output(manifest, tmp_path):
    out = tmp_path / "export"
    export_manifest(manifest, out)
    smaller = manifest.filter(split="train")
    export_manifest(smaller, out)
    loaded = datasets.load_from_disk(str(out / "hf"))
    assert list(loaded) == ["train"]
    assert len(Manifest.read_parquet(out / "manifest.parquet")) == len(smaller)
    assert leftovers(out) == []


def test_failure_while_saving_leaves_no_partial_folder(manifest, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_manifest(manifest.filter(split="train"), out, formats=["hf"])
    before = sorted(p.relative_to(out) for p in (out / "hf").rglob("*"))

    def broken_save(self, path, **kwargs):
        Path(path, "train").mkdir(parents=True)
        Path(path, "train", "data-00000-of-00001.arrow").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_manifest(manifest, out, formats=["hf"])
    assert leftovers(out) == []
    assert sorted(p.relative_to(out) for p in (out / "hf").rglob("*")) == before  # old export intact
    assert list(datasets.load_from_disk(str(out / "hf"))) == ["train"]

    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        export_manifest(manifest, fresh, formats=["hf"])
    assert list(fresh.iterdir()) == []


def test_unknown_format_writes_nothing(manifest, tmp_path):
    with pytest.raises(ValueError, match=r"unknown export format.*'json'"):
        export_manifest(manifest, tmp_path / "export", formats=("parquet", "json"))
    assert not (tmp_path / "export").exists()


def test_missing_root_fails_before_writing(tmp_path):
    manifest = Manifest(ffpp_records())  # no root: the hf and CSV paths cannot be made
    for formats in (["parquet", "hf"], ["parquet", "csv"]):
        with pytest.raises(ManifestError, match="no root"):
            export_manifest(manifest, tmp_path / "export", formats=formats)
        assert not (tmp_path / "export").exists()
    written = export_manifest(manifest, tmp_path / "export", formats=("parquet",))
    assert set(written) == {"parquet"}


def test_hf_rows_open_their_videos_by_path_after_the_export_moves(samples_manifest, tmp_path):
    export_manifest(samples_manifest, tmp_path / "export", formats=["hf"])
    moved = shutil.move(tmp_path / "export" / "hf", tmp_path / "elsewhere")
    loaded = datasets.load_from_disk(str(moved))
    assert len(loaded) == len(samples_manifest)
    for row in loaded:
        assert Path(row["root"]) / row["relpath"] == Path(row["path"])
        frame = VideoReader(row["path"]).read([0])
        assert frame.shape[0] == 1 and frame.shape[-1] == 3


def card_table(card: str, field: str) -> dict[str, int]:
    """The ``### By <field>`` table of a dataset card as value -> videos."""
    section = card.split(f"### By {field}\n\n", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| (.+?) \| (\d+) \|$", section, re.M)}


def test_hf_dataset_card(manifest, tmp_path):
    manifest = Manifest.concat(
        [manifest, Manifest([VideoRecord("extra", "x", "x.mp4", 1, split="train")], root=tmp_path)]
    )
    source = tmp_path / "grouped.parquet"
    export_manifest(manifest, tmp_path / "export", formats=["hf"], source=source)
    card = (tmp_path / "export" / "hf" / "README.md").read_text("utf-8")
    front, body = card.removeprefix("---\n").split("\n---\n", 1)
    assert "config_name: default" in front and "path: train/data-*.arrow" in front
    assert "class_label:" in front and "- name: path" in front and "num_examples: 5" in front
    assert card_table(body, "split") == {"train": 5, "val": 4, "test": 4}
    assert card_table(body, "dataset") == {"ffpp": 12, "extra": 1}
    assert card_table(body, "label") == {"real": 6, "fake": 7}
    assert card_table(body, "method") == {"Deepfakes": 6, "youtube": 6, "-": 1}
    assert f"`{source}`" in body and f"`{manifest.roots['ffpp']}`" in body and f"`{tmp_path}`" in body
    assert f"dftoolkit {dftoolkit.__version__}" in body and "load_from_disk" in body
    assert isinstance(datasets.load_from_disk(str(tmp_path / "export" / "hf")), datasets.DatasetDict)


@pytest.fixture(scope="module")
def face_store(tmp_path_factory, samples_manifest) -> tuple[Manifest, Path]:
    """Three sample videos with splits, jesper relabelled a Deepfakes fake, and their FaceStore.

    carphone_distorted is too blurred for the detector: every frame is ``no_face``.
    """
    from dftoolkit.preprocess import PreprocessConfig, preprocess

    chosen = {"carphone_pristine": "train", "jesper_webcam": "test", "carphone_distorted": "val"}
    three = samples_manifest.filter(video_id=list(chosen))
    store = tmp_path_factory.mktemp("faces") / "store"
    preprocess(three, store, PreprocessConfig(frames=4), workers=1)
    split = three.map_records(lambda r: r.replace(split=chosen[r.video_id]))
    return split.map_records(
        lambda r: r.replace(label=1, method="Deepfakes") if r.video_id == "jesper_webcam" else r
    ), store


def test_dfb_json_lists_face_crops(face_store, tmp_path):
    manifest, store = face_store
    written = export_manifest(manifest, tmp_path / "export", formats=["dfb"], store=store)
    assert written == {"dfb": tmp_path / "export" / "dfb"}
    assert sorted(p.name for p in written["dfb"].iterdir()) == ["README.md", "samples.json"]
    data = json.loads((written["dfb"] / "samples.json").read_text("utf-8"))
    assert list(data) == ["samples"]
    labels = data["samples"]
    assert sorted(labels) == ["samples-Deepfakes", "samples-real"]
    assert all(list(splits) == list(SPLITS) for splits in labels.values())  # DeepfakeBench indexes each
    videos = {
        (label, split, video_id): video
        for label, splits in labels.items()
        for split, entries in splits.items()
        for video_id, video in entries.items()
    }
    assert sorted(videos) == [
        ("samples-Deepfakes", "test", "jesper_webcam"),
        ("samples-real", "train", "carphone_pristine"),
    ]
    for (label, _, _), video in videos.items():
        assert video["label"] == label
        indices = [int(Path(f).stem) for f in video["frames"]]
        assert len(indices) == 4 and indices == sorted(indices)
        assert all(Path(f).is_absolute() and Path(f).is_file() for f in video["frames"])
    readme = (written["dfb"] / "README.md").read_text("utf-8")
    assert "  samples-real: 0\n  samples-Deepfakes: 1" in readme
    assert "no ok face crop (1)\n\n- samples/carphone_distorted (val)" in readme


def test_dfb_refuses_without_splits_store_or_stored_videos(face_store, samples_manifest, tmp_path):
    manifest, store = face_store
    out = tmp_path / "export"
    unsplit = manifest.map_records(lambda r: r.replace(split=None) if r.split == "test" else r)
    with pytest.raises(ManifestError, match=r"^1 of 3 rows have no split"):
        export_manifest(unsplit, out, formats=["hf", "dfb"], store=store)
    with pytest.raises(ValueError, match="needs a face store"):
        export_manifest(manifest, out, formats=["hf", "dfb"])
    more = samples_manifest.filter(video_id=["hello_720p"]).map_records(lambda r: r.replace(split="val"))
    with pytest.raises(ValueError, match=r"1 of 4 videos are not in the face store"):
        export_manifest(Manifest.concat([manifest, more]), out, formats=["hf", "dfb"], store=store)
    assert not out.exists()


def test_cli_exports_dfb(face_store, tmp_path):
    manifest, store = face_store
    manifest.write_parquet(tmp_path / "split.parquet")
    args = ["export", str(tmp_path / "split.parquet"), "--out", str(tmp_path / "export"), "--formats", "dfb"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "needs a face store" in refused.output
    result = CliRunner().invoke(app, [*args, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "export" / "dfb" / "samples.json").is_file()
