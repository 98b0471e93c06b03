"""Damaged media, made at test time from a real sample: no frame is lost silently.

From carphone_pristine, a 48-frame H.264 mp4 (12-frame GOPs, B-frames, index at the front) is
written, then damaged: 4 KB of its mdat overwritten with random bytes, or the file cut at 60% of its
bytes. Beside them, a Matroska file whose header claims 16000x16000 rawvideo over 1 KB packets (no
frame decodes) and an audio-only file.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dftoolkit.corpora.base import ExpectedFolder, validate_layout
from dftoolkit.generators import build_dataset
from dftoolkit.generators.builder import BuildReport
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess import PreprocessConfig
from dftoolkit.preprocess.pipeline import process_video
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoDecodeError, VideoReader
from dftoolkit.video.reader import CORRUPT_PACKET

FRAMES = 48
GOP = 12


def _digest(frame: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _write_h264(path: Path, frames: np.ndarray) -> None:
    """H.264 with a keyframe every GOP frames, the mp4 index (moov) before the data."""
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        params = f"keyint={GOP}:min-keyint={GOP}:scenecut=0:mbtree=0"
        stream = container.add_stream("libx264", rate=25, options={"crf": "23", "x264-params": params})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_huge_header(path: Path) -> None:
    """Matroska whose stream claims 16000x16000 gray rawvideo; its three packets hold 1 KB each."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16000, 16000, "gray"
        for t in range(3):
            packet = av.Packet(rng.integers(0, 256, 1024, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, t, t, Fraction(1, 25)
            container.mux(packet)


def _write_audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = np.zeros((1, 8000), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def media(sample, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    paths = {name: folder / name for name in ("intact.mp4", "overwritten.mp4", "truncated.mp4")}
    _write_h264(paths["intact.mp4"], VideoReader(sample("carphone_pristine")).read(range(FRAMES)))
    data = paths["intact.mp4"].read_bytes()
    paths["truncated.mp4"].write_bytes(data[: len(data) * 6 // 10])
    mdat = data.index(b"mdat") + 4
    middle = (mdat + len(data)) // 2
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    paths["overwritten.mp4"].write_bytes(data[:middle] + noise + data[middle + 4096 :])
    paths["huge.mkv"] = folder / "huge.mkv"
    _write_huge_header(paths["huge.mkv"])
    paths["audio.mkv"] = folder / "audio.mkv"
    _write_audio_only(paths["audio.mkv"])
    return paths


def _pyav_decode(path: Path) -> dict[int, str]:
    """Frame index -> digest of every frame a plain PyAV decode returns, going on past packets that
    fail; a frame returned after a later one (out of order after the damage) does not count."""
    with av.open(str(path)) as container:
        pts = sorted(p.pts for p in container.demux(video=0) if p.size)
    rank, frames, previous = {p: i for i, p in enumerate(pts)}, {}, -1
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in decoded:
                if rank[frame.pts] > previous:
                    previous = rank[frame.pts]
                    frames[previous] = _digest(frame.to_ndarray(format="rgb24"))
    return frames


def _opencv_frame_count(path: Path) -> int:
    """Frames an OpenCV read loop returns (it stops at the first packet that fails to decode)."""
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def test_damaged_stream_returns_every_frame_pyav_decodes(media):
    # Old reader: the OpenCV pass stopped at the bad packet: 18 frames, 18-47 "no frame"; now 37.
    path = media["overwritten.mp4"]
    truth, intact = _pyav_decode(path), _pyav_decode(media["intact.mp4"])
    assert _opencv_frame_count(path) < len(truth) < FRAMES
    lost = sorted(set(range(FRAMES)) - set(truth))
    untouched = [i for i in truth if not lost[0] // GOP <= i // GOP <= lost[-1] // GOP]  # whole GOPs
    assert len(untouched) >= 2 * GOP
    for engine in ("auto", "pyav"):
        for strategy in ("auto", "forward", "seek"):
            reader = VideoReader(path, engine=engine, strategy=strategy)
            partial = reader.read_partial(range(FRAMES))
            assert partial.indices.tolist() == sorted(truth), (engine, strategy)
            got = dict(zip(partial.indices.tolist(), map(_digest, partial.frames), strict=True))
            assert [got[i] for i in untouched] == [intact[i] for i in untouched], (engine, strategy)
            assert sorted(partial.failed) == lost
            for i in lost:  # read alone, a lost frame is lost too; a decoded one reads the same
                assert reader.read_partial([i]).failed[i].startswith("decoder error: [Errno")
            assert [_digest(reader.read([i])[0]) for i in untouched[-3:]] == [
                intact[i] for i in untouched[-3:]
            ]


@pytest.mark.parametrize("name", ["overwritten.mp4", "truncated.mp4", "huge.mkv"])
@pytest.mark.parametrize("engine", ["auto", "pyav"])
def test_short_sequential_read_raises_after_yielding_what_decoded(media, name, engine):
    # Old reader (engine auto): iteration ended without an error (18 of 48, 22 of 25, 0 of 3 frames).
    path = media[name]
    reader = VideoReader(path, engine=engine)
    decoded = reader.read_partial(range(reader.num_frames)).indices.tolist()
    assert len(decoded) < reader.num_frames
    yielded = []
    with pytest.raises(
        VideoDecodeError, match=rf"{name}: .*\({len(decoded)} of {reader.num_frames} frames decoded\)"
    ):
        for index, _ in reader.iter_frames():
            yielded.append(index)
    assert yielded == decoded
    with pytest.raises(VideoDecodeError, match=name):
        list(reader)


def test_reasons_say_why_once(media):
    # Old reader: read() passed the reasons as decoder errors: "decoder error: decoder error: ...".
    reader = VideoReader(media["overwritten.mp4"])
    with pytest.raises(VideoDecodeError) as raised:
        reader.read(range(FRAMES))
    assert str(raised.value).count("decoder error") == 1 and "overwritten.mp4" in str(raised.value)
    huge = VideoReader(media["huge.mkv"])
    assert huge.shape == (16000, 16000, 3)
    assert set(huge.read_partial([0, 2, 3]).failed) == {0, 2, 3}
    with pytest.raises(
        VideoDecodeError, match=r"frame\(s\) 0, 3: decoder error: \[Errno [^:]*\] Invalid data"
    ):
        huge.read([3, 0])


def test_preprocess_fails_only_frames_that_did_not_decode(media, cascade):
    # Old mapping: every frame after OpenCV's stop was "corrupt_packet" ("corrupt" in its reason).
    config = PreprocessConfig(crops=("face",), policy="all")
    for name in ("overwritten.mp4", "truncated.mp4"):
        path = media[name]
        reader = VideoReader(path)
        partial = reader.read_partial(range(reader.num_frames))
        faces = process_video(VideoRecord("t", name[:-4], name, 0), path, None, config, cascade)
        assert faces.frame_indices.tolist() == list(range(reader.num_frames))
        for index, status, reason in zip(
            faces.frame_indices.tolist(), faces.status, faces.reason, strict=True
        ):
            if index in partial.failed:
                expected = "corrupt_packet" if partial.failed[index] == CORRUPT_PACKET else "decode_error"
                assert (status, reason) == (expected, partial.failed[index]), index
            else:
                assert status in ("ok", "no_face", "low_score"), (name, index, status)
        if name == "truncated.mp4":  # the packet cut by the truncation is flagged by the demuxer
            assert faces.status[-1] == "corrupt_packet"


def test_validate_probe_flags_files_whose_frames_do_not_decode(media):
    # Old probe opened the header only: the 16000x16000 file passed.
    root = media["intact.mp4"].parent
    (folder,) = validate_layout("damaged", root, [ExpectedFolder("")], probe=True).folders
    assert set(folder.undecodable) == {"huge.mkv", "audio.mkv"}  # the partly decodable files pass
    assert folder.undecodable["huge.mkv"].startswith(f"{media['huge.mkv']}: no frame decodes (decoder error:")
    assert "no video stream" in folder.undecodable["audio.mkv"]


@pytest.mark.parametrize("name", ["overwritten.mp4", "huge.mkv"])
def test_generate_records_a_damaged_original_and_makes_no_fake_of_it(media, samples_manifest, tmp_path, name):
    # Old: an 18-frame fake of the 48-frame original was made; the huge header gave "no face in
    # any frame" in not_made.
    damaged = Manifest(
        [VideoRecord("extra", "damaged", name, 0, target_id="someone")], root=media[name].parent
    )
    both = Manifest.concat([samples_manifest.filter(video_id="jesper_webcam"), damaged])
    report = BuildReport(tmp_path)
    manifest = build_dataset(both, tmp_path, methods=["swap"], blends=["naive"], workers=1, report=report)
    assert report.made == 0 and len(manifest) == 0 and not report.not_made
    counts = f"({len(_pyav_decode(media[name]))} of {VideoReader(media[name]).num_frames} frames decoded)"
    track = report.failed.pop(str(media[name]))
    assert f"VideoDecodeError: {media[name]}: could not read frame(s)" in track and counts in track
    assert set(report.failed) == {"swap/damaged_jesper_webcam", "swap/jesper_webcam_damaged"}
    for reason in report.failed.values():  # the fakes name the damaged video, not a cache file
        assert str(media[name]) in reason and counts in reason and ".work" not in reason
