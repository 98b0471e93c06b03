"""Decode benchmark: our VideoReader vs the naive way popular preprocessing scripts sample frames.

(a) sequential decode of every frame (frames/s); (b) fetching 32 evenly spaced frames, ours vs
the naive loop (OpenCV reads and converts every frame, then keeps 32). Real sample media,
including the 1280x720 clip. Prints JSON; ratios are measured in the same run.

    python bench/decode.py [--repeats 5] [--frames 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import cv2
import numpy as np

from dftoolkit.fetch import debian_available
from dftoolkit.samples import SAMPLES, sample_path
from dftoolkit.video import VideoReader, sample_indices


def naive_sample(path: str, num: int) -> list[np.ndarray]:
    """What popular scripts do: read and convert every frame with OpenCV, keep ``num`` of them."""
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    keep = np.linspace(0, len(frames) - 1, num).astype(int)
    return [frames[i] for i in keep]


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_video(name: str, num: int, repeats: int) -> dict:
    """Timings for one sample video."""
    path = sample_path(name)
    reader = VideoReader(path)
    indices = sample_indices(reader.num_frames, num)
    sequential = timed(lambda: sum(1 for _ in reader), repeats)
    # Ours includes opening the file and building the exact frame index, as a user pays for it.
    ours = {
        s: timed(lambda s=s: VideoReader(path, strategy=s).read(indices), repeats)
        for s in ("auto", "forward", "seek")
    }
    naive = timed(lambda: naive_sample(str(path), num), repeats)
    return {
        "video": name,
        "size": f"{reader.info.width}x{reader.info.height}",
        "codec": reader.info.codec,
        "frames": reader.num_frames,
        "keyframes": reader.info.keyframes,
        "sequential_fps": round(reader.num_frames / sequential, 1),
        "sample_seconds": {
            "naive_opencv": round(naive, 4),
            **{f"ours_{k}": round(v, 4) for k, v in ours.items()},
        },
        "speedup_vs_naive": round(naive / ours["auto"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    names = [s.stem for s in SAMPLES if s.is_video and (s.origin == "pip" or debian_available())]
    results = [bench_video(name, args.frames, args.repeats) for name in names]
    print(json.dumps({
        "benchmark": "decode",
        "frames_per_video": args.frames,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
        "min_speedup_vs_naive": min(r["speedup_vs_naive"] for r in results),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
