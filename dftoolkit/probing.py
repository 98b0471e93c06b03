"""Fill a Manifest's frames / frames_exact / fps / width / height by probing its files, in parallel.

Indexing never decodes; this optional step does the I/O, one process per core. A file that
cannot be probed keeps None in those fields and gets a reason in the returned failures: nothing
is dropped.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoDecodeError, probe

__all__ = ["probe_manifest"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _probe_one(path: str, exact: bool) -> dict[str, int | float | bool | None] | str:
    """Probe one video file or frame folder; a dict of fields, or the failure reason as a string."""
    target = Path(path)
    try:
        if target.is_dir():  # a frame sequence (WildDeepfake-style)
            import cv2

            frames = sorted(p for p in target.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not frames:
                return "folder holds no frames"
            first = cv2.imread(str(frames[0]))
            if first is None:
                return f"cannot read {frames[0].name}"
            height, width = first.shape[:2]
            return {
                "frames": len(frames),
                "frames_exact": True,
                "fps": None,
                "width": width,
                "height": height,
            }
        info = probe(target, exact=exact)
        return {
            "frames": info.frames,
            "frames_exact": info.frames_exact,
            "fps": info.fps or None,
            "width": info.width,
            "height": info.height,
        }
    except (VideoDecodeError, OSError) as err:
        return str(err)


def probe_manifest(
    manifest: Manifest, *, workers: int | None = None, exact: bool = True
) -> tuple[Manifest, dict[tuple[str, str], str]]:
    """Probe every record's file; returns the filled Manifest and ``(dataset, video_id) -> reason``
    for the files that failed.

    ``exact`` (default) counts the frames from the packets: it reads each whole file but decodes
    nothing (milliseconds per clip). ``exact=False`` reads only the container's metadata, whose
    count can be off (an mp4 edit list hides a frame); such counts get ``frames_exact=False``, an
    estimate to verify before sampling near the end. ``workers`` defaults to the number of cores;
    1 probes in-process.
    """
    paths = [str(manifest.path_of(record)) for record in manifest]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < 2:
        results = [_probe_one(p, exact) for p in progress(paths, "probing")]
    else:
        with ProcessPoolExecutor(
            workers, multiprocessing.get_context("spawn")
        ) as pool:  # no fork: see pipeline
            chunk = max(1, len(paths) // (workers * 8))
            results = list(progress(pool.map(_probe_one, paths, [exact] * len(paths), chunksize=chunk),
                                    "probing", total=len(paths)))  # fmt: skip
    failures: dict[tuple[str, str], str] = {}
    filled: list[VideoRecord] = []
    for record, result in zip(manifest, results, strict=True):
        if isinstance(result, str):
            failures[record.key] = result
            filled.append(record)
        else:
            filled.append(record.replace(**result))
    return Manifest(filled, roots=manifest.roots), failures
