"""Build an SR-DF-style corpus from real videos: pairs x methods x blends x perturbations.

Output (the toolkit corpus layout, indexed back by ``index_corpus("toolkit", out_dir)``)::

    out_dir/
      manifest.parquet                      fakes and the originals they were made from
      originals/<video_id>.<ext>            the real target videos (hard links when possible)
      videos/<method>/<blend>/<video_id>.mp4
      masks/<method>/<target>_<source>.mp4  manipulated region per frame (lossless, white = fake)
      provenance/<video_id>.json            how each fake was made (its record included)
      sheets/<method>-<blend>-<pair>.png    original | fake | mask | difference (``sheets=True``)
      runs/<time>.json                      what each run did, failed and skipped, and why
      .work/                                face tracks and intermediate files

A fake is finished when its provenance file exists (written last, atomically), so a rerun skips
finished fakes and redoes the rest; a killed run loses nothing that was finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dftoolkit import __version__
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.generators.base import FaceTrack, get_blend, get_method
from dftoolkit.generators.material import face_patches, face_track
from dftoolkit.generators.perturb import perturb_video
from dftoolkit.manifest import Manifest
from dftoolkit.progress import progress
from dftoolkit.records import VideoRecord
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video import VideoReader, VideoWriter
from dftoolkit.workers import run_phases

__all__ = ["BuildReport", "Pair", "build_dataset", "choose_pairs", "perturbation_tag"]

MANIFEST = "manifest.parquet"
SHEET_FRAMES = 6


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
    """One fake to write: its record, and the perturbation applied to the clean blend (or None)."""

    record: VideoRecord
    blend: str
    perturbation: str | None
    seed: int


@dataclass(frozen=True)
class _FakeJob:
    """Everything one worker needs to make the fakes of one (method, pair): picklable."""

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
    sheets: bool
    seed: int


@dataclass
class BuildReport:
    """What a build did. ``manifest`` is the finished corpus (also in ``out_dir/manifest.parquet``)."""

    out_dir: Path
    manifest: Manifest | None = None
    made: int = 0
    skipped_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_made: dict[str, str] = field(default_factory=dict)
    unpaired: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


_WORKER: dict[str, Any] = {}


def _init_worker(backend: str) -> None:
    cv2.setNumThreads(1)
    _WORKER["backend"] = backend


def _cascade():
    if "cascade" not in _WORKER:
        from dftoolkit.faces import DetectionCascade, get_backend

        _WORKER["cascade"] = DetectionCascade(get_backend(_WORKER["backend"]))
    return _WORKER["cascade"]


def _save_track(path: Path, track: FaceTrack) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, landmarks=track.landmarks, size=np.array([track.height, track.width]), fps=track.fps)


def _load_track(path: str | Path) -> FaceTrack:
    with np.load(path) as data:
        height, width = (int(v) for v in data["size"])
        return FaceTrack(data["landmarks"], height, width, float(data["fps"]))


def _track_job(video_path: str, track_path: str) -> dict[str, Any]:
    """Worker: the face track of one real video, cached at ``track_path``."""
    start = time.perf_counter()
    try:
        track = face_track(video_path, _cascade())
        _save_track(Path(track_path), track)
    except Exception:
        return {"kind": "track", "key": video_path, "error": traceback.format_exc(limit=3)}
    return {"kind": "track", "key": video_path, "frames": len(track), "seconds": time.perf_counter() - start}


def _store_track(store, record: VideoRecord, video: Path) -> FaceTrack | None:
    """The track from a FaceStore that sampled every frame of the video (policy ``all``), else None."""
    if not store.has(record.dataset, record.video_id):
        return None
    reader = VideoReader(video)
    table = store.frames_of(record.dataset, record.video_id)
    if table["frame_index"].tolist() != list(range(reader.num_frames)):
        return None
    landmarks = np.full((reader.num_frames, 68, 2), np.nan, np.float32)
    for row, (status, points) in enumerate(zip(table["status"], table["landmarks"], strict=True)):
        if status == "ok":
            landmarks[row] = np.asarray(points, np.float32).reshape(68, 2)
    return FaceTrack(landmarks, reader.shape[0], reader.shape[1], reader.fps)


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference, amplified 4x for the eye: ``(H, W, 3)`` uint8."""
    return np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * 4, 0, 255).astype(np.uint8)


def _writer(path: Path, fps: float, crf: int | None, height: int, width: int) -> VideoWriter:
    lossless = crf is None or height % 2 == 1 or width % 2 == 1  # yuv420p needs even sizes
    return VideoWriter(path, fps=fps, crf=crf or 0, lossless=lossless)


def _fake_job(job: _FakeJob) -> dict[str, Any]:
    """Worker: render the method once per frame, blend it every requested way, write and perturb."""
    start = time.perf_counter()
    out = Path(job.out_dir)
    key = f"{job.method}/{job.pair.name}"
    try:
        target = _load_track(job.target_track)
        source_track = _load_track(job.source_track)
        for role, track in (("target", target), ("source", source_track)):
            if not track.found.any():
                return {"kind": "fake", "key": key, "not_made": f"the {role} video has no face in any frame"}
        patches = face_patches(VideoReader(job.source_path), source_track)
        try:
            method = get_method(job.method)(patches, target, **job.method_options)
        except ValueError as err:  # the material cannot drive this method (e.g. one source face)
            return {"kind": "fake", "key": key, "not_made": str(err)}
        blends = {name: get_blend(name, **options) for name, options in job.blends}
        clean = {
            o.blend: out / ".work" / "clean" / f"{job.method}-{o.blend}-{job.pair.name}.mp4"
            for o in job.outputs
        }
        for o in job.outputs:
            if o.perturbation is None:
                clean[o.blend] = out / o.record.relpath
        reader = VideoReader(job.target_path)
        wanted = set(np.linspace(0, len(target) - 1, SHEET_FRAMES).round().astype(int).tolist())
        kept: dict[str, list[np.ndarray]] = {"original": [], "mask": [], **{b: [] for b in blends}}
        manipulated = 0
        with ExitStack() as stack:
            h, w = target.height, target.width
            writers = {b: stack.enter_context(_writer(clean[b], target.fps, job.crf, h, w)) for b in blends}
            mask_writer = stack.enter_context(_writer(out / job.mask_relpath, target.fps, None, h, w))
            frames = 0
            for t, frame in enumerate(reader):
                rendered = method.render(t, frame)
                manipulated += bool(rendered.mask.max() > 0)
                mask8 = np.round(rendered.mask * 255).astype(np.uint8)
                mask_writer.write(np.repeat(mask8[..., None], 3, axis=2))
                keep = job.sheets and t in wanted
                for name, blend in blends.items():
                    fake = blend(rendered.image, frame, rendered.mask)
                    writers[name].write(fake)
                    if keep:
                        kept[name].append(fake)
                if keep:
                    kept["original"].append(frame)
                    kept["mask"].append(mask8)
                frames += 1
            if frames != len(target):
                raise RuntimeError(f"{job.target_path}: decoded {frames} frames, its track has {len(target)}")
        method.close()
        if manipulated == 0:
            return {"kind": "fake", "key": key, "not_made": "no frame had a face to manipulate"}
        if job.sheets:  # one per blend, of the clean fake, named like it
            for name in blends:
                _sheet(out / "sheets" / f"{job.method}-{name}-{job.pair.name}.png", kept, name)
        for o in job.outputs:
            if o.perturbation is not None:
                mix = int(o.perturbation.split(":")[1]) if o.perturbation.startswith("random:") else 1
                spec = "random" if o.perturbation.startswith("random") else o.perturbation
                chain = perturb_video(clean[o.blend], out / o.record.relpath, spec, seed=o.seed, mix=mix)
                record = o.record.replace(perturbation=chain)
            else:
                record = o.record
            record = record.replace(frames=frames, fps=target.fps, width=target.width, height=target.height)
            _write_provenance(out, job, o, record, blends[o.blend].params(), method.params(), manipulated)
        for path in clean.values():
            if ".work" in path.parts:
                path.unlink(missing_ok=True)
    except Exception:
        return {"kind": "fake", "key": key, "error": traceback.format_exc(limit=4)}
    return {
        "kind": "fake",
        "key": key,
        "frames": frames,
        "made": len(job.outputs),
        "seconds": time.perf_counter() - start,
    }


def _sheet(path: Path, kept: dict[str, list[np.ndarray]], blend: str) -> None:
    fakes = kept[blend]
    rows = [
        ("original", kept["original"]),
        (f"fake ({blend})", fakes),
        ("mask", kept["mask"]),
        ("|fake - original| x4", [_difference(f, o) for f, o in zip(fakes, kept["original"], strict=True)]),
    ]
    write_png(path, contact_sheet(rows, height=128))


def _write_provenance(
    out: Path,
    job: _FakeJob,
    output: _Output,
    record: VideoRecord,
    blend_params: dict[str, Any],
    method_params: dict[str, Any],
    manipulated: int,
) -> None:
    data = {
        "record": record.to_dict(),
        "method": job.method,
        "method_params": method_params,
        "blend": output.blend,
        "blend_params": blend_params,
        "perturbation": record.perturbation,
        "seed": job.seed,
        "perturbation_seed": output.seed if output.perturbation else None,
        "target": {"dataset": job.pair.target.dataset, "video_id": job.pair.target.video_id},
        "source": {"dataset": job.pair.source.dataset, "video_id": job.pair.source.video_id},
        "original_id": record.original_id,
        "mask": job.mask_relpath,
        "frames": record.frames,
        "manipulated_frames": manipulated,
        "codec": "libx264rgb lossless" if job.crf is None else f"libx264 crf {job.crf}",
        "tool": f"dftoolkit {__version__}",
    }
    atomic_write_text(
        out / "provenance" / f"{record.video_id}.json", json.dumps(data, indent=1, sort_keys=True)
    )


# -- the builder -----------------------------------------------------------------------------------


def _original_record(pair_target: VideoRecord, name: str, relpath: str, info: FaceTrack) -> VideoRecord:
    return VideoRecord(
        dataset=name,
        video_id=pair_target.video_id,
        relpath=relpath,
        label=0,
        method=pair_target.method or "original",
        compression=pair_target.compression,
        split=pair_target.split,
        target_id=_identity(pair_target),
        frames=len(info),
        fps=info.fps,
        width=info.width,
        height=info.height,
    )


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


def build_dataset(
    real_manifest: Manifest,
    out_dir: str | os.PathLike[str],
    methods: Sequence[str] = ("swap", "reenact"),
    blends: Sequence[str] = ("feather",),
    perturbations: Sequence[str | None] = (None,),
    seed: int = 0,
    *,
    name: str = "srdf",
    per_target: int = 1,
    method_options: dict[str, dict[str, Any]] | None = None,
    blend_options: dict[str, dict[str, Any]] | None = None,
    crf: int | None = 18,
    store: str | os.PathLike[str] | None = None,
    backend: str = "mediapipe",
    workers: int | None = None,
    sheets: bool = False,
    report: BuildReport | None = None,
) -> Manifest:
    """Make fakes from the real videos of ``real_manifest`` into a toolkit corpus at ``out_dir``.

    For every pair (:func:`choose_pairs`) and method, each frame of the target is rendered once and
    blended every requested way; each blend is written clean and/or with each perturbation.

    Args:
        real_manifest: real videos (label 0); fakes in it only supply FF++-style pairs and splits.
        out_dir: the corpus folder (created; an existing build there is resumed).
        methods: manipulation names (:func:`~dftoolkit.generators.list_methods`).
        blends: blend names (:func:`~dftoolkit.generators.list_blends`).
        perturbations: per entry one fake per (method, pair, blend): ``None``/``"none"`` clean,
            a chain such as ``"CS:3 GB:2"`` or ``"c40"``, ``"random"`` or ``"random:N"`` (a mix of N).
        seed: decides the pairs and every random choice; equal seeds give equal corpora.
        name: the dataset name of the records.
        per_target: sources per target when pairs are drawn.
        method_options: per method name, its keyword parameters (e.g. a checkpoint path).
        blend_options: per blend name, its options.
        crf: H.264 quality of the fakes (18: visually lossless); None writes them lossless.
        store: a FaceStore whose landmarks to reuse for videos it sampled in full (policy ``all``).
        backend: face backend for the videos' face tracks.
        workers: processes (default: one per core).
        sheets: also write a contact sheet per (method, blend, pair), named like its clean fake.
        report: filled with what happened when given.

    Returns:
        The corpus's :class:`Manifest` (fakes and their originals), also written to
        ``out_dir/manifest.parquet``.
    """
    start = time.perf_counter()
    out = Path(out_dir).absolute()
    report = report if report is not None else BuildReport(out)
    report.out_dir = out
    for method in methods:
        get_method(method)
    for blend in blends:
        get_blend(blend, **(blend_options or {}).get(blend, {}))
    specs = [_parse_spec(p) for p in perturbations]
    if len(set(specs)) != len(specs):
        raise ValueError(f"perturbations repeat an entry: {list(perturbations)}")
    pairs, report.unpaired = choose_pairs(real_manifest, seed, per_target)
    if not pairs:
        raise ValueError(f"no source/target pair in the manifest ({len(real_manifest)} records)")
    face_store = None
    if store is not None:
        from dftoolkit.preprocess.store import FaceStore

        face_store = FaceStore(store)

    # phase 1: face tracks of every real video involved
    reals = {p.target.key: p.target for p in pairs} | {p.source.key: p.source for p in pairs}
    track_path = {key: out / ".work" / "tracks" / key[0] / f"{key[1]}.npz" for key in reals}
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
            track_jobs.append((str(video), str(path)))

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
                        compression="lossless" if crf is None else f"crf{crf}",
                        split=pair.split,
                        target_id=_identity(pair.target),
                        source_id=_identity(pair.source),
                        original_id=pair.target.video_id,
                        mask_relpath=f"masks/{method}/{pair.name}.mp4",
                        perturbation=spec,
                    )
                    planned.append(record)
                    outputs.append(_Output(record, blend, spec, _seed(seed, video_id)))
            todo = tuple(
                o for o in outputs if not (out / "provenance" / f"{o.record.video_id}.json").exists()
            )
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
                    sheets=sheets,
                    seed=_seed(seed, method, pair.name),
                )
            )

    log = out / "runs" / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results = run_phases(
        _work,
        [[("track", args) for args in track_jobs], [("fake", (job,)) for job in fake_jobs]],
        workers=workers,
        initializer=_init_worker,
        initargs=(backend,),
        log_path=log,
    )
    failed_tracks: set[str] = set()
    for outcome in progress(results, "generating", total=len(track_jobs) + len(fake_jobs), count=_frames_of):
        if "error" in outcome:
            report.failed[outcome["key"]] = outcome["error"]
            if outcome["kind"] == "track":
                failed_tracks.add(outcome["key"])
        elif "not_made" in outcome:
            report.not_made[outcome["key"]] = outcome["not_made"]
        elif outcome["kind"] == "fake":
            report.made += outcome["made"]
            report.frames += outcome["frames"]

    manifest = _collect(out, real_manifest, planned, name)
    manifest.write_parquet(out / MANIFEST)
    report.manifest = manifest
    report.seconds = time.perf_counter() - start
    _write_run(out, report)
    return manifest


def _work(kind: str, args: tuple) -> dict[str, Any]:
    """Worker entry point for both phases (module level, so spawned workers can unpickle it)."""
    return _track_job(*args) if kind == "track" else _fake_job(*args)


def _frames_of(outcome: dict[str, Any]) -> int:
    return outcome.get("frames", 0) if outcome.get("kind") == "fake" else 0


def _collect(out: Path, real_manifest: Manifest, planned: list[VideoRecord], name: str) -> Manifest:
    """The corpus's records: every planned fake that is finished, and the originals they were made from."""
    fakes = []
    for record in planned:
        path = out / "provenance" / f"{record.video_id}.json"
        if path.exists():
            fakes.append(VideoRecord(**json.loads(path.read_text())["record"]))
    originals = []
    by_id = {r.video_id: r for r in real_manifest if r.label == 0}
    for video_id in sorted({f.original_id for f in fakes if f.original_id}):
        real = by_id[video_id]
        source = real_manifest.path_of(real)
        relpath = f"originals/{video_id}{source.suffix.lower()}"
        _link_or_copy(source, out / relpath)
        info = _load_track(out / ".work" / "tracks" / real.dataset / f"{video_id}.npz")
        originals.append(_original_record(real, name, relpath, info))
    return Manifest([*originals, *fakes], root=out)


def _write_run(out: Path, report: BuildReport) -> None:
    data = {
        "made": report.made,
        "skipped_already_done": report.skipped_done,
        "failed": report.failed,
        "not_made": report.not_made,
        "unpaired": report.unpaired,
        "frames": report.frames,
        "seconds": round(report.seconds, 3),
        "tool": f"dftoolkit {__version__}",
    }
    atomic_write_text(out / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}.json", json.dumps(data, indent=1))
