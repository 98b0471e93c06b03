"""The SR-DF-style dataset builder on real sample videos: layout, fidelity, resume, determinism, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dftoolkit.cli import app
from dftoolkit.corpora import index_corpus
from dftoolkit.generators import build_dataset, choose_pairs
from dftoolkit.generators.builder import BuildReport, perturbation_tag
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoReader, VideoWriter

TWO = ("carphone_pristine", "jesper_webcam")
# both methods x two blends, clean and one perturbation, lossless so pixels compare exactly
BUILD = {
    "methods": ["swap", "reenact"],
    "blends": ["naive", "rct"],
    "perturbations": [None, "CS:5"],
    "seed": 3,
    "crf": None,
}


@pytest.fixture(scope="module")
def reals(samples_manifest) -> Manifest:
    return samples_manifest.filter(lambda r: r.video_id in TWO)


@pytest.fixture(scope="module")
def built(reals, tmp_path_factory):
    out = tmp_path_factory.mktemp("srdf")
    report = BuildReport(out)
    manifest = build_dataset(reals, out, **BUILD, workers=2, sheets=True, report=report)
    return out, manifest, report


def _frames(path) -> np.ndarray:
    return VideoReader(path).read(np.arange(VideoReader(path).num_frames))


def test_every_method_and_blend_is_written_with_its_original(built, reals):
    out, manifest, report = built
    fakes = [r for r in manifest if r.label == 1]
    assert report.made == len(fakes) == 2 * 2 * 2 * 2 and not report.failed
    assert {r.method for r in fakes} == {"swap+naive", "swap+rct", "reenact+naive", "reenact+rct"}
    assert {r.perturbation for r in fakes} == {None, "CS:5"}
    originals = {r.video_id: r for r in manifest if r.label == 0 and r.perturbation is None}
    assert set(originals) == set(TWO) and report.reals == 4
    perturbed = {r.video_id: r for r in manifest if r.label == 0 and r.perturbation is not None}
    assert perturbed.keys() == {f"{name}-CS5" for name in TWO}  # the reals get the fakes' chains too
    assert {r.perturbation for r in perturbed.values()} == {"CS:5"}
    # a perturbed copy names its original, so no split can put the two apart (a leak of the footage)
    assert {name: r.original_id for name, r in perturbed.items()} == {f"{name}-CS5": name for name in TWO}
    assert all(r.original_id is None for r in originals.values())
    for fake in fakes:
        original = originals[fake.original_id]
        target = VideoReader(out / original.relpath)
        video, mask = VideoReader(out / fake.relpath), VideoReader(out / fake.mask_relpath)
        assert video.num_frames == mask.num_frames == target.num_frames == fake.frames
        assert video.shape == mask.shape == target.shape
        assert fake.target_id == original.target_id != fake.source_id


def test_fake_equals_original_outside_the_mask_and_differs_inside(built):
    out, manifest, _ = built
    originals = {r.video_id: r for r in manifest if r.label == 0 and r.perturbation is None}
    for fake in manifest.filter(label=1, perturbation=None):
        fake_frames = _frames(out / fake.relpath)
        real = _frames(out / originals[fake.original_id].relpath)
        masks = _frames(out / fake.mask_relpath)[..., 0]
        assert (masks > 0).mean(axis=(1, 2)).min() > 0.02, f"{fake.video_id}: a frame without mask"
        outside = masks == 0
        if fake.method.endswith("naive"):
            assert np.array_equal(fake_frames[outside], real[outside]), fake.video_id
        inside = masks == 255
        diff = np.abs(fake_frames.astype(int) - real.astype(int))[inside].mean()
        assert diff > 3, f"{fake.video_id}: inside the mask the fake is the original"


def test_perturbed_fakes_record_their_chain_and_lose_saturation(built):
    out, manifest, _ = built
    for fake in manifest.filter(label=1, perturbation="CS:5"):
        clean = fake.video_id.removesuffix("-CS5")
        frames = _frames(out / fake.relpath).astype(int)
        assert np.abs(frames - frames[..., :1]).max() <= 2, "CS level 5 is greyscale"
        provenance = json.loads((out / "provenance" / f"{fake.video_id}.json").read_text())
        assert provenance["perturbation"] == "CS:5" and provenance["record"]["video_id"] == fake.video_id
        assert (out / "provenance" / f"{clean}.json").exists()


def test_provenance_sheets_and_toolkit_index(built):
    out, manifest, _ = built
    indexed = index_corpus("toolkit", out)
    assert sorted(r.key for r in indexed) == sorted(r.key for r in manifest)
    fake = next(r for r in manifest if r.label == 1 and r.method == "swap+rct" and r.perturbation is None)
    provenance = json.loads((out / "provenance" / f"{fake.video_id}.json").read_text())
    assert provenance["method"] == "swap" and provenance["blend"] == "rct"
    assert provenance["target"]["video_id"] == fake.original_id
    assert provenance["manipulated_frames"] == fake.manipulated_frames == fake.frames
    assert fake.coverage == provenance["coverage"] == 1.0 and fake.frames_exact
    assert provenance["tool"].startswith("dftoolkit ")
    sheet = out / "sheets" / f"{fake.video_id}.png"
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_fakes_and_redoes_lost_ones(built, reals):
    out, manifest, _ = built
    lost = next(r for r in manifest if r.label == 1 and r.method == "reenact+rct")
    (out / "provenance" / f"{lost.video_id}.json").unlink()
    (out / lost.relpath).unlink()
    report = BuildReport(out)
    again = build_dataset(reals, out, **BUILD, workers=1, report=report)
    assert report.made == 1 and report.skipped_done == len(manifest) - 1
    assert sorted(r.key for r in again) == sorted(r.key for r in manifest)
    assert (out / lost.relpath).is_file()


def test_same_seed_same_corpus(built, reals, tmp_path):
    out, manifest, _ = built
    other = build_dataset(reals, tmp_path, methods=["swap"], blends=["naive"], seed=3, crf=None, workers=1)
    (fake,) = other.filter(label=1, original_id="carphone_pristine")
    twin = next(r for r in manifest if r.video_id == fake.video_id)
    assert fake == twin.replace(perturbation=None)
    assert np.array_equal(_frames(tmp_path / fake.relpath), _frames(out / twin.relpath))


def test_build_seed_seeds_the_random_blends(reals, tmp_path):
    """The build's seed reaches the blends that draw random numbers: two seeds, other sot pixels."""
    fakes, params = [], []
    for seed in (1, 2):
        out = tmp_path / str(seed)
        built = build_dataset(reals, out, methods=["swap"], blends=["sot"], seed=seed, crf=None, workers=1)
        (fake,) = built.filter(label=1, original_id="carphone_pristine")
        fakes.append(_frames(out / fake.relpath))
        provenance = json.loads((out / "provenance" / f"{fake.video_id}.json").read_text())
        params.append(provenance["blend_params"]["seed"])
    assert params[0] != params[1]
    assert not np.array_equal(*fakes)


def test_faceless_target_is_not_labelled_fake(reals, sample, tmp_path):
    """A real video without a face (the slides of the hello_720p screencast, cropped away from the
    presenter) as a target gives no fake, and the reason is recorded; its pair partner still works."""
    slides = VideoReader(sample("hello_720p")).read(np.arange(24))[:, 400:640, 800:1120]
    with VideoWriter(tmp_path / "slides.mp4", fps=25, lossless=True) as writer:
        writer.write_many(slides)
    faceless = VideoRecord("extra", "slides", "slides.mp4", 0, target_id="nobody")
    jesper = reals.filter(video_id="jesper_webcam")
    both = Manifest.concat([jesper, Manifest([faceless], root=tmp_path)])
    report = BuildReport(tmp_path / "out")
    manifest = build_dataset(
        both, tmp_path / "out", methods=["swap"], blends=["naive"], workers=1, report=report
    )
    assert {r.original_id for r in manifest if r.label == 1} == set()
    assert set(report.not_made) == {"swap/jesper_webcam_slides", "swap/slides_jesper_webcam"}
    assert report.not_made["swap/slides_jesper_webcam"] == "the target video has no face in any frame"
    run = json.loads(sorted((tmp_path / "out" / "runs").glob("*.json"))[-1].read_text())
    assert run["not_made"] == report.not_made


def _record(video_id, label=0, **fields) -> VideoRecord:
    return VideoRecord("ffpp", video_id, f"{video_id}.mp4", label, **fields)


def test_official_pairs_and_their_splits_are_reused():
    records = [
        _record("youtube-c23-000", method="youtube", compression="c23", split="train", target_id="000"),
        _record("youtube-c23-003", method="youtube", compression="c23", split="train", target_id="003"),
        _record("youtube-c23-010", method="youtube", compression="c23", split="test", target_id="010"),
        _record("youtube-c40-000", method="youtube", compression="c40", split="train", target_id="000"),
    ]
    pair = {"compression": "c23", "split": "train", "target_id": "000", "source_id": "003"}
    records += [
        _record("Deepfakes-c23-000_003", 1, method="Deepfakes", original_id="youtube-c23-000", **pair),
        _record("FaceSwap-c23-000_003", 1, method="FaceSwap", original_id="youtube-c23-000", **pair),
    ]
    pairs, unpaired = choose_pairs(Manifest(records, root="/x"))
    assert [(p.target.video_id, p.source.video_id, p.split) for p in pairs] == [
        ("youtube-c23-000", "youtube-c23-003", "train")
    ]
    assert set(unpaired) == {"ffpp/youtube-c23-003", "ffpp/youtube-c23-010", "ffpp/youtube-c40-000"}


def test_drawn_pairs_cross_identities_within_a_split():
    people = ["a", "a", "b", "c", "d"]
    splits = ["train", "train", "train", "test", "test"]
    records = [
        _record(f"v{i}", target_id=p, split=s) for i, (p, s) in enumerate(zip(people, splits, strict=True))
    ]
    pairs, unpaired = choose_pairs(Manifest(records, root="/x"), seed=1)
    assert not unpaired and len(pairs) == 5
    for pair in pairs:
        assert pair.target.target_id != pair.source.target_id
        assert pair.target.split == pair.source.split == pair.split
    assert pairs == choose_pairs(Manifest(records, root="/x"), seed=1)[0]
    lonely = [_record("v0", target_id="a", split="val"), _record("v1", target_id="b", split="test")]
    pairs, unpaired = choose_pairs(Manifest(lonely, root="/x"))
    assert not pairs and "split 'val'" in unpaired["ffpp/v0"]


def test_perturbation_tags():
    assert perturbation_tag(None, 0) == "" and perturbation_tag("none", 1) == ""
    assert perturbation_tag("CS:3 GB:2", 1) == "CS3-GB2" and perturbation_tag("random:2", 4) == "rand4"


def test_bad_arguments_fail_before_any_work(reals, tmp_path):
    with pytest.raises(ValueError, match="unknown manipulation method 'nope'"):
        build_dataset(reals, tmp_path, methods=["nope"])
    with pytest.raises(ValueError, match="unknown blend 'nope'"):
        build_dataset(reals, tmp_path, blends=["nope"])
    with pytest.raises(ValueError, match="no source/target pair"):
        build_dataset(reals.filter(video_id="jesper_webcam"), tmp_path)
    assert not (tmp_path / "manifest.parquet").exists()


def test_cli_generate_lists_and_builds(reals, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["generate", "--list"])
    assert listed.exit_code == 0 and "swap" in listed.stdout and "poisson" in listed.stdout
    path = tmp_path / "reals.parquet"
    reals.write_parquet(path)
    command = ["--quiet", "generate", str(path), "--out", str(tmp_path / "c"), "--methods", "swap"]
    result = runner.invoke(app, [*command, "--blends", "feather", "--workers", "1", "--sheets"])
    assert result.exit_code == 0, result.output
    assert "2 fake(s) and 2 real(s) made" in result.stdout
    assert len(list((tmp_path / "c" / "sheets").glob("*.png"))) == 2
    bad = runner.invoke(app, ["generate", str(path), "--out", str(tmp_path / "d"), "--set", "oops"])
    assert bad.exit_code == 2 and "expected NAME.KEY=VALUE" in bad.output


# -- honesty: coverage and one encoding for both classes ---------------------------------------------


def test_fake_under_min_coverage_is_not_written_and_says_why(samples_manifest, tmp_path):
    """Issue 11, fault 1: carphone_distorted (heavily compressed) shows a findable face in very few
    frames; a swap onto it was a video labelled fake whose frames were nearly all real."""
    reals = samples_manifest.filter(lambda r: r.video_id in ("carphone_distorted", "jesper_webcam"))
    report = BuildReport(tmp_path / "gated")
    manifest = build_dataset(
        reals, tmp_path / "gated", methods=["swap"], blends=["naive"], workers=1, report=report
    )
    reason = report.not_made["swap/carphone_distorted_jesper_webcam"]
    assert "of the target's 120 frames" in reason and "min_coverage 0.9" in reason
    assert not (
        tmp_path / "gated" / "videos" / "swap" / "naive" / "swap-naive-carphone_distorted_jesper_webcam.mp4"
    ).exists()
    assert not (tmp_path / "gated" / "masks" / "swap" / "carphone_distorted_jesper_webcam.mp4").exists()
    for fake in manifest.filter(label=1):
        masks = _frames(tmp_path / "gated" / fake.mask_relpath)[..., 0]
        manipulated = int((masks > 127).any(axis=(1, 2)).sum())
        assert fake.manipulated_frames == manipulated and fake.coverage == manipulated / fake.frames >= 0.9
    assert {r.video_id for r in manifest.filter(label=0)} == {"jesper_webcam"}  # only originals of fakes

    # with the gate off, the same fake is made and its measured coverage is the low one
    report = BuildReport(tmp_path / "open")
    opened = build_dataset(
        reals,
        tmp_path / "open",
        methods=["swap"],
        blends=["naive"],
        min_coverage=0.0,
        workers=1,
        report=report,
    )
    (low,) = opened.filter(label=1, original_id="carphone_distorted")
    masks = _frames(tmp_path / "open" / low.mask_relpath)[..., 0]
    assert low.manipulated_frames == int((masks > 127).any(axis=(1, 2)).sum()) < 0.9 * low.frames
    with pytest.raises(ValueError, match="min_coverage"):
        build_dataset(reals, tmp_path / "bad", methods=["swap"], min_coverage=1.5)


def test_reals_and_fakes_share_one_encoding_read_back_from_the_files(reals, tmp_path):
    """Issue 11, fault 2: perturbed fakes were lossless RGB 4:4:4 while the provenance said crf 18,
    and the reals kept their source codecs (MJPEG in AVI, H.264 in MP4)."""
    from dftoolkit.video import probe_encoding

    out = tmp_path / "c"
    manifest = build_dataset(
        reals, out, methods=["swap"], blends=["feather"], perturbations=[None, "random"], seed=1, workers=1
    )
    assert sorted(r.label for r in manifest) == [0, 0, 0, 0, 1, 1, 1, 1]
    seen = set()
    for record in manifest:
        encoding = probe_encoding(out / record.relpath)
        seen.add((encoding.container, encoding.codec, encoding.pix_fmt, encoding.crf, encoding.qp))
        provenance = json.loads((out / "provenance" / f"{record.video_id}.json").read_text())
        assert provenance["encoding"]["crf"] == encoding.crf == 18.0 and record.compression == "crf18"
        assert provenance["encoding"]["pix_fmt"] == encoding.pix_fmt
        assert provenance["record"] == record.to_dict() and record.frames_exact
    assert seen == {("mov,mp4,m4a,3gp,3g2,mj2", "h264", "yuv420p", 18.0, None)}
    perturbed = {r.label: r.perturbation for r in manifest if r.perturbation}
    assert set(perturbed) == {0, 1}  # both classes carry random chains
    for record in manifest.filter(lambda r: r.perturbation is not None):
        assert record.video_id.endswith("-rand1") and ":" in record.perturbation

    linked = build_dataset(
        reals, tmp_path / "l", methods=["swap"], blends=["feather"], originals="link", workers=1
    )
    for original in linked.filter(label=0):
        assert (tmp_path / "l" / original.relpath).samefile(
            reals.path_of(reals.filter(video_id=original.video_id)[0])
        )


def test_a_sheet_shows_the_manipulated_region_not_the_whole_frame(tmp_path):
    """A 40 px face in a 1280x720 frame fills the sheet's squares (about 1/1.6^2 of each)."""
    import cv2

    from dftoolkit.generators.builder import SHEET_SIDE, _sheet
    from dftoolkit.sheets import _LABEL_WIDTH

    frame = np.zeros((720, 1280, 3), np.uint8)
    mask = np.zeros((720, 1280), np.uint8)
    mask[300:340, 600:640] = 255
    kept = {"original": [frame] * 2, "naive": [frame] * 2, "mask": [mask] * 2}
    _sheet(tmp_path / "s.png", kept, "naive")
    sheet = cv2.imread(str(tmp_path / "s.png"), cv2.IMREAD_GRAYSCALE)
    rows = sheet.reshape(4, SHEET_SIDE + 2, -1)[:, :SHEET_SIDE, _LABEL_WIDTH:]
    assert rows.shape[2] == 2 * SHEET_SIDE  # two frames a row, each a square
    assert abs((rows[2] > 127).mean() - 1 / 1.6**2) < 0.03 and (rows[[0, 1, 3]] == 0).all()
