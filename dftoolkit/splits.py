"""Leak-free train/val/test splits: checking them, drawing them, and the cross-dataset protocol.

Terms used throughout:

- **split**: ``"train"``, ``"val"`` or ``"test"`` (a record's ``split`` field; None = unassigned).
  ``val`` is the only split for model selection (checkpoints, thresholds, hyper-parameters);
  nothing may ever be chosen on ``test``, which is for the final report only.
- **link**: two records are linked when they share

  - an *identity*: a ``target_id`` or ``source_id`` value, namespaced per dataset
    (``"id0"`` of ``celebdf-v2`` is unrelated to ``"id0"`` of another dataset);
  - an *original*: a fake (or a perturbed copy of a real) and the real video it was made from
    (its ``original_id``), and the videos made from the same real video. ``original_id`` is
    looked up in the record's own dataset first; when absent there it is matched to real records
    of other datasets with that ``video_id`` (DeeperForensics fakes -> FF++ originals), so this
    link may cross datasets;
  - a *file*: the same dataset root + ``relpath`` (the same file indexed twice).
- **component**: a connected set of records under these links. A split without leaks puts
  every component wholly into one split.
- **ratio**: the intended share of records of a split, ``(train, val, test)``, each >= 0,
  summing to 1.
- **stratum**: ``(dataset, label, method)``; grouped splits try to give each split its ratio
  of every stratum, so each split gets reals, fakes and every method when the data allow.

Protocols (:data:`SPLIT_PROTOCOLS`): ``official`` keeps the splits set by the corpus loaders;
``grouped`` draws them with :func:`grouped_split`; ``cross-dataset`` trains on some corpora and
tests on others (:func:`cross_dataset_split`).
"""

from __future__ import annotations

import logging
import math
import numbers
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dftoolkit.manifest import Manifest
from dftoolkit.records import LABELS, SPLITS, VideoRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LEAK_KINDS",
    "SPLIT_PROTOCOLS",
    "Leak",
    "check_leaks",
    "cross_dataset_split",
    "grouped_split",
    "linked_rows",
    "split_summary",
]

SPLIT_PROTOCOLS = ("official", "grouped", "cross-dataset")
"""CLI protocols: the corpus splits as indexed, :func:`grouped_split`, :func:`cross_dataset_split`."""

LEAK_KINDS = ("original", "identity", "duplicate")
"""Kinds of :class:`Leak`, in the order :func:`check_leaks` reports them."""

_LINKS = ("identity", "original")
_MAX_EXAMPLES = 10
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leak:
    """A group of linked records found in more than one split.

    Attributes:
        kind: ``"original"`` (a fake and its original, or fakes of one original, in different
            splits), ``"identity"`` (an identity in two splits) or ``"duplicate"`` (one file in
            two splits).
        key: what the records share: ``"<dataset>:<identity>"``, ``"<dataset>:<video_id>"`` of the
            original, or the file path (``"<root>/<relpath>"``, POSIX; ``"<dataset>:<relpath>"``
            when the dataset has no root).
        splits: the splits the group spans, sorted.
        video_ids: up to 10 example ``(dataset, video_id)`` keys, drawn from every split, sorted.
    """

    kind: str
    key: str
    splits: tuple[str, ...]
    video_ids: tuple[tuple[str, str], ...]


def linked_rows(
    records: Sequence[VideoRecord],
    roots: Mapping[str, Path],
    *,
    identities: bool,
    originals: bool,
) -> dict[tuple[str, str], list[int]]:
    """The links that tie records together: ``(kind, key) -> row numbers`` of the records sharing
    that key. Kinds: ``duplicate`` (one file, always), ``identity`` (a target or source identity,
    with ``identities``), ``original`` (a fake and the real it was made from, with ``originals``).
    Records linked directly or through others must stay on one side of a split (or CV fold)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    row_of = {r.key: i for i, r in enumerate(records)}
    reals_by_id: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.label == 0:
            reals_by_id[r.video_id].append(i)
    for i, r in enumerate(records):
        root = roots.get(r.dataset)
        path = f"{root.as_posix()}/{r.relpath}" if root is not None else f"{r.dataset}:{r.relpath}"
        groups[("duplicate", path)].append(i)
        if identities:
            for identity in sorted({r.target_id, r.source_id} - {None}):
                groups[("identity", f"{r.dataset}:{identity}")].append(i)
        if originals and r.original_id is not None and r.original_id != r.video_id:
            own = (r.dataset, r.original_id)
            if own in row_of:
                found = [row_of[own]]
            else:
                found = [j for j in reals_by_id.get(r.original_id, ()) if records[j].dataset != r.dataset]
            keys = [records[j].key for j in found] or [own]
            for key in keys:
                name = ("original", f"{key[0]}:{key[1]}")
                if name not in groups:  # a new group starts with the original's record, when present
                    groups[name] = [row_of[key]] if key in row_of else []
                groups[name].append(i)
    return groups


def check_leaks(manifest: Manifest, *, identities: bool = True, originals: bool = True) -> list[Leak]:
    """Every group of linked records (see the module docstring) that spans more than one split.

    Records with split None are ignored. Duplicated files are always checked; ``identities``
    and ``originals`` switch the other two checks. The result is sorted by kind
    (:data:`LEAK_KINDS` order), then key.

    The official Celeb-DF protocol shares identities between train and test (its test list
    holds clips of celebrities whose other clips are in train): this check reports those as
    ``identity`` leaks. That is a property of the official protocol, not a bug; use
    :func:`grouped_split` for identity-disjoint splits.
    """
    records = manifest.records
    leaks = []
    groups = linked_rows(records, manifest.roots, identities=identities, originals=originals)
    for (kind, key), members in groups.items():
        by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for i in members:
            if records[i].split is not None:
                by_split[records[i].split].append(records[i].key)
        if len(by_split) < 2:
            continue
        lists = [sorted(by_split[split]) for split in sorted(by_split)]
        examples: list[tuple[str, str]] = []
        for position in range(max(map(len, lists))):  # round-robin: every split is represented
            examples.extend(keys[position] for keys in lists if position < len(keys))
        leaks.append(Leak(kind, key, tuple(sorted(by_split)), tuple(sorted(examples[:_MAX_EXAMPLES]))))
    return sorted(leaks, key=lambda leak: (LEAK_KINDS.index(leak.kind), leak.key))


def _components(manifest: Manifest, by: Sequence[str]) -> list[list[int]]:
    """Connected components (lists of row numbers, each sorted) under the links named in ``by``."""
    parent = list(range(len(manifest)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    groups = linked_rows(
        manifest.records, manifest.roots, identities="identity" in by, originals="original" in by
    )
    for members in groups.values():
        first = find(members[0])
        for i in members[1:]:
            parent[find(i)] = first
    components: dict[int, list[int]] = defaultdict(list)
    for i in range(len(parent)):
        components[find(i)].append(i)
    return list(components.values())


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) if isinstance(v, numbers.Real) else v for v in ratios)
    if len(values) != 3:
        raise ValueError(f"ratios must be three numbers (train, val, test), got {values!r}")
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"ratios must be finite and >= 0, got {values!r}")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must sum to 1, got {values!r} (sum {sum(values):g})")
    return values[0], values[1], values[2]


def _assign(
    records: Sequence[VideoRecord], components: list[list[int]], ratios: dict[str, float], seed: int
) -> dict[int, str]:
    """Row number -> split: components shuffled with ``seed``, larger first, each to the neediest split.

    The neediest split for a component is the one whose current share of the component's
    strata is furthest below its ratio: the maximum over splits of
    ``sum over strata k of n_k * (ratio - assigned_k / total_k)``, where ``n_k`` counts the
    component's records of stratum ``k``. Ties go to the larger ratio, then to train, val, test.
    """
    stratum = [(r.dataset, r.label, r.method or "") for r in records]
    totals = Counter(stratum[i] for component in components for i in component)
    assigned = {split: Counter() for split in ratios}
    order = list(components)
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
    result: dict[int, str] = {}
    for component in order:
        composition = Counter(stratum[i] for i in component)

        def need(split: str, composition: Counter = composition) -> tuple[float, float]:
            share = sum(n * (ratios[split] - assigned[split][k] / totals[k]) for k, n in composition.items())
            return share, ratios[split]

        split = max((s for s in ratios if ratios[s] > 0), key=need)
        assigned[split].update(composition)
        result.update(dict.fromkeys(component, split))
    return result


def grouped_split(
    manifest: Manifest,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    keep_test: bool = True,
    by: Sequence[str] = ("identity", "original"),
) -> Manifest:
    """Assign train/val/test so that no component (see the module docstring) spans two splits.

    Records are linked by the kinds named in ``by`` (``"identity"``, ``"original"``; the same
    file is always linked) and each connected component goes wholly into one split. Components
    are shuffled with ``seed``, sorted larger first, and each is given to the split whose
    current share of the component's strata (``(dataset, label, method)``) is furthest below
    its ratio, so every split gets about its ratio of reals, fakes and each method.

    Args:
        ratios: ``(train, val, test)`` shares, each >= 0, summing to 1 (ValueError otherwise).
        seed: same manifest + seed -> same splits; other seeds give other assignments when the
            components allow.
        keep_test: when some records are already in ``"test"`` (an official test set), they stay
            there and every component containing one goes to test entirely (test videos never
            reach train/val, and no identity crosses into test); the rest is divided into
            train/val in the ratio ``ratios[0]:ratios[1]`` (``ratios[2]`` is ignored). On the
            official Celeb-DF split (test identities also have train clips) the train clips of
            test identities thus move to test. A manifest without test records gets all three
            splits drawn, as with False, where existing splits are ignored.
        by: the link kinds used.

    Returns a manifest with the same records (all with a split) and roots. Components are never
    cut: one that is huge (e.g. an identity appearing in half the corpus, or a corpus whose
    face swaps chain all identities together) goes whole to one split, so the realised ratios
    (see :func:`split_summary`) can differ from ``ratios``; a split with a positive ratio that
    gets no record logs a warning. Choose checkpoints and thresholds on val only.
    """
    values = _check_ratios(ratios)
    unknown = sorted(set(by) - set(_LINKS))
    if unknown:
        raise ValueError(f"unknown link kind(s) {unknown} in by; choose from {list(_LINKS)}")
    records = manifest.records
    components = _components(manifest, by)
    if keep_test and any(r.split == "test" for r in records):
        tested = [any(records[i].split == "test" for i in component) for component in components]
        fixed = {i: "test" for c, test in zip(components, tested, strict=True) if test for i in c}
        free = [c for c, test in zip(components, tested, strict=True) if not test]
        if free and values[0] + values[1] == 0:
            raise ValueError("keep_test=True divides non-test records into train/val, but their ratios are 0")
        pool = values[0] + values[1] or 1.0
        shares = {"train": values[0] / pool, "val": values[1] / pool}
    else:
        fixed, free = {}, components
        shares = dict(zip(SPLITS, values, strict=True))
    chosen = {**fixed, **_assign(records, free, shares, seed)}
    counts = Counter(chosen.values())
    for split, ratio in shares.items():
        if ratio > 0 and free and not counts[split]:
            _log.warning(
                "grouped_split: split %r got no records (%d component(s) to divide, largest %d records); "
                "components are never cut",
                split,
                len(free),
                max(map(len, free)),
            )
    result = Manifest((r.replace(split=chosen[i]) for i, r in enumerate(records)), roots=manifest.roots)
    leaks = check_leaks(result, identities="identity" in by, originals="original" in by)
    if leaks:  # cannot happen: components are assigned whole
        raise AssertionError(f"grouped_split produced {len(leaks)} leak(s), first {leaks[0]}")
    return result


def split_summary(manifest: Manifest) -> pd.DataFrame:
    """Videos per split and label: columns ``split, real, fake, videos, share``.

    One row per split present, in train, val, test order, then ``"-"`` for unassigned records;
    ``share`` is the realised ratio (the split's fraction of all records).
    """
    import pandas as pd

    counts = Counter((r.split, r.label) for r in manifest)
    total = len(manifest)
    rows = []
    for split in (*SPLITS, None):
        real, fake = counts[(split, 0)], counts[(split, 1)]
        if real + fake:
            rows.append([split or "-", real, fake, real + fake, (real + fake) / total])
    return pd.DataFrame(rows, columns=["split", LABELS[0], LABELS[1], "videos", "share"])


def _names(value: Sequence[str], what: str, present: list[str]) -> list[str]:
    names = list(dict.fromkeys([value] if isinstance(value, str) else value))
    if not names:
        raise ValueError(f"give at least one {what} dataset; present: {present}")
    unknown = [name for name in names if name not in present]
    if unknown:
        raise ValueError(f"unknown {what} dataset(s) {unknown}; present: {present}")
    return names


def cross_dataset_split(
    manifest: Manifest,
    train: Sequence[str],
    test: Sequence[str],
    *,
    val_ratio: float = 0.1,
    seed: int = 0,
    test_split_only: bool = False,
) -> Manifest:
    """The cross-dataset protocol: train (and select on val) on some corpora, test on others.

    - Datasets in ``train`` keep their official train/val; their official test records are
      dropped (never used for training or model selection). A train dataset with train but no
      val gets a val of ``val_ratio`` carved out of its train part with :func:`grouped_split`
      (identity- and original-disjoint); one with no split at all is divided by
      ``grouped_split(..., (1 - val_ratio, val_ratio, 0))``.
    - Datasets in ``test`` become ``"test"`` entirely, or only their official test records
      when ``test_split_only`` is True.
    - Other datasets are dropped (with their roots).

    Raises ValueError for unknown dataset names (the message lists those present), a dataset
    in both lists, ``val_ratio`` outside ``[0, 1)``, a train dataset with no train record or
    with unassigned records beside assigned ones, and, with ``test_split_only``, a test dataset
    without test records. Fakes whose originals live in a train dataset (DeeperForensics fakes
    are made from FF++ videos) are kept: :func:`check_leaks` reports such cross-dataset links.
    """
    present = manifest.datasets
    train_names = _names(train, "train", present)
    test_names = _names(test, "test", present)
    both = sorted(set(train_names) & set(test_names))
    if both:
        raise ValueError(f"dataset(s) {both} are both in train and test")
    if not 0 <= val_ratio < 1:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio!r}")
    chosen: dict[tuple[str, str], str] = {}
    for name in train_names:
        part = manifest.filter(dataset=name)
        splits = {r.split for r in part}
        if splits == {None}:
            part = grouped_split(part, (1 - val_ratio, val_ratio, 0.0), seed=seed, keep_test=False)
        elif None in splits:
            unassigned = sum(r.split is None for r in part)
            raise ValueError(
                f"train dataset {name!r}: {unassigned} record(s) have no split beside assigned ones"
            )
        elif "train" not in splits:
            raise ValueError(f"train dataset {name!r} has no train records (splits: {sorted(splits)})")
        else:
            part = part.filter(split=["train", "val"])
            if "val" not in splits:
                part = grouped_split(part, (1 - val_ratio, val_ratio, 0.0), seed=seed, keep_test=False)
        chosen.update((r.key, r.split) for r in part)
    for name in test_names:
        part = manifest.filter(dataset=name)
        if test_split_only:
            part = part.filter(split="test")
            if not len(part):
                raise ValueError(f"test dataset {name!r} has no official test records (test_split_only=True)")
        chosen.update((r.key, "test") for r in part)
    kept = (r.replace(split=chosen[r.key]) for r in manifest if r.key in chosen)
    roots = {name: root for name, root in manifest.roots.items() if name in {*train_names, *test_names}}
    return Manifest(kept, roots=roots)
