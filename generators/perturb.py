"""Post-processing perturbations: DeeperForensics-1.0's seven distortions at levels 1..5, FF++ c23/c40.

A perturbation *chain* is a string of steps such as ``"CS:3 GB:2"``, ``"VC:4"``, ``"c23"`` or
``"GB:2 c40"`` (``TYPE:LEVEL``; the FF++ compressions take no level). Steps apply **left to right**:
``"CS:3 GB:2"`` desaturates, then blurs. Frame-level steps (CS, CC, BW, GNC, GB, JPEG) act on each
frame on its own; video-level steps (VC, c23, c40) re-encode the **whole clip** with H.264 at that
point of the chain, so ``"GB:2 c40 CS:1"`` blurs every frame, compresses the blurred clip at crf 40,
then desaturates the decoded frames.

Parameters per level (the DeeperForensics-1.0 reference values):

======  ===========================================  =============================================
type    level 1 -> 5                                 what it does
======  ===========================================  =============================================
CS      0.4, 0.3, 0.2, 0.1, 0.0                      scale Cb/Cr around neutral (5 = greyscale)
CC      0.85, 0.725, 0.6, 0.475, 0.35                multiply the image by the factor
BW      16, 32, 48, 64, 80                           that many x max(1, min(H, W) // 256) grey
                                                     (128) 8x8 blocks, new places every frame
GNC     0.001, 0.002, 0.005, 0.01, 0.05              variance of Gaussian noise added to YCbCr/255
GB      7, 9, 13, 17, 21                             Gaussian blur, kernel size, sigma = size / 6
JPEG    2, 3, 4, 5, 6                                down-scale by the factor (area), up-scale back
VC      crf 30, 32, 35, 38, 40                       H.264 re-encode
c23     crf 23                                       H.264 re-encode (FaceForensics++ c23)
c40     crf 40                                       H.264 re-encode (FaceForensics++ c40)
======  ===========================================  =============================================

Deviations from the reference: JPEG down-scales by area averaging (see :func:`down_up_scale`);
the reference's BW block count ``param * (min(H, W) // 256)`` is zero below 256 pixels, which would
make BW a no-op on small videos, so the factor here is at least 1. YCbCr is the
full-range BT.601 (JPEG) space. H.264 encodes use x264's ``medium`` preset (ffmpeg's default, what
the reference and FF++ used), ``yuv420p``.

Videos are streamed frame by frame (never held in memory); intermediate encodes go to temporary
files beside the output. Odd frame sizes, which ``yuv420p`` cannot hold, are padded by edge
replication to even for each H.264 encode and cropped back after decoding; a lossy final store of
an odd-sized video is therefore made the same way and the cropped result stored losslessly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dftoolkit.fileio import atomic_path
from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.registry import Registry
from dftoolkit.video import VideoDecodeError, VideoReader, VideoWriter, probe

__all__ = [
    "PERTURBATIONS",
    "RANDOM_TYPES",
    "Chain",
    "PerturbationType",
    "PerturbingWriter",
    "Step",
    "block_count",
    "block_wise",
    "color_contrast",
    "color_saturation",
    "describe_perturbations",
    "down_up_scale",
    "gaussian_blur",
    "gaussian_noise_color",
    "get_perturbation",
    "list_perturbations",
    "paint_blocks",
    "perturb_frames",
    "perturb_manifest",
    "perturb_video",
    "random_blocks",
    "random_chain",
    "resolve_chain",
    "video_seed",
]

ENCODE_PRESET = "medium"
"""x264 preset of every H.264 encode step (ffmpeg's default)."""
BLOCK = 8
"""Side of a BW block in pixels."""
GREY = 128
"""Value of a BW block."""
_KR, _KB = 0.299, 0.114  # BT.601 luma weights of R and B
_LUMA = np.array([_KR, 1.0 - _KR - _KB, _KB], dtype=np.float32)
_RGB_TO_YCBCR = np.array(  # full-range BT.601, rows Y, Cb, Cr; offsets omitted (they cancel for noise)
    [_LUMA, (np.eye(3)[2] - _LUMA) / (2 * (1 - _KB)), (np.eye(3)[0] - _LUMA) / (2 * (1 - _KR))],
    dtype=np.float64,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)
_SAFE_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov"})


# -- frame operations ------------------------------------------------------------------------


def _check(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.dtype} {frame.shape}")
    return frame


def color_saturation(frame: np.ndarray, factor: float) -> np.ndarray:
    """Scale the chroma (Cb, Cr around neutral) by ``factor`` in [0, 1], keeping luma; 0 = greyscale.

    In full-range BT.601 YCbCr this equals ``Y + factor * (RGB - Y)`` per pixel, applied here as one
    3x3 colour matrix. ``frame``: ``(H, W, 3)`` uint8 RGB; returns the same shape and dtype.
    """
    matrix = factor * np.eye(3, dtype=np.float32) + (1.0 - factor) * np.outer(np.ones(3), _LUMA)
    return cv2.transform(_check(frame), matrix.astype(np.float32))


def color_contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    """Multiply ``(H, W, 3)`` uint8 RGB by ``factor`` (< 1 lowers the contrast), rounded."""
    return cv2.convertScaleAbs(_check(frame), alpha=factor)


def block_count(height: int, width: int, param: int) -> int:
    """Number of BW blocks for a ``height x width`` frame: ``param * max(1, min(H, W) // 256)``."""
    return int(param) * max(1, min(height, width) // 256)


def random_blocks(
    height: int, width: int, count: int, rng: np.random.Generator, size: int = BLOCK
) -> np.ndarray:
    """``(count, 2)`` int64 top-left corners ``(y, x)`` of ``size x size`` blocks inside the frame,
    uniform over the valid positions (blocks may overlap)."""
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than a {size}x{size} block")
    return rng.integers(0, [height - size + 1, width - size + 1], size=(count, 2), dtype=np.int64)


def paint_blocks(frame: np.ndarray, corners: np.ndarray, size: int = BLOCK, value: int = GREY) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 ``frame`` with ``size x size`` blocks of ``value`` at ``corners``
    (``(N, 2)`` ``(y, x)`` top-left)."""
    out = _check(frame).copy()
    offsets = np.arange(size)
    ys = (corners[:, 0, None] + offsets)[:, :, None]  # (N, size, 1)
    xs = (corners[:, 1, None] + offsets)[:, None, :]  # (N, 1, size)
    out[ys, xs] = value
    return out


def block_wise(frame: np.ndarray, param: int, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics BW: :func:`block_count` grey 8x8 blocks at random places of ``(H, W, 3)`` uint8."""
    height, width = _check(frame).shape[:2]
    return paint_blocks(frame, random_blocks(height, width, block_count(height, width, param), rng))


def gaussian_noise_color(frame: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of ``variance`` to each channel of the frame in YCbCr scaled to [0, 1].

    The noise is mapped to RGB with the inverse BT.601 matrix (the same as converting, adding and
    converting back), then the result is rounded and clipped to uint8. ``frame``: ``(H, W, 3)``
    uint8 RGB.
    """
    noise = rng.standard_normal(_check(frame).shape, dtype=np.float32)
    noise = cv2.transform(noise, _YCBCR_TO_RGB * np.float32(255.0 * np.sqrt(variance)))
    return cv2.add(frame, noise, dtype=cv2.CV_8U)


def gaussian_blur(frame: np.ndarray, size: int) -> np.ndarray:
    """Gaussian blur with an odd ``size x size`` kernel and sigma ``size / 6``; ``(H, W, 3)`` uint8."""
    return cv2.GaussianBlur(_check(frame), (int(size), int(size)), size / 6.0)


def down_up_scale(frame: np.ndarray, factor: int) -> np.ndarray:
    """DeeperForensics "JPEG": down-scale ``(H, W, 3)`` uint8 by ``factor``, bilinear up-scale back.

    The down-scale averages pixel areas (``INTER_AREA``); the reference's bilinear down-scale skips
    pixels at factors above 2 and aliases, so factor 3 kept more high frequencies than factor 2.
    """
    height, width = _check(frame).shape[:2]
    small = cv2.resize(
        frame, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


_FrameOp = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
_FRAME_OPS: dict[str, _FrameOp] = {
    "CS": lambda frame, param, rng: color_saturation(frame, param),
    "CC": lambda frame, param, rng: color_contrast(frame, param),
    "BW": lambda frame, param, rng: block_wise(frame, int(param), rng),
    "GNC": gaussian_noise_color,
    "GB": lambda frame, param, rng: gaussian_blur(frame, int(param)),
    "JPEG": lambda frame, param, rng: down_up_scale(frame, int(param)),
}


# -- types, steps and chains -----------------------------------------------------------------


@dataclass(frozen=True)
class PerturbationType:
    """One perturbation type.

    Attributes:
        name: the token in chains (``"CS"``, ..., ``"c23"``).
        levels: the parameter at level 1, 2, ...; a single value for a fixed step (c23, c40),
            whose token takes no level.
        description: what it does and the parameter's unit.
        video: an H.264 re-encode of the whole clip (the parameter is the crf).
    """

    name: str
    levels: tuple[float, ...]
    description: str
    video: bool = False

    @property
    def fixed(self) -> bool:
        return len(self.levels) == 1


PERTURBATIONS: Registry[PerturbationType] = Registry("perturbation type")
for _kind in (
    PerturbationType("CS", (0.4, 0.3, 0.2, 0.1, 0.0), "colour saturation: scale Cb/Cr (5 = greyscale)"),
    PerturbationType("CC", (0.85, 0.725, 0.6, 0.475, 0.35), "colour contrast: multiply the image"),
    PerturbationType("BW", (16, 32, 48, 64, 80), "block-wise: grey 8x8 blocks (x max(1, min(H,W)//256))"),
    PerturbationType("GNC", (0.001, 0.002, 0.005, 0.01, 0.05), "Gaussian noise: variance in YCbCr/255"),
    PerturbationType("GB", (7, 9, 13, 17, 21), "Gaussian blur: kernel size, sigma = size/6"),
    PerturbationType("JPEG", (2, 3, 4, 5, 6), "down-scale by the factor and up-scale back"),
    PerturbationType(
        "VC", (30, 32, 35, 38, 40), "video compression: H.264 re-encode at this crf", video=True
    ),
    PerturbationType("c23", (23,), "FaceForensics++ c23: H.264 re-encode at crf 23", video=True),
    PerturbationType("c40", (40,), "FaceForensics++ c40: H.264 re-encode at crf 40", video=True),
):
    PERTURBATIONS.register(_kind.name, _kind.description)(_kind)
RANDOM_TYPES: tuple[str, ...] = ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")
"""The DeeperForensics-1.0 types that random chains draw from."""
_TYPES = {name.lower(): PERTURBATIONS.get(name) for name in PERTURBATIONS}
_TYPE_NAMES = ", ".join(PERTURBATIONS.names())


def list_perturbations() -> list[str]:
    """The registered perturbation type names (the chain tokens), sorted."""
    return PERTURBATIONS.names()


def describe_perturbations() -> dict[str, str]:
    """Perturbation type name -> one-line description."""
    return PERTURBATIONS.describe()


def get_perturbation(name: str, level: int | None = None) -> Step:
    """The chain step of the type registered as ``name`` at ``level`` (None for c23, c40); a bad level
    is a ValueError. Steps make a :class:`Chain` for :func:`perturb_video` and the others."""
    return Step(PERTURBATIONS.get(name).name, level)


@dataclass(frozen=True)
class Step:
    """One step of a chain: a type name and its level (None for fixed steps: c23, c40)."""

    name: str
    level: int | None = None

    def __post_init__(self) -> None:
        kind = _TYPES.get(self.name.lower()) if isinstance(self.name, str) else None
        if kind is None:
            raise ValueError(f"unknown perturbation type {self.name!r}; types: {_TYPE_NAMES}")
        object.__setattr__(self, "name", kind.name)
        if kind.fixed and self.level is not None:
            raise ValueError(f"{kind.name} takes no level, got {self.level!r}")
        valid = isinstance(self.level, int) and not isinstance(self.level, bool)
        if not kind.fixed and not (valid and 1 <= self.level <= len(kind.levels)):
            raise ValueError(f"{kind.name} needs a level 1..{len(kind.levels)}, got {self.level!r}")

    @property
    def type(self) -> PerturbationType:
        return _TYPES[self.name.lower()]

    @property
    def param(self) -> float:
        """The level's parameter (factor, count, variance, kernel size or crf)."""
        return self.type.levels[0 if self.level is None else self.level - 1]

    @property
    def video(self) -> bool:
        return self.type.video

    @classmethod
    def parse(cls, token: str) -> Step:
        """``"GB:2"`` or ``"c23"`` (names are case-insensitive); ValueError naming the token."""
        name, colon, level = token.partition(":")
        try:
            if not colon:
                return cls(name)
            if not level.isdigit():
                raise ValueError(f"the level must be a whole number, got {level!r}")
            return cls(name, int(level))
        except ValueError as err:
            raise ValueError(f"bad perturbation step {token!r}: {err}") from None

    def __str__(self) -> str:
        return self.name if self.level is None else f"{self.name}:{self.level}"


@dataclass(frozen=True)
class Chain:
    """A non-empty sequence of :class:`Step`, applied left to right; ``str(chain)`` is its string."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps or not all(isinstance(s, Step) for s in self.steps):
            raise ValueError(f"a chain needs one or more Steps, got {self.steps!r}")

    @classmethod
    def parse(cls, text: str) -> Chain:
        """Parse ``"CS:3 GB:2"`` (whitespace-separated steps); ValueError naming the bad token."""
        tokens = text.split() if isinstance(text, str) else None
        if not tokens:
            raise ValueError(f"empty perturbation chain {text!r}; e.g. 'CS:3 GB:2', 'VC:4', 'c23'")
        steps = []
        for token in tokens:
            try:
                steps.append(Step.parse(token))
            except ValueError as err:
                raise ValueError(f"chain {text!r}: {err}") from None
        return cls(tuple(steps))

    def __str__(self) -> str:
        return " ".join(map(str, self.steps))

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def video(self) -> bool:
        """Whether any step re-encodes the clip (VC, c23, c40)."""
        return any(step.video for step in self.steps)

    def segments(self) -> list[tuple[tuple[Step, ...], Step | None]]:
        """The chain cut after each encode step: ``[(frame steps, encode step or None), ...]``."""
        segments: list[tuple[tuple[Step, ...], Step | None]] = []
        frame_steps: list[Step] = []
        for step in self.steps:
            if step.video:
                segments.append((tuple(frame_steps), step))
                frame_steps = []
            else:
                frame_steps.append(step)
        if frame_steps or not segments:
            segments.append((tuple(frame_steps), None))
        return segments


def _as_chain(chain: Chain | str) -> Chain:
    if isinstance(chain, Chain):
        return chain
    if isinstance(chain, str):
        return Chain.parse(chain)
    raise TypeError(f"chain must be a Chain or a string, got {type(chain).__name__}")


def random_chain(rng: np.random.Generator, mix: int = 1) -> Chain:
    """A random chain of ``mix`` (1..4) distinct :data:`RANDOM_TYPES`, in random order, each at a
    uniform level 1..5 (the DeeperForensics "random" and "mixed" perturbations)."""
    if isinstance(mix, bool) or not isinstance(mix, int) or not 1 <= mix <= 4:
        raise ValueError(f"mix must be 1, 2, 3 or 4, got {mix!r}")
    names = rng.choice(len(RANDOM_TYPES), size=mix, replace=False)
    levels = rng.integers(1, 6, size=mix)
    return Chain(tuple(Step(RANDOM_TYPES[n], int(level)) for n, level in zip(names, levels, strict=True)))


def video_seed(seed: int, video_id: str) -> int:
    """A 64-bit seed for one video, derived from a run's ``seed`` and the video's id."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{video_id}".encode()).digest()[:8], "little")


# -- frames and videos -----------------------------------------------------------------------


def _apply(
    frames: Iterable[np.ndarray], steps: tuple[Step, ...], rng: np.random.Generator
) -> Iterator[np.ndarray]:
    for frame in frames:
        frame = _check(frame)
        for step in steps:
            frame = _FRAME_OPS[step.name](frame, step.param, rng)
        yield frame


def perturb_frames(
    frames: Iterable[np.ndarray], chain: Chain | str, seed: int | np.random.Generator = 0
) -> Iterator[np.ndarray]:
    """Lazily apply a chain of frame-level steps to ``(H, W, 3)`` uint8 RGB frames.

    Random steps (BW, GNC) draw from one generator seeded by ``seed``, frame after frame, so the
    output is deterministic for a seed. Video-level steps (VC, c23, c40) need the whole clip:
    ValueError, use :func:`perturb_video`.
    """
    chain = _as_chain(chain)
    if chain.video:
        encodes = " ".join(str(s) for s in chain.steps if s.video)
        raise ValueError(f"chain {str(chain)!r}: {encodes} re-encode a whole video; use perturb_video")
    return _apply(frames, chain.steps, np.random.default_rng(seed))


def _decode(reader: VideoReader, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Every frame of ``reader`` cropped to ``size`` (H, W); the reader raises VideoDecodeError,
    naming the file, when fewer frames decode than its packets promise."""
    for frame in reader:
        yield frame[: size[0], : size[1]]


def _pad_even(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        height, width = frame.shape[:2]
        yield cv2.copyMakeBorder(frame, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)


def _write(frames: Iterable[np.ndarray], path: Path, fps: float, crf: int | None) -> int:
    """Store frames: H.264 ``yuv420p`` at ``crf`` (even sizes), or lossless RGB when ``crf`` is None."""
    options = {"lossless": True} if crf is None else {"crf": crf, "preset": ENCODE_PRESET}
    with VideoWriter(path, fps, **options) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written


@contextmanager
def _scratch_file(folder: Path) -> Iterator[Path]:
    """A temporary ``.mp4`` path in ``folder``, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix=".perturb-", suffix=".mp4", dir=folder)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _read_back(path: Path, written: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The frames of an encode step's file, cropped back to ``size``; VideoDecodeError if any is lost."""
    reader = VideoReader(path)
    if reader.num_frames != written:
        raise VideoDecodeError(f"{path}: {reader.num_frames} frames after encoding {written}")
    yield from _decode(reader, size)


def _encoded(
    frames: Iterable[np.ndarray], crf: int, fps: float, size: tuple[int, int], folder: Path
) -> Iterator[np.ndarray]:
    """``frames`` after an H.264 round trip at ``crf`` through a temporary file in ``folder``."""
    with _scratch_file(folder) as path:
        written = _write(_pad_even(frames), path, fps, crf)
        yield from _read_back(path, written, size)


def _through(
    frames: Iterable[np.ndarray],
    segments: Iterable[tuple[tuple[Step, ...], Step | None]],
    rng: np.random.Generator,
    fps: float,
    size: tuple[int, int],
    folder: Path,
) -> Iterable[np.ndarray]:
    """``frames`` through chain segments: each segment's frame steps, then its encode round trip."""
    for steps, encode in segments:
        frames = _apply(frames, steps, rng)
        if encode is not None:
            frames = _encoded(frames, int(encode.param), fps, size, folder)
    return frames


def resolve_chain(chain: Chain | str, seed: int, mix: int = 1) -> Chain:
    """``chain`` as a :class:`Chain`; ``"random"`` becomes :func:`random_chain` of ``mix`` types,
    drawn from a generator derived from ``seed`` (so ``"random"`` with seed s = its chain written out)."""
    if isinstance(chain, str) and chain.strip().lower() == "random":
        return random_chain(np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]), mix)
    return _as_chain(chain)


class PerturbingWriter:
    """Apply a chain to frames written one at a time and hand the result to ``sink`` (anything with
    ``write(frame)``, e.g. a :class:`~dftoolkit.video.VideoWriter`): the perturbation happens before
    the sink's one final encode.

    Frame steps before the chain's first encode step run as frames arrive. From the first encode step
    (VC, c23, c40) on, the clip is round-tripped through a temporary H.264 file in ``folder`` and the
    remaining steps reach ``sink`` when the writer is closed. Random steps (BW, GNC) draw from one
    generator seeded by ``seed``. Use as a context manager; an error discards the temporary file.
    """

    def __init__(self, chain: Chain | str, sink, *, fps: float, seed: int, folder: str | os.PathLike[str]):
        self.chain = _as_chain(chain)
        self._sink = sink
        self._fps = fps
        self._folder = Path(folder)
        self._rng = np.random.default_rng(seed)
        (self._steps, self._encode), *self._rest = self.chain.segments()
        self._stack = ExitStack()
        self._scratch: Path | None = None
        self._writer: VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> PerturbingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._stack.__exit__(exc_type, exc, tb)

    def write(self, frame: np.ndarray) -> None:
        """Perturb one ``(H, W, 3)`` uint8 RGB frame and pass it on (or to the encode step's file)."""
        (frame,) = _apply([frame], self._steps, self._rng)
        if self._encode is None:
            self._sink.write(frame)
            return
        if self._writer is None:
            self._size = frame.shape[:2]
            self._folder.mkdir(parents=True, exist_ok=True)
            self._scratch = self._stack.enter_context(_scratch_file(self._folder))
            crf = int(self._encode.param)
            self._writer = self._stack.enter_context(
                VideoWriter(self._scratch, self._fps, crf, ENCODE_PRESET)
            )
        (frame,) = _pad_even([frame])
        self._writer.write(frame)

    def close(self) -> None:
        """Finish the chain (the encode steps' round trips) and hand every frame to ``sink``."""
        with self._stack:
            if self._writer is None:
                return
            assert self._scratch is not None and self._size is not None
            self._writer.close()
            frames = _read_back(self._scratch, self._writer.frames_written, self._size)
            for frame in _through(frames, self._rest, self._rng, self._fps, self._size, self._folder):
                self._sink.write(frame)
            self._writer = None


def perturb_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    chain: Chain | str = "random",
    seed: int = 0,
    mix: int = 1,
    crf: int | None = None,
) -> str:
    """Perturb the video ``src`` into ``dst``; returns the chain applied (e.g. ``"CS:3 GB:2"``).

    Args:
        src: input video.
        dst: output video (container from the extension: ``.mp4``, ``.mkv``, ``.avi``...); written
            atomically: on any error ``dst`` is left as it was.
        chain: a :class:`Chain`, a chain string, or ``"random"``: :func:`random_chain` with ``mix``
            types, drawn from a generator derived from ``seed``.
        seed: seeds the random chain and the random steps (BW, GNC); a seed gives the same output
            as its random chain written out (``"random"`` with seed s = ``"BW:3"`` with seed s).
        mix: types in a random chain (1..4).
        crf: store the result as H.264 ``yuv420p`` at this crf instead of losslessly (RGB 4:4:4).
            Ignored when the chain ends with an encode step: that encode is the final store.

    The output has the input's frame count, size and frame rate. Raises FileNotFoundError or
    VideoDecodeError naming ``src`` for a missing, unreadable or truncated input.
    """
    if crf is not None and not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    chain = resolve_chain(chain, seed, mix)
    src, dst = Path(src), Path(dst)
    reader = VideoReader(src)
    fps, size = reader.fps, reader.shape[:2]
    rng = np.random.default_rng(seed)
    segments = chain.segments()
    *middle, (last_steps, last_encode) = segments
    store_crf = int(last_encode.param) if last_encode is not None else crf
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=dst.parent) as tmp:
        frames = _through(_decode(reader, size), middle, rng, fps, size, Path(tmp))
        frames = _apply(frames, last_steps, rng)
        odd = size[0] % 2 or size[1] % 2
        if store_crf is not None and odd:
            frames, store_crf = _encoded(frames, store_crf, fps, size, Path(tmp)), None
        _write(frames, dst, fps, store_crf)
    return str(chain)


def _output_relpath(relpath: str) -> str:
    path = Path(relpath)
    return relpath if path.suffix.lower() in _SAFE_SUFFIXES else path.with_suffix(".mp4").as_posix()


def _check_unique(values: list[str], what: str) -> None:
    repeated = sorted(value for value, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"two videos would get the same {what}: {', '.join(repeated[:5])}")


def perturb_manifest(
    manifest: Manifest,
    out_dir: str | os.PathLike[str],
    chain: Chain | str = "random",
    seed: int = 0,
    mix: int = 1,
    crf: int | None = None,
    dataset: str | None = None,
    suffix: str = "-perturbed",
) -> Manifest:
    """Perturb every video of ``manifest`` into ``out_dir``, a corpus in the toolkit's layout.

    Videos keep their relpaths under ``out_dir`` (under ``out_dir/<dataset>/`` when the manifest
    has several datasets; containers other than mp4/mkv/avi/mov become ``.mp4``); masks are copied
    unchanged. Each record keeps its ``video_id``; ``perturbation`` gets the chain applied (after
    any chain it already had); ``compression`` becomes ``c23``/``c40`` when the chain ends with
    one; ``frames``, ``fps``, ``width`` and ``height`` are probed from the output; the dataset is
    renamed to ``dataset`` or to its name plus ``suffix``. Each video's seed is
    :func:`video_seed` of ``seed`` and its id (with ``chain="random"``, each video draws its own).
    The new manifest is written to ``out_dir/manifest.parquet`` (read back by
    ``index_corpus("toolkit", out_dir)``) and returned.
    """
    if isinstance(chain, str) and chain.strip().lower() != "random":
        chain = Chain.parse(chain)
    out_dir = Path(out_dir)
    several = len(manifest.datasets) > 1
    plan = [
        (record, (f"{record.dataset}/" if several else "") + _output_relpath(record.relpath))
        for record in manifest
    ]
    _check_unique([relpath for _, relpath in plan], "output path")
    _check_unique([f"{dataset or r.dataset + suffix}/{r.video_id}" for r in manifest], "dataset/video_id")
    records = []
    for record, relpath in progress(plan, "perturbing"):
        prefix = f"{record.dataset}/" if several else ""
        applied = perturb_video(
            manifest.path_of(record), out_dir / relpath, chain, video_seed(seed, record.video_id), mix, crf
        )
        mask_relpath = None
        mask = manifest.mask_path_of(record)
        if mask is not None:
            mask_relpath = prefix + record.mask_relpath
            with atomic_path(out_dir / mask_relpath) as tmp:
                shutil.copyfile(mask, tmp)
        last = applied.split()[-1]
        info = probe(out_dir / relpath)
        records.append(
            record.replace(
                dataset=dataset or record.dataset + suffix,
                relpath=relpath,
                mask_relpath=mask_relpath,
                perturbation=" ".join(filter(None, [record.perturbation, applied])),
                compression=last if last in ("c23", "c40") else record.compression,
                frames=info.frames,
                frames_exact=info.frames_exact,
                fps=info.fps,
                width=info.width,
                height=info.height,
            )
        )
    result = Manifest(records, out_dir)
    result.write_parquet(out_dir / "manifest.parquet")
    return result
