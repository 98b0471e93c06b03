"""Detector data pipeline benchmark: clips/s of each detector's dataset (``face_dataset``) through
``loader`` on a real store.

The store holds every frame (policy ``all``, face, mouth and FFHQ crops at the defaults: face 256 px
at scale 1.3, mouth 96 px, FFHQ 256 px) of two sample reals and one naive swap of each (4 videos,
376 frames); a second store has face crops at scale 1.5, wide enough for all of STIL's training
scales (1.0-1.5: from 1.3 crops, a clip drawn above 1.3 is cut from the video instead). Per detector
spec (every registered detector, small and full) and mode (train: random sampling and scale, the
default augmentation where the spec allows it; test), the loader runs with 0 and 2 workers; after
one warm-up epoch (which starts the persistent workers) ``--epochs`` epochs are timed, best of 3. An
image detector's items are frames (32 per video). For scale, the small models' CPU training step
(forward + backward, same batches; StyleFlow's on latents cached by the first pass) is timed too.
Prints JSON.

    python bench/detectors_data.py [--epochs 5] [--batch 4] [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dftoolkit.detectors import build_detector, list_detectors
from dftoolkit.detectors.base import on_meta
from dftoolkit.detectors.data import face_dataset, loader
from dftoolkit.generators import build_dataset
from dftoolkit.preprocess import PreprocessConfig, preprocess
from dftoolkit.samples import fetch_samples

REALS = ("carphone_pristine", "jesper_webcam")


def rate(data: Dataset, train: bool, workers: int, epochs: int, batch: int) -> float:
    """Best of 3: clips/s over ``epochs`` epochs after a warm-up one."""
    load = loader(data, batch, train=train, workers=workers)
    list(load)
    best = 0.0
    for _ in range(3):
        start, clips = time.perf_counter(), 0
        for epoch in range(epochs):
            data.set_epoch(epoch)
            clips += sum(len(b["video_id"]) for b in load)
        best = max(best, clips / (time.perf_counter() - start))
    return round(best, 1)


def model_rate(name: str, data: Dataset, batch: int) -> float:
    """Clips/s of the small model's CPU training step on this data (best of 3 passes)."""
    model = build_detector(name, "small").train()
    batches = list(loader(data, batch, train=True))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for b in batches:
            model.zero_grad()
            sum(model.losses(model(model.model_input(b)), b["label"], b).values()).backward()
        best = max(best, sum(len(b["video_id"]) for b in batches) / (time.perf_counter() - start))
    return round(best, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, help="torch threads of the main process (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reals = fetch_samples().filter(lambda r: r.video_id in REALS)
        corpus = build_dataset(
            reals, Path(tmp) / "corpus", methods=["swap"], blends=["naive"], crf=None, workers=1
        )
        config = PreprocessConfig(crops=("face", "mouth", "ffhq"), policy="all")
        stores = {1.3: preprocess(corpus, Path(tmp) / "store", config, workers=1).store}
        wide = PreprocessConfig(crops=("face",), policy="all", scale=1.5)
        stores[1.5] = preprocess(corpus, Path(tmp) / "wide", wide, workers=1).store
        results = []
        for name, size, train, scale in itertools.product(
            list_detectors(), ("small", "full"), (True, False), (1.3, 1.5)
        ):
            spec = on_meta(lambda name=name, size=size: build_detector(name, size)).spec
            if spec.crop != "face" and scale != 1.3:
                continue
            data = face_dataset(stores[scale], spec, split=None, train=train)
            row = {"detector": name, "config": size, "mode": "train" if train else "test"}
            if spec.crop == "face":
                row["store_face_scale"] = scale
            row["frames"] = spec.frames if train else spec.test_frames or spec.frames
            row["size"] = spec.size
            for workers in (0, 2):
                row[f"clips_per_s_workers_{workers}"] = rate(data, train, workers, args.epochs, args.batch)
            if size == "small" and train and scale == 1.3:
                row["small_model_cpu_train_clips_per_s"] = model_rate(name, data, args.batch)
            results.append(row)
    info = {
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps({"machine": info, "batch": args.batch, "results": results}, indent=2))


if __name__ == "__main__":
    main()
