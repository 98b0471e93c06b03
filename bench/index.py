"""Indexing benchmark: a DFDC-shaped tree of 119,000 files and an FF++-shaped tree of 7,000.

The files are empty (indexing never opens them), laid out exactly as the corpora ship, with
realistic metadata (DFDC `metadata.json` per part, FF++ split JSONs). Prints JSON with the
seconds and rows/s of `index_corpus`, plus writing the manifest. Target: DFDC under 10 s.

    python bench/index.py [--parts 50] [--per-part 2380] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from dftoolkit.corpora import index_corpus

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


def touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))


def make_dfdc(root: Path, parts: int, per_part: int, rng: random.Random) -> int:
    """``parts`` folders of ``per_part`` videos, ~83% fakes, each fake pointing at a real of its part."""
    for part in range(parts):
        names = [f"{part:02d}{i:06d}ab.mp4" for i in range(per_part)]
        reals = names[: max(1, per_part // 6)]
        metadata = {name: {"label": "REAL", "split": "train", "original": None} for name in reals}
        for name in names[len(reals) :]:
            metadata[name] = {"label": "FAKE", "split": "train", "original": rng.choice(reals)}
        folder = root / f"dfdc_train_part_{part}"
        touch(folder, names)
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return parts * per_part


def make_ffpp(root: Path) -> int:
    """1,000 youtube originals, 5 x 1,000 fakes (c23) with masks, 100 DFD actors + 900 DFD fakes, splits."""
    ids = [f"{i:03d}" for i in range(1000)]
    pairs = [[ids[i], ids[i + 1]] for i in range(0, 1000, 2)]
    touch(root / "original_sequences/youtube/c23/videos", [f"{i}.mp4" for i in ids])
    fakes = [f"{a}_{b}.mp4" for a, b in pairs] + [f"{b}_{a}.mp4" for a, b in pairs]
    for method in FFPP_METHODS:
        touch(root / f"manipulated_sequences/{method}/c23/videos", fakes)
        if method != "FaceShifter":
            touch(root / f"manipulated_sequences/{method}/masks/videos", fakes)
    scenes = [f"{a:02d}__scene_{s}" for a in range(1, 26) for s in range(4)]
    touch(root / "original_sequences/actors/c23/videos", [f"{s}.mp4" for s in scenes])
    dfd = [
        f"{a:02d}_{(a % 25) + 1:02d}__scene_{s}__{k:08X}.mp4"
        for a in range(1, 26)
        for s in range(4)
        for k in range(9)
    ]
    touch(root / "manipulated_sequences/DeepFakeDetection/c23/videos", dfd)
    splits = {"train": pairs[:360], "val": pairs[360:430], "test": pairs[430:]}
    (root / "splits").mkdir()
    for name, chunk in splits.items():
        (root / "splits" / f"{name}.json").write_text(json.dumps(chunk))
    return 1000 + 5 * 1000 + len(scenes) + len(dfd)


def timed(fn, repeats: int) -> tuple[float, object]:
    result = None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=50)
    parser.add_argument("--per-part", type=int, default=2380)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="dftoolkit-bench-index-") as tmp:
        for name, make, options in (
            ("dfdc", lambda r: make_dfdc(r, args.parts, args.per_part, rng), {}),
            ("ffpp", make_ffpp, {"compression": "c23"}),
        ):
            root = Path(tmp) / name
            start = time.perf_counter()
            files = make(root)
            built = time.perf_counter() - start
            run = partial(index_corpus, name, root, **options)
            seconds, manifest = timed(run, args.repeats)
            write_seconds, _ = timed(lambda m=manifest, r=root: m.write_parquet(r / "manifest.parquet"), 1)
            results[name] = {
                "files": files,
                "rows": len(manifest),
                "index_seconds": round(seconds, 3),
                "rows_per_second": round(len(manifest) / seconds),
                "write_parquet_seconds": round(write_seconds, 3),
                "tree_build_seconds": round(built, 1),
            }
    print(json.dumps({
        "benchmark": "index",
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
        "dfdc_under_10s": results["dfdc"]["index_seconds"] < 10,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
