"""Quality-metric benchmark on the real sample videos. Prints JSON.

One function per measurement (:data:`MEASUREMENTS`), each returning a JSON-able dict:

- ``mask_ssim``: frame pairs/s of :func:`dftoolkit.quality.mask_ssim` (batched torch on CPU, both
  protocols) against a per-frame ``skimage.metrics.structural_similarity`` loop (``full=True``, then
  the masked mean as the protocol says; float64 and float32 inputs), in the same run. Pairs are 256x256
  face crops of carphone_pristine (the "original") vs carphone_distorted (the same clip, heavily
  compressed: the "fake"), one crop box for the clip around the tracked face; the mask is the hull of
  the 68 landmarks. Inputs are prepared outside the timing; every rate is the median of ``--repeats``
  runs, ours and skimage interleaved so background load hits both alike.
- ``ewarp``: frame pairs/s of :func:`dftoolkit.quality.ewarp` with OpenCV DIS flow on the first
  ``--frames`` frames of carphone_pristine resized to 256x256 (decoding and resizing outside the
  timing): a video on its own flow, and the distorted copy on the pristine one's flow (the
  fake-vs-original protocol); then how much of that is the flow itself (forward and backward DIS
  per pair, :func:`~dftoolkit.quality.ewarp.pair_flows`). Medians of ``--repeats`` runs.

    python bench/quality.py [--only mask_ssim,ewarp] [--frames 64] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from dftoolkit.faces import DetectionCascade, get_backend
from dftoolkit.faces.geometry import box_matrix, hull_mask, landmark_boxes, transform_points, warp
from dftoolkit.faces.tracking import face_track
from dftoolkit.generators.material import PATCH_SCALE
from dftoolkit.quality.ewarp import ewarp, pair_flows
from dftoolkit.quality.ssim import PROTOCOLS, mask_ssim
from dftoolkit.samples import sample_path
from dftoolkit.video import VideoReader

CROP = 256
SKIMAGE = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}


def face_crop_pairs(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frames`` 256x256 crops: distorted ("fake") and pristine ("real") ``(N, 256, 256, 3)`` float64
    in [0, 1], and the landmark-hull masks ``(N, 256, 256)`` in {0, 1}."""
    pristine = sample_path("carphone_pristine")
    track = face_track(pristine, DetectionCascade(get_backend("mediapipe")))
    keep = np.flatnonzero(track.found)[:frames]
    matrix = box_matrix(np.nanmedian(landmark_boxes(track.landmarks), axis=0)[None], CROP, PATCH_SCALE)[0]
    real, fake = (
        warp(VideoReader(p).read(keep), matrix, CROP) for p in (pristine, sample_path("carphone_distorted"))
    )
    masks = hull_mask(transform_points(track.landmarks[keep], matrix), CROP, CROP)
    return fake / 255.0, real / 255.0, masks / 255.0


def skimage_mask_ssim(fake: np.ndarray, real: np.ndarray, mask: np.ndarray, protocol: str) -> np.ndarray:
    """The per-frame reference loop: skimage's full map, then the protocol's masked mean."""
    pad = 5  # (win_size - 1) // 2 for the 11-tap window skimage derives from sigma 1.5
    out = np.empty(len(fake))
    for i, (f, r, m) in enumerate(zip(fake, real, mask, strict=True)):
        if protocol == "masked-image":
            f, r = f * m[..., None], r * m[..., None]
        _, full = structural_similarity(f, r, channel_axis=2, full=True, **SKIMAGE)
        inner = full[pad:-pad, pad:-pad]
        if protocol == "masked-image":
            out[i] = inner.mean(dtype=np.float64)
        else:
            w = m[pad:-pad, pad:-pad, None]
            out[i] = (inner * w).sum() / (w.sum() * inner.shape[-1])
    return out


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict, dict[str, list[float]]]:
    """Each run's result (from a warm-up call) and ``repeats`` timings of it, the runs interleaved so
    background load hits them alike."""
    values = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return values, times


def _median_rate(pairs: int, runs: list[float]) -> float:
    return round(pairs / statistics.median(runs), 1)


def mask_ssim_rates(args: argparse.Namespace) -> dict:
    """Frame pairs/s of ours (batched) vs the skimage loop, per protocol, and their agreement."""
    fake, real, mask = face_crop_pairs(args.frames)
    n = len(fake)
    tensors = [torch.from_numpy(a).float().permute(0, 3, 1, 2).contiguous() for a in (fake, real)]
    mask_t = torch.from_numpy(mask).float()[:, None].contiguous()
    singles = [a.astype(np.float32) for a in (fake, real, mask)]

    def ours(protocol: str) -> np.ndarray:
        parts = [
            mask_ssim(
                tensors[0][s : s + args.batch],
                tensors[1][s : s + args.batch],
                mask_t[s : s + args.batch],
                protocol,
            )
            for s in range(0, n, args.batch)
        ]
        return torch.cat(parts).double().numpy()

    out: dict = {"frames": n, "size": f"{CROP}x{CROP}", "batch": args.batch, "repeats": args.repeats}
    for protocol in PROTOCOLS:
        runs: dict[str, Callable[[], np.ndarray]] = {
            "ours": lambda p=protocol: ours(p),
            "skimage_float64": lambda p=protocol: skimage_mask_ssim(fake, real, mask, p),
            "skimage_float32": lambda p=protocol: skimage_mask_ssim(*singles, p),
        }
        values, times = _interleaved(runs, args.repeats)  # values: for the agreement check
        rates = {f"{name}_pairs_per_s": _median_rate(n, t) for name, t in times.items()}
        skimage_best = max(rates["skimage_float64_pairs_per_s"], rates["skimage_float32_pairs_per_s"])
        out[protocol] = {
            **rates,
            "speedup_vs_skimage_float64": round(
                rates["ours_pairs_per_s"] / rates["skimage_float64_pairs_per_s"], 2
            ),
            "speedup_vs_best_skimage": round(rates["ours_pairs_per_s"] / skimage_best, 2),
            "max_abs_diff_vs_skimage_float64": float(
                np.abs(values["ours"] - values["skimage_float64"]).max()
            ),
            "mean_score": round(float(values["ours"].mean()), 4),
        }
    return out


def _frames_256(name: str, count: int) -> torch.Tensor:
    """The first ``count`` frames of a sample, resized to 256x256: ``(T, 3, 256, 256)`` float32 in [0, 1]."""
    reader = VideoReader(sample_path(name))
    frames = reader.read(np.arange(min(count, reader.num_frames)))
    resized = np.stack([cv2.resize(f, (CROP, CROP), interpolation=cv2.INTER_LINEAR) for f in frames])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).float().div(255).contiguous()


def ewarp_rates(args: argparse.Namespace) -> dict:
    """E_warp frame pairs/s with DIS at 256x256, and the share of the flow in it."""
    real = _frames_256("carphone_pristine", args.frames)
    fake = _frames_256("carphone_distorted", args.frames)
    pairs = len(real) - 1
    runs: dict[str, Callable[[], object]] = {
        "own_flow": lambda: ewarp(real),
        "fake_on_original_flow": lambda: ewarp(fake, real),
        # the flows alone, in the same 8-pair batches ewarp uses
        "flow_only": lambda: [pair_flows(real[s : s + 9], "dis") for s in range(0, pairs, 8)],
    }
    values, times = _interleaved(runs, args.repeats)
    rates = {f"{name}_pairs_per_s": _median_rate(pairs, t) for name, t in times.items()}
    return {
        "pairs": pairs,
        "size": f"{CROP}x{CROP}",
        "flow": "dis",
        "repeats": args.repeats,
        **rates,
        "flow_share_of_time": round(
            statistics.median(times["flow_only"]) / statistics.median(times["own_flow"]), 2
        ),
        "ewarp_own_flow": float(values["own_flow"]),
        "ewarp_fake_on_original_flow": float(values["fake_on_original_flow"]),
    }


MEASUREMENTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "mask_ssim": mask_ssim_rates,
    "ewarp": ewarp_rates,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated measurements")
    parser.add_argument("--frames", type=int, default=64, help="frame pairs per measurement")
    parser.add_argument("--batch", type=int, default=32, help="frame pairs per call of ours")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    args = parser.parse_args()
    wanted = [m for m in args.only.split(",") if m]
    unknown = sorted(set(wanted) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurements {unknown}; choose from {sorted(MEASUREMENTS)}")
    torch.set_num_threads(os.cpu_count() or 1)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "opencv_threads": cv2.getNumThreads(),
            "load_average_1min_before": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        **{name: MEASUREMENTS[name](args) for name in wanted},
    }
    result["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
