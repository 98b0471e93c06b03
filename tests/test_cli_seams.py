"""Issue 13, items 5 and 7: one output option, one KEY=VALUE syntax, errors that say why, help that is
current, no native chatter on the terminal with ``--workers 1``, honest dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from trees import tiny_video
from typer.testing import CliRunner

from dftoolkit import Manifest, VideoRecord
from dftoolkit.cli import app
from dftoolkit.cli._render import key_values
from dftoolkit.faces.dlib_hog import DlibBackend
from dftoolkit.faces.mediapipe_mesh import MediaPipeBackend
from dftoolkit.generators import build_dataset
from dftoolkit.workers import Stage, run_stage

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _folder_corpus(root: Path) -> Path:
    tiny_video(root / "real" / "a.mp4")
    tiny_video(root / "real" / "b.mp4")
    return root


def test_index_and_split_write_to_out_and_still_take_the_hidden_output(tmp_path):
    """``--out``/``-o`` everywhere; ``--output`` is a hidden, deprecated spelling that warns."""
    root = _folder_corpus(tmp_path / "corpus")
    indexed = runner.invoke(app, ["-q", "index", "folder", str(root), "--out", str(tmp_path / "m.parquet")])
    assert indexed.exit_code == 0, indexed.output
    split = runner.invoke(app, ["split", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "s.parquet")])
    assert split.exit_code == 0, split.output
    assert Manifest.read_parquet(tmp_path / "s.parquet").to_pandas()["split"].notna().all()

    old = runner.invoke(app, ["-q", "index", "folder", str(root), "--output", str(tmp_path / "o.parquet")])
    assert old.exit_code == 0 and (tmp_path / "o.parquet").exists()
    assert "warning: --output is deprecated; use --out (-o)" in old.stderr
    both = runner.invoke(app, ["index", "folder", str(root), "-o", "a.parquet", "--output", "b.parquet"])
    assert both.exit_code == 2 and both.stderr.startswith("error: give --out (-o) only")
    missing = runner.invoke(app, ["index", "folder", str(root)])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: give --out (-o)")
    for command in ("index", "split"):
        help_text = runner.invoke(app, [command, "--help"]).stdout
        assert "--out" in help_text and "--output" not in help_text


def test_key_values_one_syntax():
    """JSON when it parses, else a comma list or the text."""
    pairs = ["n=3", "f=0.5", "b=true", "z=null", 'l=["a"]', "c=c23,c40", "t=a.pth", "e="]
    assert key_values("-O", pairs, "k=v") == {
        "n": 3, "f": 0.5, "b": True, "z": None, "l": ["a"], "c": ["c23", "c40"], "t": "a.pth", "e": ""
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["index", "folder", ".", "-o", "m.parquet", "-O", "oops"],
         "error: -O 'oops': expected KEY=VALUE, e.g. compression=c23"),
        (["validate", "folder", ".", "-O", "=x"], "error: -O '=x': expected KEY=VALUE, e.g. compression=c23"),
        (["generate", "m.parquet", "--out", "d", "--set", "fomm"],
         "error: --set 'fomm': expected NAME.KEY=VALUE (a method or blend option) or KEY=VALUE (a setting), "
         "e.g. fomm.checkpoint=vox-cpk.pth.tar"),
        (["quality", "m.parquet", "--out", "q", "--weights", "vgg16"],
         "error: --weights 'vgg16': expected KEY=VALUE, e.g. vgg16=/models/vgg16.pth"),
    ],
)  # fmt: skip
def test_key_value_options_fail_in_one_shape(tmp_path, monkeypatch, args, line):
    """-O, --set and --weights reject a malformed pair with the same one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    Manifest([VideoRecord("d", "v", "v.mp4", 0)], root=tmp_path).write_parquet("m.parquet")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stderr.splitlines() == [line]


def test_no_pair_says_why_and_what_to_do(tmp_path):
    """Each person alone in a split: the error names the cause and the two ways out."""
    records = []
    for k, split in enumerate(("train", "val", "test")):
        tiny_video(tmp_path / f"v{k}.mp4")
        records.append(VideoRecord("d", f"v{k}", f"v{k}.mp4", 0, split=split, target_id=f"p{k}"))
    with pytest.raises(ValueError, match="no source/target pair") as caught:
        build_dataset(Manifest(records, root=tmp_path), tmp_path / "out")
    message = str(caught.value)
    assert "each person is alone in their split" in message and "generate before splitting" in message

    records = [
        VideoRecord("d", "v0", "v0.mp4", 0, target_id="p0"),
        VideoRecord("d", "v1", "v1.mp4", 0, target_id="p0"),
    ]
    with pytest.raises(ValueError, match="two or more identities"):
        build_dataset(Manifest(records, root=tmp_path), tmp_path / "out")


def test_demo_and_train_dovenet_help_is_current():
    demo = " ".join(runner.invoke(app, ["demo", "--help"]).stdout.split())
    assert "audit it for label shortcuts" in demo and "quality report" in demo
    dovenet = " ".join(runner.invoke(app, ["train-dovenet", "--help"]).stdout.split())
    assert "OUT.train" in dovenet and "dovenet.checkpoint=OUT" in dovenet and "CKPT" not in dovenet


class _Chatter(Stage[int, int]):
    """Writes on file descriptor 2 the way native libraries do, at setup and in every job."""

    name = "chatter"

    def setup(self) -> None:
        os.write(2, b"init\n")

    def run(self, job: int) -> int:
        os.write(2, f"native {job}\n".encode())
        return job


def test_in_process_runs_send_stderr_to_the_log_and_give_it_back(tmp_path, capfd):
    """``workers=1``: what the work writes on file descriptor 2 goes to the log; the caller's own
    stderr is back between items and after the run."""
    log = tmp_path / "workers.log"
    for outcome in run_stage(_Chatter(), [[1, 2]], workers=1, log_path=log):
        os.write(2, f"parent {outcome.result}\n".encode())
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "parent 1\nparent 2\nafter\n"
    assert log.read_text() == "init\nnative 1\nnative 2\n"


def test_preprocess_with_one_worker_keeps_mediapipe_off_the_terminal(sample, tmp_path):
    """``--workers 1`` (the local engine in this process): mediapipe's absl/TFLite lines go to the
    store's workers.log, not to the terminal."""
    path = tmp_path / "v.parquet"
    Manifest([VideoRecord("t", "v0", sample("carphone_pristine").name, 0)],
             root=sample("carphone_pristine").parent).write_parquet(path)  # fmt: skip
    command = ["-m", "dftoolkit", "-q", "preprocess", str(path), "-o", str(tmp_path / "s"), "--workers", "1"]
    done = subprocess.run([sys.executable, *command, "--frames", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith(("W0000", "INFO:", "WARNING:"))]
    assert "W0000" in (tmp_path / "s" / "runs" / "workers.log").read_text()


def test_dependencies_are_honest():
    """Floors the code needs, nothing never imported, and a faces extra whose install command works."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dependencies = set(project["dependencies"])
    assert {"matplotlib>=3.9", "scikit-learn>=1.5"} <= dependencies
    assert "timm>=1.0" in dependencies  # the backbones of DDL, M2TR (and timm's blocks in small presets)
    assert "timm==" in (REPO / "requirements" / "lock.txt").read_text()
    faces = " ".join(project["optional-dependencies"]["faces"])
    assert "mediapipe" not in faces and "face-alignment" not in faces  # their declared deps conflict


@pytest.mark.parametrize(("module", "backend"), [("dlib", DlibBackend), ("mediapipe", MediaPipeBackend)])
def test_missing_face_backends_name_the_working_install(monkeypatch, module, backend):
    """The install command in the error is the one that works (not a bare `dftoolkit[faces]`)."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"&& pip install --no-deps mediapipe==0\.10\.21 face-alignment"):
        backend()
