"""Which frames of a video to keep: the sampling policies used across the field, and ping-pong playback."""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLING_POLICIES", "ping_pong", "sample_indices"]

SAMPLING_POLICIES = ("even", "stride", "segments", "all")


def sample_indices(
    num_frames: int,
    num: int | None = 32,
    policy: str = "even",
    *,
    stride: int = 1,
    offset: int = 0,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Frame indices (int64, ascending) to read from a video of ``num_frames`` frames.

    Policies:
        ``even``: ``num`` evenly spaced frames from first to last (the usual "32 frames per
            video"); all frames, once each, when the video is shorter than ``num``.
        ``stride``: every ``stride``-th frame from ``offset``; at most ``num`` (None: no limit).
        ``segments``: TSN-style: ``num`` equal segments, the middle frame of each, or a random
            frame of each when ``rng`` is given (training). Shorter videos repeat frames so the
            clip always has ``num`` frames.
        ``all``: every frame.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if policy not in SAMPLING_POLICIES:
        raise ValueError(f"unknown sampling policy {policy!r}; choose from {SAMPLING_POLICIES}")
    if num is not None and num < 1:
        raise ValueError(f"num must be >= 1 or None, got {num}")
    if policy in ("even", "segments") and num is None:
        raise ValueError(f"policy {policy!r} needs num")
    if num_frames == 0:
        return np.zeros(0, dtype=np.int64)
    if policy == "all":
        return np.arange(num_frames, dtype=np.int64)
    if policy == "even":
        if num_frames <= num:
            return np.arange(num_frames, dtype=np.int64)
        return np.round(np.linspace(0, num_frames - 1, num)).astype(np.int64)
    if policy == "stride":
        if stride < 1 or offset < 0:
            raise ValueError(f"stride must be >= 1 and offset >= 0, got {stride}, {offset}")
        indices = np.arange(offset, num_frames, stride, dtype=np.int64)
        return indices if num is None else indices[:num]
    # segments
    edges = np.linspace(0, num_frames, num + 1)
    if rng is None:
        picks = (edges[:-1] + edges[1:]) / 2
    else:
        gen = np.random.default_rng(rng)
        picks = edges[:-1] + gen.random(num) * (edges[1:] - edges[:-1])
    return np.minimum(np.floor(picks), num_frames - 1).astype(np.int64)


def ping_pong(t: int | np.ndarray, n: int) -> np.ndarray:
    """Index into an ``n``-item source at step ``t`` (int or array): forward to the end, then backward,
    and again: ``0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...`` (always 0 when ``n`` is 1)."""
    if n < 1:
        raise ValueError(f"a source needs at least one item, got {n}")
    t = np.asarray(t)
    if n == 1:
        return np.zeros_like(t)
    period = 2 * (n - 1)
    phase = t % period
    return np.where(phase < n, phase, period - phase)
