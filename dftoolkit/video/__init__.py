"""Video I/O: probing, frame-exact reading, sampling policies, H.264 and frame-folder writing."""

from dftoolkit.video.encoding import EncodingInfo, probe_encoding
from dftoolkit.video.probe import VideoDecodeError, VideoInfo, probe
from dftoolkit.video.reader import PartialRead, VideoReader
from dftoolkit.video.sampling import SAMPLING_POLICIES, ping_pong, sample_indices
from dftoolkit.video.writer import FrameDirWriter, VideoWriter

__all__ = [
    "SAMPLING_POLICIES",
    "EncodingInfo",
    "FrameDirWriter",
    "PartialRead",
    "VideoDecodeError",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "ping_pong",
    "probe",
    "probe_encoding",
    "sample_indices",
]
