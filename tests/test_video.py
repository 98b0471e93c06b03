"""Video I/O on the real sample media: frame-exact reads, probing, writing, failure cases."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from dftoolkit.video import (
    FrameDirWriter,
    VideoDecodeError,
    VideoReader,
    VideoWriter,
    probe,
    sample_indices,
)

# H.264 mp4 with an edit list, MJPEG avi, MPEG-2 program stream, H.264 in avi, single-GOP H.264.
CODEC_SAMPLES = ["hello_720p", "jesper_webcam", "hello_480p", "hello_576p", "carphone_pristine"]


def _digest(frame: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _reference_digests(path) -> list[str]:
    """Every frame of a plain PyAV sequential decode, hashed (independent of VideoReader)."""
    with av.open(str(path)) as container:
        return [_digest(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def reference(sample):
    cache = {}

    def get(name):
        if name not in cache:
            path = sample(name)
            cache[name] = (path, _reference_digests(path))
        return cache[name]

    return get


@pytest.mark.parametrize("name", CODEC_SAMPLES)
@pytest.mark.parametrize(("strategy", "engine"), [("forward", "pyav"), ("seek", "pyav"), ("auto", "auto")])
def test_read_matches_sequential_decode(reference, name, strategy, engine):
    path, truth = reference(name)
    reader = VideoReader(path, strategy=strategy, engine=engine)
    assert reader.num_frames == len(truth)
    rng = np.random.default_rng(0)
    indices = np.concatenate(
        [sample_indices(len(truth), 32), rng.integers(0, len(truth), 8), [0, len(truth) - 1]]
    )
    rng.shuffle(indices)  # any order, repeats allowed
    frames = reader.read(indices)
    assert frames.shape == (len(indices), *reader.shape) and frames.dtype == np.uint8
    assert [_digest(f) for f in frames] == [truth[i] for i in indices]


@pytest.mark.parametrize("name", ["hello_480p", "jesper_webcam"])
@pytest.mark.parametrize("engine", ["auto", "pyav"])
def test_sequential_iteration_matches(reference, name, engine):
    path, truth = reference(name)
    assert [_digest(f) for f in VideoReader(path, engine=engine)] == truth


def test_probe_counts_decodable_frames_where_metadata_is_wrong(reference):
    # The 720p mp4's edit list hides its last packet: metadata says 250, 249 frames decode.
    path, truth = reference("hello_720p")
    exact, quick = probe(path), probe(path, exact=False)
    assert exact.frames == len(truth) == 249 and exact.frames_exact
    assert quick.frames == 250 and not quick.frames_exact
    assert (exact.width, exact.height, exact.codec) == (1280, 720, "h264")
    assert exact.fps == pytest.approx(30.12, abs=0.01) and exact.keyframes == 21


def test_probe_mpeg_without_frame_count(sample):
    info = probe(sample("hello_480p"))
    assert info.codec == "mpeg2video" and info.frames == 249 and info.frames_exact


def test_auto_seeks_when_it_saves_decoding(reference):
    path, truth = reference("vtest")  # 795 frames, keyframes every 250
    reader = VideoReader(path)
    plan = reader._plan(np.array([700, 701]))
    assert len(plan) == 1 and plan[0].seek and plan[0].start == 500
    frames = reader.read([701, 700])
    assert [_digest(f) for f in frames] == [truth[701], truth[700]]
    assert not VideoReader(path)._plan(sample_indices(795, 32))[0].seek  # 32 spread frames: decode through


def test_index_past_the_end(sample):
    reader = VideoReader(sample("carphone_pristine"))
    with pytest.raises(VideoDecodeError, match=r"carphone_pristine.*frame\(s\) 120.*beyond the last frame"):
        reader.read([5, 120])
    partial = reader.read_partial([5, 120, 7])
    assert partial.indices.tolist() == [5, 7] and partial.frames.shape[0] == 2
    assert set(partial.failed) == {120} and "has 120" in partial.failed[120]


def test_bad_indices(sample):
    reader = VideoReader(sample("carphone_pristine"))
    with pytest.raises(ValueError, match=">= 0"):
        reader.read([-1])
    with pytest.raises(TypeError):
        reader.read([1.5])
    assert reader.read([]).shape == (0, 144, 176, 3)


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.mp4"):
        VideoReader(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4"):
        VideoReader(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"junk\.mp4"):
        probe(junk)


@pytest.mark.parametrize("engine", ["auto", "pyav"])
def test_truncated_video_reports_lost_frames(sample, tmp_path, engine):
    # Cut an MJPEG AVI in half: the frames before the cut still decode, the rest are reported.
    source = sample("jesper_webcam")
    data = source.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut, engine=engine)
    result = reader.read_partial(range(68))
    assert 20 < len(result.indices) < 68
    assert set(result.failed) == set(range(68)) - set(result.indices.tolist())
    last = len(result.indices)  # the frame cut in the middle is flagged, not returned half-decoded
    assert result.failed[last] == "the frame's packet is corrupt or truncated"
    assert "beyond the last frame" in result.failed[67]
    full = VideoReader(source).read(result.indices)
    assert np.array_equal(result.frames, full)  # what decoded is right
    with pytest.raises(VideoDecodeError, match=r"cut\.avi"):
        reader.read(range(68))


def test_lossless_writer_round_trip(sample, tmp_path):
    frames = VideoReader(sample("carphone_pristine")).read(range(10))
    out = tmp_path / "lossless.mp4"
    with VideoWriter(out, fps=30, lossless=True) as writer:
        writer.write_many(frames)
    assert np.array_equal(VideoReader(out).read(range(10)), frames)
    assert probe(out).fps == pytest.approx(30)


def test_h264_writer_quality_follows_crf(sample, tmp_path):
    frames = VideoReader(sample("carphone_pristine")).read(range(30))
    psnr = {}
    for crf in (23, 40):
        out = tmp_path / f"c{crf}.mp4"
        with VideoWriter(out, fps=29.97, crf=crf) as writer:
            writer.write_many(frames)
        info = probe(out)
        assert (info.frames, info.width, info.height, info.codec) == (30, 176, 144, "h264")
        decoded = VideoReader(out).read(range(30)).astype(np.float64)
        psnr[crf] = 10 * np.log10(255**2 / np.mean((decoded - frames) ** 2))
    # RGB PSNR after 4:2:0 chroma subsampling: about 32 dB at c23, 24 dB at c40 on this clip.
    assert psnr[23] > 30 and 20 < psnr[40] < psnr[23] - 5


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "v.mp4"
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(RuntimeError), VideoWriter(out) as writer:
        writer.write(frame)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="even width and height"), VideoWriter(out) as writer:
        writer.write(np.zeros((65, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"), VideoWriter(out) as writer:
        writer.write(np.zeros((64, 64, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_frame_dir_writer(sample, tmp_path):
    import cv2

    frames = VideoReader(sample("carphone_pristine")).read([0, 50, 119])
    folder = tmp_path / "images" / "000"
    with FrameDirWriter(folder) as writer:
        for frame in frames:
            writer.write(frame)
        assert not folder.exists()  # appears only when complete
    assert sorted(p.name for p in folder.iterdir()) == ["0000.png", "0001.png", "0002.png"]
    back = cv2.cvtColor(cv2.imread(str(folder / "0002.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, frames[2])


def test_sample_indices_policies():
    even = sample_indices(249, 32)
    assert len(even) == 32 and even[0] == 0 and even[-1] == 248 and np.all(np.diff(even) > 0)
    assert sample_indices(10, 32).tolist() == list(range(10))
    assert sample_indices(100, None, "stride", stride=10, offset=3).tolist() == list(range(3, 100, 10))
    assert sample_indices(100, 4, "stride", stride=10).tolist() == [0, 10, 20, 30]
    assert sample_indices(100, 4, "segments").tolist() == [12, 37, 62, 87]
    random_a = sample_indices(100, 4, "segments", rng=1)
    assert random_a.tolist() == sample_indices(100, 4, "segments", rng=1).tolist()
    assert all(25 * k <= i < 25 * (k + 1) for k, i in enumerate(random_a))
    assert sample_indices(3, 8, "segments").tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_indices(5, policy="all").tolist() == [0, 1, 2, 3, 4]
    assert sample_indices(0, 32).tolist() == []
    with pytest.raises(ValueError, match="unknown sampling policy"):
        sample_indices(10, 4, "bogus")
