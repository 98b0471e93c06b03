"""Synthesis benchmark on the real sample videos. Prints JSON.

1. Per manipulation and per blend, frames/s on 256x256 face crops of each sample video (the crop
   of every frame around the tracked face, as a generator working at SR-DF's 256 px would see it)
   and on the full frames. Face tracks are computed once, outside the timing; rendering and
   blending are timed separately, in this process.
2. The dataset builder end to end (tracks, rendering, blending, H.264 writing; swap + feather)
   on ``--copies`` copies of the three videos, with 1 worker and with one per core: frames/s and
   the speed-up from the extra cores (which includes starting the workers).

    python bench/generate.py [--frames 48] [--copies 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from dftoolkit.faces import DetectionCascade, get_backend
from dftoolkit.faces.geometry import box_matrix, landmark_boxes, transform_points, warp
from dftoolkit.faces.tracking import FaceTrack, face_track
from dftoolkit.fetch import debian_available
from dftoolkit.generators import build_dataset, get_blend, get_method
from dftoolkit.generators.material import PATCH_SCALE, face_patches
from dftoolkit.manifest import Manifest
from dftoolkit.samples import fetch_samples, sample_path
from dftoolkit.video import VideoReader

VIDEOS = ("carphone_pristine", "jesper_webcam", "hello_720p")
METHODS = ("swap", "reenact")  # the weight-free ones: fomm and dovenet need checkpoints
BLENDS = ("naive", "feather", "poisson", "rct", "lct", "mkl", "idt", "sot")
CROP = 256


def crop_video(frames: np.ndarray, track: FaceTrack) -> tuple[np.ndarray, FaceTrack]:
    """Every frame warped to a 256 crop around the face (one box for the clip: its median box)."""
    box = np.nanmedian(landmark_boxes(track.landmarks), axis=0)
    matrix = box_matrix(box[None], CROP, PATCH_SCALE)[0]
    crops = warp(frames, matrix, CROP)
    landmarks = transform_points(track.landmarks, matrix)
    return crops, FaceTrack(landmarks, CROP, CROP, track.fps)


def rates(frames: np.ndarray, track: FaceTrack, source) -> dict:
    """frames/s of each method's render and of each blend (on the swap's renderings)."""
    out: dict[str, float] = {}
    renders = {}
    for name in METHODS:
        method = get_method(name, source, track)
        start = time.perf_counter()
        renders[name] = [method.render(t, frame) for t, frame in enumerate(frames)]
        out[f"render/{name}"] = len(frames) / (time.perf_counter() - start)
    for name in BLENDS:
        blend = get_blend(name)
        start = time.perf_counter()
        for frame, rendered in zip(frames, renders["swap"], strict=True):
            blend(rendered.image, frame, rendered.mask)
        out[f"blend/{name}"] = len(frames) / (time.perf_counter() - start)
    return {key: round(value, 1) for key, value in out.items()}


def builder(copies: int, workers: int) -> dict:
    """End-to-end frames/s of build_dataset on ``copies`` copies of each video (each its own person)."""
    samples = fetch_samples()
    records = [r for r in samples if r.video_id in VIDEOS]
    copied = [
        r.replace(video_id=f"{r.video_id}-{k}", target_id=f"{r.target_id}-{k}")
        for k in range(copies)
        for r in records
    ]
    repeated = Manifest(copied, roots=samples.roots)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        built = build_dataset(repeated, out, methods=["swap"], blends=["feather"], workers=workers)
        seconds = time.perf_counter() - start
    frames = sum(r.frames for r in built if r.label == 1)
    return {"workers": workers, "fakes": len(built.filter(label=1)), "frames": frames,
            "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames per video for the per-op rates")
    parser.add_argument("--copies", type=int, default=2, help="copies of each video for the builder")
    args = parser.parse_args()
    cascade = DetectionCascade(get_backend("mediapipe"))
    source_path = sample_path("jesper_webcam")
    source = face_patches(VideoReader(source_path), face_track(source_path, cascade), max_patches=32)
    per_video = {}
    for name in VIDEOS:
        if name != "carphone_pristine" and not debian_available():
            continue
        path = sample_path(name)
        track = face_track(path, cascade)
        n = min(args.frames, len(track))
        frames = VideoReader(path).read(np.arange(n))
        track = FaceTrack(track.landmarks[:n], track.height, track.width, track.fps)
        crops, crop_track = crop_video(frames, track)
        per_video[name] = {
            "size": f"{track.width}x{track.height}",
            "frames": n,
            "crop_256": rates(crops, crop_track, source),
            "full_frame": rates(frames, track, source),
        }
    serial = builder(args.copies, 1)
    parallel = builder(args.copies, os.cpu_count() or 1)
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "frames_per_s": per_video,
                "builder": {
                    "serial": serial,
                    "parallel": parallel,
                    "speedup": round(parallel["frames_per_s"] / serial["frames_per_s"], 2),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
