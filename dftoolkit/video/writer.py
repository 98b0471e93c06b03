"""Writing videos (H.264 through PyAV) and frame folders, atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from dftoolkit.fileio import atomic_dir, atomic_path

__all__ = ["PIX_FMTS", "FrameDirWriter", "VideoWriter"]

PIX_FMTS = ("yuv420p", "yuv444p")


def _check_frame(frame: np.ndarray, shape: tuple[int, int] | None, where: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{where}: frames must be (H, W, 3) uint8 RGB, got {frame.dtype} {frame.shape}")
    if shape is not None and frame.shape[:2] != shape:
        raise ValueError(f"{where}: frame size {frame.shape[:2]} differs from the first frame's {shape}")
    return np.ascontiguousarray(frame)


class VideoWriter:
    """Write RGB frames to an H.264 video; the file appears under ``path`` only when closed cleanly.

    Args:
        path: output file; the container follows the extension (``.mp4``, ``.mkv``, ``.avi``).
        fps: frame rate in Hz.
        crf: x264 constant rate factor (0-51; 23 is FaceForensics++'s c23, 40 its c40).
        preset: x264 speed/size trade-off (``ultrafast`` ... ``veryslow``).
        lossless: exact RGB round trip (``libx264rgb`` at crf 0, RGB 4:4:4); ignores ``crf``.
        pix_fmt: ``"yuv420p"`` (the default, readable everywhere; needs even width and height) or
            ``"yuv444p"`` (no chroma subsampling; any size).

    Use as a context manager; an exception inside the block discards the partial file.
    x264's macroblock-tree rate control is off (``mbtree=0``): with it, this x264 build encodes the same
    frames differently from run to run (seen on 160x120 clips, threaded or not), and a seeded
    pipeline must write the same file twice. Everything else is x264's preset default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 25.0,
        crf: int = 23,
        preset: str = "veryfast",
        lossless: bool = False,
        pix_fmt: str = "yuv420p",
    ) -> None:
        if pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {PIX_FMTS}, got {pix_fmt!r}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {crf}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.lossless = lossless
        self.pix_fmt = pix_fmt
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._shape: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)

    def _open(self, height: int, width: int) -> None:
        if not self.lossless and self.pix_fmt == "yuv420p" and (height % 2 or width % 2):
            raise ValueError(
                f"{self.path}: H.264 in yuv420p needs even width and height, got {width}x{height}; "
                'crop or pad the frames, or use pix_fmt="yuv444p"'
            )
        tmp = self._stack.enter_context(atomic_path(self.path))
        container = av.open(str(tmp), mode="w")
        self._stack.callback(container.close)
        codec, pix_fmt, crf = (
            ("libx264rgb", "rgb24", 0) if self.lossless else ("libx264", self.pix_fmt, self.crf)
        )
        stream = container.add_stream(codec, rate=_rate(self.fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"crf": str(crf), "preset": self.preset, "x264-params": "mbtree=0"}
        self._container, self._stream, self._shape = container, stream, (height, width)

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        frame = _check_frame(frame, self._shape, str(self.path))
        if self._stream is None:
            self._open(*frame.shape[:2])
        assert self._container is not None and self._stream is not None
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames_written += 1

    def write_many(self, frames: np.ndarray) -> None:
        """Append ``(N, H, W, 3)`` uint8 RGB frames."""
        for frame in frames:
            self.write(frame)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            if self.frames_written == 0 and self._shape is None:
                self._stack.close()
                raise ValueError(f"{self.path}: no frames were written")
            return
        assert self._stream is not None
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container = self._stream = None
        self._stack.close()

    def _abort(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._container = self._stream = None
        self._stack.__exit__(exc_type, exc, tb)


def _rate(fps: float) -> av.utils.Fraction | int:
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


class FrameDirWriter:
    """Write frames as numbered images, ``%04d.png`` from 0 (the FaceForensics++ extraction layout).

    The folder appears under ``path`` only when closed cleanly (it replaces an older one).
    ``ext`` is ``png`` (lossless) or ``jpg`` (with ``jpeg_quality``).
    """

    def __init__(self, path: str | os.PathLike[str], ext: str = "png", jpeg_quality: int = 95) -> None:
        if ext not in ("png", "jpg"):
            raise ValueError(f"ext must be 'png' or 'jpg', got {ext!r}")
        self.path = Path(path)
        self.ext = ext
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext == "jpg" else []
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_dir(self.path))

    def __enter__(self) -> FrameDirWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def write(self, frame: np.ndarray) -> Path:
        """Write one ``(H, W, 3)`` uint8 RGB frame; returns its final path."""
        frame = _check_frame(frame, None, str(self.path))
        name = f"{self.frames_written:04d}.{self.ext}"
        if not cv2.imwrite(str(self._tmp / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), self._params):
            raise OSError(f"{self.path / name}: could not write image")
        self.frames_written += 1
        return self.path / name

    def close(self) -> None:
        self._stack.close()
