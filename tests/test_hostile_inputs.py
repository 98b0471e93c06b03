"""Hostile inputs and faults: a manifest whose names climb out of the output, odd schema versions,
a CSV listing a folder, and the modes of atomically committed folders."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.corpora import CorpusError, index_corpus
from dftoolkit.export import export_manifest
from dftoolkit.fileio import atomic_dir
from dftoolkit.manifest import SCHEMA, Manifest, ManifestError
from dftoolkit.preprocess.store import FaceStore, VideoFaces
from dftoolkit.records import RecordError, VideoRecord

runner = CliRunner()


def write_manifest_by_hand(
    path: Path, rows: list[dict], roots: dict[str, str], version: bytes = b"2"
) -> Path:
    """Parquet laid out as ``Manifest.write_parquet`` writes it, bypassing record validation."""
    columns = {field.name: [row.get(field.name) for row in rows] for field in SCHEMA}
    metadata = {b"dftoolkit.schema_version": version, b"dftoolkit.roots": json.dumps(roots).encode()}
    pq.write_table(pa.Table.from_pydict(columns, schema=SCHEMA).replace_schema_metadata(metadata), path)
    return path


@pytest.fixture
def evil(tmp_path: Path, samples_manifest: Manifest) -> tuple[Path, Path]:
    """``(evil.parquet, escape folder)``: two real sample videos of different people whose dataset
    name climbs from any output folder up to ``/`` and down into ``tmp_path/escaped``."""
    escape = tmp_path / "escaped"
    dataset = "../" * 64 + escape.as_posix().lstrip("/")
    rows = [
        {**samples_manifest.filter(video_id=video_id)[0].to_dict(), "dataset": dataset}
        for video_id in ("carphone_pristine", "jesper_webcam")
    ]
    roots = {dataset: samples_manifest.root.as_posix()}
    return write_manifest_by_hand(tmp_path / "evil.parquet", rows, roots), escape


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "{manifest}", "--out", "{out}", "--methods", "swap", "--workers", "1"],
        ["quality", "{manifest}", "--out", "{out}", "--metrics", "ewarp", "--workers", "1"],
        ["preprocess", "{manifest}", "--out", "{out}", "--frames", "2", "--workers", "1"],
    ],
    ids=lambda command: command[0],
)
def test_dataset_name_cannot_escape_the_output(evil: tuple[Path, Path], command: list[str]) -> None:
    manifest, escape = evil
    out = manifest.parent / "out"
    args = [arg.format(manifest=manifest, out=out) for arg in command]
    result = runner.invoke(app, ["--quiet", *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {manifest}: row 0 ")
    assert "dataset '../../" in lines[0] and "usable as a file name" in lines[0]
    assert not escape.exists()
    assert {p.name for p in manifest.parent.iterdir()} <= {"evil.parquet", "out"}


HOSTILE_NAMES = ["..", ".", "../../etc", "/abs", "a/b", "a\\b", "C:", ".hidden", "a\nb", "a\x00b", "", " "]


@pytest.mark.parametrize(
    ("field", "value"),
    [*((field, name) for field in ("dataset", "original_id") for name in HOSTILE_NAMES), ("video_id", ".x")],
)
def test_names_that_reach_a_path_are_refused(field: str, value: str) -> None:
    fields = {"dataset": "ffpp", "video_id": "000", "relpath": "000.mp4", "label": 1, field: value}
    with pytest.raises(RecordError, match=field):
        VideoRecord(**fields)  # type: ignore[arg-type]


def test_ordinary_names_still_accepted() -> None:
    record = VideoRecord("Celeb-DF v2", "id0_0000.v2", "a.mp4", 1, original_id="id0 0000")
    assert record.key == ("Celeb-DF v2", "id0_0000.v2")


@pytest.mark.parametrize("version", [b"0", b"-1"])
def test_schema_versions_below_one_refused(tmp_path: Path, version: bytes) -> None:
    row = {"dataset": "ffpp", "video_id": "000", "relpath": "000.mp4", "label": 0}
    path = write_manifest_by_hand(tmp_path / "old.parquet", [row], {}, version)
    with pytest.raises(ManifestError, match=rf"old\.parquet: schema version {version.decode()} "):
        Manifest.read_parquet(path)


@pytest.mark.parametrize(("column", "listed"), [("path", "real/clips"), ("mask_path", "masks/clips")])
def test_folder_csv_refuses_a_folder_as_a_video(tmp_path: Path, column: str, listed: str) -> None:
    for relpath in ("real/a.mp4", "fake/b.mp4", "masks/b.mp4"):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(b"video")
    (tmp_path / listed).mkdir()
    row = "real/clips,0," if column == "path" else "fake/b.mp4,1,masks/clips"
    (tmp_path / "videos.csv").write_text(f"path,label,mask_path\nreal/a.mp4,0,\n{row}\n")
    with pytest.raises(CorpusError, match=rf"videos\.csv: line 3: {listed} is a folder, not a video file"):
        index_corpus("folder", tmp_path, csv="videos.csv")


@pytest.fixture
def umask() -> Iterator[None]:
    """Run the test under umask 0o022 (process-wide; restored after)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)])
def test_atomic_dir_commits_with_the_umask_mode(
    tmp_path: Path, umask: None, mask: int, expected: int
) -> None:
    os.umask(mask)
    with atomic_dir(tmp_path / "done") as tmp:
        (tmp / "file").write_text("x")
    assert mode(tmp_path / "done") == expected
    assert [p.name for p in tmp_path.iterdir()] == ["done"]


def test_committed_store_video_and_export_are_group_readable(tmp_path: Path, umask: None) -> None:
    store = FaceStore.create(tmp_path / "store", {"backend": "test"})
    faces = VideoFaces(
        dataset="samples",
        video_id="carphone",
        frame_indices=np.array([-1]),
        status=["decode_error"],
        reason=["unreadable"],
        face_index=np.array([-1]),
        scores=np.full(1, np.nan, np.float32),
        boxes=np.full((1, 4), np.nan, np.float32),
        landmarks=np.full((1, 68, 2), np.nan, np.float32),
    )
    assert mode(store.commit(faces)) == 0o755
    manifest = Manifest([VideoRecord("samples", "carphone", "carphone.mp4", 0)], root=tmp_path)
    assert mode(export_manifest(manifest, tmp_path / "export", ["hf"])["hf"]) == 0o755
