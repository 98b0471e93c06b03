"""``BuildConfig``: the settings of a corpus build (:func:`~dftoolkit.generators.build_dataset`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dftoolkit.config import normalise, setting
from dftoolkit.faces.base import FACE_BACKENDS
from dftoolkit.generators.base import BLENDS, METHODS, check_options
from dftoolkit.generators.perturb import Chain, resolve_chain
from dftoolkit.records import check_name
from dftoolkit.registry import Registry

__all__ = ["ORIGINALS", "BuildConfig"]

ORIGINALS = ("encode", "link")
"""How the builder includes the originals of its fakes (see :attr:`BuildConfig.originals`)."""


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a corpus build; recorded in the corpus folder as ``config.yaml``.

    Each field's help is in its metadata (:func:`dftoolkit.config.describe_config`). Raises
    ``ValueError`` naming every bad setting when constructed with settings no build could use.
    """

    methods: tuple[str, ...] = setting(("swap", "reenact"), "Manipulation methods.", choices=METHODS)
    blends: tuple[str, ...] = setting(("feather",), "Blends.", choices=BLENDS)
    perturbations: tuple[str | None, ...] = setting(
        (None,),
        'Perturbations, one fake per entry: none, a chain such as "CS:3 GB:2" or c40, random, or '
        "random:N (a mix of N); applied before the final encode.",
    )
    seed: int = setting(0, "Seed of the pairs and of every random choice; equal seeds give equal corpora.")
    name: str = setting("srdf", "Dataset name of the records.")
    per_target: int = setting(1, "Sources per target when pairs are drawn.")
    method_options: Mapping[str, Mapping[str, Any]] = setting(
        {}, "Options per method, METHOD.OPTION=VALUE (e.g. fomm.checkpoint=vox-cpk.pth.tar)."
    )
    blend_options: Mapping[str, Mapping[str, Any]] = setting(
        {}, "Options per blend, BLEND.OPTION=VALUE (e.g. feather.width=0.2)."
    )
    crf: int | None = setting(18, "H.264 crf of every video written, reals and fakes (0-51; none: lossless).")
    min_coverage: float = setting(
        0.9, "Least fraction of a fake's frames its mask must cover (0-1); fakes below are not made."
    )
    originals: str = setting(
        "encode",
        "encode: the originals through the fakes' encoder; link: the source files, hard-linked.",
        choices=ORIGINALS,
    )
    perturb_reals: bool = setting(
        True, "Also write perturbed copies of the reals, so that no perturbation predicts the label."
    )
    backend: str = setting("mediapipe", "Face backend of the face tracks.", choices=FACE_BACKENDS)
    sheets: bool = setting(False, "Write a contact sheet per (method, blend, pair) in sheets/.")

    def __post_init__(self) -> None:
        """Refuse settings no build could use, naming every problem, before a build writes anything."""
        normalise(self)
        problems = [
            *(
                f"unknown manipulation method {m!r} (methods: {', '.join(METHODS.names())})"
                for m in self.methods
                if m not in METHODS
            ),
            *(
                f"unknown blend {b!r} (blends: {', '.join(BLENDS.names())})"
                for b in self.blends
                if b not in BLENDS
            ),
            *_option_problems("method_options", self.method_options, METHODS),
            *_option_problems("blend_options", self.blend_options, BLENDS),
            *filter(None, map(_perturbation_problem, self.perturbations)),
        ]
        checks = [
            (bool(self.methods), "methods must name at least one method"),
            (bool(self.blends), "blends must name at least one blend"),
            (bool(self.perturbations), "perturbations must hold at least one entry (none: clean)"),
            (
                len(set(self.perturbations)) == len(self.perturbations),
                f"perturbations repeat an entry: {list(self.perturbations)}",
            ),
            (self.per_target >= 1, f"per_target must be >= 1, got {self.per_target}"),
            (self.crf is None or 0 <= self.crf <= 51, f"crf must be in [0, 51] or none, got {self.crf}"),
            (0.0 <= self.min_coverage <= 1.0, f"min_coverage must be in [0, 1], got {self.min_coverage}"),
            (self.originals in ORIGINALS, f"originals must be one of {ORIGINALS}, got {self.originals!r}"),
            (
                self.backend in FACE_BACKENDS,
                f"backend must be one of {FACE_BACKENDS.names()}, got {self.backend!r}",
            ),
        ]
        problems += [message for ok, message in checks if not ok]
        try:
            check_name("name", self.name)
        except ValueError as err:
            problems.append(str(err))
        if problems:
            raise ValueError(f"bad build settings: {'; '.join(problems)}")


def _option_problems(field: str, options: Mapping[str, Mapping[str, Any]], registry: Registry) -> list[str]:
    """What is wrong with ``{name: {option: value}}``: names not in ``registry``, options they lack."""
    problems = []
    for name, values in options.items():
        if name not in registry:
            problems.append(f"{field}: no {registry.kind} {name!r} ({', '.join(registry.names())})")
            continue
        try:
            check_options(name, values)
        except ValueError as err:
            problems.append(str(err))
    return problems


def _perturbation_problem(spec: str | None) -> str | None:
    """Why the perturbation entry ``spec`` cannot be made, or None."""
    if spec is None:
        return None
    kind, _, mix = spec.partition(":")
    try:
        if kind != "random":
            Chain.parse(spec)
        elif not (mix or "1").isdigit():
            return f"perturbation {spec!r}: random:N needs a whole number N"
        else:
            resolve_chain("random", 0, int(mix or 1))
    except ValueError as err:
        return f"perturbation {spec!r}: {err}"
    return None
