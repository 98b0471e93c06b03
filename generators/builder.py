"""Build an SR-DF-style corpus from real videos: pairs x methods x blends x perturbations.

Output (the toolkit corpus layout, indexed back by ``index_corpus("toolkit", out_dir)``)::

    out_dir/
      manifest.parquet                      fakes and the originals they were made from
      originals/<video_id>.mp4              the real target videos, through the fakes' encoder
                                            (``originals="link"``: the source files, linked)
      originals/<video_id>-<tag>.mp4        perturbed copies of the reals (``perturb_reals``)
      videos/<method>/<blend>/<video_id>.mp4
      masks/<method>/<target>_<source>.mp4  manipulated region per frame (lossless, white = fake)
      provenance/<video_id>.json            how each video was made (its record included)
      sheets/<method>-<blend>-<pair>.png    original | fake | mask | difference (``sheets=True``)
      runs/<time>.json                      what each run did, failed and skipped, and why
      .work/                                face tracks and intermediate files

Honesty rules, so that a detector trained on the corpus learns forgery, not an accident:

- a fake is written only when its mask covers at least ``min_coverage`` of its frames (a label
  must be true of the frames it covers); the rest go to ``not_made`` with their numbers;
- fakes and reals go through one encoder (the same codec, pixel format and crf), perturbations are
  applied to the frames before that one final encode, and the reals get perturbed copies drawn from
  the same chain distribution as the fakes, so no file property predicts the label;
- every record's frame count, codec, pixel format, crf and bit rate are read back from the written
  file, never copied from what was intended.

A video is finished when its provenance file exists (written last, atomically), so a rerun skips
finished videos and redoes the rest; a killed run loses nothing that was finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dftoolkit import __version__
from dftoolkit.config import override, write_config
from dftoolkit.faces.tracking import FaceTrack, face_track
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.generators.base import BLENDS, Blend, get_blend, get_method
from dftoolkit.generators.config import BuildConfig
from dftoolkit.generators.material import face_patches
from dftoolkit.generators.perturb import Chain, PerturbingWriter, resolve_chain
from dftoolkit.locks import locks_output, remove_temporaries
from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.records import VideoRecord
from dftoolkit.report import face_crop
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video import VideoDecodeError, VideoReader, VideoWriter, probe, probe_encoding
from dftoolkit.workers import Outcome, Stage, check_engine, run_stage, runs_dir, write_run

__all__ = ["BuildReport", "Pair", "build_dataset", "choose_pairs", "perturbation_tag"]

MANIFEST = "manifest.parquet"
SHEET_FRAMES = 6
TEMPORARY_FOLDERS = ("videos", "originals", "masks", "provenance", "sheets", "runs", ".work")
"""Where a killed build leaves temporary files (besides ``manifest.parquet``'s, in the root)."""


@dataclass(frozen=True)
class Pair:
    """A target video (whose frames are manipulated) and a source video (identity or motion)."""

    target: VideoRecord
    source: VideoRecord
    split: str | None

    @property
    def name(self) -> str:
        return f"{self.target.video_id}_{self.source.video_id}"


def _identity(record: VideoRecord) -> str:
    return record.target_id or record.video_id


def choose_pairs(manifest: Manifest, seed: int = 0, per_target: int = 1) -> tuple[list[Pair], dict[str, str]]:
    """Source/target pairs from the real videos of ``manifest``, and the reals left unpaired (why).

    When ``manifest`` holds fakes with ``original_id`` and ``source_id`` (FaceForensics++ pairs),
    their pairs are reused with the fakes' splits: the source is the real video of the same
    dataset and compression whose ``target_id`` is the fake's ``source_id``. Otherwise each real
    gets ``per_target`` sources drawn (seeded) among reals of other identities and, when the target
    has a split, of the same split, so no identity crosses splits.
    """
    reals = sorted((r for r in manifest if r.label == 0), key=lambda r: r.key)
    by_key = {r.key: r for r in reals}
    official: dict[tuple, Pair] = {}
    for fake in sorted((r for r in manifest if r.label == 1), key=lambda r: r.key):
        target = by_key.get((fake.dataset, fake.original_id)) if fake.original_id else None
        if target is None or fake.source_id is None:
            continue
        sources = [
            r
            for r in reals
            if r.dataset == fake.dataset
            and r.target_id == fake.source_id
            and r.compression == fake.compression
        ]
        if sources:
            pair = Pair(target, sources[0], fake.split)
            official.setdefault((target.key, sources[0].key), pair)
    if official:
        paired = {p.target.key for p in official.values()}
        unpaired = {"/".join(r.key): "in no official pair" for r in reals if r.key not in paired}
        return list(official.values()), unpaired
    rng = np.random.default_rng(seed)
    pairs, unpaired = [], {}
    for target in reals:
        candidates = [
            r
            for r in reals
            if _identity(r) != _identity(target) and (target.split is None or r.split == target.split)
        ]
        if not candidates:
            unpaired["/".join(target.key)] = "no real video of another identity" + (
                f" in split {target.split!r}" if target.split else ""
            )
            continue
        picks = rng.choice(len(candidates), size=min(per_target, len(candidates)), replace=False)
        pairs += [Pair(target, candidates[int(k)], target.split) for k in sorted(picks)]
    return pairs, unpaired


def perturbation_tag(spec: str | None, index: int) -> str:
    """The video-id suffix of a perturbation spec: ``""`` for none, ``CS3-GB2`` for ``"CS:3 GB:2"``,
    ``rand<index>`` for a random spec."""
    if not spec or spec == "none":
        return ""
    if spec.startswith("random"):
        return f"rand{index}"
    return "-".join(token.replace(":", "") for token in spec.split())


def _seed(*parts: object) -> int:
    """A stable 32-bit seed from the parts (same on every machine and run)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


# -- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    """One video to write: its record (relpath, label...) and the perturbation spec (or None)."""

    record: VideoRecord
    perturbation: str | None
    seed: int

    @property
    def blend(self) -> str:
        """The blend of a fake (its method is ``<method>+<blend>``)."""
        assert self.record.method is not None
        return self.record.method.partition("+")[2]


@dataclass(frozen=True)
class _FakeJob:
    """Everything one worker needs to make the fakes of one (method, pair): picklable. ``seed``
    (from the build's seed, the method and the pair) seeds the blends that draw random numbers."""

    method: str
    method_options: dict[str, Any]
    blends: tuple[tuple[str, dict[str, Any]], ...]
    pair: Pair
    target_path: str
    source_path: str
    target_track: str
    source_track: str
    mask_relpath: str
    outputs: tuple[_Output, ...]
    out_dir: str
    crf: int | None
    min_coverage: float
    sheets: bool
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}/{self.pair.name}"


@dataclass(frozen=True)
class _RealJob:
    """One real video of the corpus: re-encoded (or linked) and its perturbed copies: picklable."""

    source: VideoRecord
    source_path: str
    outputs: tuple[_Output, ...]
    out_dir: str
    crf: int | None
    link: bool

    @property
    def name(self) -> str:
        return "/".join(self.source.key)


@dataclass
class BuildReport:
    """What a build did. ``manifest`` is the finished corpus (also in ``out_dir/manifest.parquet``).

    ``made`` counts fakes, ``reals`` the real videos written (re-encoded, linked or perturbed);
    ``not_made`` holds every planned fake that was not written and why (e.g. its coverage).
    """

    out_dir: Path
    manifest: Manifest | None = None
    made: int = 0
    reals: int = 0
    skipped_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_made: dict[str, str] = field(default_factory=dict)
    unpaired: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _TrackJob:
    """The face track of one real video, to cache at ``track_path``: picklable."""

    video_path: str
    track_path: str

    @property
    def name(self) -> str:
        return self.video_path


@dataclass(frozen=True)
class _Done:
    """What one job of the build wrote: ``made`` videos (``frames`` rendered frames for a fake), or,
    for a planned fake that was not written, why (``not_made``)."""

    made: int = 0
    frames: int = 0
    not_made: str | None = None


class BuildStage(Stage[_TrackJob | _FakeJob | _RealJob, _Done]):
    """One job of a build: a real's face track, the fakes of one (method, pair), or a real and its
    copies. Face models (``backend``) load in a worker when its first track job comes."""

    name = "generating"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.cascade = None

    def setup(self) -> None:
        cv2.setNumThreads(1)

    def run(self, job: _TrackJob | _FakeJob | _RealJob) -> _Done:
        if isinstance(job, _TrackJob):
            return self.track(job)
        return _fake_job(job) if isinstance(job, _FakeJob) else _real_job(job)

    def track(self, job: _TrackJob) -> _Done:
        if self.cascade is None:
            from dftoolkit.faces import DetectionCascade, get_backend

            self.cascade = DetectionCascade(get_backend(self.backend))
        track = face_track(job.video_path, self.cascade)
        _save_track(Path(job.track_path), track)
        return _Done(frames=len(track))

    def __getstate__(self) -> dict[str, Any]:  # workers get the settings, never loaded models
        return {"backend": self.backend, "cascade": None}


def _save_track(path: Path, track: FaceTrack) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, landmarks=track.landmarks, size=np.array([track.height, track.width]), fps=track.fps)


def _load_track(path: str | Path) -> FaceTrack:
    with np.load(path) as data:
        height, width = (int(v) for v in data["size"])
        return FaceTrack(data["landmarks"], height, width, float(data["fps"]))


def _track_file(out: Path, key: tuple[str, str]) -> Path:
    """Where the face track of the real video ``key`` (dataset, video_id) is cached."""
    return out / ".work" / "tracks" / key[0] / f"{key[1]}.npz"


def _unreadable_reals(manifest: Manifest, out: Path) -> dict[tuple[str, str], str]:
    """The real videos of ``manifest`` that cannot be opened as a video, and why (naming the file).

    A cheap check (the container's header, no decoding) before pairs are drawn, so that sources are
    drawn among readable reals; skipped for reals whose face track is already cached.
    """
    unreadable = {}
    for record in manifest:
        if record.label == 0 and not _track_file(out, record.key).exists():
            try:
                probe(manifest.path_of(record), exact=False)
            except (VideoDecodeError, OSError) as err:
                unreadable[record.key] = f"unreadable real video, no fake made with it: {err}"
    return unreadable


def _store_track(store, record: VideoRecord, video: Path) -> FaceTrack | None:
    """The track from a FaceStore that sampled every frame of the video (policy ``all``), else None."""
    if not store.has(record.dataset, record.video_id):
        return None
    reader = VideoReader(video)
    track = store.track(record.dataset, record.video_id)
    if not np.array_equal(track.frame_indices, np.arange(reader.num_frames)):
        return None
    return FaceTrack(track.landmarks, reader.shape[0], reader.shape[1], reader.fps)


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference, amplified 4x for the eye: ``(H, W, 3)`` uint8."""
    return np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * 4, 0, 255).astype(np.uint8)


def _writer(path: Path, fps: float, crf: int | None, height: int, width: int) -> VideoWriter:
    """The corpus's one encoder: H.264 at ``crf`` (``yuv420p``; ``yuv444p`` for odd sizes, which
    4:2:0 cannot hold), or lossless RGB when ``crf`` is None. Reals and fakes of a size get the same."""
    if crf is None:
        return VideoWriter(path, fps=fps, lossless=True)
    pix_fmt = "yuv444p" if height % 2 or width % 2 else "yuv420p"
    return VideoWriter(path, fps=fps, crf=crf, pix_fmt=pix_fmt)


def _chain(spec: str, seed: int) -> Chain:
    """The chain of a perturbation spec: itself, or for ``random``/``random:N`` one drawn from ``seed``."""
    kind, _, mix = spec.partition(":")
    return resolve_chain("random", seed, int(mix or 1)) if kind == "random" else resolve_chain(spec, seed)


def _open_outputs(
    stack: ExitStack,
    out: Path,
    outputs: Sequence[_Output],
    crf: int | None,
    fps: float,
    size: tuple[int, int],
) -> tuple[list[Any], list[str | None]]:
    """A sink per output (its final writer, behind a :class:`PerturbingWriter` when perturbed) and the
    chain each applies (None when clean), in the order of ``outputs``; ``size`` is ``(H, W)``."""
    sinks, chains = [], []
    for o in outputs:
        sink = stack.enter_context(_writer(out / o.record.relpath, fps, crf, *size))
        chain = None
        if o.perturbation is not None:
            chain = _chain(o.perturbation, o.seed)
            sink = stack.enter_context(
                PerturbingWriter(chain, sink, fps=fps, seed=o.seed, folder=out / ".work")
            )
        sinks.append(sink)
        chains.append(None if chain is None else str(chain))
    return sinks, chains


def _read_back(out: Path, record: VideoRecord) -> tuple[VideoRecord, dict[str, Any]]:
    """``record`` with frames, size, rate and compression read from its written file, and the
    file's encoding (:class:`~dftoolkit.video.EncodingInfo` as a dict)."""
    path = out / record.relpath
    info = probe(path)
    encoding = probe_encoding(path)
    if encoding.lossless:
        compression = "lossless"
    elif encoding.crf is not None:
        compression = f"crf{encoding.crf:g}"
    else:
        compression = record.compression
    record = record.replace(
        frames=info.frames,
        frames_exact=info.frames_exact,
        fps=info.fps,
        width=info.width,
        height=info.height,
        compression=compression,
    )
    return record, encoding.to_dict()


class _Uncovered(Exception):
    """A fake's mask covers too few frames; nothing of it is kept."""


def _fake_job(job: _FakeJob) -> _Done:
    """Worker: render the method once per frame, blend it every requested way, perturb, write."""
    out = Path(job.out_dir)
    try:
        target = _load_track(job.target_track)
        source_track = _load_track(job.source_track)
        for role, track in (("target", target), ("source", source_track)):
            if not track.found.any():
                return _Done(not_made=f"the {role} video has no face in any frame")
        found = int(target.found.sum())
        if found < job.min_coverage * len(target):
            return _Done(
                not_made=f"a face was found in only {found} of the target's {len(target)} frames "
                f"(at most {found / len(target):.3f} coverage < min_coverage {job.min_coverage})"
            )
        patches = face_patches(VideoReader(job.source_path), source_track)
        try:
            method = get_method(job.method, patches, target, **job.method_options)
        except ValueError as err:  # the material cannot drive this method (e.g. one source face)
            return _Done(not_made=str(err))
        blends = {name: _seeded_blend(name, options, job.seed) for name, options in job.blends}
        reader = VideoReader(job.target_path)
        wanted = set(np.linspace(0, len(target) - 1, SHEET_FRAMES).round().astype(int).tolist())
        kept: dict[str, list[np.ndarray]] = {"original": [], "mask": [], **{b: [] for b in blends}}
        manipulated = frames = 0
        with ExitStack() as stack:
            size = (target.height, target.width)
            sinks, chains = _open_outputs(stack, out, job.outputs, job.crf, target.fps, size)
            mask_writer = stack.enter_context(
                _writer(out / job.mask_relpath, target.fps, None, target.height, target.width)
            )
            for t, frame in enumerate(reader):
                rendered = method.render(t, frame)
                mask8 = np.round(rendered.mask * 255).astype(np.uint8)
                manipulated += bool(mask8.max() > 127)  # as the FaceStore reads masks
                mask_writer.write(np.repeat(mask8[..., None], 3, axis=2))
                keep = job.sheets and t in wanted
                fakes = {name: blend(rendered.image, frame, rendered.mask) for name, blend in blends.items()}
                for o, sink in zip(job.outputs, sinks, strict=True):
                    sink.write(fakes[o.blend])
                if keep:
                    for name, fake in fakes.items():
                        kept[name].append(fake)
                    kept["original"].append(frame)
                    kept["mask"].append(mask8)
                frames += 1
            if frames != len(target):
                raise RuntimeError(f"{job.target_path}: decoded {frames} frames, its track has {len(target)}")
            if manipulated < job.min_coverage * frames:  # discard every output of the pair
                raise _Uncovered(
                    f"the mask is empty in {frames - manipulated} of {frames} frames "
                    f"(coverage {manipulated / frames:.3f} < min_coverage {job.min_coverage})"
                )
        method.close()
        if job.sheets:  # one per blend, of the clean fake, named like it
            for name in blends:
                _sheet(out / "sheets" / f"{job.method}-{name}-{job.pair.name}.png", kept, name)
        coverage = {"manipulated_frames": manipulated, "coverage": manipulated / frames}
        for o, chain in zip(job.outputs, chains, strict=True):
            record, encoding = _read_back(out, o.record.replace(perturbation=chain, **coverage))
            if record.frames != frames:
                raise RuntimeError(
                    f"{out / record.relpath}: {record.frames} frames written, {frames} rendered"
                )
            extra = {
                "method": job.method,
                "method_params": method.params(),
                "blend": o.blend,
                "blend_params": blends[o.blend].params(),
                "seed": job.seed,
                "target": {"dataset": job.pair.target.dataset, "video_id": job.pair.target.video_id},
                "source": {"dataset": job.pair.source.dataset, "video_id": job.pair.source.video_id},
                "mask": job.mask_relpath,
            }
            _write_provenance(out, record, o, encoding, extra)
    except _Uncovered as uncovered:
        return _Done(not_made=str(uncovered))
    return _Done(made=len(job.outputs), frames=frames)


def _seeded_blend(name: str, options: dict[str, Any], seed: int) -> Blend:
    """The blend ``name``; one that draws random numbers (``idt``, ``sot``) is seeded by ``seed``
    unless ``options`` give its seed."""
    own = {"seed": seed} if "seed" in BLENDS.get(name).option_names() else {}
    return get_blend(name, **{**own, **options})


def _real_job(job: _RealJob) -> _Done:
    """Worker: write a real video through the corpus's encoder (or link it) and its perturbed copies."""
    out = Path(job.out_dir)
    source = Path(job.source_path)
    reader = VideoReader(source)
    encoded = [o for o in job.outputs if not (job.link and o.perturbation is None)]
    frames = 0
    with ExitStack() as stack:
        sinks, chains = _open_outputs(stack, out, encoded, job.crf, reader.fps, reader.shape[:2])
        if sinks:
            for frame in reader:
                for sink in sinks:
                    sink.write(frame)
                frames += 1
            if frames != reader.num_frames:  # a short decode must not become a short real
                raise VideoDecodeError(f"{source}: decoded {frames} of {reader.num_frames} frames")
    applied = dict(zip((o.record.video_id for o in encoded), chains, strict=True))
    for o in job.outputs:
        if o.record.video_id not in applied:
            _link_or_copy(source, out / o.record.relpath)
        record, encoding = _read_back(out, o.record.replace(perturbation=applied.get(o.record.video_id)))
        extra = {"source": {"dataset": job.source.dataset, "video_id": job.source.video_id}}
        extra["written"] = "linked" if o.record.video_id not in applied else "encoded"
        _write_provenance(out, record, o, encoding, extra)
    return _Done(made=len(job.outputs))


SHEET_SIDE = 160
"""Side in pixels of each frame of a fake's sheet: the square around the manipulated region."""


def _sheet(path: Path, kept: dict[str, list[np.ndarray]], blend: str) -> None:
    """Original | fake | mask | difference of the kept frames, each cut to the square around the
    union of their masks (1.6 times its longer side), so a small face in a large frame fills it."""
    fakes = kept[blend]
    rows = [
        ("original", kept["original"]),
        (f"fake ({blend})", fakes),
        ("mask", kept["mask"]),
        ("|fake - original| x4", [_difference(f, o) for f, o in zip(fakes, kept["original"], strict=True)]),
    ]
    ys, xs = np.nonzero(np.max(kept["mask"], axis=0) > 127)
    if len(xs):
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        rows = [(label, [face_crop(f, box, SHEET_SIDE, 1.6) for f in frames]) for label, frames in rows]
    write_png(path, contact_sheet(rows, height=SHEET_SIDE))


def _write_provenance(
    out: Path, record: VideoRecord, output: _Output, encoding: dict[str, Any], extra: dict[str, Any]
) -> None:
    """``provenance/<video_id>.json``: the record, how it was made, and its encoding as read back."""
    data = {
        "record": record.to_dict(),
        "perturbation": record.perturbation,
        "perturbation_seed": output.seed if output.perturbation else None,
        "original_id": record.original_id,
        "frames": record.frames,
        "manipulated_frames": record.manipulated_frames,
        "coverage": record.coverage,
        "encoding": encoding,
        "tool": f"dftoolkit {__version__}",
        **extra,
    }
    atomic_write_text(
        out / "provenance" / f"{record.video_id}.json", json.dumps(data, indent=1, sort_keys=True)
    )


# -- the builder -----------------------------------------------------------------------------------


def _link_or_copy(src: Path, dest: Path) -> None:
    if dest.exists():
        return
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, tmp)


def _parse_spec(spec: str | None) -> str | None:
    return None if spec in (None, "", "none") else spec


def _done(out: Path, record: VideoRecord) -> bool:
    return (out / "provenance" / f"{record.video_id}.json").exists()


def _real_outputs(
    real: VideoRecord,
    source: Path,
    name: str,
    specs: Sequence[str | None],
    seed: int,
    link: bool,
    perturb_reals: bool,
) -> list[_Output]:
    """The corpus's copies of one real video: itself, and one perturbed copy per perturbation spec."""
    clean = VideoRecord(
        dataset=name,
        video_id=real.video_id,
        relpath=f"originals/{real.video_id}{source.suffix.lower() if link else '.mp4'}",
        label=0,
        method=real.method or "original",
        compression=real.compression,
        split=real.split,
        target_id=_identity(real),
    )
    outputs = []
    for k, spec in enumerate(specs):
        tag = perturbation_tag(spec, k)
        if spec is None:
            outputs.append(_Output(clean, None, _seed(seed, clean.video_id)))
        elif perturb_reals:
            video_id = f"{real.video_id}-{tag}"
            record = clean.replace(
                video_id=video_id, relpath=f"originals/{video_id}.mp4", original_id=real.video_id
            )
            outputs.append(_Output(record, spec, _seed(seed, video_id)))
    if not any(o.perturbation is None for o in outputs):  # every fake's original is in the corpus
        outputs.insert(0, _Output(clean, None, _seed(seed, clean.video_id)))
    return outputs


@locks_output("out_dir", "generate")
def build_dataset(
    real_manifest: Manifest,
    out_dir: str | os.PathLike[str],
    config: BuildConfig | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    engine: str = "local",
    report: BuildReport | None = None,
    **options: Any,
) -> Manifest:
    """Make fakes from the real videos of ``real_manifest`` into a toolkit corpus at ``out_dir``.

    For every pair (:func:`choose_pairs`) and method, each frame of the target is rendered once and
    blended every requested way; each blend is written clean and/or with each perturbation. Then the
    originals of the fakes made are written through the same encoder, with perturbed copies.

    A real that cannot be opened as a video goes to ``report.failed`` (its path and why) and pairs
    are drawn among the other reals (for a seed, the same readable files give the same pairs). A
    real whose face track fails later (e.g. it breaks mid-stream) fails every fake that needs it,
    naming the real and why; its partners are not redrawn.

    Each perturbation entry gives one fake per (method, pair, blend), applied to the frames before
    the final encode (encode steps such as ``c40`` are round trips inside the chain); with
    ``perturb_reals`` every original gets a copy per entry too (fixed chains as given, ``random``
    drawn per video from the same distribution), so the perturbation does not predict the label. A
    fake whose mask covers less than ``min_coverage`` of its frames is not written and goes to
    ``report.not_made`` with its numbers.

    Args:
        real_manifest: real videos (label 0); fakes in it only supply FF++-style pairs and splits.
        out_dir: the corpus folder (created; an existing build there is resumed). The resolved
            config is recorded in it (``config.yaml``, :func:`~dftoolkit.config.write_config`).
        config: what to build (:class:`~dftoolkit.generators.BuildConfig`; default: its defaults).
        store: a FaceStore whose landmarks to reuse for videos it sampled in full (policy ``all``).
        workers: processes (default: one per core).
        engine: a :data:`~dftoolkit.workers.ENGINES` name (:func:`~dftoolkit.workers.run_stage`).
        report: filled with what happened when given.
        **options: :class:`~dftoolkit.generators.BuildConfig` fields overriding ``config``'s, e.g.
            ``methods=["swap"], seed=3`` (:func:`~dftoolkit.config.override`).

    Returns:
        The corpus's :class:`Manifest` (reals and fakes), also written to ``out_dir/manifest.parquet``.

    One run at a time per ``out_dir``: it holds the folder's lock (:func:`~dftoolkit.locks.output_lock`)
    and first removes the temporary files a killed run left there.

    Raises:
        ValueError: settings no build could use (naming each), or no pair to draw.
    """
    config = override(config or BuildConfig(), options)
    check_engine(engine)
    methods, blends, perturbations, seed = config.methods, config.blends, config.perturbations, config.seed
    name, per_target, crf, min_coverage = config.name, config.per_target, config.crf, config.min_coverage
    method_options, blend_options, originals = config.method_options, config.blend_options, config.originals
    perturb_reals, backend, sheets = config.perturb_reals, config.backend, config.sheets
    start = time.perf_counter()
    out = Path(out_dir).absolute()
    remove_temporaries(out, TEMPORARY_FOLDERS)
    report = report if report is not None else BuildReport(out)
    report.out_dir = out
    for blend in blends:
        get_blend(blend, **blend_options.get(blend, {}))
    specs = [_parse_spec(p) for p in perturbations]
    write_config(out, config)
    unreadable = _unreadable_reals(real_manifest, out)
    report.failed.update({"/".join(key): why for key, why in unreadable.items()})
    pairs, report.unpaired = choose_pairs(
        real_manifest.filter(lambda r: r.key not in unreadable), seed, per_target
    )
    if not pairs:
        bad = f"; {len(unreadable)} unreadable, e.g. {next(iter(unreadable.values()))}" if unreadable else ""
        reasons = set(report.unpaired.values())
        if not reasons:
            why = "no readable real video (label 0) to pair"
        elif all(" in split " in reason for reason in reasons):
            why = (
                "each person is alone in their split: pairs are drawn within a split among other "
                "identities; split so that every split holds two or more people (e.g. other --ratios), "
                "or generate before splitting"
            )
        else:
            why = f"{'; '.join(sorted(reasons))}: pairs need real videos of two or more identities"
        raise ValueError(f"no source/target pair in the manifest ({len(real_manifest)} records{bad}): {why}")
    face_store = None
    if store is not None:
        from dftoolkit.preprocess.store import FaceStore

        face_store = FaceStore(store)

    # phase 1: face tracks of every real video involved
    reals = {p.target.key: p.target for p in pairs} | {p.source.key: p.source for p in pairs}
    track_path = {key: _track_file(out, key) for key in reals}
    track_jobs = []
    for key, record in sorted(reals.items()):
        path = track_path[key]
        if path.exists():
            continue
        video = real_manifest.path_of(record)
        from_store = _store_track(face_store, record, video) if face_store else None
        if from_store is not None:
            _save_track(path, from_store)
        else:
            track_jobs.append(_TrackJob(str(video), str(path)))

    # phase 2: the fakes, one job per (method, pair)
    fake_jobs, planned = [], []
    for pair in pairs:
        for method in methods:
            outputs = []
            for blend in blends:
                for k, spec in enumerate(specs):
                    tag = perturbation_tag(spec, k)
                    video_id = f"{method}-{blend}-{pair.name}" + (f"-{tag}" if tag else "")
                    record = VideoRecord(
                        dataset=name,
                        video_id=video_id,
                        relpath=f"videos/{method}/{blend}/{video_id}.mp4",
                        label=1,
                        method=f"{method}+{blend}",
                        split=pair.split,
                        target_id=_identity(pair.target),
                        source_id=_identity(pair.source),
                        original_id=pair.target.video_id,
                        mask_relpath=f"masks/{method}/{pair.name}.mp4",
                        perturbation=spec,
                    )
                    planned.append(record)
                    outputs.append(_Output(record, spec, _seed(seed, video_id)))
            todo = tuple(o for o in outputs if not _done(out, o.record))
            report.skipped_done += len(outputs) - len(todo)
            if not todo:
                continue
            fake_jobs.append(
                _FakeJob(
                    method=method,
                    method_options=(method_options or {}).get(method, {}),
                    blends=tuple(
                        (b, (blend_options or {}).get(b, {})) for b in sorted({o.blend for o in todo})
                    ),
                    pair=pair,
                    target_path=str(real_manifest.path_of(pair.target)),
                    source_path=str(real_manifest.path_of(pair.source)),
                    target_track=str(track_path[pair.target.key]),
                    source_track=str(track_path[pair.source.key]),
                    mask_relpath=f"masks/{method}/{pair.name}.mp4",
                    outputs=todo,
                    out_dir=str(out),
                    crf=crf,
                    min_coverage=min_coverage,
                    sheets=sheets,
                    seed=_seed(seed, method, pair.name),
                )
            )

    # phase 3 (planned once the fakes are done): the originals of the fakes made, and their copies
    def real_jobs() -> list[_RealJob]:
        made = {f.original_id for f in planned if _done(out, f)}
        jobs = []
        for target in sorted({p.target.key: p.target for p in pairs}.values(), key=lambda r: r.key):
            if target.video_id not in made:
                continue
            source = real_manifest.path_of(target)
            outputs = _real_outputs(target, source, name, specs, seed, originals == "link", perturb_reals)
            planned.extend(o.record for o in outputs)
            todo = tuple(o for o in outputs if not _done(out, o.record))
            report.skipped_done += len(outputs) - len(todo)
            if todo:
                jobs.append(_RealJob(target, str(source), todo, str(out), crf, originals == "link"))
        return jobs

    failed_tracks: dict[str, str] = {}  # video path -> why its face track failed

    def ready_fake_jobs() -> list[_FakeJob]:
        """The fake jobs whose reals have face tracks; the others fail naming the real and why."""
        jobs = []
        for job in fake_jobs:
            roles = (("target", job.target_path), ("source", job.source_path))
            broken = [(role, path) for role, path in roles if path in failed_tracks]
            if broken:
                report.failed[f"{job.method}/{job.pair.name}"] = "; ".join(
                    f"the face track of its {role} real {path} failed: {failed_tracks[path]}"
                    for role, path in broken
                )
            else:
                jobs.append(job)
        return jobs

    outcomes = run_stage(
        BuildStage(backend),
        _phases(track_jobs, ready_fake_jobs, real_jobs),
        workers=workers,
        engine=engine,
        log_path=runs_dir(out) / "workers.log",
    )
    total = len(track_jobs) + len(fake_jobs) + len({p.target.key for p in pairs})  # at most one per target
    for outcome in progress(outcomes, "generating", total=total, count=_frames_of):
        job, done = outcome.job, outcome.result
        if outcome.error is not None:
            report.failed[job.name] = outcome.error
            if isinstance(job, _TrackJob):
                failed_tracks[job.name] = outcome.error.strip().splitlines()[-1]
        elif done.not_made is not None:
            report.not_made[job.name] = done.not_made
        elif isinstance(job, _FakeJob):
            report.made += done.made
            report.frames += done.frames
        elif isinstance(job, _RealJob):
            report.reals += done.made

    manifest = _collect(out, planned)
    manifest.write_parquet(out / MANIFEST)
    report.manifest = manifest
    report.seconds = time.perf_counter() - start
    write_run(
        out,
        {
            "made": report.made,
            "reals": report.reals,
            "skipped_already_done": report.skipped_done,
            "failed": report.failed,
            "not_made": report.not_made,
            "unpaired": report.unpaired,
            "frames": report.frames,
            "seconds": round(report.seconds, 3),
        },
    )
    return manifest


def _phases(
    tracks: list[_TrackJob], fakes: Callable[[], list[_FakeJob]], reals: Callable[[], list[_RealJob]]
) -> Iterator[list]:
    """The three phases; each after the first is planned only when the ones before have finished."""
    yield tracks
    yield fakes()
    yield reals()


def _frames_of(outcome: Outcome) -> int:
    """Rendered frames of a finished fake job (0 for the others)."""
    return outcome.result.frames if isinstance(outcome.job, _FakeJob) and outcome.result else 0


def _collect(out: Path, planned: list[VideoRecord]) -> Manifest:
    """The corpus's records: every planned video that is finished, reals first."""
    records = [
        VideoRecord(**json.loads((out / "provenance" / f"{r.video_id}.json").read_text())["record"])
        for r in planned
        if _done(out, r)
    ]
    return Manifest(sorted(records, key=lambda r: r.label), root=out)
