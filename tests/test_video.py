"""Video I/O on the real sample media and self-made clips: frame-exact reads, probing, writing,
failure cases."""

from __future__ import annotations

import hashlib
import shutil

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.manifest import Manifest
from dftoolkit.probing import probe_manifest
from dftoolkit.records import VideoRecord
from dftoolkit.samples import SAMPLES
from dftoolkit.video import (
    FrameDirWriter,
    VideoDecodeError,
    VideoReader,
    VideoWriter,
    ping_pong,
    probe,
    sample_indices,
)

# H.264 mp4 with an edit list, MJPEG avi, MPEG-2 program stream, H.264 in avi, single-GOP H.264.
CODEC_SAMPLES = ["hello_720p", "jesper_webcam", "hello_480p", "hello_576p", "carphone_pristine"]
ALL_SAMPLES = [s.stem for s in SAMPLES if s.is_video]

# Self-made clips with B-frames: name -> (encoder, file suffix, encoder options, codec attributes).
# 12-frame GOPs; open GOPs where the encoder has them; MPEG-PS/TS seek by bisecting the file.
_X26X = "bframes=3:keyint=12:min-keyint=12:scenecut=0"
CLIPS = {
    "h264-mp4": ("libx264", ".mp4", {"x264-params": _X26X + ":b-pyramid=normal"}, {}),
    "h264-open-gop-ts": ("libx264", ".ts", {"x264-params": _X26X + ":open-gop=1"}, {}),
    "h264-avi": ("libx264", ".avi", {"x264-params": _X26X}, {}),  # AVI: pts in decode order
    "hevc-open-gop-mkv": ("libx265", ".mkv", {"x265-params": _X26X + ":open-gop=1:log-level=error"}, {}),
    "mpeg2-ps": ("mpeg2video", ".mpg", {}, {"gop_size": 12, "max_b_frames": 2}),
    "mpeg2-ts": ("mpeg2video", ".ts", {}, {"gop_size": 12, "max_b_frames": 2}),
    "mpeg4-avi": ("mpeg4", ".avi", {}, {"gop_size": 12, "max_b_frames": 2}),
    "mpeg4-mp4": ("mpeg4", ".mp4", {}, {"gop_size": 12, "max_b_frames": 2}),
    "vp9-webm": ("libvpx-vp9", ".webm", {"auto-alt-ref": "1", "lag-in-frames": "16"}, {"gop_size": 12}),
}
CLIP_FRAMES = 40

runner = CliRunner()


def _digest(frame: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(frame).tobytes()).hexdigest()


def _reference_digests(path) -> list[str]:
    """Every frame of a plain PyAV sequential decode, hashed (independent of VideoReader)."""
    with av.open(str(path)) as container:
        return [_digest(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def _keyframes(path) -> list[int]:
    """Positions of the keyframes in a plain PyAV sequential decode."""
    with av.open(str(path)) as container:
        return [i for i, f in enumerate(container.decode(video=0)) if f.key_frame]


def _clip_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """``count`` distinct ``(H, W, 3)`` uint8 frames: a moving colour gradient plus seeded noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        gradient = np.stack([x * 4 + 7 * t, y * 5 + 3 * t, (x + y) * 2 + 11 * t], axis=-1) % 256
        frames.append(np.clip(gradient + rng.integers(0, 40, gradient.shape), 0, 255).astype(np.uint8))
    return frames


def _write_clip(path, encoder: str, options: dict[str, str], attributes: dict[str, int]) -> None:
    """Encode :func:`_clip_frames` at 25 fps with PyAV (not VideoWriter: any encoder and container)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for name, value in attributes.items():
            setattr(stream.codec_context, name, value)
        for frame in _clip_frames(CLIP_FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def reference(sample):
    cache = {}

    def get(name):
        if name not in cache:
            path = sample(name)
            cache[name] = (path, _reference_digests(path))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """``clip("mpeg2-ps")`` -> ``(path, digests of its sequential decode)``, written once; skips
    where this FFmpeg build lacks the encoder."""
    folder = tmp_path_factory.mktemp("clips")
    cache = {}

    def get(name):
        if name not in cache:
            encoder, suffix, options, attributes = CLIPS[name]
            try:
                av.codec.Codec(encoder, "w")
            except av.codec.codec.UnknownCodecError:
                pytest.skip(f"this FFmpeg build has no {encoder} encoder")
            path = folder / f"{name}{suffix}"
            _write_clip(path, encoder, options, attributes)
            cache[name] = (path, _reference_digests(path))
        return cache[name]

    return get


def _assert_each_frame_alone(path, truth: list[str], indices, strategy: str = "auto", engine: str = "auto"):
    """Every index read on its own (a fresh decode each) equals the sequential frame, bit for bit."""
    reader = VideoReader(path, strategy=strategy, engine=engine)
    wrong = [i for i in indices if _digest(reader.read([i])[0]) != truth[i]]
    assert not wrong, f"{path.name} ({strategy}/{engine}): frames {wrong} differ from a sequential decode"


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_frames_read_alone_match_sequential_decode(reference, name):
    # The last GOP of every video (hello_480p's MPEG-2 program stream: 240-248 read alone raised
    # "decoder returned no frame"), the frames either side of its first keyframes, both ends.
    path, truth = reference(name)
    keys = _keyframes(path)
    around = [i for k in keys[1:4] for i in (k - 1, k, k + 1)]
    indices = sorted({0, 1, len(truth) // 2, *around, *range(max(keys[-1], len(truth) - 12), len(truth))})
    for strategy, engine in [("auto", "auto"), ("seek", "pyav")]:
        _assert_each_frame_alone(path, truth, indices, strategy, engine)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SAMPLES)
@pytest.mark.parametrize(("strategy", "engine"), [("seek", "pyav"), ("auto", "auto")])
def test_every_frame_read_alone_matches_sequential_decode(reference, name, strategy, engine):
    path, truth = reference(name)
    _assert_each_frame_alone(path, truth, range(len(truth)), strategy, engine)


@pytest.mark.parametrize("name", ["hello_480p", "hello_720p", "vtest"])
def test_index_sets_across_gops_match(reference, name):
    path, truth = reference(name)
    keys, last = _keyframes(path), len(truth) - 1
    sets = [[last, 0], [keys[-1] - 1, keys[-1]], [last - 1, last], [keys[1] + 2, keys[-1] + 1, keys[1]]]
    rng = np.random.default_rng(1)
    sets += [rng.permutation(len(truth))[:5].tolist() for _ in range(4)]
    for strategy, engine in [("auto", "auto"), ("seek", "pyav")]:
        reader = VideoReader(path, strategy=strategy, engine=engine)
        for indices in sets:
            assert [_digest(f) for f in reader.read(indices)] == [truth[i] for i in indices], indices


@pytest.mark.parametrize("name", list(CLIPS))
def test_clips_with_b_frames_read_frame_exact(clip, name):
    path, truth = clip(name)
    assert len(truth) == CLIP_FRAMES and len(set(truth)) == CLIP_FRAMES  # every frame differs
    with av.open(str(path)) as container:  # the encoder really reordered frames (VP9: alt-refs)
        assert name.startswith("vp9") or container.streams.video[0].codec_context.has_b_frames
    info = probe(path)
    assert (info.frames, info.frames_exact) == (CLIP_FRAMES, True)
    for strategy, engine in [("auto", "auto"), ("seek", "pyav"), ("forward", "pyav"), ("forward", "auto")]:
        _assert_each_frame_alone(path, truth, range(CLIP_FRAMES), strategy, engine)
        reader = VideoReader(path, strategy=strategy, engine=engine)
        assert [_digest(f) for f in reader] == truth
        indices = np.random.default_rng(2).integers(0, CLIP_FRAMES, 12)
        assert [_digest(f) for f in reader.read(indices)] == [truth[i] for i in indices]


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


def test_probe_manifest_marks_container_estimates(sample):
    path = sample("hello_720p")  # metadata: 250 frames; 249 decode
    manifest = Manifest([VideoRecord("s", "hello_720p", path.name, 0)], root=path.parent)
    (estimated,), failures = probe_manifest(manifest, workers=1, exact=False)
    assert not failures and (estimated.frames, estimated.frames_exact) == (250, False)
    (exact,), _ = probe_manifest(manifest, workers=1)  # exact is the default
    assert (exact.frames, exact.frames_exact) == (249, True) == (VideoReader(path).num_frames, True)


def test_index_probe_and_info_say_which_counts_are_exact(sample, tmp_path):
    root = tmp_path / "corpus"
    (root / "real").mkdir(parents=True)
    shutil.copy(sample("hello_720p"), root / "real" / "hello_720p.mp4")
    shutil.copy(sample("carphone_pristine"), root / "real" / "carphone_pristine.mp4")
    out = tmp_path / "m.parquet"
    runs = {
        "--fast": ({250, 120}, False, "2 container estimates (may be off)"),
        None: ({249, 120}, True, "2 exact"),
    }
    for flag, (frames, exact, line) in runs.items():
        args = ["-q", "index", "folder", str(root), "-o", str(out), "--probe", "--workers", "1"]
        result = runner.invoke(app, [*args, flag] if flag else args)
        assert result.exit_code == 0, result.output
        manifest = Manifest.read_parquet(out)
        assert {r.frames for r in manifest} == frames and {r.frames_exact for r in manifest} == {exact}
        info = runner.invoke(app, ["info", str(out)])
        assert info.exit_code == 0 and f"frames: {line}\n" in info.stdout, info.stdout
    records = [VideoRecord("s", "a", "a.mp4", 0), VideoRecord("s", "b", "b.mp4", 0, frames=8)]
    Manifest(records, root=tmp_path).write_parquet(out)  # frames_exact unset: a hand-made CSV's count
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "frames: 1 of unrecorded origin, 1 not probed\n" in info.stdout


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


def test_ping_pong_plays_forward_then_backward():
    assert ping_pong(np.arange(10), 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert ping_pong(np.arange(5), 1).tolist() == [0] * 5
    assert int(ping_pong(7, 3)) == 1
    with pytest.raises(ValueError, match="at least one item"):
        ping_pong(0, 0)
