"""``VideoRecord``: one video of a corpus, the row type of a :class:`~dftoolkit.manifest.Manifest`."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from dftoolkit.errors import DftoolkitError
from dftoolkit.paths import PathEscapeError, normalise_relpath

__all__ = ["LABELS", "METHOD_KINDS", "SPLITS", "RecordError", "VideoRecord", "check_name", "method_kind"]

LABELS = {0: "real", 1: "fake"}
_UNSAFE_NAME = re.compile(r'[/\\:*?"<>|\x00-\x1f]')
SPLITS = ("train", "val", "test")

METHOD_KINDS: dict[str, str] = {
    # FaceForensics++ (Rossler et al. 2019) and its DeepFakeDetection addition
    "Deepfakes": "swap",
    "FaceSwap": "swap",
    "FaceShifter": "swap",
    "DeepFakeDetection": "swap",
    "Face2Face": "reenact",
    "NeuralTextures": "reenact",
    # the toolkit's generators (a method registered there adds itself; its kind must agree)
    "swap": "swap",
    "reenact": "reenact",
    "fomm": "reenact",
}
"""Manipulation method name -> ``"swap"`` (another identity's face) or ``"reenact"`` (the target's
own face, driven by another's expression and motion)."""


def method_kind(method: str | None) -> str | None:
    """``"swap"``, ``"reenact"`` or None (unknown) for a manifest ``method`` such as ``"swap+rct"``
    (a toolkit method and its blend), ``"fomm+feather"`` or ``"Face2Face"``."""
    return METHOD_KINDS.get(method.split("+", 1)[0]) if method else None


class RecordError(DftoolkitError, ValueError):
    """A record field has a wrong type or value."""


def check_name(field: str, value: object) -> None:
    """RecordError unless ``value`` is a non-empty string usable as one file name on every OS."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{field} must be a non-empty string, got {value!r}")
    if _UNSAFE_NAME.search(value) or value.startswith("."):
        raise RecordError(
            f"{field} {value!r} must be usable as a file name on every OS "
            '(no / \\ : * ? " < > | or control characters) and not start with "."'
        )


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One video (or frame sequence) of a corpus.

    ``dataset``, ``video_id`` and ``original_id`` name output files and folders (``<dataset>/<id>``
    in every stage's output), so each must be usable as one file name on every OS: no
    ``/ \\ : * ? " < > |`` or control characters, and no leading ``.`` (the name of a temporary
    folder, see :func:`~dftoolkit.fileio.atomic_dir`). A record from an untrusted manifest can
    therefore never place a file outside a stage's output folder.

    Attributes:
        dataset: corpus name, e.g. ``"ffpp"``.
        video_id: unique within ``dataset``, stable across runs.
        relpath: POSIX path relative to the corpus root, never absolute, never escaping it.
        label: 0 real, 1 fake.
        method: manipulation method (``"Deepfakes"``, ``"swap"``...); for reals the source kind or None.
        compression: e.g. ``"raw"``, ``"c23"``, ``"c40"``.
        split: ``"train"``, ``"val"``, ``"test"`` or None when not assigned.
        target_id: identity (or original video id) whose video is shown; for reals, the person.
        source_id: identity (or video id) that provides the face or expression of a fake.
        original_id: for fakes, the ``video_id`` of the real video whose frames were modified; for
            a real video made from another (a perturbed copy), that video's (it is looked up as a
            FaceStore folder, and a split keeps the two together).
        mask_relpath: relative path of the manipulation-mask video, when the corpus has one.
        perturbation: post-processing chain such as ``"CS:3 GB:2"``.
        frames, fps, width, height: filled by probing; None when unknown.
        frames_exact: True when ``frames`` was counted from the packets, False when it is the
            container's estimate (consumers must not sample past an estimated end); None when
            ``frames`` is unknown or its origin was not recorded.
        manipulated_frames: for fakes made by the toolkit, the frames whose mask is non-empty.
        coverage: ``manipulated_frames / frames`` in [0, 1].
    """

    dataset: str
    video_id: str
    relpath: str
    label: int
    method: str | None = None
    compression: str | None = None
    split: str | None = None
    target_id: str | None = None
    source_id: str | None = None
    original_id: str | None = None
    mask_relpath: str | None = None
    perturbation: str | None = None
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    frames_exact: bool | None = None
    manipulated_frames: int | None = None
    coverage: float | None = None

    def __post_init__(self) -> None:
        check_name("dataset", self.dataset)
        check_name("video_id", self.video_id)
        if isinstance(self.label, bool) or not isinstance(self.label, int) or self.label not in LABELS:
            raise RecordError(f"label must be 0 (real) or 1 (fake), got {self.label!r}")
        if self.split is not None and self.split not in SPLITS:
            raise RecordError(f"split must be one of {SPLITS} or None, got {self.split!r}")
        for name in ("relpath", "mask_relpath"):
            value = getattr(self, name)
            if value is None and name == "mask_relpath":
                continue
            if not isinstance(value, str):
                raise RecordError(f"{name} must be a string, got {value!r}")
            try:
                object.__setattr__(self, name, normalise_relpath(value))
            except PathEscapeError as err:
                raise RecordError(f"{name}: {err}") from None
        for name in ("method", "compression", "target_id", "source_id", "perturbation"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise RecordError(f"{name} must be a string or None, got {value!r}")
        if self.original_id is not None:
            check_name("original_id", self.original_id)
        for name in ("frames", "width", "height", "manipulated_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RecordError(f"{name} must be a non-negative integer or None, got {value!r}")
        if self.fps is not None:
            if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not self.fps > 0:
                raise RecordError(f"fps must be a positive number or None, got {self.fps!r}")
            object.__setattr__(self, "fps", float(self.fps))
        if self.frames_exact is not None and not isinstance(self.frames_exact, bool):
            raise RecordError(f"frames_exact must be True, False or None, got {self.frames_exact!r}")
        if self.coverage is not None:
            if isinstance(self.coverage, bool) or not isinstance(self.coverage, (int, float)):
                raise RecordError(f"coverage must be a number in [0, 1] or None, got {self.coverage!r}")
            if not 0.0 <= self.coverage <= 1.0:
                raise RecordError(f"coverage must be in [0, 1], got {self.coverage!r}")
            object.__setattr__(self, "coverage", float(self.coverage))

    @property
    def key(self) -> tuple[str, str]:
        """``(dataset, video_id)``: unique across concatenated manifests."""
        return (self.dataset, self.video_id)

    def replace(self, **changes: Any) -> VideoRecord:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
