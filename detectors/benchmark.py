"""The benchmark: train detectors on datasets, score them on others and on degraded copies, in one run.

It answers what a dataset builder asks of a new corpus, as the M2TR paper did by hand for SR-DF: is
it harder than the public ones, do detectors trained on it generalise, does it survive real-world
degradations? A YAML spec (:func:`load_spec`; paths relative to its folder) names the sets:

.. code-block:: yaml

    train:                # training sets: a FaceStore, its manifest (default: the store's), splits
      srdf: {store: faces/, manifest: split.parquet, split: train, val_split: val}
    detectors:            # models: a detector, its recipe, optional settings and options
      stil: {detector: stil, recipe: small, settings: {epochs: 2}, options: {}, frames_per_video: 32}
    tests:                # test sets: any FaceStore and manifest (toolkit or public corpora)
      srdf-test: {store: faces/, manifest: split.parquet, split: test}
    robustness:           # optional
      test: srdf-test     # whose videos are perturbed
      types: [CS, CC, BW, GNC, GB, JPEG, VC]   # default: all seven DeeperForensics types
      levels: [1, 2, 3, 4, 5]
      compressions: [c23, c40]
    processes: 2          # optional: training processes per model (default: default_processes())

:func:`run_benchmark` then, in ``DIR``:

1. trains every (train set, model) with :func:`~dftoolkit.detectors.train.train` into
   ``models/<train>/<model>/`` from random weights (``random (seed N)``, N the training seed); a
   finished run whose ``fingerprint.json`` matches (detector, options, settings, the train and
   val rows, the store) is reused, an interrupted one resumed, another one retrained afresh. With
   ``processes`` N > 1 a model trains under ``torchrun`` (:func:`torchrun_command`: N DDP processes
   of ``dftoolkit train``, gloo on a CPU, NCCL on CUDA; ``batch_size`` is per process), its output in
   the model's ``torchrun.log``; the fingerprint leaves N out, so a model is reused however many
   processes trained it;
2. for robustness, perturbs the test split of the robustness test set once per type and level
   (``TYPE:LEVEL``, :func:`~dftoolkit.generators.perturb.perturb_manifest`, seed 0) and per
   compression into ``perturbed/<test>/<TYPE-LEVEL>/corpus/`` and preprocesses it once into
   ``perturbed/<test>/<TYPE-LEVEL>/faces/`` for all the detectors (:func:`robustness_store_config`);
   the perturbed records keep their labels, methods and splits (the dataset gets ``-perturbed``);
3. scores every trained model on every test set and perturbed copy with
   :func:`~dftoolkit.detectors.evaluate.evaluate` into ``scores/<train>/<model>/<test>/`` (a
   perturbed copy: ``<test>@<TYPE-LEVEL>``), through :func:`~dftoolkit.workers.run_stage` (``local``
   or ``ray``); a score folder whose ``metrics.json`` exists and whose ``fingerprint.json`` matches
   (the checkpoint's sha256, the detector, the test rows of the split, the store, the perturbation)
   is reused;
4. writes the tables and plots (each atomically): ``cross_dataset.csv``/``.json``/``.png``,
   ``per_method.csv``, ``robustness.csv``/``.png``, ``difficulty.json`` and ``benchmark.json``
   (what was computed and what reused this run, the paths, every model's initialisation,
   the training processes).

A training or scoring that fails is recorded with its reason (``benchmark.json``'s ``failed``, the
``reason`` column of the tables); the others go on. An AUC is a number in [0, 1], or None with the
reason (one class in the test set, a failure).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dftoolkit.config import ConfigError, config_to_dict, load_config, read_config_file, setting
from dftoolkit.detectors.base import DETECTORS, InputSpec, build_detector, detector_recipe, on_meta
from dftoolkit.detectors.data import face_dataset, store_config
from dftoolkit.detectors.train import TRAIN_FILE, TrainConfig, load_trained, train
from dftoolkit.fileio import atomic_path, atomic_write_text, sha256_file
from dftoolkit.locks import locks_output
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess import FaceStore, PreprocessConfig
from dftoolkit.progress import progress
from dftoolkit.workers import Stage, check_engine, run_stage, runs_dir

__all__ = [
    "COMPRESSIONS",
    "LEVELS",
    "TYPES",
    "BenchmarkReport",
    "BenchmarkSpec",
    "DataSet",
    "ModelSpec",
    "RobustnessSpec",
    "default_processes",
    "difficulty",
    "load_spec",
    "parse_spec",
    "robustness_store_config",
    "run_benchmark",
    "torchrun_command",
]

TYPES = ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")
"""The DeeperForensics-1.0 perturbation types, the default of ``robustness.types``."""
LEVELS = (1, 2, 3, 4, 5)
COMPRESSIONS = ("c23", "c40")
FINGERPRINT = "fingerprint.json"
"""In a model's and a score's folder: what it was computed from (compared on a rerun)."""
TORCHRUN_LOG = "torchrun.log"
"""In a model's folder when it trained under ``torchrun``: the launcher's and the processes' output."""
UNSCORED = "unscored.json"
"""In a score's folder instead of ``metrics.json`` when the test set gave the model no usable video:
``{"reason": ...}`` (the ``skipped.json`` beside it says why for each video)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_SPEC_KEYS = ("train", "detectors", "tests", "robustness", "processes")
_ERROR_LINE = re.compile(r"(?:\[rank\d+\]: )?(?:error: (.+)|([\w.]*(?:Error|Exception): .*\S))")


# -- the spec -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    """A set of videos: the ``split`` rows of ``manifest`` found in ``store``.

    Attributes:
        store: the FaceStore folder.
        manifest: labels and splits (None: the manifest the store keeps).
        split: the split used (a spec's default: ``train`` for train sets, ``test`` for test sets).
        val_split: train sets only, the split the best epoch is chosen on (default ``val``).
    """

    store: Path
    manifest: Path | None = None
    split: str | None = None
    val_split: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model: a registered detector trained with one of its recipes."""

    detector: str = setting(None, "Detector name (dftoolkit detectors).")
    recipe: str = setting("small", "Training recipe (paper or small): the size and the settings.")
    settings: Mapping[str, Any] = setting({}, "TrainConfig fields over the recipe's, e.g. {epochs: 2}.")
    options: Mapping[str, Any] = setting({}, "Options of the detector's builder, e.g. {backbone: ...}.")
    frames_per_video: int | None = setting(32, "Image detectors: frames per video (none: every frame).")


@dataclass(frozen=True)
class RobustnessSpec:
    """Which test set is degraded, and how."""

    test: str = setting(None, "The test set whose test split is perturbed.")
    types: tuple[str, ...] = setting(TYPES, "DeeperForensics perturbation types.", choices=TYPES)
    levels: tuple[int, ...] = setting(LEVELS, "Levels of each type, 1-5.")
    compressions: tuple[str, ...] = setting(COMPRESSIONS, "FF++ compressions.", choices=COMPRESSIONS)

    @property
    def chains(self) -> dict[str, tuple[str, str, int | None]]:
        """Folder name (``CS-3``, ``c23``) -> (chain, panel, level) of every perturbation."""
        chains = {f"{t}-{lv}": (f"{t}:{lv}", t, lv) for t in self.types for lv in self.levels}
        return chains | {c: (c, "compression", None) for c in self.compressions}


@dataclass(frozen=True)
class BenchmarkSpec:
    """The parsed spec (see the module): sets and models by name, paths absolute."""

    train: dict[str, DataSet]
    detectors: dict[str, ModelSpec]
    tests: dict[str, DataSet]
    robustness: RobustnessSpec | None = None
    processes: int | None = None  # training processes per model; None: default_processes()


def _keys(where: str, value: Any, allowed: Iterable[str], problems: list[str]) -> dict[str, Any]:
    """``value`` as a mapping; an unknown key or a non-mapping is added to ``problems``."""
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
        return {}
    allowed = tuple(allowed)
    problems += [f"{where}.{k}: unknown key (keys: {', '.join(allowed)})" for k in value if k not in allowed]
    return {k: v for k, v in value.items() if k in allowed}


def _named(where: str, value: Any, problems: list[str], required: bool = True) -> dict[str, Any]:
    """The ``{name: entry}`` mapping of a section; bad names and an empty section are problems."""
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping) or (required and not value):
        problems.append(f"{where}: expected a mapping of one or more named entries, got {value!r}")
        return {}
    for name in value:
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}.{name}: a name must be letters, digits, '_', '-', '.' (not first)")
    return {str(k): v for k, v in value.items()}


def _path(where: str, value: Any, base: Path, problems: list[str]) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: expected a path, got {value!r}")
        return None
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).absolute()


def _text(where: str, value: Any, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: expected a name, got {value!r}")
        return None
    return value


def _data_set(where: str, value: Any, base: Path, train: bool, problems: list[str]) -> DataSet | None:
    keys = ("store", "manifest", "split", "val_split") if train else ("store", "manifest", "split")
    entry = _keys(where, value, keys, problems)
    if "store" not in entry:
        if isinstance(value, Mapping):
            problems.append(f"{where}.store: missing (a FaceStore folder)")
        return None
    n = len(problems)
    store = _path(f"{where}.store", entry["store"], base, problems)
    manifest = _path(f"{where}.manifest", entry["manifest"], base, problems) if "manifest" in entry else None
    split = _text(f"{where}.split", entry.get("split", "train" if train else "test"), problems)
    val = _text(f"{where}.val_split", entry.get("val_split", "val"), problems) if train else None
    if train and split is not None and split == val:
        problems.append(f"{where}.val_split: {val!r} is also the training split; choose the epoch on others")
    if store is not None and not (store / "store.json").is_file():
        problems.append(f"{where}.store: no FaceStore at {store}")
    if manifest is not None and not manifest.is_file():
        problems.append(f"{where}.manifest: no such file {manifest}")
    return None if len(problems) > n else DataSet(store, manifest, split, val)  # type: ignore[arg-type]


def _model(where: str, value: Any, problems: list[str]) -> ModelSpec | None:
    entry = _keys(where, value, ("detector", "recipe", "settings", "options", "frames_per_video"), problems)
    n = len(problems)
    detector = entry.get("detector")
    if detector not in DETECTORS.names():
        problems.append(f"{where}.detector: unknown detector {detector!r} (detectors: {DETECTORS.names()})")
        return None
    recipe = entry.get("recipe", "small")
    settings = entry.get("settings") or {}
    options = entry.get("options") or {}
    frames = entry.get("frames_per_video", 32)
    for key, mapping in (("settings", settings), ("options", options)):
        if not isinstance(mapping, Mapping):
            problems.append(f"{where}.{key}: expected a mapping, got {mapping!r}")
    if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
        problems.append(f"{where}.frames_per_video: expected a whole number >= 1 or none, got {frames!r}")
    try:
        values = detector_recipe(detector, recipe)
    except KeyError as err:
        problems.append(f"{where}.recipe: {err.args[0]}")
        return None
    if len(problems) > n:
        return None
    config = values.pop("config")
    try:
        load_config(TrainConfig, None, {**values, **settings})
    except ValueError as err:
        problems.append(f"{where}.settings: {err}")
    try:
        on_meta(lambda: build_detector(detector, config, **options))
    except (TypeError, ValueError, KeyError) as err:
        problems.append(f"{where}.options: {err}")
    if len(problems) > n:
        return None
    return ModelSpec(detector, recipe, dict(settings), dict(options), frames)


def _robustness(value: Any, tests: Mapping[str, Any], problems: list[str]) -> RobustnessSpec | None:
    if value is None:
        return None
    entry = _keys("robustness", value, ("test", "types", "levels", "compressions"), problems)
    n = len(problems)
    test = entry.get("test")
    if test not in tests:
        problems.append(f"robustness.test: {test!r} is not a test set (tests: {', '.join(tests)})")
    lists = {}
    for key, default, allowed in (
        ("types", TYPES, TYPES),
        ("levels", LEVELS, LEVELS),
        ("compressions", COMPRESSIONS, COMPRESSIONS),
    ):
        items = entry.get(key, list(default))
        items = [] if items is None else items
        if not isinstance(items, list | tuple):
            problems.append(f"robustness.{key}: expected a list, got {items!r}")
            continue
        bad = [item for item in items if item not in allowed or isinstance(item, bool)]
        if bad:
            problems.append(f"robustness.{key}: {bad} not among {list(allowed)}")
        lists[key] = tuple(dict.fromkeys(items))
    if not lists.get("compressions") and not (lists.get("types") and lists.get("levels")):
        problems.append("robustness: no perturbation (give types and levels, or compressions)")
    return None if len(problems) > n else RobustnessSpec(test, **lists)


def parse_spec(data: Any, base: str | os.PathLike[str] = ".") -> BenchmarkSpec:
    """The :class:`BenchmarkSpec` of a spec mapping (see the module), paths relative to ``base``.

    Raises:
        ValueError: one message naming every bad key and value (``tests.x.store: no FaceStore at ...``).
    """
    base = Path(base).absolute()
    problems: list[str] = []
    top = _keys("spec", data, _SPEC_KEYS, problems)
    sections = {key: _named(key, top.get(key), problems) for key in ("train", "detectors", "tests")}
    trains = {n: _data_set(f"train.{n}", v, base, True, problems) for n, v in sections["train"].items()}
    models = {n: _model(f"detectors.{n}", v, problems) for n, v in sections["detectors"].items()}
    tests = {n: _data_set(f"tests.{n}", v, base, False, problems) for n, v in sections["tests"].items()}
    robustness = _robustness(top.get("robustness"), sections["tests"], problems)
    processes = top.get("processes")
    if processes is not None and (
        not isinstance(processes, int) or isinstance(processes, bool) or processes < 1
    ):
        problems.append(f"processes: expected a whole number >= 1 or none (the default), got {processes!r}")
    for name, model in models.items():  # every store must hold the crops the detector eats
        if model is None:
            continue
        crop = on_meta(lambda m=model: _build(m)).spec.crop
        for where, sets in (("train", trains), ("tests", tests)):
            for set_name, data_set in sets.items():
                crops = [] if data_set is None else FaceStore(data_set.store).config.get("crops", [])
                if data_set is not None and crop not in crops:
                    problems.append(
                        f"{where}.{set_name}.store: {data_set.store} has no {crop!r} crops "
                        f"(detectors.{name} needs them; it has {crops})"
                    )
    if problems:
        raise ValueError(f"bad benchmark spec: {'; '.join(problems)}")
    return BenchmarkSpec(trains, models, tests, robustness, processes)  # type: ignore[arg-type]


def load_spec(path: str | os.PathLike[str]) -> BenchmarkSpec:
    """The spec in the YAML (or JSON) file at ``path``, its paths relative to the file's folder;
    ValueError naming the file and every bad key and value."""
    path = Path(path)
    try:
        return parse_spec(read_config_file(path), path.absolute().parent)
    except ConfigError:
        raise
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# -- the parts ----------------------------------------------------------------------------------------


def _build(model: ModelSpec):
    config = detector_recipe(model.detector, model.recipe)["config"]
    return build_detector(model.detector, config, **model.options)


def _train_config(model: ModelSpec) -> TrainConfig:
    values = detector_recipe(model.detector, model.recipe)
    values.pop("config")
    return load_config(TrainConfig, None, {**values, **model.settings})


def _rows(data_set: DataSet, split: str | None) -> Manifest:
    """The records of ``split`` (all when None) of the set's manifest."""
    manifest = Manifest.read_parquet(data_set.manifest) if data_set.manifest else None
    manifest = FaceStore(data_set.store).manifest() if manifest is None else manifest
    if manifest is None:
        raise ValueError(f"the store {data_set.store} keeps no manifest; give the set a manifest")
    return manifest if split is None else manifest.filter(lambda r: r.split == split)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _set_fingerprint(data_set: DataSet, split: str | None) -> dict[str, Any]:
    """What a set's scores depend on: the store, the split and its manifest rows (a digest)."""
    rows = sorted((r.to_dict() for r in _rows(data_set, split)), key=lambda r: (r["dataset"], r["video_id"]))
    return {"store": str(data_set.store), "split": split, "rows": _digest(rows), "videos": len(rows)}


def _datasets_of(data_set: DataSet, splits: Iterable[str | None]) -> set[str]:
    return {r.dataset for split in splits for r in _rows(data_set, split)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False, default=str))


def robustness_store_config(specs: Iterable[InputSpec]) -> PreprocessConfig:
    """One preprocessing that serves the test clips of every detector with ``specs``: the union of
    their crop kinds (:func:`~dftoolkit.detectors.data.store_config` of each); per kind the largest
    size asked; the largest face scale of the ``face``-crop detectors (a smaller test square is then
    re-cut exactly from the stored crop, never from the video); every frame when one of them needs
    consecutive frames, else the most evenly spaced frames any asks for."""
    pairs = [(spec, store_config(spec)) for spec in specs]
    if not pairs:
        raise ValueError("no detector to preprocess for")
    sizes: dict[str, int] = {}
    for _, config in pairs:
        for kind, size in config.sizes:
            sizes[kind] = max(size, sizes.get(kind, 0))
    scales = [config.scale for spec, config in pairs if spec.crop == "face"]
    return PreprocessConfig(
        crops=tuple(sorted({kind for _, config in pairs for kind in config.crops})),
        sizes=tuple(sorted(sizes.items())),
        scale=max(scales) if scales else PreprocessConfig().scale,
        policy="all" if any(config.policy == "all" for _, config in pairs) else "even",
        frames=max(config.frames for _, config in pairs),
    )


@dataclass(frozen=True)
class _Model:
    """A trained model: where its checkpoint is and how its weights began."""

    key: str  # train/model
    checkpoint: Path
    initialisation: str  # of the trained weights, as the score files record it
    start: str  # random (seed N)
    sha256: str


def default_processes() -> int:
    """Training processes per model when the spec gives none: the CUDA GPUs when there are 2 or more
    (one process each), else 1 (training in the benchmark's own process)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return gpus if gpus >= 2 else 1


def _setting_text(value: Any) -> str:
    """A :class:`TrainConfig` value as ``--set KEY=VALUE`` reads it back."""
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def torchrun_command(
    data_set: DataSet, model_spec: ModelSpec, folder: Path, processes: int, *, resume: bool
) -> list[str]:
    """The command that trains ``model_spec`` on ``data_set`` into ``folder`` with ``processes`` DDP
    processes: ``python -m torch.distributed.run --standalone --nproc_per_node N -m dftoolkit -q train
    ...``, the same settings, options, frames and splits as a training in this process.

    Args:
        resume: continue the run in ``folder`` (False: ``--restart``).

    Raises:
        ValueError: a split is None (the CLI takes named splits only).
    """
    if data_set.split is None or data_set.val_split is None:
        raise ValueError("training under torchrun needs a named split and val_split")
    config = _train_config(model_spec)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
    ]
    command += ["-m", "dftoolkit", "-q", "train", str(data_set.store), "--out", str(folder)]
    command += ["--detector", model_spec.detector, "--recipe", model_spec.recipe]
    if data_set.manifest is not None:
        command += ["--manifest", str(data_set.manifest)]
    command += ["--train-split", data_set.split, "--val-split", data_set.val_split]
    command += ["--frames-per-video", str(model_spec.frames_per_video or 0)]
    for key, value in model_spec.options.items():
        command += ["--option", f"{key}={json.dumps(value)}"]
    for key in model_spec.settings:
        command += ["--set", f"{key}={_setting_text(getattr(config, key))}"]
    return command if resume else [*command, "--restart"]


def _failure(log: Path) -> str:
    """The last error line of a training's ``log`` (the CLI's ``error: ...`` or an exception's, from any
    rank; the launcher's summary after it left out), else its last line."""
    lines = [line.strip() for line in log.read_text("utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        found = _ERROR_LINE.fullmatch(line)
        if found:
            return found[1] or found[2]
    return lines[-1] if lines else "no output"


def _train_torchrun(
    folder: Path, data_set: DataSet, model_spec: ModelSpec, processes: int, resume: bool
) -> None:
    """Train under ``torchrun`` (:func:`torchrun_command`), its output in ``folder/torchrun.log``;
    a ValueError with the log's last error when it fails."""
    command = torchrun_command(data_set, model_spec, folder, processes, resume=resume)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / TORCHRUN_LOG
    with (
        log.open("w", encoding="utf-8") as sink,
        subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT) as launcher,
    ):
        try:
            status = launcher.wait()
        except BaseException:
            launcher.terminate()  # torchrun passes it on to its processes
            raise
    if status:
        raise ValueError(
            f"{_failure(log)} ({processes} processes under torchrun, exit status {status}; log: {log})"
        )
    skipped = _read_json(folder / "skipped.json")  # the CLI keys it by split name
    _write_json(
        folder / "skipped.json", {"train": skipped[data_set.split], "val": skipped[data_set.val_split]}
    )


def _train_here(
    folder: Path, data_set: DataSet, model_spec: ModelSpec, config: TrainConfig, start: str, resume: bool
) -> None:
    """Train in this process."""
    import torch

    torch.manual_seed(config.seed)
    model = _build(model_spec)
    store = FaceStore(data_set.store)
    manifest = Manifest.read_parquet(data_set.manifest) if data_set.manifest else None
    sets = [
        face_dataset(
            store,
            model.spec,
            split=split,
            train=is_train,
            manifest=manifest,
            seed=config.seed,
            frames_per_video=model_spec.frames_per_video,
        )
        for split, is_train in ((data_set.split, True), (data_set.val_split, False))
    ]
    train(model, *sets, config, folder, initialisation=start, resume=resume)
    _write_json(
        folder / "skipped.json",
        {split: dict(sorted(s.skipped.items())) for split, s in zip(("train", "val"), sets, strict=True)},
    )


def _train_one(
    out: Path, train_name: str, data_set: DataSet, name: str, model_spec: ModelSpec, processes: int
) -> tuple[_Model, bool]:
    """Train (or reuse) one model, in this process or ``processes`` > 1 under torchrun;
    ``(model, computed)``."""
    folder = out / "models" / train_name / name
    config = _train_config(model_spec)
    start = f"random (seed {config.seed})"
    fingerprint = {
        "detector": model_spec.detector,
        "recipe": model_spec.recipe,
        "options": dict(model_spec.options),
        "settings": config_to_dict(config),
        "frames_per_video": model_spec.frames_per_video,
        "initialisation": start,
        "train": _set_fingerprint(data_set, data_set.split),
        "val": _set_fingerprint(data_set, data_set.val_split),
    }
    record = _read_json(folder / TRAIN_FILE) or {}
    same = _read_json(folder / FINGERPRINT) == fingerprint
    checkpoint = folder / "checkpoints" / "best.pt"
    computed = not (same and record.get("status") == "finished" and checkpoint.is_file())
    if computed:
        _write_json(folder / FINGERPRINT, fingerprint)  # a rerun resumes only the same run
        if processes > 1:
            _train_torchrun(folder, data_set, model_spec, processes, resume=same)
        else:
            _train_here(folder, data_set, model_spec, config, start, resume=same)
        record = _read_json(folder / TRAIN_FILE)
    trained = f"{checkpoint} (epoch {record['best_epoch']}, trained from {start})"
    return _Model(f"{train_name}/{name}", checkpoint, trained, start, sha256_file(checkpoint)), computed


def _perturbed(
    folder: Path,
    source: DataSet,
    chain: str,
    config: PreprocessConfig,
    workers: int | None,
    engine: str,
) -> tuple[DataSet, bool]:
    """The perturbed copy of ``source``'s split in ``folder`` (``corpus/``) and its FaceStore
    (``faces/``), made or reused; ``(set, computed)``."""
    from dftoolkit.generators.perturb import perturb_manifest
    from dftoolkit.preprocess import preprocess

    marker = folder / "perturbed.json"
    state = _read_json(marker) or {}
    wanted = {"source": _set_fingerprint(source, source.split), "chain": chain, "seed": 0}
    computed = False
    if state.get("made") != wanted or not (folder / "corpus" / "manifest.parquet").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        perturb_manifest(_rows(source, source.split), folder / "corpus", chain, seed=0)
        state, computed = {"made": wanted}, True
        _write_json(marker, state)
    if state.get("store") != config.to_dict():
        shutil.rmtree(folder / "faces", ignore_errors=True)  # made for other detectors' crops
        preprocess(
            Manifest.read_parquet(folder / "corpus" / "manifest.parquet"),
            folder / "faces",
            config,
            workers=workers,
            engine=engine,
        )
        state, computed = {**state, "store": config.to_dict()}, True
        _write_json(marker, state)
    return DataSet(folder / "faces", None, source.split), computed


@dataclass(frozen=True)
class _ScoreJob:
    """One (trained model, test set) pair to score."""

    key: str  # train/model/test
    detector: str
    config: str
    options: dict[str, Any]
    frames_per_video: int | None
    checkpoint: str
    initialisation: str
    store: str
    manifest: str | None
    split: str | None
    out: str
    fingerprint: dict[str, Any]
    bootstrap: int


class _ScoreStage(Stage[_ScoreJob, int]):
    """Loads a job's checkpoint and scores its test set (nothing heavy is set up per worker: each job
    has its own model)."""

    name = "scoring test sets"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self) -> None:
        import torch

        torch.set_num_threads(self.threads)

    def run(self, job: _ScoreJob) -> int:
        """Write the job's metrics, scores, plots and fingerprint; the number of videos scored."""
        from dftoolkit.detectors.evaluate import evaluate

        model = build_detector(job.detector, job.config, **job.options)
        load_trained(model, job.checkpoint)
        manifest = Manifest.read_parquet(job.manifest) if job.manifest else None
        data = face_dataset(
            FaceStore(job.store),
            model.spec,
            split=job.split,
            train=False,
            manifest=manifest,
            frames_per_video=job.frames_per_video,
        )
        out = Path(job.out)
        _write_json(out / "skipped.json", dict(sorted(data.skipped.items())))
        if len(data):
            evaluate(model, data, out, initialisation=job.initialisation, bootstrap=job.bootstrap)
            (out / UNSCORED).unlink(missing_ok=True)
        else:  # e.g. no face found in a heavily perturbed copy: a result, kept like one
            reason = f"no usable video in split {job.split!r} of {job.store} ({len(data.skipped)} skipped)"
            _write_json(out / UNSCORED, {"reason": reason})
            (out / "metrics.json").unlink(missing_ok=True)
        _write_json(out / FINGERPRINT, job.fingerprint)
        return len(data.videos)


# -- the report ---------------------------------------------------------------------------------------


@dataclass
class BenchmarkReport:
    """What :func:`run_benchmark` found and did.

    Attributes:
        out_dir: the output folder.
        cross_dataset: one row per (train, model, test): ``auc``, ``auc_low``, ``auc_high`` (its 95 %
            bootstrap interval), ``eer``, ``ap``, ``n`` (videos), ``reason`` (why ``auc`` is None).
        per_method: each test set's per-method breakdown (the metrics' ``per_method``) per model.
        robustness: one row per (train, model, perturbation), the clean test at ``level`` 0
            (``panel``: the type, or ``compression``); empty without a robustness suite.
        difficulty: per test set, the mean AUC of the models trained on sets sharing no dataset
            with it (:func:`difficulty`).
        computed, reused: ``{"trainings", "perturbed", "scorings"}`` -> the keys done or reused.
        failed: key -> why a training or scoring failed.
        initialisations: ``train/model`` -> how its weights began (``random (seed N)``).
        processes: training processes per model in this run (> 1: under ``torchrun``).
        files: name -> path of every output file.
    """

    out_dir: Path
    cross_dataset: pd.DataFrame
    per_method: pd.DataFrame
    robustness: pd.DataFrame
    difficulty: dict[str, dict[str, Any]]
    computed: dict[str, list[str]] = field(default_factory=dict)
    reused: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    initialisations: dict[str, str] = field(default_factory=dict)
    processes: int = 1
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def matrix(self) -> pd.DataFrame:
        """Video AUC, rows ``train/model``, columns the test sets (NaN where there is none)."""
        table = self.cross_dataset.assign(row=self.cross_dataset.train + "/" + self.cross_dataset.model)
        return table.pivot(index="row", columns="test", values="auc").astype(float)


_METRIC_COLUMNS = ["auc", "auc_low", "auc_high", "eer", "ap", "n", "reason"]


def _metric_row(metrics: Mapping[str, Any] | None, failure: str | None) -> dict[str, Any]:
    if metrics is None:
        return dict.fromkeys(_METRIC_COLUMNS[:-1]) | {"reason": failure or "not scored"}
    ci = metrics.get("auc_ci") or [None, None]
    reason = None if metrics["auc"] is not None else metrics["undefined"].get("auc")
    return {
        "auc": metrics["auc"],
        "auc_low": ci[0],
        "auc_high": ci[1],
        "eer": metrics["eer"],
        "ap": metrics["ap"],
        "n": metrics["n"],
        "reason": reason,
    }


def difficulty(
    cross_dataset: pd.DataFrame, train_datasets: Mapping[str, set[str]], test_datasets: Mapping[str, set[str]]
) -> dict[str, dict[str, Any]]:
    """Per test set: ``mean_auc`` of the models whose training set shares no dataset with it (lower:
    harder), ``models`` (how many counted), ``counted`` (their ``train/model``), ``datasets``; when
    none qualifies ``mean_auc`` is None and ``reason`` says why.

    Args:
        cross_dataset: :attr:`BenchmarkReport.cross_dataset`.
        train_datasets: train set -> the datasets of its train and val rows.
        test_datasets: test set -> the datasets of its test rows.
    """
    out = {}
    for test, datasets in test_datasets.items():
        rows = cross_dataset[cross_dataset.test == test]
        unseen = rows[[not (train_datasets[t] & datasets) for t in rows.train]]
        scored = unseen[unseen.auc.notna()]
        entry: dict[str, Any] = {
            "mean_auc": float(scored.auc.mean()) if len(scored) else None,
            "models": len(scored),
            "counted": (scored.train + "/" + scored.model).tolist(),
            "datasets": sorted(datasets),
        }
        if not len(scored):
            entry["reason"] = (
                f"no model was trained on sets sharing no dataset with {sorted(datasets)}"
                if unseen.empty
                else f"the {len(unseen)} model(s) trained on other datasets have no AUC here"
            )
        out[test] = entry
    return out


def _save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _plot_matrix(matrix: pd.DataFrame, path: Path) -> None:
    """Heatmap of the AUC matrix, values annotated (n/a where there is none)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, columns = matrix.shape
    fig = Figure(figsize=(2 + 1.3 * columns, 1.2 + 0.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(matrix.to_numpy(float), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(rows):
        for j in range(columns):
            value = matrix.iat[i, j]
            ax.text(
                j, i, "n/a" if math.isnan(value) else f"{value:.3f}", ha="center", va="center", fontsize=9
            )
    ax.set_xticks(range(columns), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(rows), matrix.index)
    ax.set_xlabel("test set")
    ax.set_ylabel("train set / model")
    ax.set_title("Video AUC (cross-dataset)", fontsize=10)
    fig.colorbar(image, ax=ax, label="AUC")
    _save_figure(fig, path)


def _plot_robustness(table: pd.DataFrame, path: Path) -> None:
    """AUC against level 0 (clean) to 5, a panel per type and one for the compressions, a line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [p for p in dict.fromkeys(table.panel) if p != "clean"]
    columns = min(4, len(panels))
    n_rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(3.6 * columns, 3.0 * n_rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, columns, squeeze=False).ravel()
    clean = table[table.panel == "clean"]
    for ax, panel in zip(axes, panels, strict=False):
        rows = table[table.panel == panel]
        for model, of_model in rows.groupby("model_key", sort=False):
            base = clean[clean.model_key == model]
            points = pd.concat([base, of_model])
            x = (
                list(range(len(points)))
                if panel == "compression"
                else points.level.fillna(0).astype(int).tolist()
            )
            ax.plot(x, points.auc.astype(float), marker="o", label=model)
        if panel == "compression":
            ax.set_xticks(range(1 + len(dict.fromkeys(rows.chain))), ["clean", *dict.fromkeys(rows.chain)])
        else:
            ax.set_xticks(range(0, 6))
            ax.set_xlabel("level (0: clean)")
        ax.set_ylim(0, 1.02)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(panel, fontsize=10)
        ax.set_ylabel("video AUC")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if panels:
        axes[0].legend(fontsize=7)
    fig.suptitle("Robustness: video AUC under perturbations", fontsize=10)
    _save_figure(fig, path)


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# -- the run ------------------------------------------------------------------------------------------


@locks_output("out_dir", "benchmark")
def run_benchmark(
    spec: BenchmarkSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    engine: str = "local",
    bootstrap: int = 1000,
) -> BenchmarkReport:
    """Train, perturb, score and report (see the module); a rerun does only what is new or changed.

    Args:
        spec: a :class:`BenchmarkSpec` or the path of its YAML file.
        out_dir: the output folder (one run at a time holds its lock).
        workers: scoring processes or Ray actors (default: one per core, at most one per job), and
            the preprocessing's of the perturbed copies.
        engine: ``local`` or ``ray`` (:func:`~dftoolkit.workers.run_stage`).
        bootstrap: resamplings of each AUC interval.
    """
    check_engine(engine)
    spec = spec if isinstance(spec, BenchmarkSpec) else load_spec(spec)
    out = Path(out_dir).absolute()
    computed: dict[str, list[str]] = {"trainings": [], "perturbed": [], "scorings": []}
    reused: dict[str, list[str]] = {"trainings": [], "perturbed": [], "scorings": []}
    failed: dict[str, str] = {}
    models: dict[str, _Model] = {}
    processes = spec.processes or default_processes()
    pairs = [(t, m) for t in spec.train for m in spec.detectors]
    for train_name, name in progress(pairs, "training", unit="models"):
        key = f"{train_name}/{name}"
        try:
            model, done = _train_one(
                out, train_name, spec.train[train_name], name, spec.detectors[name], processes
            )
        except (ValueError, FloatingPointError) as err:
            failed[key] = f"training failed: {' '.join(str(err).split())}"
            continue
        models[key] = model
        (computed if done else reused)["trainings"].append(key)

    tests: dict[str, tuple[DataSet, str, str | None]] = {n: (s, n, None) for n, s in spec.tests.items()}
    robust = spec.robustness
    if robust is not None:
        config = robustness_store_config(on_meta(lambda m=m: _build(m)).spec for m in spec.detectors.values())
        for folder, (chain, _, _) in robust.chains.items():
            key = f"{robust.test}@{folder}"
            try:
                data_set, done = _perturbed(
                    out / "perturbed" / robust.test / folder,
                    spec.tests[robust.test],
                    chain,
                    config,
                    workers,
                    engine,
                )
            except (ValueError, RuntimeError) as err:
                failed[key] = f"perturbing failed: {' '.join(str(err).split())}"
                continue
            (computed if done else reused)["perturbed"].append(key)
            tests[key] = (data_set, robust.test, chain)

    jobs = []
    for model_key, model in models.items():
        train_name, name = model_key.split("/")
        model_spec = spec.detectors[name]
        for test_key, (data_set, _, chain) in tests.items():
            fingerprint = {
                "checkpoint_sha256": model.sha256,
                "detector": model_spec.detector,
                "options": dict(model_spec.options),
                "frames_per_video": model_spec.frames_per_video,
                "test": _set_fingerprint(data_set, data_set.split),
                "perturbation": chain,
                "bootstrap": bootstrap,
            }
            folder = out / "scores" / train_name / name / test_key
            key = f"{model_key}/{test_key}"
            done = (folder / "metrics.json").is_file() or (folder / UNSCORED).is_file()
            if done and _read_json(folder / FINGERPRINT) == fingerprint:
                reused["scorings"].append(key)
                continue
            jobs.append(
                _ScoreJob(
                    key=key,
                    detector=model_spec.detector,
                    config=detector_recipe(model_spec.detector, model_spec.recipe)["config"],
                    options=dict(model_spec.options),
                    frames_per_video=model_spec.frames_per_video,
                    checkpoint=str(model.checkpoint),
                    initialisation=model.initialisation,
                    store=str(data_set.store),
                    manifest=None if data_set.manifest is None else str(data_set.manifest),
                    split=data_set.split,
                    out=str(folder),
                    fingerprint=fingerprint,
                    bootstrap=bootstrap,
                )
            )
    size = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    stage = _ScoreStage(threads=max(1, (os.cpu_count() or 1) // size))
    outcomes = run_stage(stage, [jobs], workers=size, engine=engine, log_path=runs_dir(out) / "workers.log")
    for outcome in progress(outcomes, "scoring", total=len(jobs), unit="pairs"):
        if outcome.error is not None:
            failed[outcome.job.key] = f"scoring failed: {outcome.error.strip().splitlines()[-1]}"
        else:
            computed["scorings"].append(outcome.job.key)

    report = _tables(out, spec, tests, models, failed)
    report.computed, report.reused, report.processes = computed, reused, processes
    report.initialisations = {key: model.start for key, model in models.items()}
    _write_outputs(report, spec)
    return report


def _tables(
    out: Path,
    spec: BenchmarkSpec,
    tests: Mapping[str, tuple[DataSet, str, str | None]],
    models: Mapping[str, _Model],
    failed: dict[str, str],
) -> BenchmarkReport:
    """The report's tables from the score folders."""
    cross, per_method, robust = [], [], []
    chains = spec.robustness.chains if spec.robustness else {}
    for train_name in spec.train:
        for name in spec.detectors:
            model_key = f"{train_name}/{name}"
            for test_key, (_, test, chain) in tests.items():
                key = f"{model_key}/{test_key}"
                folder = out / "scores" / train_name / name / test_key
                metrics = _read_json(folder / "metrics.json")
                video = None if metrics is None or key in failed else metrics["video"]
                why = failed.get(key) or failed.get(model_key) or failed.get(test_key)
                row = _metric_row(video, why or (_read_json(folder / UNSCORED) or {}).get("reason"))
                ids = {"train": train_name, "model": name, "detector": spec.detectors[name].detector}
                if chain is None:
                    cross.append({**ids, "test": test, **row})
                    for entry in [] if video is None else metrics["per_method"]:
                        per_method.append(
                            {**ids, "test": test, "dataset": entry["dataset"], "method": entry["method"]}
                            | {"reals_from": entry["reals_from"], **_metric_row(entry, None)}
                        )
                if spec.robustness is not None and test == spec.robustness.test:
                    panel, level = ("clean", 0) if chain is None else chains[test_key.split("@")[1]][1:]
                    robust.append(
                        {**ids, "model_key": model_key, "panel": panel, "level": level}
                        | {"chain": chain or "clean", **row}
                    )
    cross_table = pd.DataFrame(cross, columns=["train", "model", "detector", "test", *_METRIC_COLUMNS])
    train_sets = {n: _datasets_of(s, (s.split, s.val_split)) for n, s in spec.train.items()}
    test_sets = {n: _datasets_of(s, (s.split,)) for n, s in spec.tests.items()}
    return BenchmarkReport(
        out_dir=out,
        cross_dataset=cross_table,
        per_method=pd.DataFrame(per_method),
        robustness=pd.DataFrame(robust).drop(columns="model_key", errors="ignore"),
        difficulty=difficulty(cross_table, train_sets, test_sets),
        failed=failed,
    )


def _write_outputs(report: BenchmarkReport, spec: BenchmarkSpec) -> None:
    out = report.out_dir
    files = {
        "cross_dataset_csv": out / "cross_dataset.csv",
        "cross_dataset_json": out / "cross_dataset.json",
        "cross_dataset_png": out / "cross_dataset.png",
        "per_method_csv": out / "per_method.csv",
        "difficulty": out / "difficulty.json",
        "benchmark": out / "benchmark.json",
    }
    cross = report.cross_dataset.astype(object).where(report.cross_dataset.notna(), None)
    _write_csv(report.cross_dataset, files["cross_dataset_csv"])
    matrix = report.matrix
    _write_json(
        files["cross_dataset_json"],
        {
            "rows": cross.to_dict(orient="records"),
            "matrix": {
                "rows": list(matrix.index),
                "columns": list(matrix.columns),
                "auc": [
                    [None if math.isnan(v) else v for v in row] for row in matrix.to_numpy(float).tolist()
                ],
            },
        },
    )
    _plot_matrix(matrix, files["cross_dataset_png"])
    _write_csv(report.per_method, files["per_method_csv"])
    if spec.robustness is not None:
        files["robustness_csv"], files["robustness_png"] = out / "robustness.csv", out / "robustness.png"
        _write_csv(report.robustness, files["robustness_csv"])
        _plot_robustness(
            report.robustness.assign(model_key=report.robustness.train + "/" + report.robustness.model),
            files["robustness_png"],
        )
    _write_json(files["difficulty"], report.difficulty)
    report.files = files
    _write_json(
        files["benchmark"],
        {
            "computed": report.computed,
            "reused": report.reused,
            "failed": report.failed,
            "initialisations": report.initialisations,
            "processes": report.processes,
            "paths": {
                "models": {k: str(out / "models" / k) for k in report.initialisations},
                "scores": str(out / "scores"),
                "perturbed": str(out / "perturbed"),
                "files": {name: str(path) for name, path in files.items()},
            },
            "spec": {
                "train": {n: config_to_dict(s) for n, s in spec.train.items()},
                "detectors": {n: config_to_dict(m) for n, m in spec.detectors.items()},
                "tests": {n: config_to_dict(s) for n, s in spec.tests.items()},
                "robustness": None if spec.robustness is None else config_to_dict(spec.robustness),
                "processes": spec.processes,
            },
        },
    )
