"""The three per-video stages end to end on the real sample videos, this tree against another
checkout of the toolkit (e.g. the commit before a refactor), interleaved. Prints JSON.

Each run is a fresh process (worker start-up and model loading included, as a user sees it) doing
one stage into an empty folder: ``preprocess`` (the four samples, 32 frames, face + mouth crops),
``generate`` (swap with the feather blend on two reals, H.264 crf 18) and ``quality`` (Mask-SSIM,
E_warp and jitter of that corpus beside its reals). Runs alternate between the two trees, stage by
stage, ``--repeats`` times; the best of each is kept and their ratio reported (``ratio`` > 1: this
tree is slower). The load average is recorded before and after: the machine may be shared.

    python bench/stages.py --baseline ../dftoolkit-before [--repeats 3] [--workers 2]

``--baseline`` is a source tree whose ``dftoolkit`` package imports with that folder first on
``PYTHONPATH`` (a ``git worktree``; its ``dftoolkit/generators`` and ``dftoolkit/quality`` must be
links to its ``generators/`` and ``quality/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("preprocess", "generate", "quality")
VIDEOS = ("carphone_pristine", "jesper_webcam", "hello_480p", "hello_720p")

# One stage in a fresh interpreter; argv: stage, work folder, workers. Only APIs both trees share.
_RUN = """
import sys, time
from pathlib import Path
from dftoolkit.samples import fetch_samples

stage, work, workers, corpus = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
samples = fetch_samples()
reals = samples.filter(lambda r: r.video_id in ("carphone_pristine", "jesper_webcam"))
start = time.perf_counter()
if stage == "preprocess":
    from dftoolkit.preprocess import PreprocessConfig, preprocess
    videos = samples.filter(lambda r: r.video_id in sys.argv[5].split(","))
    preprocess(videos, work, PreprocessConfig(crops=("face", "mouth"), frames=32), workers=workers)
elif stage == "generate":
    from dftoolkit.generators import build_dataset
    build_dataset(reals, work, methods=["swap"], blends=["feather"], workers=workers)
else:
    from dftoolkit.quality import QualityConfig, quality_report
    config = QualityConfig(metrics=("mask-ssim", "ewarp", "jitter"), frames=16, temporal_frames=32)
    quality_report([reals, corpus], work, config, workers=workers)
print(time.perf_counter() - start)
"""


def run(tree: str | None, stage: str, work: Path, workers: int, corpus: Path) -> float:
    """Seconds of one stage run with ``tree`` first on PYTHONPATH (None: the installed toolkit)."""
    env = {**os.environ, "DFTOOLKIT_QUIET": "1"}
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = [stage, str(work), str(workers), str(corpus), ",".join(VIDEOS)]
    done = subprocess.run([sys.executable, "-c", _RUN, *argv], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{stage} on {tree or 'this tree'} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other source tree")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    trees = {"this": None, "baseline": args.baseline}
    load_before = os.getloadavg()
    times: dict[str, dict[str, list[float]]] = {s: {t: [] for t in trees} for s in args.stages.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {}  # quality scores a corpus each tree builds once, outside the timing
        if "quality" in times:
            for name, tree in trees.items():
                corpora[name] = Path(tmp) / f"{name}-corpus"
                run(tree, "generate", corpora[name], args.workers, corpora[name])
        for stage in times:
            for k in range(args.repeats):
                for name, tree in trees.items() if k % 2 == 0 else reversed(trees.items()):
                    work = Path(tmp) / f"{name}-{stage}-{k}"
                    seconds = run(tree, stage, work, args.workers, corpora.get(name, work))
                    times[stage][name].append(seconds)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "workers": args.workers,
        "repeats": args.repeats,
        "stages": {
            stage: {
                "this_s": round(min(runs["this"]), 2),
                "baseline_s": round(min(runs["baseline"]), 2),
                "ratio": round(min(runs["this"]) / min(runs["baseline"]), 3),
                "all_s": {name: [round(x, 2) for x in xs] for name, xs in runs.items()},
            }
            for stage, runs in times.items()
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
