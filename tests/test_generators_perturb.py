"""Post-processing perturbations on real sample media: directions, levels, chains, videos, CLI."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dftoolkit.cli.perturb import register
from dftoolkit.corpora import index_corpus
from dftoolkit.generators import perturb as P
from dftoolkit.generators.perturb import (
    PERTURBATIONS,
    RANDOM_TYPES,
    Chain,
    PerturbingWriter,
    Step,
    block_count,
    block_wise,
    color_contrast,
    color_saturation,
    describe_perturbations,
    down_up_scale,
    gaussian_blur,
    gaussian_noise_color,
    get_perturbation,
    list_perturbations,
    perturb_frames,
    perturb_video,
    random_blocks,
    random_chain,
    video_seed,
)
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoDecodeError, VideoReader, VideoWriter, probe

LEVELS = {name: PERTURBATIONS.get(name).levels for name in list_perturbations()}


@pytest.fixture(scope="module")
def frames(sample):
    """Two real frames: the carphone talking head (176x144) and the webcam portrait (160x120)."""
    return [
        VideoReader(sample("carphone_pristine")).read([40])[0],
        VideoReader(sample("jesper_webcam")).read([30])[0],
    ]


def _luma(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64) @ P._LUMA.astype(np.float64)


def _ycbcr(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64) @ P._RGB_TO_YCBCR.T


def _high_frequency_energy(frame: np.ndarray, cutoff: float = 0.1) -> float:
    """Mean spectral power of the luma above ``cutoff`` cycles per pixel."""
    luma = _luma(frame)
    power = np.abs(np.fft.fft2(luma - luma.mean())) ** 2
    radius = np.hypot(
        *np.meshgrid(np.fft.fftfreq(luma.shape[0]), np.fft.fftfreq(luma.shape[1]), indexing="ij")
    )
    return float(power[radius > cutoff].sum() / luma.size)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _decode(path) -> np.ndarray:
    return np.stack(list(VideoReader(path)))


def _strictly_decreasing(values) -> bool:
    return bool(np.all(np.diff(values) < 0))


# -- frame operations: direction and monotone strength ----------------------------------------


def test_table_matches_the_facts():
    assert list_perturbations() == sorted(["CS", "CC", "BW", "GNC", "GB", "JPEG", "VC", "c23", "c40"])
    assert list(describe_perturbations()) == list_perturbations() and all(describe_perturbations().values())
    assert LEVELS["CS"] == (0.4, 0.3, 0.2, 0.1, 0.0) and LEVELS["CC"] == (0.85, 0.725, 0.6, 0.475, 0.35)
    assert LEVELS["BW"] == (16, 32, 48, 64, 80) and LEVELS["GNC"] == (0.001, 0.002, 0.005, 0.01, 0.05)
    assert LEVELS["GB"] == (7, 9, 13, 17, 21) and LEVELS["JPEG"] == (2, 3, 4, 5, 6)
    assert LEVELS["VC"] == (30, 32, 35, 38, 40) and LEVELS["c23"] == (23,) and LEVELS["c40"] == (40,)


def test_colour_saturation_drops_to_greyscale(frames):
    for frame in frames:
        saturation = [cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)[..., 1].mean()]
        for factor in LEVELS["CS"]:
            out = color_saturation(frame, factor)
            assert out.shape == frame.shape and out.dtype == np.uint8
            assert np.abs(_luma(out) - _luma(frame)).max() <= 1.0  # luma kept
            chroma = _ycbcr(out)[..., 1:].std(axis=(0, 1))
            assert np.allclose(chroma, factor * _ycbcr(frame)[..., 1:].std(axis=(0, 1)), rtol=0.02, atol=0.3)
            saturation.append(cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[..., 1].mean())
        assert _strictly_decreasing(saturation) and saturation[-1] == 0
        grey = color_saturation(frame, LEVELS["CS"][-1])
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_colour_contrast_scales_the_image(frames):
    for frame in frames:
        spread = [_luma(frame).std()]
        for factor in LEVELS["CC"]:
            out = color_contrast(frame, factor)
            assert np.abs(out - factor * frame.astype(np.float64)).max() <= 0.5 + 1e-9
            spread.append(_luma(out).std())
        assert _strictly_decreasing(spread)
        assert spread[-1] / spread[0] == pytest.approx(LEVELS["CC"][-1], abs=0.01)


def test_block_wise_paints_the_right_number_of_grey_blocks(frames):
    assert [block_count(144, 176, p) for p in LEVELS["BW"]] == [16, 32, 48, 64, 80]
    assert block_count(720, 1280, 16) == 32 and block_count(1080, 1920, 80) == 320
    for frame in frames:
        height, width = frame.shape[:2]
        grey_pixels = []
        for param in LEVELS["BW"]:
            out = block_wise(frame, param, np.random.default_rng(7))
            corners = random_blocks(
                height, width, block_count(height, width, param), np.random.default_rng(7)
            )
            assert len(corners) == param
            inside = np.zeros((height, width), dtype=bool)
            for y, x in corners:
                assert (y + 8 <= height) and (x + 8 <= width)
                inside[y : y + 8, x : x + 8] = True
            assert (out[inside] == 128).all() and (out[~inside] == frame[~inside]).all()
            grey_pixels.append(inside.sum())
            assert inside.sum() <= 64 * param
        assert np.all(np.diff(grey_pixels) > 0)
    rng = np.random.default_rng(0)  # new places every frame
    assert not np.array_equal(block_wise(frames[0], 16, rng), block_wise(frames[0], 16, rng))


def test_gaussian_noise_has_the_specified_variance_in_ycbcr(frames):
    frame = frames[0]
    midtones = ((frame > 60) & (frame < 195)).all(axis=2)  # chosen by the input: no clipping bias
    assert midtones.sum() > 5000
    measured = []
    for variance in LEVELS["GNC"]:
        out = gaussian_noise_color(frame, variance, np.random.default_rng(1))
        noise = (_ycbcr(out) - _ycbcr(frame))[midtones] / 255.0
        measured.append(noise.var(axis=0))
        assert np.abs(noise.mean(axis=0)).max() < 0.1 * np.sqrt(variance) + 0.002
        if variance <= 0.005:  # higher levels clip at 0/255 even in midtones
            assert noise.var(axis=0) == pytest.approx([variance] * 3, rel=0.1)
    assert _strictly_decreasing(-np.asarray(measured).mean(axis=1))
    rng = np.random.default_rng(0)  # new noise every frame
    assert not np.array_equal(
        gaussian_noise_color(frame, 0.001, rng), gaussian_noise_color(frame, 0.001, rng)
    )


@pytest.mark.parametrize(("name", "op"), [("GB", gaussian_blur), ("JPEG", down_up_scale)])
def test_blur_and_down_scaling_remove_high_frequencies(frames, sample, name, op):
    screencast = VideoReader(sample("hello_720p")).read([30])[0]  # fine text: aliasing shows here
    for frame in [*frames, screencast]:
        energy = [_high_frequency_energy(frame)]
        for param in LEVELS[name]:
            out = op(frame, param)
            assert out.shape == frame.shape and out.dtype == np.uint8
            energy.append(_high_frequency_energy(out))
        assert _strictly_decreasing(energy)
        assert energy[-1] < 0.3 * energy[0]
        assert abs(out.astype(np.float64).mean() - frame.mean()) < 2.0  # brightness kept


def test_video_compression_lowers_psnr_with_the_level(sample, tmp_path):
    src = sample("carphone_pristine")
    original = _decode(src)
    psnr = {}
    for chain in ["c23", *(f"VC:{level}" for level in range(1, 6)), "c40"]:
        out = tmp_path / f"{chain.replace(':', '')}.mp4"
        assert perturb_video(src, out, chain) == chain
        info = probe(out)
        assert info.codec == "h264" and info.frames == len(original)
        psnr[chain] = _psnr(_decode(out), original)
    vc = [psnr[f"VC:{level}"] for level in range(1, 6)]
    assert _strictly_decreasing(vc)
    assert psnr["c23"] > vc[0] and psnr["c40"] < psnr["c23"] - 5
    assert psnr["c40"] == pytest.approx(psnr["VC:5"], abs=0.01)  # both crf 40
    assert psnr["c23"] < 45  # a real lossy encode, not a copy


# -- chains ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["CS:3 GB:2", "VC:4", "c23", "GB:2 c40", "BW:5 GNC:1 JPEG:3 CC:2 c23 CS:1"])
def test_chain_round_trip(text):
    chain = Chain.parse(text)
    assert str(chain) == text and Chain.parse(str(chain)) == chain
    assert all(isinstance(step, Step) for step in chain.steps)


def test_chain_parsing_details():
    assert str(Chain.parse("  cs:3\tgb:2 C40 jpeg:1 ")) == "CS:3 GB:2 c40 JPEG:1"
    chain = Chain.parse("GB:2 c40 CS:1")
    assert [s.param for s in chain.steps] == [9, 40, 0.4] and chain.video
    assert chain.segments() == [((Step("GB", 2),), Step("c40")), ((Step("CS", 1),), None)]
    assert Chain.parse("c23").segments() == [((), Step("c23"))]
    assert not Chain.parse("CS:1 BW:2").video


def test_get_perturbation_makes_steps_of_every_type():
    for name in list_perturbations():
        kind = PERTURBATIONS.get(name)
        step = get_perturbation(name, None if kind.fixed else len(kind.levels))
        assert step == Step.parse(str(step)) and step.type is kind
    assert Chain((get_perturbation("CS", 3), get_perturbation("c40"))) == Chain.parse("CS:3 c40")
    with pytest.raises(KeyError, match="unknown perturbation type 'XX'; known: BW"):
        get_perturbation("XX", 1)
    with pytest.raises(ValueError, match=r"level 1\.\.5"):
        get_perturbation("GB", 6)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("CS:3 XX:2", "XX:2"),
        ("GB", "GB"),
        ("GB:0", "GB:0"),
        ("CS:1 GB:6", "GB:6"),
        ("c23:1", "c23:1"),
        ("CS:x", "CS:x"),
        ("CS:3,GB:2", "CS:3,GB:2"),
        ("CS:-1", "CS:-1"),
    ],
)
def test_bad_chains_name_the_token(text, token):
    with pytest.raises(ValueError, match=f"step '{token}'"):
        Chain.parse(text)


def test_empty_chain_is_rejected():
    for text in ("", "   "):
        with pytest.raises(ValueError, match="empty perturbation chain"):
            Chain.parse(text)


def test_random_chains_are_deterministic_and_cover_all_types():
    draws = [str(random_chain(np.random.default_rng(3), mix=2)) for _ in range(3)]
    assert len(set(draws)) == 1
    rng = np.random.default_rng(0)
    chains = [random_chain(rng) for _ in range(300)]
    assert {s.name for c in chains for s in c.steps} == set(RANDOM_TYPES)
    assert {s.level for c in chains for s in c.steps} == {1, 2, 3, 4, 5}
    assert all(len(c) == 1 for c in chains)
    for mix in (2, 3, 4):
        mixed = [random_chain(rng, mix) for _ in range(50)]
        assert all(len(c) == mix and len({s.name for s in c.steps}) == mix for c in mixed)
        assert len({str(c) for c in mixed}) > 40
    for bad in (0, 5, True, 2.0):
        with pytest.raises(ValueError, match="mix must be"):
            random_chain(rng, bad)


def test_video_seeds():
    assert video_seed(0, "000_003") == video_seed(0, "000_003")
    assert len({video_seed(s, v) for s in (0, 1) for v in ("a", "b", "c")}) == 6


# -- frame streams ---------------------------------------------------------------------------


def test_perturb_frames_applies_left_to_right(frames):
    frame = frames[0]
    blocks_last = next(perturb_frames([frame], "GB:5 BW:5", seed=4))
    blur_last = next(perturb_frames([frame], "BW:5 GB:5", seed=4))
    painted = random_blocks(*frame.shape[:2], 80, np.random.default_rng(4))
    exact = [(blocks_last[y : y + 8, x : x + 8] == 128).all() for y, x in painted]
    assert all(exact)  # blocks painted after the blur stay flat grey
    assert sum((blur_last[y : y + 8, x : x + 8] == 128).all() for y, x in painted) < 0.5 * len(painted)
    assert np.array_equal(blur_last, gaussian_blur(block_wise(frame, 80, np.random.default_rng(4)), 21))


def test_perturb_frames_is_lazy_deterministic_and_rejects_encodes(frames):
    stream = perturb_frames(iter(frames), "BW:1 GNC:2", seed=5)
    first = next(stream)
    again = list(perturb_frames(frames, Chain.parse("BW:1 GNC:2"), seed=5))
    assert np.array_equal(first, again[0]) and len(again) == 2
    other = next(perturb_frames(frames, "BW:1 GNC:2", seed=6))
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError, match="VC:2 re-encode"):
        perturb_frames(frames, "CS:1 VC:2")
    with pytest.raises(ValueError, match="uint8 RGB"):
        next(perturb_frames([frames[0].astype(np.float32)], "CS:1"))


# -- videos ----------------------------------------------------------------------------------


def test_perturb_video_keeps_length_size_and_rate(sample, tmp_path):
    src = sample("jesper_webcam")  # MJPEG in AVI, 15 fps
    original = probe(src)
    out = tmp_path / "out" / "jesper.avi"
    assert perturb_video(src, out, "CS:3 GB:2") == "CS:3 GB:2"
    info = probe(out)
    assert (info.frames, info.width, info.height) == (original.frames, original.width, original.height)
    assert info.fps == pytest.approx(original.fps, rel=1e-3)
    decoded, source = _decode(out), _decode(src)
    expected = np.stack([gaussian_blur(color_saturation(f, 0.2), 9) for f in source])
    assert np.array_equal(decoded, expected)  # lossless store
    assert sorted(p.name for p in out.parent.iterdir()) == ["jesper.avi"]  # no temporary files left


def test_perturb_video_is_deterministic_for_a_seed(sample, tmp_path):
    src = sample("jesper_webcam")
    paths = [tmp_path / f"{name}.mp4" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (11, 11, 12), strict=True):
        assert perturb_video(src, path, "BW:2 VC:1 GNC:1", seed=seed) == "BW:2 VC:1 GNC:1"
    a, b, c = map(_decode, paths)
    assert len(a) == 68 and np.array_equal(a, b) and not np.array_equal(a, c)
    random_a = perturb_video(src, tmp_path / "r1.mp4", "random", seed=3, mix=2)
    random_b = perturb_video(src, tmp_path / "r2.mp4", "random", seed=3, mix=2)
    assert random_a == random_b and len(Chain.parse(random_a)) == 2
    assert np.array_equal(_decode(tmp_path / "r1.mp4"), _decode(tmp_path / "r2.mp4"))
    perturb_video(src, tmp_path / "explicit.mp4", random_a, seed=3)  # the same as writing it out
    assert np.array_equal(_decode(tmp_path / "r1.mp4"), _decode(tmp_path / "explicit.mp4"))
    other = random_chain(np.random.default_rng(np.random.SeedSequence(4).spawn(1)[0]), 2)
    assert perturb_video(src, tmp_path / "r3.mp4", "random", seed=4, mix=2) == str(other) != random_a


@pytest.mark.parametrize("chain", ["BW:2 VC:1 GNC:1", "GB:3 c40", "CS:2"])
def test_perturbing_writer_streams_what_perturb_video_writes(sample, tmp_path, chain):
    """Frames written one at a time through the chain (encode steps as round trips) and stored once
    equal perturb_video's lossless output for the same seed; its scratch files are removed."""
    src = sample("jesper_webcam")
    reference = tmp_path / "reference.mp4"
    if chain.endswith("c40"):  # perturb_video stores the final encode step as the file itself
        perturb_video(src, tmp_path / "steps.mp4", chain.removesuffix(" c40"), seed=5)
        perturb_video(tmp_path / "steps.mp4", reference, "c40", seed=5)
    else:
        perturb_video(src, reference, chain, seed=5)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sink = VideoWriter(tmp_path / "streamed.mp4", fps=15, lossless=True)
    with sink, PerturbingWriter(chain, sink, fps=15, seed=5, folder=scratch) as writer:
        for frame in _decode(src):
            writer.write(frame)
    assert np.array_equal(_decode(tmp_path / "streamed.mp4"), _decode(reference))
    assert not any(scratch.iterdir())


class _ListSink(list):
    def write(self, frame: np.ndarray) -> None:
        self.append(frame)


def test_perturbing_writer_discards_its_scratch_file_on_error(sample, tmp_path):
    sink = _ListSink()
    writer = PerturbingWriter("CS:1 VC:1", sink, fps=15, seed=0, folder=tmp_path)
    with pytest.raises(RuntimeError, match="boom"), writer:
        for frame in _decode(sample("jesper_webcam"))[:5]:
            writer.write(frame)
        assert len(list(tmp_path.iterdir())) >= 1  # the encode step's file is being written
        raise RuntimeError("boom")
    assert not sink and not any(tmp_path.iterdir())
    with PerturbingWriter("CS:1", sink, fps=15, seed=0, folder=tmp_path) as writer:  # no encode step:
        writer.write(_decode(sample("jesper_webcam"))[0])  # frames reach the sink as they come
        assert len(sink) == 1


def test_odd_sizes_and_crf(sample, tmp_path):
    frames = _decode(sample("carphone_pristine"))[:24, :143, :175]
    src = tmp_path / "odd.mkv"
    with VideoWriter(src, fps=25, lossless=True) as writer:
        writer.write_many(frames)
    cases = [
        ("VC:1 CS:2", None, lambda f: color_saturation(f, 0.3)),
        ("GB:1 c23", None, lambda f: gaussian_blur(f, 7)),
        ("CC:1", 30, lambda f: color_contrast(f, 0.85)),
    ]
    for chain, crf, frame_op in cases:
        out = tmp_path / f"{chain.replace(':', '').replace(' ', '')}.mp4"
        assert perturb_video(src, out, chain, crf=crf) == chain
        decoded = _decode(out)
        assert decoded.shape == frames.shape and probe(out).fps == pytest.approx(25)
        assert 28 < _psnr(decoded, np.stack([frame_op(f) for f in frames])) < 50  # lossy, but that chain
    even, carphone = tmp_path / "even.mp4", sample("carphone_pristine")
    perturb_video(carphone, even, "CC:1", crf=30)
    reference = np.stack([color_contrast(f, 0.85) for f in _decode(carphone)])
    assert probe(even).codec == "h264" and 28 < _psnr(_decode(even), reference) < 45


def test_bad_inputs_name_the_file_and_leave_nothing(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=r"nope\.mp4"):
        perturb_video(missing, tmp_path / "out.mp4", "CS:1")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(VideoDecodeError, match=r"corrupt\.mp4"):
        perturb_video(corrupt, tmp_path / "out.mp4", "CS:1")
    with pytest.raises(ValueError, match="step 'ZZ:1'"):
        perturb_video(corrupt, tmp_path / "out.mp4", "CS:1 ZZ:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4"]


def test_a_failure_midway_leaves_no_partial_output(sample, tmp_path, monkeypatch):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous result")
    calls = []

    def failing(frame, param, rng):
        calls.append(1)
        if len(calls) > 50:
            raise RuntimeError("boom")
        return frame

    monkeypatch.setitem(P._FRAME_OPS, "CS", failing)
    with pytest.raises(RuntimeError, match="boom"):
        perturb_video(sample("carphone_pristine"), dst, "GB:1 VC:1 CS:1")
    assert dst.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# -- command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep "perturb" a sub-command
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["perturb", *map(str, args)])


def test_cli_list_and_video(cli, sample, tmp_path):
    listed = cli("--list")
    assert listed.exit_code == 0
    for name in ("CS", "GNC", "JPEG", "VC", "c23", "c40", "0.475", "crf 30, 32, 35, 38, 40"):
        assert name in listed.stdout
    out = tmp_path / "v.mp4"
    result = cli(sample("carphone_pristine"), "--out", out, "--chain", "cs:3 gb:2", "--seed", 2)
    assert result.exit_code == 0 and f"{out}: CS:3 GB:2" in result.stdout
    assert probe(out).frames == 120
    random_run = cli(sample("carphone_pristine"), "--out", tmp_path / "r.mp4", "--random", "--mix", 3)
    assert random_run.exit_code == 0 and len(random_run.stdout.split(": ")[-1].split()) == 3
    bad = cli(sample("carphone_pristine"), "--out", out, "--chain", "CS:3 GB:9")
    assert bad.exit_code == 2 and "GB:9" in bad.stderr
    missing = cli(tmp_path / "missing.mp4", "--out", out)
    assert missing.exit_code == 2 and "missing.mp4" in missing.stderr
    both = cli(sample("carphone_pristine"), "--out", out, "--chain", "CS:1", "--random")
    assert both.exit_code == 2


def test_cli_on_a_manifest_writes_a_toolkit_corpus(cli, sample, tmp_path):
    src = tmp_path / "src"
    (src / "videos").mkdir(parents=True)
    (src / "masks").mkdir()
    shutil.copy(sample("carphone_pristine"), src / "videos/carphone.mp4")
    shutil.copy(sample("jesper_webcam"), src / "videos/jesper.avi")
    with VideoWriter(src / "masks/carphone.mp4", fps=30, crf=23) as writer:
        writer.write_many(np.zeros((4, 144, 176, 3), dtype=np.uint8))
    records = [
        VideoRecord(
            "mini",
            "carphone",
            "videos/carphone.mp4",
            1,
            method="swap",
            mask_relpath="masks/carphone.mp4",
            perturbation="CC:1",
        ),
        VideoRecord("mini", "jesper", "videos/jesper.avi", 0, method="real", split="test"),
    ]
    Manifest(records, src).write_parquet(src / "manifest.parquet")
    out = tmp_path / "out"
    result = cli(src / "manifest.parquet", "--out", out, "--random", "--mix", 2, "--seed", 9)
    assert result.exit_code == 0, result.output
    corpus = index_corpus("toolkit", out)
    assert [r.video_id for r in corpus] == ["carphone", "jesper"] and corpus.datasets == ["mini-perturbed"]
    fake, real = corpus
    assert fake.perturbation.startswith("CC:1 ") and len(fake.perturbation.split()) == 3
    assert len(real.perturbation.split()) == 2 and real.split == "test" and real.label == 0
    assert (out / fake.mask_relpath).read_bytes() == (src / "masks/carphone.mp4").read_bytes()
    for record, frames, size in [(fake, 120, (176, 144)), (real, 68, (160, 120))]:
        info = probe(corpus.path_of(record))
        assert (info.frames, (info.width, info.height)) == (frames, size) == (record.frames, size)
    again = tmp_path / "again"
    assert (
        cli(src / "manifest.parquet", "--out", again, "--mix", 2, "--seed", 9, "--dataset", "x").exit_code
        == 0
    )
    repeat = index_corpus("toolkit", again)
    assert repeat.datasets == ["x"] and [r.perturbation for r in repeat] == [r.perturbation for r in corpus]
    assert np.array_equal(_decode(repeat.path_of(repeat[1])), _decode(corpus.path_of(real)))
    expected = Chain.parse(real.perturbation)  # the per-video seed is derived from --seed and the id
    assert str(
        random_chain(np.random.default_rng(np.random.SeedSequence(video_seed(9, "jesper")).spawn(1)[0]), 2)
    ) == str(expected)
