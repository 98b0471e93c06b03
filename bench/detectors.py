"""Detector model benchmark: step times, peak memory, and the training harness against a bare loop.
Prints JSON.

- ``models``: per detector (:func:`~dftoolkit.detectors.list_detectors`) and config (small, full):
  the parameter count (built on the ``meta`` device), forward ms/clip (eval mode, inference mode) and
  forward + backward ms/clip (train mode, the detector's own :meth:`losses`, no optimiser step) on
  random clips of the training spec (``spec.frames`` frames of ``spec.size`` px in ``spec.layout``);
  batch ``--batch`` (2) for small and ``--full-batch`` (1) for full. Each (detector, config) runs in a
  fresh subprocess so its peak memory is its own: on the CPU the peak resident set (``VmHWM``, reset
  through ``/proc/self/clear_refs`` before the call) minus the resident set before it; on CUDA
  ``torch.cuda.max_memory_allocated`` over the allocation before the call. After one warm-up call of
  each, forward and forward + backward are timed interleaved, ``--repeats`` (5) times for small and
  ``--full-repeats`` (2) for full; best and median are reported.
- ``harness``: :func:`~dftoolkit.detectors.train.train` (1 epoch, Adam, zero workers, an in-memory
  dataset of ``--steps`` x ``--batch`` ClipItems) against a bare loop over the same clips already
  stacked into batches (forward, the detector's losses, backward, Adam step, zero grad), each small
  model from the same initial weights with a fresh optimiser. The harness is timed by the ``seconds``
  of its ``"epoch"`` record in ``log.jsonl`` (the training loop only: collation, the steps, logging and
  the progress bar; not the validation on two clips, the checkpoint or the set-up); the bare loop by
  ``perf_counter`` around it. One warm-up run of each, then ``--harness-repeats`` (5) runs interleaved;
  the target is best harness / best bare <= 1.10.
- ``data``: the small models' training-step rate (clips/s, from the bare loop) beside the FaceStore
  data pipeline's: that one is measured by ``bench/detectors_data.py`` (it preprocesses the sample
  videos into a store first); ``--data`` runs it here and includes its JSON.
- ``cuda``: when CUDA is available, the same per-model measurements on the GPU plus forward + backward
  under float16 autocast with channels-last clips (``channels_last_3d`` for ``NCTHW``), and the harness
  comparison on the GPU (the harness's default AMP; the bare loop with the same autocast and gradient
  scaler); else null with the reason.

    python bench/detectors.py [--skip-full] [--repeats 5] [--full-repeats 2] [--steps 16]
        [--harness-repeats 5] [--batch 2] [--full-batch 1] [--threads N] [--data]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dftoolkit.detectors import build_detector, list_detectors
from dftoolkit.detectors.base import ClipItem, Detector, count_parameters, on_meta
from dftoolkit.detectors.train import LOG_FILE, TrainConfig, train
from dftoolkit.progress import is_quiet

CONFIGS = ("small", "full")
LR = 1e-4
ROOT = Path(__file__).resolve().parent
RSS_METHOD = (
    "fresh subprocess per (detector, config); before the first (warm-up) call of each of forward and "
    "forward + backward the peak resident set is reset to the current one (write 5 to "
    "/proc/self/clear_refs), after it the peak (VmHWM in /proc/self/status) minus that resident set "
    "(VmRSS). Process-wide: includes the allocator's and oneDNN's first-call overheads; forward + "
    "backward's includes the parameter gradients it creates"
)
CUDA_METHOD = "torch.cuda.max_memory_allocated during the call minus torch.cuda.memory_allocated before it"
STYLEFLOW_NOTE = (
    "StyleFlow's model_input caches each frame's pSp latents: the warm-up call encodes the clip's frames "
    "and the timed forward / forward + backward are StyleGRU's on the cached latents (as in training from "
    "the second epoch on); psp_encoder times the frozen encoder alone, per frame"
)


def clip_shape(model: Detector) -> tuple[int, ...]:
    """One training clip's shape, without the batch dimension, in the spec's layout."""
    spec = model.spec
    if spec.layout == "NCTHW":
        return (spec.channels, spec.frames, spec.size, spec.size)
    if spec.layout == "N(TC)HW":
        return (spec.frames * spec.channels, spec.size, spec.size)
    return (spec.channels, spec.size, spec.size)


def make_items(model: Detector, count: int, seed: int) -> list[ClipItem]:
    """``count`` ClipItems of noise, alternately real and fake, each its own video (with a square
    mask on the fakes when the spec asks for masks)."""
    gen = torch.Generator().manual_seed(seed)
    spec = model.spec
    items: list[ClipItem] = []
    for i in range(count):
        item: ClipItem = {
            "clip": torch.randn(clip_shape(model), generator=gen) + 0.5 * (i % 2),
            "label": torch.tensor(i % 2),
            "frame_labels": torch.full((spec.frames,), float(i % 2)),
            "frames": torch.arange(spec.frames),
            "dataset": "bench",
            "video_id": f"v{seed}_{i:04d}",
            "method": "noise" if i % 2 else "-",
        }
        if spec.masks:
            mask = torch.zeros((spec.frames, 1, spec.size, spec.size))
            mask[..., spec.size // 4 : 3 * spec.size // 4, spec.size // 4 : 3 * spec.size // 4] = i % 2
            item["mask"], item["mask_weight"] = (
                (mask[0] if spec.layout == "NCHW" else mask),
                torch.tensor(1.0),
            )
        items.append(item)
    return items


def stack(items: list[ClipItem], device: torch.device) -> dict[str, Any]:
    """A batch as the DataLoader collates it, on ``device``."""
    return {
        key: torch.stack([item[key] for item in items]).to(device)  # type: ignore[literal-required]
        if isinstance(items[0][key], torch.Tensor)  # type: ignore[literal-required]
        else [item[key] for item in items]  # type: ignore[literal-required]
        for key in items[0]
    }


class InMemory(Dataset):
    def __init__(self, items: list[ClipItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ClipItem:
        return self.items[index]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _reset_peak() -> int:
    """Reset the process's peak resident set (``VmHWM``) to the current one; returns it, in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kib("VmRSS") * 1024


def _peak() -> int:
    return _status_kib("VmHWM") * 1024


def _summary(seconds: list[float], clips: int) -> dict[str, float]:
    return {
        "best_ms_per_clip": round(1000 * min(seconds) / clips, 2),
        "median_ms_per_clip": round(1000 * statistics.median(seconds) / clips, 2),
    }


def measure_model(name: str, config: str, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Forward and forward + backward of one model (run in a fresh process: see the module)."""
    torch.manual_seed(0)
    model = build_detector(name, config).to(device)
    data = stack(make_items(model, batch, seed=1), device)
    labels = data["label"]
    cuda = device.type == "cuda"
    fmt = torch.channels_last_3d if model.spec.layout == "NCTHW" else torch.channels_last
    channels_last = {**data, "clip": data["clip"].to(memory_format=fmt)}

    def forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(model.model_input(data))

    def forward_backward(amp: bool = False, batch: dict[str, Any] = data) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = sum(model.losses(model(model.model_input(batch)), labels, batch).values())
        loss.backward()  # type: ignore[union-attr]

    runs: dict[str, Callable[[], None]] = {"forward": forward, "forward_backward": forward_backward}
    if cuda:
        runs["forward_backward_amp_channels_last"] = lambda: forward_backward(True, channels_last)
    memory: dict[str, int] = {}
    for label, run in runs.items():  # warm-up, one call each, measuring the peak
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        else:
            before = _reset_peak()
        run()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) if cuda else _peak()
        memory[label] = peak - before
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times[label].append(time.perf_counter() - start)
    out: dict[str, Any] = {"batch": batch, "repeats": repeats, "clip_shape": list(clip_shape(model))}
    for label in runs:
        out[label] = {**_summary(times[label], batch), "peak_memory_mib": round(memory[label] / 2**20, 1)}
    if name == "styleflow":  # the clips' latents were cached by the warm-up: the times above are StyleGRU's
        frames = data["clip"][0].transpose(0, 1)  # (T, 3, H, W)
        seconds = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                model.encode(frames)
            _sync(device)
            seconds.append(time.perf_counter() - start)
        out["psp_encoder"] = _summary(seconds, len(frames)) | {"per": "frame", "note": STYLEFLOW_NOTE}
    return out


def run_child(name: str, config: str, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """:func:`measure_model` in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", name, config, device, "--threads", str(args.threads)]
    command += ["--batch", str(args.batch), "--full-batch", str(args.full_batch)]
    command += ["--repeats", str(args.repeats), "--full-repeats", str(args.full_repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}
    return json.loads(done.stdout)


def models(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    rows = []
    for name in list_detectors():
        for config in CONFIGS:
            if config == "full" and args.skip_full:
                continue
            meta = on_meta(lambda name=name, config=config: build_detector(name, config))
            row = {"detector": name, "config": config, "parameters": count_parameters(meta)}
            rows.append({**row, **run_child(name, config, args, device)})
    return rows


def harness(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """``train`` (1 epoch) against a bare loop over the same in-memory clips, interleaved."""
    torch.manual_seed(0)
    model = build_detector(name, "small").to(device)
    initial = copy.deepcopy(model.state_dict())
    items = make_items(model, args.steps * args.batch, seed=2)
    batches = [stack(items[s : s + args.batch], device) for s in range(0, len(items), args.batch)]
    val = InMemory(make_items(model, 2, seed=3))
    config = TrainConfig(epochs=1, batch_size=args.batch, lr=LR, optimizer="adam", workers=0)
    amp = config.amp and device.type == "cuda"
    clips = len(items)

    def bare() -> float:
        model.load_state_dict(initial)
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], LR)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = sum(model.losses(model(model.model_input(batch)), batch["label"], batch).values())
            scaler.scale(loss).backward()  # type: ignore[arg-type]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    step_rates: list[float] = []

    def harnessed() -> float:
        model.load_state_dict(initial)
        with tempfile.TemporaryDirectory() as out:
            train(
                model, InMemory(items), val, config, out, initialisation="random", resume=False, device=device
            )
            records = [json.loads(line) for line in (Path(out) / LOG_FILE).read_text().splitlines()]
        step_rates.extend(r["clips_per_s"] for r in records if r["kind"] == "step")
        return next(r["seconds"] for r in records if r["kind"] == "epoch")

    runs = {"bare": bare, "harness": harnessed}
    for run in runs.values():
        run()  # warm-up
    step_rates.clear()
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.harness_repeats):
        for label, run in runs.items():
            times[label].append(run())
    best = {label: min(t) for label, t in times.items()}
    median = {label: statistics.median(t) for label, t in times.items()}
    return {
        "detector": name,
        "config": "small",
        "batches": len(batches),
        "batch": args.batch,
        "amp": amp,
        "bare_clips_per_s": {
            "best": round(clips / best["bare"], 1),
            "median": round(clips / median["bare"], 1),
        },
        "harness_clips_per_s": {
            "best": round(clips / best["harness"], 1),
            "median": round(clips / median["harness"], 1),
        },
        "harness_log_step_clips_per_s_median": round(statistics.median(step_rates), 1)
        if step_rates
        else None,
        "ratio_harness_over_bare_best": round(best["harness"] / best["bare"], 3),
        "ratio_harness_over_bare_median": round(median["harness"] / median["bare"], 3),
        "within_10_percent": best["harness"] / best["bare"] <= 1.10,
    }


HARNESS_NOTE = (
    "harness time: the 'seconds' of train()'s 'epoch' record in log.jsonl (its training loop: DataLoader "
    "collation of the in-memory ClipItems, the steps, log lines every log_every=10 steps, the progress bar; "
    "not validation, checkpointing or set-up); bare: perf_counter around a loop over the same clips "
    "pre-stacked into batches. Both: Adam lr 1e-4, fresh optimiser, same initial weights. Ratio of time "
    "for the same clips (harness/bare), best of the interleaved repeats and their medians."
)


def data_section(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "small_model_train_step_clips_per_s": {r["detector"]: r["bare_clips_per_s"]["best"] for r in rows},
        "note": (
            "the FaceStore pipeline's clips/s per detector spec and mode, with 0 and 2 DataLoader workers, "
            "is measured by bench/detectors_data.py (it preprocesses the sample videos into a store first, "
            "minutes on a CPU); compare its clips_per_s_workers_N with the step rates here (a pipeline "
            "slower than the step starves it: train()'s log.jsonl data_wait_s shows the wait in a real run). "
            "--data runs it here."
        ),
    }
    if args.data:
        script = ROOT / "detectors_data.py"
        command = [sys.executable, str(script), "--epochs", "1", "--batch", str(args.batch)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        out["detectors_data"] = (
            json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-2000:]}
        )
    return out


def cuda_section(args: argparse.Namespace) -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    return {
        "device": torch.cuda.get_device_name(device),
        "memory_method": CUDA_METHOD,
        "models": models(args, "cuda"),
        "harness": [harness(name, args, device) for name in list_detectors()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="only the small configs")
    parser.add_argument("--batch", type=int, default=2, help="clips per batch of the small configs")
    parser.add_argument("--full-batch", type=int, default=1, help="clips per batch of the full configs")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the small configs")
    parser.add_argument("--full-repeats", type=int, default=2, help="timed calls of the full configs")
    parser.add_argument("--steps", type=int, default=16, help="batches per harness / bare-loop run")
    parser.add_argument("--harness-repeats", type=int, default=5, help="interleaved harness / bare runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--data", action="store_true", help="also run bench/detectors_data.py (minutes)")
    parser.add_argument("--child", nargs=3, metavar=("DETECTOR", "CONFIG", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        name, config, device = args.child
        small = config == "small"
        batch, repeats = (args.batch, args.repeats) if small else (args.full_batch, args.full_repeats)
        print(json.dumps(measure_model(name, config, batch, repeats, torch.device(device))))
        return
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_before": round(os.getloadavg()[0], 2),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "cpu": {"memory_method": RSS_METHOD, "models": models(args, "cpu")},
    }
    cpu = torch.device("cpu")
    rows = [harness(name, args, cpu) for name in list_detectors()]
    result["harness"] = {"note": HARNESS_NOTE, "progress_bar_quiet": is_quiet(), "cpu": rows}
    result["data"] = data_section(args, rows)
    cuda = cuda_section(args)
    result["cuda"] = cuda
    if cuda is None:
        result["cuda_reason"] = "torch.cuda.is_available() is False: no GPU measurements (AMP, channels-last)"
    result["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
