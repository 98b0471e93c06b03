"""Manifest: validation, roots, Parquet, pandas, Hugging Face, filtering, summary, CLI."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from types import ModuleType

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.paths import PathEscapeError
from dftoolkit.records import VideoRecord


def rec(video_id: str, dataset: str = "ffpp", **fields: object) -> VideoRecord:
    values = {"relpath": f"videos/{video_id}.mp4", "label": 0, **fields}
    return VideoRecord(dataset=dataset, video_id=video_id, **values)  # type: ignore[arg-type]


def full_records() -> list[VideoRecord]:
    return [
        rec("000", label=0, method="youtube", compression="c23", split="train", target_id="000"),
        rec(
            "000_003",
            relpath="manipulated/Deepfakes/000_003.mp4",
            label=1,
            method="Deepfakes",
            compression="c40",
            split="test",
            target_id="000",
            source_id="003",
            original_id="000",
            mask_relpath="masks/000_003.mp4",
            perturbation="CS:3 GB:2",
            frames=396,
            fps=29.97,
            width=640,
            height=480,
        ),
        rec("001", label=0, fps=25.0, frames=0),
    ]


def touch(path: Path, data: bytes = b"video") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_raw(
    path: Path, columns: dict[str, list[object]], metadata: dict[bytes, bytes] | None = None
) -> Path:
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return path


# -- construction and access ----------------------------------------------------------------


def test_table_access(tmp_path: Path) -> None:
    records = [*full_records(), rec("x", dataset="celebdf")]
    m = Manifest(records, root=tmp_path)
    assert len(m) == 4
    assert list(m) == records
    assert m[1] is records[1] and m[-1] is records[-1]
    assert m.records == tuple(records)
    assert m.datasets == ["celebdf", "ffpp"]
    assert m.root == tmp_path
    assert m.roots == {"celebdf": tmp_path, "ffpp": tmp_path}
    assert repr(m) == "Manifest(4 videos, datasets=['celebdf', 'ffpp'])"


def test_roots_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    m = Manifest([rec("a")], root="data/../corpus")
    assert m.root == tmp_path / "corpus"
    m.roots["ffpp"] = Path("/elsewhere")  # a copy: the manifest is unchanged
    assert m.root == tmp_path / "corpus"


def test_duplicate_key_names_both_rows() -> None:
    records = [rec("000"), rec("001"), rec("000", dataset="other"), rec("000", relpath="b.mp4")]
    with pytest.raises(ManifestError) as err:
        Manifest(records)
    message = str(err.value)
    assert "row 3" in message and "first at row 0" in message
    assert "'000'" in message and "'ffpp'" in message


def test_items_must_be_records() -> None:
    with pytest.raises(ManifestError, match="row 1: expected a VideoRecord"):
        Manifest([rec("a"), {"dataset": "ffpp"}])  # type: ignore[list-item]


def test_root_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no root"):
        _ = Manifest([rec("a")]).root
    with pytest.raises(ManifestError, match="no root"):
        Manifest([rec("a")]).path_of(rec("a"))
    with pytest.raises(ManifestError, match="not both"):
        Manifest([rec("a")], tmp_path, roots={"ffpp": tmp_path})


def test_path_of_and_mask_path_of(tmp_path: Path) -> None:
    m = Manifest(full_records(), root=tmp_path)
    fake = m[1]
    assert m.path_of(fake) == tmp_path / "manipulated/Deepfakes/000_003.mp4"
    assert m.mask_path_of(fake) == tmp_path / "masks/000_003.mp4"
    assert m.mask_path_of(m[0]) is None


def test_path_of_rejects_symlink_escaping_root(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    outside = touch(tmp_path / "secret.mp4")
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "evil.mp4").symlink_to(outside)
    (root / "masks").symlink_to(tmp_path)
    m = Manifest([rec("evil", mask_relpath="masks/secret.mp4")], root=root)
    with pytest.raises(PathEscapeError):
        m.path_of(m[0])
    with pytest.raises(PathEscapeError):
        m.mask_path_of(m[0])


# -- Parquet --------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_every_field(tmp_path: Path) -> None:
    m = Manifest(full_records(), root=tmp_path / "corpus")
    path = tmp_path / "corpus" / "manifest.parquet"
    m.write_parquet(path)
    back = Manifest.read_parquet(path)
    assert back.records == m.records
    assert back.roots == m.roots
    assert back[1].fps == 29.97 and type(back[1].fps) is float
    assert back[0].frames is None and back[0].mask_relpath is None
    assert back[2].frames == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.parquet"]  # no temp files left

    schema = pq.read_schema(path)
    assert schema.field("label").type == pa.int8()
    assert schema.field("frames").type == pa.int64()
    assert schema.field("fps").type == pa.float64()
    assert schema.field("method").type == pa.string()
    assert not schema.field("video_id").nullable and schema.field("split").nullable
    assert schema.field("frames_exact").type == pa.bool_()
    assert schema.field("coverage").type == pa.float64()
    assert schema.metadata[b"dftoolkit.schema_version"] == b"2"


def test_roots_stored_relative_and_survive_a_move(tmp_path: Path) -> None:
    project = tmp_path / "project"
    touch(project / "data" / "ffpp" / "videos" / "000.mp4")
    touch(project / "data" / "celebdf" / "videos" / "c1.mp4")
    m = Manifest(
        [rec("000"), rec("c1", dataset="celebdf")],
        roots={"ffpp": project / "data" / "ffpp", "celebdf": project / "data" / "celebdf"},
    )
    path = project / "manifests" / "all.parquet"
    m.write_parquet(path)
    stored = json.loads(pq.read_schema(path).metadata[b"dftoolkit.roots"])
    assert stored == {"celebdf": "../data/celebdf", "ffpp": "../data/ffpp"}

    shutil.move(project, tmp_path / "moved")
    back = Manifest.read_parquet(tmp_path / "moved" / "manifests" / "all.parquet")
    for record in back:
        path_of = back.path_of(record)
        assert path_of.is_file()
        assert str(path_of).startswith(str(tmp_path / "moved"))


def test_root_override(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    Manifest([rec("a"), rec("b", dataset="other")], roots={"ffpp": "/x", "other": "/y"}).write_parquet(path)
    back = Manifest.read_parquet(path, root=tmp_path / "mirror")
    assert back.root == tmp_path / "mirror"
    assert back.path_of(back[1]) == tmp_path / "mirror" / "videos/b.mp4"


def test_manifest_without_roots_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    Manifest([rec("a")]).write_parquet(path)
    back = Manifest.read_parquet(path)
    assert back.roots == {} and back.records == (rec("a"),)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet"):
        Manifest.read_parquet(tmp_path / "nope.parquet")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ManifestError, match=r"corrupt\.parquet"):
        Manifest.read_parquet(path)


def test_newer_schema_version_rejected(tmp_path: Path) -> None:
    path = write_raw(
        tmp_path / "future.parquet",
        {"dataset": ["ffpp"], "video_id": ["a"], "relpath": ["a.mp4"], "label": [0]},
        {b"dftoolkit.schema_version": b"3"},
    )
    with pytest.raises(ManifestError, match="schema version 3"):
        Manifest.read_parquet(path)


def test_missing_required_columns_listed(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "m.parquet", {"dataset": ["ffpp"], "video_id": ["a"]})
    with pytest.raises(ManifestError, match=r"m\.parquet: missing required column\(s\): relpath, label"):
        Manifest.read_parquet(path)


def test_bad_row_reported_with_file_row_and_id(tmp_path: Path) -> None:
    path = write_raw(
        tmp_path / "bad.parquet",
        {
            "dataset": ["ffpp"] * 5,
            "video_id": ["a", "b", "c", "d", "e"],
            "relpath": ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"],
            "label": [0, 1, 0, 5, 1],
        },
    )
    with pytest.raises(ManifestError) as err:
        Manifest.read_parquet(path)
    message = str(err.value)
    assert "bad.parquet" in message and "row 3" in message
    assert "'d'" in message and "label must be 0 (real) or 1 (fake)" in message


def test_duplicate_rows_in_file_reported(tmp_path: Path) -> None:
    path = write_raw(
        tmp_path / "dup.parquet",
        {
            "dataset": ["ffpp"] * 3,
            "video_id": ["a", "b", "a"],
            "relpath": ["a", "b", "c"],
            "label": [0, 1, 0],
        },
    )
    with pytest.raises(ManifestError, match=r"dup.parquet: row 2: duplicate video_id 'a'.*first at row 0"):
        Manifest.read_parquet(path)


def test_foreign_parquet_with_extra_columns_and_other_types(tmp_path: Path) -> None:
    path = write_raw(
        tmp_path / "foreign.parquet",
        {
            "dataset": ["ffpp", "ffpp"],
            "video_id": ["a", "b"],
            "relpath": ["x\\a.mp4", "b.mp4"],
            "label": pa.array([0, 1], pa.int64()),
            "frames": pa.array([120.0, None], pa.float64()),
            "fps": pa.array([25, 30], pa.int32()),
            "score": [0.5, 0.7],
        },
    )
    m = Manifest.read_parquet(path)
    assert m[0] == rec("a", relpath="x/a.mp4", frames=120, fps=25.0)
    assert m[1] == rec("b", relpath="b.mp4", label=1, fps=30.0)
    assert type(m[0].frames) is int and type(m[0].fps) is float


@pytest.mark.parametrize(
    ("column", "bad"), [("frames", 2.5), ("label", 300), ("fps", -1.0), ("split", "dev")]
)
def test_bad_value_reported_at_its_row(tmp_path: Path, column: str, bad: object) -> None:
    columns: dict[str, list[object]] = {
        "dataset": ["ffpp"] * 2,
        "video_id": ["a", "b"],
        "relpath": ["a", "b"],
        "label": [0, 0],
        "frames": [1.0, 2.0],
    }
    columns[column] = [columns[column][0] if column in columns else None, bad]
    path = write_raw(tmp_path / "m.parquet", columns)
    with pytest.raises(ManifestError, match=f"row 1 .*{column}"):
        Manifest.read_parquet(path)


@pytest.mark.slow
def test_large_manifest_round_trip(tmp_path: Path) -> None:
    n = 120_000
    records = [
        VideoRecord(
            "ffpp",
            f"{i:06d}",
            f"videos/{i:06d}.mp4",
            i % 2,
            "Deepfakes",
            "c23",
            "train",
            frames=300,
            fps=25.0,
        )
        for i in range(n)
    ]
    path = tmp_path / "big.parquet"
    Manifest(records, root=tmp_path).write_parquet(path)
    back = Manifest.read_parquet(path)
    assert len(back) == n
    assert back[n - 1] == records[n - 1]
    assert back.summary(by=["label"])["videos"].tolist() == [n // 2, n // 2]


# -- pandas ---------------------------------------------------------------------------------


def test_to_pandas_columns_and_round_trip(tmp_path: Path) -> None:
    m = Manifest(full_records(), root=tmp_path)
    df = m.to_pandas()
    assert list(df.columns) == list(VideoRecord.field_names())
    assert len(df) == 3
    assert df.loc[1, "fps"] == 29.97 and pd.isna(df.loc[0, "fps"])
    assert Manifest.from_pandas(df, root=tmp_path).records == m.records


def test_from_pandas_plain_dtypes_and_missing_optional_columns() -> None:
    df = pd.DataFrame(
        {
            "dataset": ["ffpp", "ffpp"],
            "video_id": ["a", "b"],
            "relpath": ["a.mp4", "b.mp4"],
            "label": [0, 1],
            "frames": [float("nan"), 10.0],
            "extra": ["ignored", "ignored"],
        }
    )
    m = Manifest.from_pandas(df, roots={"ffpp": "/data"})
    assert m[0] == rec("a", relpath="a.mp4")
    assert m[1].frames == 10 and type(m[1].frames) is int
    assert type(m[1].label) is int
    assert m.root == Path("/data")


def test_from_pandas_bad_row() -> None:
    df = pd.DataFrame(
        {"dataset": ["ffpp"] * 3, "video_id": ["a", "b", "c"], "relpath": ["a", "b", "c"], "label": [0, 1, 0]}
    )
    df["split"] = ["train", "dev", None]
    with pytest.raises(ManifestError, match=r"row 1 \(dataset 'ffpp', video_id 'b'\): split"):
        Manifest.from_pandas(df)
    with pytest.raises(ManifestError, match=r"DataFrame: missing required column\(s\): label"):
        Manifest.from_pandas(df.drop(columns="label"))


# -- Hugging Face ---------------------------------------------------------------------------


def test_to_hf_dataset_features() -> None:
    m = Manifest(full_records())
    ds = m.to_hf()
    assert isinstance(ds, datasets.Dataset)
    assert ds.features == m.features()
    assert list(ds.features) == list(VideoRecord.field_names())
    assert ds.features["label"].names == ["real", "fake"]
    assert ds.features["fps"] == datasets.Value("float64")
    assert ds.features["frames"] == datasets.Value("int64")
    assert ds["label"] == [0, 1, 0]
    assert ds[1]["fps"] == 29.97 and ds[0]["mask_relpath"] is None


def test_to_hf_by_split() -> None:
    m = Manifest(full_records()).filter(split=["train", "test"])
    dd = m.to_hf(by_split=True)
    assert isinstance(dd, datasets.DatasetDict)
    assert list(dd) == ["train", "test"]
    assert dd["test"]["video_id"] == ["000_003"]
    assert dd["train"].features == m.features()


def test_to_hf_by_split_needs_splits() -> None:
    with pytest.raises(ManifestError, match="1 of 3 rows have no split"):
        Manifest(full_records()).to_hf(by_split=True)


# -- filter, map, concat, summary -----------------------------------------------------------


def test_filter(tmp_path: Path) -> None:
    m = Manifest(full_records(), root=tmp_path)
    assert [r.video_id for r in m.filter(label=1)] == ["000_003"]
    assert [r.video_id for r in m.filter(split=["train", "test"])] == ["000", "000_003"]
    assert [r.video_id for r in m.filter(split=None)] == ["001"]
    assert [r.video_id for r in m.filter(lambda r: r.fps is not None, label=0)] == ["001"]
    assert len(m.filter(lambda r: False)) == 0
    assert m.filter(label=0).root == tmp_path
    with pytest.raises(ManifestError, match="colour"):
        m.filter(colour="red")


def test_map_records_keeps_roots(tmp_path: Path) -> None:
    m = Manifest(full_records(), root=tmp_path)
    mapped = m.map_records(lambda r: r.replace(split="val"))
    assert {r.split for r in mapped} == {"val"}
    assert mapped.root == tmp_path
    assert m[0].split == "train"


def test_concat_datasets_with_different_roots(tmp_path: Path) -> None:
    a = Manifest([rec("000")], root=tmp_path / "ffpp")
    b = Manifest([rec("000", dataset="celebdf")], root=tmp_path / "celebdf")
    m = Manifest.concat([a, b])
    assert len(m) == 2 and m.datasets == ["celebdf", "ffpp"]
    with pytest.raises(ManifestError, match="path_of"):
        _ = m.root
    assert m.path_of(m[0]) == tmp_path / "ffpp" / "videos/000.mp4"
    assert m.path_of(m[1]) == tmp_path / "celebdf" / "videos/000.mp4"

    path = tmp_path / "all.parquet"
    m.write_parquet(path)
    assert Manifest.read_parquet(path).roots == m.roots


def test_concat_conflicts(tmp_path: Path) -> None:
    a = Manifest([rec("000")], root=tmp_path / "one")
    with pytest.raises(ManifestError, match="two roots"):
        Manifest.concat([a, Manifest([rec("001")], root=tmp_path / "two")])
    with pytest.raises(ManifestError, match="duplicate video_id '000'"):
        Manifest.concat([a, Manifest([rec("000")], root=tmp_path / "one")])


def test_summary_counts() -> None:
    records = [
        rec("r1", split="train"),
        rec("r2", split="train"),
        rec("f1", label=1, method="Deepfakes", split="train"),
        rec("f2", label=1, method="Deepfakes", split="test"),
        rec("f3", label=1, method="FaceSwap"),
        rec("c1", dataset="celebdf", label=1, method="swap"),
    ]
    summary = Manifest(records).summary()
    assert list(summary.columns) == ["dataset", "label", "method", "split", "videos"]
    assert summary.values.tolist() == [
        ["celebdf", "fake", "swap", "-", 1],
        ["ffpp", "real", "-", "train", 2],
        ["ffpp", "fake", "Deepfakes", "test", 1],
        ["ffpp", "fake", "Deepfakes", "train", 1],
        ["ffpp", "fake", "FaceSwap", "-", 1],
    ]
    by_label = Manifest(records).summary(by=["label"])
    assert by_label.values.tolist() == [["real", 2], ["fake", 4]]
    with pytest.raises(ManifestError, match="colour"):
        Manifest(records).summary(by=["colour"])


# -- CLI ------------------------------------------------------------------------------------


def cli_module() -> ModuleType:
    return importlib.import_module("dftoolkit.cli.manifest")


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    cli_module().register(app)

    @app.callback()
    def _group() -> None:  # keeps `info` a sub-command, as in the real app
        pass

    return app


def test_cli_info(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    records = [rec(f"r{i}") for i in range(7)] + [rec(f"f{i}", label=1, method="Deepfakes") for i in range(5)]
    Manifest(records, root=tmp_path).write_parquet(path)
    result = CliRunner().invoke(cli, ["info", str(path), "--by", "label,method"])
    assert result.exit_code == 0, result.output
    assert "12 videos" in " ".join(result.stdout.split())  # the title may wrap
    lines = result.stdout.splitlines()
    assert any("real" in line and " 7 " in line for line in lines)
    assert any("fake" in line and "Deepfakes" in line and " 5 " in line for line in lines)


def test_cli_info_bad_file(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(os.urandom(1000))
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2
    assert "corrupt.parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output

    missing = CliRunner().invoke(cli, ["info", str(tmp_path / "nope.parquet")])
    assert missing.exit_code == 2 and "nope.parquet" in missing.stderr
