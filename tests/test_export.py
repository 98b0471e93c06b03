"""Export: Hugging Face folder, Parquet and CSV, each written atomically."""

from __future__ import annotations

import csv
from pathlib import Path

import datasets
import pytest

from dftoolkit.export import EXPORT_FORMATS, export_manifest
from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.records import VideoRecord


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
    assert EXPORT_FORMATS == ("hf", "parquet", "csv")
    assert sorted(p.name for p in out.iterdir()) == ["hf", "manifest.csv", "manifest.parquet"]

    loaded = datasets.load_from_disk(str(out / "hf"))
    assert isinstance(loaded, datasets.DatasetDict)
    assert {name: len(part) for name, part in loaded.items()} == {"train": 4, "val": 4, "test": 4}
    label = loaded["train"].features["label"]
    assert isinstance(label, datasets.ClassLabel)
    assert label.names == ["real", "fake"]
    row = loaded["test"][1]
    assert (row["video_id"], row["label"], row["original_id"], row["fps"]) == ("004_005", 1, "004", 29.97)

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
    manifest = Manifest(ffpp_records())  # no root: CSV paths cannot be made
    with pytest.raises(ManifestError, match="no root"):
        export_manifest(manifest, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    written = export_manifest(manifest, tmp_path / "export", formats=("hf", "parquet"))
    assert set(written) == {"hf", "parquet"}
