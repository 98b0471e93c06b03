"""How a video file is encoded, read back from the file itself (never from what was intended).

Used where the encoding is recorded (the generator's provenance) and where it must not predict a
label (the shortcut audit): container, codec, profile, pixel format, bit rate, file size and, for
x264 streams, the rate control written into the stream's settings SEI (``crf=18.0``, ``qp=0``).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from dftoolkit.video.probe import open_video

__all__ = ["EncodingInfo", "probe_encoding"]

# x264 writes its options as text into an SEI message of the first access unit.
_X264_SEI = re.compile(rb"x264 - core \d+[^\x00]*?options: ([ -~]+)")
_SEI_PACKETS = 4  # the settings SEI sits in the first packet; look a little further to be safe


@dataclass(frozen=True)
class EncodingInfo:
    """A video file's encoding as stored.

    Attributes:
        container: FFmpeg's demuxer name, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"avi"``.
        codec: decoder name, e.g. ``"h264"``, ``"mpeg2video"``, ``"mjpeg"``.
        profile: codec profile (``"High"``, ``"High 4:4:4 Predictive"``) or None.
        pix_fmt: pixel format, e.g. ``"yuv420p"``, ``"gbrp"`` (RGB), ``"yuvj422p"``.
        bit_rate: video bits per second (the stream's, else the container's), or None.
        file_bytes: size of the file in bytes.
        crf: x264's constant rate factor from the stream's settings, None if not x264 or not CRF.
        qp: x264's constant quantiser (``0`` for lossless), None if not used.
        encoder_settings: x264's option string, None for other encoders.
    """

    container: str
    codec: str
    profile: str | None
    pix_fmt: str | None
    bit_rate: int | None
    file_bytes: int
    crf: float | None
    qp: int | None
    encoder_settings: str | None

    @property
    def lossless(self) -> bool:
        """x264 at ``qp=0`` (what ``VideoWriter(lossless=True)`` writes)."""
        return self.qp == 0

    def describe(self) -> str:
        """One line, e.g. ``"h264 yuv420p crf 18 (1.2 Mbit/s)"``."""
        parts = [self.codec, self.pix_fmt or "?"]
        if self.lossless:
            parts.append("lossless")
        elif self.crf is not None:
            parts.append(f"crf {self.crf:g}")
        elif self.qp is not None:
            parts.append(f"qp {self.qp}")
        if self.bit_rate:
            parts.append(f"({self.bit_rate / 1e6:.2f} Mbit/s)")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _x264_settings(container: av.container.InputContainer) -> str | None:
    stream = container.streams.video[0]
    for count, packet in enumerate(container.demux(stream)):
        match = _X264_SEI.search(bytes(packet))
        if match:
            return match.group(1).decode("ascii")
        if count + 1 >= _SEI_PACKETS:
            break
    return None


def _setting(settings: str | None, name: str) -> str | None:
    if settings is None:
        return None
    match = re.search(rf"(?:^| ){name}=(\S+)", settings)
    return match.group(1) if match else None


def probe_encoding(path: str | os.PathLike[str]) -> EncodingInfo:
    """Read the encoding of ``path`` (demuxes at most a few packets; decodes nothing).

    Raises FileNotFoundError or :class:`~dftoolkit.video.VideoDecodeError` naming the file.
    """
    path = Path(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        settings = _x264_settings(container) if context.name == "h264" else None
        rate_control = _setting(settings, "rc")
        crf = _setting(settings, "crf") if rate_control == "crf" else None
        qp = _setting(settings, "qp") if rate_control == "cqp" else None
        return EncodingInfo(
            container=container.format.name,
            codec=context.name,
            profile=context.profile,
            pix_fmt=context.format.name if context.format is not None else None,
            bit_rate=stream.bit_rate or container.bit_rate or None,
            file_bytes=path.stat().st_size,
            crf=float(crf) if crf is not None else None,
            qp=int(float(qp)) if qp is not None else None,
            encoder_settings=settings,
        )
