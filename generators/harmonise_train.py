"""Train DoveNet offline on composites made from real faces (no downloaded weights or data).

A training triple is made from one real face crop and its face mask: the masked region is
colour-perturbed so it no longer matches the rest of the image (the *composite*), and the network
learns to give back the *original*; the mask is its fourth input. This is how iHarmony4 was built
(a real image whose foreground was colour-transferred), with faces instead of COCO objects.

Perturbation of the masked region (:func:`make_composites`), in order:

1. Reinhard colour transfer in CIE Lab towards another face of the set
   (:func:`~dftoolkit.generators.colour.colour_transfer`, ``rct``): the region's per-channel mean
   and standard deviation (where the mask is > 0) are moved to the other face's, and the result is
   blended with the original (RGB) by a weight drawn from U(0.5, 1);
2. hue rotation U(-10, 10) degrees and saturation gain U(0.75, 1.25) (HSV);
3. brightness gain U(0.75, 1.25), contrast U(0.75, 1.25) around the region's mean, gamma
   ``exp(U(-0.3, 0.3))``.

The composite is ``mask * perturbed + (1 - mask) * original``, quantised to uint8 like a real
frame. Objective: the paper's reconstruction loss, the L1 distance between the generator output and
the original over the whole image, in the generator's [-1, 1] range (the official code's
``L1Loss(output, real)``; they weight it by 100 against the adversarial terms). The adversarial
domain-verification discriminators (global and foreground/background verification, with partial
convolutions) are left out: this trainer optimises the reconstruction loss only. Optimiser as the
official code: Adam, lr 2e-4, betas (0.5, 0.999); weights initialised N(0, 0.02) (norm scales
N(1, 0.02)); each step flips images horizontally at random.

Checkpoints: ``out`` is the generator alone in the authors' key format (what
:func:`~dftoolkit.generators.dovenet.load_dovenet` reads); ``<out>.train`` holds what resuming
needs (step, seed, config, losses, generator, optimiser). Both are written atomically, the training
state first. Every step draws its batch and perturbations from ``(seed, step)``, so a resumed run
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights
from dftoolkit.fileio import atomic_path
from dftoolkit.generators.colour import colour_transfer
from dftoolkit.generators.dovenet import (
    DoveNetConfig,
    DoveNetGenerator,
    get_config,
    resolve_device,
    to_model_range,
)
from dftoolkit.preprocess.store import GRAY_CROPS, FaceStore
from dftoolkit.progress import progress

__all__ = ["faces_from_store", "make_composites", "train_dovenet", "train_state_path"]

_log = logging.getLogger(__name__)
_STATE_FORMAT = "dftoolkit.dovenet-train/1"


def make_composites(
    images: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training triples from real faces: the masked region colour-perturbed (module docstring).

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB real faces (N >= 1; with N >= 2 each face takes its
            colour statistics from another one).
        masks: ``(N, H, W)`` face masks, uint8 0/255, bool or float in [0, 1].
        rng: the random generator (all randomness comes from it).

    Returns:
        ``(composites, masks, originals)``: ``(N, H, W, 3)`` uint8, ``(N, H, W)`` float32 in
        [0, 1], ``(N, H, W, 3)`` uint8 (a copy of ``images``).
    """
    images = np.asarray(images)
    m = _as_unit_masks(masks)
    n = len(images)
    if (
        images.ndim != 4
        or images.shape[3] != 3
        or images.dtype != np.uint8
        or m.shape != images.shape[:3]
        or n == 0
    ):
        raise ValueError(
            "expected (N, H, W, 3) uint8 images and (N, H, W) masks, "
            f"got {images.shape} {images.dtype}, {m.shape}"
        )
    rgb = images.astype(np.float32) / 255
    region = m > 0
    others = (np.arange(n) + rng.integers(1, n, size=n)) % n if n > 1 else np.zeros(1, int)
    amount = rng.uniform(0.5, 1.0, size=n).astype(np.float32)
    out = np.empty_like(rgb)
    for i, j in enumerate(others):
        moved = colour_transfer(rgb[i], rgb[j], region[i], region[j] if region[j].any() else None, "rct")
        hsv = cv2.cvtColor(rgb[i] + amount[i] * (moved - rgb[i]), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-10, 10)) % 360
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.75, 1.25), 0, 1)
        out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    gain = rng.uniform(0.75, 1.25, size=(n, 1, 1, 1))
    contrast = rng.uniform(0.75, 1.25, size=(n, 1, 1, 1))
    gamma = np.exp(rng.uniform(-0.3, 0.3, size=(n, 1, 1, 1)))
    weights = m[..., None] + 1e-6  # the region's mean (a tiny floor keeps empty masks finite)
    region_mean = (out * weights).sum((1, 2), keepdims=True) / weights.sum((1, 2), keepdims=True)
    out = np.clip((out * gain - region_mean) * contrast + region_mean, 0, 1) ** gamma
    composite = rgb + m[..., None] * (out.astype(np.float32) - rgb)
    return np.clip(np.rint(composite * 255), 0, 255).astype(np.uint8), m, images.copy()


def _as_unit_masks(masks: np.ndarray) -> np.ndarray:
    """Masks as float32 in [0, 1] (uint8 masks are divided by 255)."""
    masks = np.asarray(masks)
    if masks.dtype == np.uint8:
        return masks.astype(np.float32) / 255
    return np.clip(masks.astype(np.float32), 0, 1)


def faces_from_store(
    store: FaceStore | str | os.PathLike[str],
    crop: str = "face",
    frames_per_video: int | None = None,
    real_only: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Real face crops and their masks from a :class:`~dftoolkit.preprocess.FaceStore`.

    Takes every committed video with ok frames of ``crop`` (``frames_per_video`` evenly spaced
    ones, or all); with ``real_only`` and the store's copy of the input manifest, only videos
    labelled real (without a manifest every video is taken).

    Returns:
        ``(N, S, S, 3)`` uint8 RGB crops and ``(N, S, S)`` uint8 masks (0/255).

    Raises:
        ValueError: a grey crop kind, or no usable crops with masks in the store.
    """
    store = store if isinstance(store, FaceStore) else FaceStore(store)
    if crop in GRAY_CROPS:
        raise ValueError(f"crop {crop!r} is grey; DoveNet needs RGB crops (e.g. 'face')")
    videos = store.videos()
    manifest = store.manifest() if real_only else None
    if manifest is not None:
        records = manifest.to_pandas()
        real = set(
            zip(records.dataset[records.label == 0], records.video_id[records.label == 0], strict=True)
        )
        videos = [v for v in videos if v in real]
    images, masks = [], []
    for dataset, video_id in videos:
        try:
            clip = store.clip(video_id, crop, frames_per_video, dataset)
            mask = store.masks(video_id, crop, frames_per_video, dataset)
        except ValueError:  # no ok frames, no crops of this kind, or crops without masks
            continue
        images.append(clip.transpose(0, 2, 3, 1))
        masks.append(mask[:, 0])
    if not images:
        raise ValueError(f"no {crop!r} crops with masks of real videos in the store {store.root}")
    return np.concatenate(images), np.concatenate(masks)


def train_state_path(out: str | os.PathLike[str]) -> Path:
    """Where :func:`train_dovenet` keeps its resumable training state for checkpoint ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".train")


def _init_weights(model: nn.Module) -> None:
    """The official init: convolutions N(0, 0.02) and zero bias; batch-norm scales N(1, 0.02)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


def _resize(images: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square images and masks resized to ``size`` (area when shrinking, bilinear when growing)."""
    if images.shape[1:3] == (size, size):
        return images, masks
    flag = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return (
        np.stack([cv2.resize(image, (size, size), interpolation=flag) for image in images]),
        np.stack([cv2.resize(mask, (size, size), interpolation=flag) for mask in masks]),
    )


def _tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> contiguous ``(N, 3, H, W)`` float in [0, 1] on ``device``."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous().float() / 255


def _save(out: Path, model: nn.Module, optimiser: torch.optim.Optimizer, state: dict) -> None:
    """Training state, then the generator alone (the loader's format); each atomically."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(train_state_path(out), suffix=".tmp") as tmp:
        torch.save({**state, "generator": weights, "optimizer": optimiser.state_dict()}, tmp)
    with atomic_path(out) as tmp:
        torch.save(weights, tmp)


def train_dovenet(
    images: np.ndarray,
    masks: np.ndarray,
    out: str | os.PathLike[str],
    steps: int = 2000,
    batch_size: int = 8,
    lr: float = 2e-4,
    config: str | DoveNetConfig = "full",
    seed: int = 0,
    log_every: int = 50,
    *,
    size: int | None = None,
    device: str = "auto",
    save_every: int = 500,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Train a DoveNet generator on composites made from real faces; resumable.

    Args:
        images: ``(N, S, S, 3)`` uint8 RGB real face crops.
        masks: ``(N, S, S)`` their face masks (uint8 0/255 or float in [0, 1]).
        out: generator checkpoint to write (the authors' key format); ``<out>.train`` keeps the
            training state.
        steps: total optimisation steps (a resumed run continues up to this many).
        batch_size: composites per step.
        lr: Adam learning rate.
        config: generator architecture (``full``, ``small`` or a :class:`DoveNetConfig`).
        seed: seed of every random choice (batches, perturbations, flips, dropout).
        log_every: log the mean loss of the last ``log_every`` steps (0: never).
        size: train at ``size`` x ``size`` (crops resized once); None: at ``S``. Must be a
            multiple of ``2**levels``.
        device: torch device, ``"auto"``: CUDA when available.
        save_every: write both checkpoints every this many steps (and always at the end).
        resume: continue from ``<out>.train`` when it exists (same config and seed required);
            False starts afresh and overwrites.
        log: where log lines go (default: this module's logger at INFO).

    Returns:
        The loss of every step from step 0 (L1 in [-1, 1] units), including resumed ones.

    Raises:
        ValueError: bad inputs or settings, or a training state of other settings (or unreadable);
            :class:`~dftoolkit.checkpoints.CheckpointError` when its names or shapes do not fit.
    """
    cfg = get_config(config)
    m = _as_unit_masks(masks)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or m.shape != images.shape[:3]:
        raise ValueError(
            "expected (N, S, S, 3) uint8 images and (N, S, S) masks, "
            f"got {images.shape} {images.dtype}, {m.shape}"
        )
    if len(images) == 0 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected a non-empty set of square crops, got {images.shape}")
    images, m = _resize(images, m, size or images.shape[1])
    side = images.shape[1]
    if side % cfg.multiple:
        raise ValueError(
            f"training size {side} is not a multiple of {cfg.multiple} ({cfg.levels} levels); pass size="
        )
    if min(steps, batch_size, save_every) < 1:
        raise ValueError(
            f"steps, batch_size and save_every must be >= 1, got {steps}, {batch_size}, {save_every}"
        )
    log = log or _log.info
    out = Path(out)
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DoveNetGenerator(cfg)
        _init_weights(model)
    model.to(dev).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    losses: list[float] = []
    state_file = train_state_path(out)
    if resume and state_file.is_file():
        hint = "delete it or pass resume=False (--fresh) to start afresh"
        saved = load_weights(state_file, what="DoveNet training state", hint=hint, map_location=dev)
        saved = saved if isinstance(saved, dict) else {}
        if (saved.get("format"), saved.get("config"), saved.get("seed")) != (
            _STATE_FORMAT,
            asdict(cfg),
            seed,
        ):
            raise ValueError(
                f"{state_file} is a training state of config {saved.get('config')} and seed "
                f"{saved.get('seed')}, not {asdict(cfg)} and seed {seed}: pass the same settings, "
                "another --out, or resume=False to start afresh"
            )
        where = f"{state_file}: generator"
        fit_state_dict(model, saved.get("generator"), where=where, strip_prefix=None, hint=hint)
        try:
            optimiser.load_state_dict(saved["optimizer"])
            losses = [float(x) for x in saved["losses"]]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{state_file}: unusable optimizer state or losses ({err}); {hint}"
            ) from None
        log(f"resuming {out} at step {len(losses)}")
    start = len(losses)
    record = {"format": _STATE_FORMAT, "config": asdict(cfg), "seed": seed}
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        for step in progress(range(start, steps), "training DoveNet", unit="steps"):
            rng = np.random.default_rng([seed, step])
            pick = rng.choice(len(images), size=batch_size, replace=len(images) < batch_size)
            composite, mask, real = make_composites(images[pick], m[pick], rng)
            flip = rng.random(batch_size) < 0.5
            composite[flip], mask[flip], real[flip] = (
                composite[flip, :, ::-1],
                mask[flip, :, ::-1],
                real[flip, :, ::-1],
            )
            torch.manual_seed(int(rng.integers(2**62)))  # dropout
            x = to_model_range(_tensor(composite, dev))
            y = to_model_range(_tensor(real, dev))
            loss = F.l1_loss(model(x, torch.from_numpy(mask)[:, None].to(dev)), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            done = step + 1
            if log_every and done % log_every == 0:
                log(f"step {done}/{steps}: L1 {np.mean(losses[-log_every:]):.4f}")
            if done % save_every == 0 and done < steps:
                _save(out, model, optimiser, {**record, "losses": losses})
    if len(losses) > start or not out.is_file():
        _save(out, model, optimiser, {**record, "losses": losses})
    return losses
