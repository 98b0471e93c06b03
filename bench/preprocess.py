"""Preprocessing benchmark on the real sample videos: ours per backend vs decode-only vs the
DeepfakeBench-style baseline, 32 frames per video. Prints JSON.

Each video is processed ``--copies`` times (a manifest repeating it) so the local engine can use
every core, as it does on a corpus; our timing includes starting the worker processes and loading
the face models in each. The baseline runs the way the DeepfakeBench script does, one process
(model loaded outside the timing, ``--baseline-copies`` runs: its rate does not depend on the
count): OpenCV reads every frame, keeps 32 evenly spaced, then per kept full-resolution frame dlib
HOG (upsample 1) + 68 landmarks + similarity alignment to 256 + re-detection and landmarks in the
aligned crop.

    python bench/preprocess.py [--copies 8] [--baseline-copies 2] [--backends mediapipe,dlib]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from dftoolkit import Manifest, VideoRecord
from dftoolkit.faces.assets import dlib_68_predictor
from dftoolkit.fetch import debian_available
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader, sample_indices

VIDEOS = ("carphone_pristine", "jesper_webcam", "hello_480p", "hello_720p")
# ArcFace 5-point template (112 px) scaled to 256: where the baseline puts the eyes, nose, mouth.
TEMPLATE = (
    np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]]) * 256 / 112
)


def baseline(path: Path, num: int, detector, predictor) -> tuple[int, int]:
    """DeepfakeBench-style: kept frames with a face, frames kept."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    keep = np.linspace(0, len(frames) - 1, num).astype(int)
    found = 0
    for index in keep:
        rgb = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB)
        faces = detector(rgb, 1)
        if not faces:
            continue
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = predictor(rgb, face)
        points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
        five = np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
        matrix, _ = cv2.estimateAffinePartial2D(five, TEMPLATE.astype(np.float32))
        aligned = cv2.warpAffine(rgb, matrix, (256, 256))
        again = detector(aligned, 1)
        if again:
            predictor(aligned, again[0])
        found += 1
    return found, len(keep)


def ours(path: Path, name: str, copies: int, config: PreprocessConfig, workers: int) -> dict:
    records = [VideoRecord("bench", f"{name}-{k}", path.name, 0) for k in range(copies)]
    manifest = Manifest(records, root=path.parent)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = preprocess(manifest, Path(tmp) / "store", config, workers=workers)
        seconds = time.perf_counter() - start
    kept = report.frames
    return {
        "seconds": round(seconds, 3),
        "videos_per_second": round(copies / seconds, 3),
        "kept_frames_per_second": round(kept / seconds, 2),
        "face_found_rate": round(report.statuses.get("ok", 0) / max(kept, 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--baseline-copies", type=int, default=2)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--backends", default="mediapipe,dlib")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    names = [n for n in VIDEOS if debian_available() or n.startswith("carphone")]
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_68_predictor()))
    results = []
    for name in names:
        path = sample_path(name)
        reader = VideoReader(path)
        indices = sample_indices(reader.num_frames, args.frames)
        start = time.perf_counter()
        for _ in range(args.baseline_copies):
            VideoReader(path).read(indices)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        base = [baseline(path, args.frames, detector, predictor) for _ in range(args.baseline_copies)]
        base_seconds = time.perf_counter() - start
        kept = sum(k for _, k in base)
        row = {
            "video": name,
            "size": f"{reader.info.width}x{reader.info.height}",
            "decode_only_kept_frames_per_second": round(kept / decode, 1),
            "baseline": {
                "kept_frames_per_second": round(kept / base_seconds, 2),
                "face_found_rate": round(sum(f for f, _ in base) / kept, 3),
            },
        }
        for backend in args.backends.split(","):
            config = PreprocessConfig(crops=("face",), frames=args.frames, backend=backend)
            row[backend] = ours(path, name, args.copies, config, args.workers)
            row[backend]["speedup_vs_baseline"] = round(
                row[backend]["kept_frames_per_second"] / row["baseline"]["kept_frames_per_second"], 2
            )
        results.append(row)
    print(json.dumps({
        "benchmark": "preprocess",
        "frames_per_video": args.frames,
        "copies": args.copies,
        "baseline_copies": args.baseline_copies,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
