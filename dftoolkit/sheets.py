"""Contact sheets: rows of labelled thumbnails in one PNG, for eyeballing frames and crops."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from dftoolkit.fileio import atomic_write_bytes

__all__ = ["contact_sheet", "write_png"]

_LABEL_WIDTH = 180


def contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], height: int = 96) -> np.ndarray:
    """Stack rows of images into one ``(H, W, 3)`` uint8 RGB sheet.

    Each row is ``(label, images)``; images are ``(h, w, 3)`` uint8 RGB (or ``(h, w)`` grey) of any
    size, scaled to ``height`` pixels tall. The label is written in a margin on the left.
    """
    rendered = []
    for label, images in rows:
        thumbs = [_thumb(image, height) for image in images]
        strip = np.concatenate(thumbs, axis=1) if thumbs else np.zeros((height, 0, 3), np.uint8)
        margin = np.full((height, _LABEL_WIDTH, 3), 255, np.uint8)
        cv2.putText(margin, label[:24], (4, height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
        rendered.append(np.concatenate([margin, strip], axis=1))
    width = max(r.shape[1] for r in rendered)
    padded = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rendered]
    return np.concatenate(padded, axis=0)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG, atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    atomic_write_bytes(path, data.tobytes())


def _thumb(image: np.ndarray, height: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
