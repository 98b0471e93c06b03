"""Issue 12, faults of whole runs: two runs on one folder, a killed parent, a full disk, a killed build's
temporary files. Real processes, real sample videos."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit import Manifest, VideoRecord
from dftoolkit.cli import app
from dftoolkit.corpora import validate_corpus
from dftoolkit.generators import build_dataset
from dftoolkit.locks import LOCK_FILE, FolderLockedError, output_lock
from dftoolkit.preprocess import FaceStore
from dftoolkit.video import VideoReader, VideoWriter


def _copies(sample, folder: Path, count: int) -> Path:
    """A manifest file of ``count`` copies of the carphone talking head."""
    folder.mkdir(parents=True)
    records = []
    for k in range(count):
        shutil.copy(sample("carphone_pristine"), folder / f"v{k}.mp4")
        records.append(VideoRecord("t", f"v{k}", f"v{k}.mp4", 0))
    path = folder.parent / f"{folder.name}.parquet"
    Manifest(records, root=folder).write_parquet(path)
    return path


def _preprocess_command(manifest: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "dftoolkit", "-q", "preprocess", str(manifest), "-o", str(out), *options]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


# -- one writer per folder ---------------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_on_a_store_fails_at_once_naming_the_first(sample, tmp_path):
    """Two `preprocess` runs on one --out used to delete each other's in-flight folders."""
    manifest, store = _copies(sample, tmp_path / "c", 8), tmp_path / "store"
    command = _preprocess_command(manifest, store, "--frames", "32", "--crops", "face,aligned,ffhq,mouth")
    command += ["--workers", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = store / LOCK_FILE

        def running() -> bool:  # holding the lock (or, without locks, committing)
            held = lock.is_file() and f'"pid": {first.pid},' in lock.read_text()
            return held or any((store / "videos" / "t").glob("v*/frames.parquet"))

        _wait_for(running, 60, "the first run")
        start = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        seconds = time.monotonic() - start
        overlapped = first.poll() is None
        _, err = first.communicate(timeout=180)
    finally:
        first.kill()
    assert second.returncode == 1, f"not refused (the runs overlapped: {overlapped}) {second.stderr}"
    (line,) = _error_lines(second.stderr)
    assert f"pid {first.pid}" in line and str(store) in line and "preprocess" in line
    assert seconds < 20
    assert first.returncode == 0, err
    frames = FaceStore(store).frames()
    assert sorted(set(frames.video_id)) == sorted(f"v{k}" for k in range(8)) and len(frames) == 8 * 32
    assert not [p for p in (store / "videos" / "t").iterdir() if p.name.startswith(".")]


def test_lock_is_free_once_its_holder_is_killed(tmp_path):
    """flock: the kernel drops the lock of a process that dies, even by kill -9."""
    code = "import sys, time\nfrom dftoolkit.locks import output_lock\n"
    code += "with output_lock(sys.argv[1], 'test'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid} "), output_lock(tmp_path, "test"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(tmp_path, "test") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


# -- workers die with their parent ------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_a_killed_parent(sample, tmp_path):
    """kill -9 of a --workers 2 run used to leave its workers committing videos, then blocking forever."""
    manifest, store = _copies(sample, tmp_path / "c", 8), tmp_path / "store"
    command = _preprocess_command(manifest, store, "--frames", "32", "--workers", "2")
    parent = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def started() -> bool:
            workers = [p for p in _children(parent.pid) if "spawn_main" in _cmdline(p)]
            return len(workers) == 2 and any((store / "videos" / "t").glob("v*/frames.parquet"))

        _wait_for(started, 120, "two workers and a committed video")
        children = _children(parent.pid)  # the workers and multiprocessing's resource tracker
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [(p, _cmdline(p)) for p in children if _alive(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):  # orphans of a failed check
            os.killpg(parent.pid, signal.SIGKILL)


# -- disk full and failed runs exit non-zero --------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "injected")


def test_preprocess_with_a_full_disk_exits_1_in_one_line(sample, tmp_path, monkeypatch):
    manifest = _copies(sample, tmp_path / "c", 2)
    monkeypatch.setattr("dftoolkit.preprocess.store._write_image", _enospc)
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app, _preprocess_command(manifest, store, "--frames", "4", "--workers", "1")[3:]
    )
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result.stderr)
    assert str(store) in line and "disk is full" in line and "Traceback" not in result.output
    assert FaceStore(store).videos() == []


def test_preprocess_exit_status_when_every_video_or_some_fail(sample, tmp_path, monkeypatch):
    """Every video failing: 1; some failing, others done: 0 with the failures listed."""
    from dftoolkit.preprocess import pipeline

    manifest, store = _copies(sample, tmp_path / "c", 2), tmp_path / "store"
    command = _preprocess_command(manifest, store, "--frames", "4", "--workers", "1")[3:]
    process_video = pipeline.process_video

    def failing(*names: str):
        def process(record, *args, **kwargs):
            if record.video_id in names:
                raise RuntimeError(f"injected fault in {record.video_id}")
            return process_video(record, *args, **kwargs)

        return process

    monkeypatch.setattr(pipeline, "process_video", failing("v0", "v1"))
    every = CliRunner().invoke(app, command)
    assert every.exit_code == 1, every.output
    (line,) = _error_lines(every.stderr)
    assert str(store) in line and "every item" in line
    monkeypatch.setattr(pipeline, "process_video", failing("v1"))
    some = CliRunner().invoke(app, command)
    assert some.exit_code == 0, some.output
    assert "failed t/v1" in some.stdout and "injected fault in v1" in some.stdout


@pytest.fixture(scope="module")
def tiny_reals(sample, tmp_path_factory) -> Path:
    """A manifest file of two short real clips of two people (fast to track and swap)."""
    root = tmp_path_factory.mktemp("reals")
    records = []
    for name in ("carphone_pristine", "jesper_webcam"):
        frames = VideoReader(sample(name)).read(np.arange(16))
        with VideoWriter(root / f"{name}.mp4", fps=25, lossless=True) as writer:
            writer.write_many(frames)
        records.append(VideoRecord("s", name, f"{name}.mp4", 0, target_id=name.split("_")[0]))
    path = root / "reals.parquet"
    Manifest(records, root=root).write_parquet(path)
    return path


def _generate(reals: Path, out: Path) -> list[str]:
    return [
        "generate",
        str(reals),
        "--out",
        str(out),
        "--methods",
        "swap",
        "--blends",
        "naive",
        "--workers",
        "1",
    ]


@pytest.mark.slow
def test_generate_with_a_full_disk_exits_1_in_one_line(tiny_reals, tmp_path, monkeypatch):
    monkeypatch.setattr(VideoWriter, "write", _enospc)
    out = tmp_path / "srdf"
    result = CliRunner().invoke(app, _generate(tiny_reals, out))
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result.stderr)
    assert str(out) in line and "disk is full" in line and "Traceback" not in result.output


@pytest.mark.slow
def test_generate_on_a_really_full_tmpfs_exits_1_in_one_line(tiny_reals, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True, check=False
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = CliRunner().invoke(app, _generate(tiny_reals, disk / "srdf"))
        assert result.exit_code == 1, result.output
        (line,) = _error_lines(result.stderr)
        assert str(disk / "srdf") in line and "disk is full" in line and "Traceback" not in result.output
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)  # the error may still hold a file


# -- a killed build's temporary files ---------------------------------------------------------------


@pytest.mark.slow
def test_rerun_removes_a_killed_builds_temporary_files(tiny_reals, tmp_path):
    out = tmp_path / "srdf"
    reals = Manifest.read_parquet(tiny_reals)
    build = {"methods": ["swap"], "blends": ["naive"], "crf": None, "workers": 1}
    manifest = build_dataset(reals, out, **build)
    fake = next(r for r in manifest if r.label == 1)
    stale = [  # what a kill -9 leaves: atomic_path temporaries, a perturbation scratch file, a partial dir
        out / Path(fake.relpath).parent / f".{Path(fake.relpath).name}.k2_9xq0a.mp4",
        out / "originals" / ".carphone_pristine.mp4.abcdefgh.mp4",
        out / "provenance" / f".{fake.video_id}.json.0a1b2c3d.json",
        out / "masks" / "swap" / ".x.mp4.zzzzzzzz.mp4",
        out / ".manifest.parquet.q1w2e3r4.parquet",
        out / ".work" / ".perturb-a1b2c3d4.mp4",
        out / ".work" / "tracks" / "s" / ".jesper_webcam.npz.5f6g7h8j.npz",
    ]
    for path in stale:
        path.write_bytes(b"partial")
    (out / "videos" / ".swap.1a2b3c4d").mkdir()
    assert any(f.unexpected for f in validate_corpus("toolkit", out).folders)
    again = build_dataset(reals, out, **build)
    assert [p for p in stale if p.exists()] == [] and not (out / "videos" / ".swap.1a2b3c4d").exists()
    assert list(again) == list(manifest)
    report = validate_corpus("toolkit", out)
    assert report.ok and not [f.unexpected for f in report.folders if f.unexpected]
