"""Video metadata without decoding: frame count, rate, size, codec, keyframe layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import av
import numpy as np

from dftoolkit.errors import DftoolkitError

__all__ = [
    "PacketIndex",
    "VideoDecodeError",
    "VideoInfo",
    "check_decodable",
    "inspect_container",
    "open_video",
    "probe",
]


class VideoDecodeError(DftoolkitError, RuntimeError):
    """A video cannot be opened or decoded; the message names the file."""


def open_video(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open ``path`` with PyAV; FileNotFoundError or VideoDecodeError (naming the file) on failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot open as a video ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: contains no video stream")
    return container


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's frames in presentation order, from demuxing alone (no decoding).

    Attributes:
        pts: ``(N,)`` presentation timestamps of the N decodable frames, ascending
            (empty packets and packets the container marks as discarded are left out).
        dts: ``(N,)`` decoding timestamp of each frame's packet (its pts where the container
            gives none); MPEG-PS/TS demuxers seek on it.
        size: ``(N,)`` bytes of each frame's packet, to recognise the packet after a seek.
        keyframe: ``(N,)`` bool, frame is a keyframe (a place a decoder can start).
        corrupt: ``(N,)`` bool, the container flags the frame's packet as corrupt or truncated.
        error: why demuxing stopped early (a truncated or corrupt file), else None.
        decode_order: the timestamps follow decode order although the codec reorders frames
            (AVI stores no reordering: H.264 with B-frames), so they count the frames but do not
            say where each one is shown.
    """

    pts: np.ndarray
    dts: np.ndarray
    size: np.ndarray
    keyframe: np.ndarray
    corrupt: np.ndarray
    error: str | None = None
    decode_order: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @cached_property
    def position_of_pts(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.pts)}

    @cached_property
    def keyframe_positions(self) -> np.ndarray:
        return np.flatnonzero(self.keyframe)

    @classmethod
    def build(cls, container: av.container.InputContainer) -> PacketIndex | None:
        """Demux the first video stream; None when packets lack timestamps or repeat them."""
        stream = container.streams.video[0]
        rows: list[tuple[int, int, int, bool, bool]] = []  # pts, dts, size, keyframe, corrupt
        error = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    return None
                dts = packet.pts if packet.dts is None else packet.dts
                rows.append((packet.pts, dts, packet.size, packet.is_keyframe, packet.is_corrupt))
        except av.error.FFmpegError as err:
            error = f"demuxing stopped after {len(rows)} packets: {err}"
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
        decode_order = bool(stream.codec_context.has_b_frames) and bool(np.all(np.diff(table[:, 0]) > 0))
        table = table[np.argsort(table[:, 0], kind="stable")]
        if len(np.unique(table[:, 0])) != len(table):
            return None
        pts, dts, size, keyframe, corrupt = table.T
        return cls(pts, dts, size, keyframe.astype(bool), corrupt.astype(bool), error, decode_order)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video.

    ``frames`` is exact (decodable frames, counted from the packets) when ``frames_exact``;
    otherwise it comes from the container's metadata, which can be off (an mp4 edit list can
    hide a frame, AVI/MPEG headers may not say). ``fps`` is the average frame rate in Hz,
    ``duration`` in seconds (None when the container does not say).
    """

    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    duration: float | None
    keyframes: int | None
    frames_exact: bool


def inspect_container(
    container: av.container.InputContainer, path: str | os.PathLike[str], exact: bool = True
) -> tuple[VideoInfo, PacketIndex | None]:
    """Metadata of an open container, plus its packet index when ``exact`` and timestamps allow."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = float(container.duration / av.time_base) if container.duration else None
    index = PacketIndex.build(container) if exact else None
    if index is not None:
        frames, keyframes, frames_exact = index.num_frames, int(index.keyframe.sum()), True
    elif stream.frames:
        frames, keyframes, frames_exact = int(stream.frames), None, False
    else:
        frames, keyframes, frames_exact = round((duration or 0.0) * fps), None, False
    info = VideoInfo(
        path=str(path),
        frames=frames,
        fps=fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        duration=duration,
        keyframes=keyframes,
        frames_exact=frames_exact,
    )
    return info, index


def probe(path: str | os.PathLike[str], exact: bool = True) -> VideoInfo:
    """Read a video's metadata; with ``exact`` also demux it to count frames and keyframes.

    Demuxing reads the file but decodes nothing (milliseconds for a typical clip).
    """
    with open_video(path) as container:
        return inspect_container(container, path, exact)[0]


def check_decodable(path: str | os.PathLike[str]) -> None:
    """Decode the video's first frame and no more; VideoDecodeError naming the file when none does.

    For a header that opens but frames that do not decode (a garbled stream, a size the decoder
    refuses), which :func:`probe` alone cannot tell. The frame is not converted to RGB.
    """
    error: av.error.FFmpegError | None = None
    with open_video(path) as container:
        try:
            for packet in container.demux(container.streams.video[0]):
                try:
                    if packet.decode():
                        return
                except av.error.FFmpegError as err:  # try the next packet
                    error = error or err
        except av.error.FFmpegError as err:  # demuxing stopped
            error = error or err
    raise VideoDecodeError(f"{path}: no frame decodes" + (f" (decoder error: {error})" if error else ""))
