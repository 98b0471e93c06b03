"""Helpers for building corpus trees in the official layouts at test time.

Videos are tiny real clips (8 frames, 64x48, H.264) re-encoded once per session from the
carphone sample and copied under each name, so a tree of dozens of files costs milliseconds.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader, VideoWriter


@cache
def _template(suffix: str) -> bytes:
    import tempfile

    import cv2

    frames = VideoReader(sample_path("carphone_pristine")).read(range(0, 16, 2))
    small = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"tiny{suffix}"
        with VideoWriter(out, fps=25, crf=30) as writer:
            for frame in small:
                writer.write(frame)
        return out.read_bytes()


def tiny_video(path: Path) -> Path:
    """Write a real 8-frame 64x48 H.264 clip at ``path`` (container from the suffix: .mp4/.avi/.mov)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_template(path.suffix or ".mp4"))
    return path


def tiny_frames(folder: Path, count: int = 4) -> Path:
    """Write ``count`` PNG frames ``0000.png``... of a real face clip into ``folder``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(VideoReader(sample_path("carphone_pristine")).read(range(count))):
        cv2.imwrite(
            str(folder / f"{i:04d}.png"), cv2.cvtColor(cv2.resize(frame, (64, 48)), cv2.COLOR_RGB2BGR)
        )
    return folder


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def by_id(manifest) -> dict:
    """video_id -> record."""
    return {r.video_id: r for r in manifest}


def by_folder(report) -> dict:
    """Expected-folder relpath -> its FolderReport."""
    return {f.folder.relpath: f for f in report.folders}
