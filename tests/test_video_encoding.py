"""Reading a file's encoding back (``probe_encoding``) and the writer's pixel formats."""

from __future__ import annotations

import numpy as np
import pytest

from dftoolkit.video import VideoReader, VideoWriter, probe_encoding
from dftoolkit.video.probe import VideoDecodeError


def _clip(height: int, width: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * t, axis=1) for t in range(n)])


@pytest.mark.parametrize(
    ("options", "pix_fmt", "crf", "qp"),
    [
        ({"crf": 18}, "yuv420p", 18.0, None),
        ({"crf": 30, "pix_fmt": "yuv444p"}, "yuv444p", 30.0, None),
        ({"lossless": True}, "gbrp", None, 0),
    ],
)
def test_written_settings_are_read_back_from_the_stream(tmp_path, options, pix_fmt, crf, qp):
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=25, **options) as writer:
        writer.write_many(_clip(48, 64))
    encoding = probe_encoding(path)
    assert (encoding.codec, encoding.pix_fmt, encoding.crf, encoding.qp) == ("h264", pix_fmt, crf, qp)
    assert encoding.container.startswith("mov,mp4") and encoding.file_bytes == path.stat().st_size
    assert encoding.bit_rate and encoding.bit_rate > 0 and "rc=" in encoding.encoder_settings
    assert encoding.lossless == (qp == 0)
    assert ("lossless" in encoding.describe()) == (qp == 0)


def test_sample_encodings_differ_as_the_files_do(sample):
    """The samples' own codecs: what a corpus that keeps its source files would leak."""
    carphone = probe_encoding(sample("carphone_pristine"))
    assert carphone.codec == "h264" and carphone.pix_fmt == "yuv420p" and carphone.qp == 10
    webcam = probe_encoding(sample("jesper_webcam"))
    assert (webcam.container, webcam.codec, webcam.pix_fmt) == ("avi", "mjpeg", "yuvj422p")
    assert webcam.crf is None and webcam.encoder_settings is None


def test_odd_sizes_need_444_and_keep_their_size(tmp_path):
    frames = _clip(45, 61)
    with pytest.raises(ValueError, match='pix_fmt="yuv444p"'), VideoWriter(tmp_path / "a.mp4") as writer:
        writer.write(frames[0])
    with VideoWriter(tmp_path / "b.mp4", crf=12, pix_fmt="yuv444p") as writer:
        writer.write_many(frames)
    back = VideoReader(tmp_path / "b.mp4").read(range(6))
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).mean() < 6
    with pytest.raises(ValueError, match="pix_fmt"):
        VideoWriter(tmp_path / "c.mp4", pix_fmt="rgb24")


def test_unreadable_files_name_themselves(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4"):
        probe_encoding(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 2048)
    with pytest.raises(VideoDecodeError, match=r"junk\.mp4"):
        probe_encoding(tmp_path / "junk.mp4")
