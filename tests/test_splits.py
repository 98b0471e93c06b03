"""Splits: leak checks, grouped splits, the cross-dataset protocol, on corpora modelled on the real ones."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord
from dftoolkit.splits import (
    SPLIT_PROTOCOLS,
    Leak,
    check_leaks,
    cross_dataset_split,
    grouped_split,
    split_summary,
)

FFPP_METHODS = ("Deepfakes", "FaceSwap")


def ffpp(n_ids: int = 20, splits: tuple[int, int, int] | None = (6, 2, 2)) -> list[VideoRecord]:
    """FF++-like, ids as the ffpp loader makes them: YouTube originals ``youtube-c23-000``.. (target_id
    ``000``..); pairs (000, 001), (002, 003)...; fakes ``<method>-c23-<a>_<b>`` both ways.

    ``splits`` gives how many pairs are official train, val, test (in pair order); None: no split.
    """
    pairs = [(f"{i:03d}", f"{i + 1:03d}") for i in range(0, n_ids, 2)]
    if splits is None:
        split_of = dict.fromkeys(range(len(pairs)))
    else:
        names = ["train"] * splits[0] + ["val"] * splits[1] + ["test"] * splits[2]
        assert len(names) == len(pairs)
        split_of = dict(enumerate(names))
    records = []
    for number, pair in enumerate(pairs):
        split = split_of[number]
        for target in pair:
            records.append(
                VideoRecord(
                    "ffpp",
                    f"youtube-c23-{target}",
                    f"original_sequences/youtube/c23/videos/{target}.mp4",
                    0,
                    method="youtube",
                    compression="c23",
                    split=split,
                    target_id=target,
                )
            )
        for target, source in (pair, pair[::-1]):
            for method in FFPP_METHODS:
                records.append(
                    VideoRecord(
                        "ffpp",
                        f"{method}-c23-{target}_{source}",
                        f"manipulated_sequences/{method}/c23/videos/{target}_{source}.mp4",
                        1,
                        method=method,
                        compression="c23",
                        split=split,
                        target_id=target,
                        source_id=source,
                        original_id=f"youtube-c23-{target}",
                    )
                )
    return records


def celebdf(
    n_ids: int = 10, test_ids: tuple[int, ...] = (8, 9), test_clips: tuple[str, ...] = ("id0_0003",)
) -> list[VideoRecord]:
    """Celeb-DF-like: identities ``id<i>`` (i < n_ids, even), real clips ``id<i>_000<k>`` (k < 4),
    fakes ``id<a>_id<b>_000<k>`` (k < 3).

    Swaps are within pairs (0, 1), (2, 3)...; clip 3 of each identity has no fake. Official
    split: every video of ``test_ids`` and the clips in ``test_clips`` are test, the rest train.
    """
    records = []
    for i in range(n_ids):
        for k in range(4):
            vid = f"id{i}_{k:04d}"
            split = "test" if i in test_ids or vid in test_clips else "train"
            records.append(
                VideoRecord(
                    "celebdf-v2", vid, f"Celeb-real/{vid}.mp4", 0, "Celeb-real", None, split, f"id{i}"
                )
            )
        partner = i + 1 if i % 2 == 0 else i - 1
        for k in range(3):
            vid = f"id{i}_id{partner}_{k:04d}"
            records.append(
                VideoRecord(
                    "celebdf-v2",
                    vid,
                    f"Celeb-synthesis/{vid}.mp4",
                    1,
                    method="Celeb-synthesis",
                    split="test" if i in test_ids else "train",
                    target_id=f"id{i}",
                    source_id=f"id{partner}",
                    original_id=f"id{i}_{k:04d}",
                )
            )
    return records


def dfdc(n_reals: int = 30, fakes_per_real: int = 3, split: str | None = "train") -> list[VideoRecord]:
    """DFDC-like: reals ``r000``.., fakes ``r000f0``.. linked by ``original_id`` only (no identities)."""
    records = []
    for i in range(n_reals):
        real = f"r{i:03d}"
        records.append(VideoRecord("dfdc", real, f"dfdc_train_part_0/{real}.mp4", 0, split=split))
        for j in range(fakes_per_real):
            fake = f"{real}f{j}"
            records.append(
                VideoRecord("dfdc", fake, f"dfdc_train_part_0/{fake}.mp4", 1, split=split, original_id=real)
            )
    return records


def deeperforensics(split: str = "test") -> list[VideoRecord]:
    """DeeperForensics-like: fakes ``end_to_end-<FF++ target>_<actor>`` made from FF++ originals."""
    return [
        VideoRecord(
            "deeperforensics",
            f"end_to_end-{target}_{actor}",
            f"manipulated_videos/end_to_end/{target}_{actor}.mp4",
            1,
            method="end_to_end",
            split=split,
            target_id=target,
            source_id=actor,
            original_id=f"youtube-c23-{target}",
        )
        for target, actor in (("000", "M004"), ("005", "W101"), ("012", "M004"))
    ]


def manifest_of(records: list[VideoRecord], tmp_path: Path) -> Manifest:
    return Manifest(records, roots={name: tmp_path / name for name in {r.dataset for r in records}})


def splits_of(manifest: Manifest) -> dict[tuple[str, str], str | None]:
    return {r.key: r.split for r in manifest}


def assert_components_whole(manifest: Manifest) -> None:
    """Without ``check_leaks``: each identity (per dataset) and each fake with its original in one split."""
    by_identity: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    split = splits_of(manifest)
    for r in manifest:
        for identity in (r.target_id, r.source_id):
            if identity is not None:
                by_identity[(r.dataset, identity)].add(r.split)
        if r.original_id is not None and (r.dataset, r.original_id) in split:
            assert r.split == split[(r.dataset, r.original_id)], r
    spread = {key: splits for key, splits in by_identity.items() if len(splits) > 1}
    assert not spread


def test_protocols_constant():
    assert SPLIT_PROTOCOLS == ("official", "grouped", "cross-dataset")


# -- check_leaks -------------------------------------------------------------------------------


def test_official_ffpp_pairs_do_not_leak(tmp_path):
    assert check_leaks(manifest_of(ffpp(), tmp_path)) == []


def test_planted_identity_leak_is_reported(tmp_path):
    records = [r.replace(split="test") if r.video_id == "id4_0003" else r for r in celebdf(test_clips=())]
    leaks = check_leaks(manifest_of(records, tmp_path))
    assert [(leak.kind, leak.key, leak.splits) for leak in leaks] == [
        ("identity", "celebdf-v2:id4", ("test", "train"))
    ]
    assert ("celebdf-v2", "id4_0003") in leaks[0].video_ids
    assert check_leaks(manifest_of(records, tmp_path), identities=False) == []


def test_official_celebdf_protocol_shares_identities(tmp_path):
    # a test clip of id0 while id0's other clips are train: reported, as the docstring says
    leaks = check_leaks(manifest_of(celebdf(), tmp_path))
    assert [(leak.kind, leak.key) for leak in leaks] == [("identity", "celebdf-v2:id0")]


def test_planted_original_leak_is_reported(tmp_path):
    records = [r.replace(split="val") if r.video_id == "r003f1" else r for r in dfdc()]
    manifest = manifest_of(records, tmp_path)
    assert check_leaks(manifest) == [
        Leak(
            "original",
            "dfdc:r003",
            ("train", "val"),
            (("dfdc", "r003"), ("dfdc", "r003f0"), ("dfdc", "r003f1"), ("dfdc", "r003f2")),
        )
    ]
    assert check_leaks(manifest, originals=False) == []


def test_a_perturbed_copy_of_a_real_stays_with_its_original(tmp_path):
    copy = VideoRecord("dfdc", "r003-CS5", "originals/r003-CS5.mp4", 0, split="val", original_id="r003")
    manifest = manifest_of([*dfdc(), copy], tmp_path)
    assert [(leak.kind, leak.key) for leak in check_leaks(manifest)] == [("original", "dfdc:r003")]
    for seed in range(3):
        split = {r.video_id: r.split for r in grouped_split(manifest, seed=seed, by=("original",))}
        assert split["r003-CS5"] == split["r003"] == split["r003f0"]


def test_fakes_of_an_original_missing_from_the_manifest_still_group(tmp_path):
    records = [r for r in dfdc() if r.video_id != "r003"]
    records = [r.replace(split="test") if r.video_id == "r003f2" else r for r in records]
    leaks = check_leaks(manifest_of(records, tmp_path))
    assert [(leak.kind, leak.key, len(leak.video_ids)) for leak in leaks] == [("original", "dfdc:r003", 3)]


def test_original_link_crosses_datasets_but_identities_do_not(tmp_path):
    # DeeperForensics fake 000_M004 (test) is made from FF++ video 000 (train); target ids "000" of
    # the two datasets are separate namespaces, so only the original links are reported
    manifest = manifest_of(ffpp() + deeperforensics(), tmp_path)
    leaks = check_leaks(manifest)
    assert [(leak.kind, leak.key, leak.splits) for leak in leaks] == [
        ("original", "ffpp:youtube-c23-000", ("test", "train")),
        ("original", "ffpp:youtube-c23-005", ("test", "train")),
        ("original", "ffpp:youtube-c23-012", ("test", "val")),
    ]
    assert ("deeperforensics", "end_to_end-000_M004") in leaks[0].video_ids


def test_duplicate_file_is_reported_within_and_across_datasets(tmp_path):
    a = VideoRecord("a", "x", "videos/x.mp4", 0, split="train")
    twin = VideoRecord("a", "x-again", "videos/./x.mp4", 0, split="test")
    other = VideoRecord("b", "y", "videos/x.mp4", 0, split="val")
    leaks = check_leaks(Manifest([a, twin, other], roots={"a": tmp_path / "a", "b": tmp_path / "b"}))
    assert [(leak.kind, leak.key, leak.splits) for leak in leaks] == [
        ("duplicate", f"{(tmp_path / 'a').as_posix()}/videos/x.mp4", ("test", "train"))
    ]
    same_root = check_leaks(Manifest([a, other], root=tmp_path))
    assert [(leak.kind, leak.splits) for leak in same_root] == [("duplicate", ("train", "val"))]


def test_unassigned_records_are_ignored(tmp_path):
    records = [
        r.replace(split=None) if r.video_id in ("youtube-c23-000", "Deepfakes-c23-001_000") else r
        for r in ffpp()
    ]
    assert check_leaks(manifest_of(records, tmp_path)) == []


def test_leaks_are_sorted_and_examples_cover_every_split(tmp_path):
    records = ffpp(splits=(10, 0, 0))
    records = [r.replace(split="test") if r.video_id == "youtube-c23-018" else r for r in records]
    records += [
        VideoRecord("ffpp", f"extra{i}", f"extra/{i}.mp4", 0, split="train", target_id="018")
        for i in range(20)
    ]
    leaks = check_leaks(manifest_of(records, tmp_path))
    assert [(leak.kind, leak.key) for leak in leaks] == [
        ("original", "ffpp:youtube-c23-018"),
        ("identity", "ffpp:018"),
    ]  # identity 019 (the pair partner) stays in train: its records are all train
    identity = leaks[1]
    assert len(identity.video_ids) == 10
    assert ("ffpp", "youtube-c23-018") in identity.video_ids
    assert list(identity.video_ids) == sorted(identity.video_ids)


# -- grouped_split -----------------------------------------------------------------------------


def big_corpus() -> list[VideoRecord]:
    """300 FF++-like + 140 Celeb-DF-like + 120 DFDC-like records, no splits."""
    records = ffpp(n_ids=100, splits=None) + celebdf(n_ids=20) + dfdc(split=None)
    return [r.replace(split=None) for r in records]


def test_grouped_split_has_no_leaks_and_keeps_components_whole(tmp_path):
    manifest = manifest_of(big_corpus() + deeperforensics(), tmp_path)
    result = grouped_split(manifest, keep_test=False)
    assert check_leaks(result) == []
    assert_components_whole(result)
    for fake in deeperforensics():  # the cross-dataset link holds too
        assert splits_of(result)[fake.key] == splits_of(result)[("ffpp", fake.original_id)]
    assert [r.key for r in result] == [r.key for r in manifest]
    assert result.roots == manifest.roots


def test_grouped_split_realised_ratios(tmp_path):
    manifest = manifest_of(big_corpus(), tmp_path)
    ratios = {"train": 0.7, "val": 0.15, "test": 0.15}
    result = grouped_split(manifest, tuple(ratios.values()), seed=3, keep_test=False)
    # Components are never cut: an FF++ pair with its fakes has 6 records, a DFDC real with its fakes
    # 4, a Celeb-DF identity pair 14. The greedy fill misses a split's target by at most about one
    # large component: allow one Celeb-DF pair, 14 / 560 = 2.5 %
    tolerance = 14 / len(manifest) + 1e-9
    counts = Counter(r.split for r in result)
    for split, ratio in ratios.items():
        assert abs(counts[split] / len(manifest) - ratio) <= tolerance, (split, counts)
    summary = split_summary(result).set_index("split")
    assert summary.loc["val", "share"] == pytest.approx(counts["val"] / len(manifest))


def test_grouped_split_is_stratified(tmp_path):
    result = grouped_split(manifest_of(big_corpus(), tmp_path), keep_test=False)
    for split in ("train", "val", "test"):
        part = [r for r in result if r.split == split]
        assert {r.label for r in part} == {0, 1}, split
        assert {r.dataset for r in part} == {"ffpp", "celebdf-v2", "dfdc"}, split
        assert {r.method for r in part if r.dataset == "ffpp"} == {"youtube", *FFPP_METHODS}, split


@pytest.mark.parametrize("seed", range(5))
def test_stratification_balances_methods_kept_in_separate_components(tmp_path, seed):
    # 50 FF++ pairs faked only with Deepfakes, 20 only with FaceSwap (4 records each): every split
    # must get its ratio of each kind of pair, within one pair
    records = [
        r
        for r in ffpp(n_ids=140, splits=None)
        if r.label == 0 or r.method == ("Deepfakes" if int(r.target_id) < 100 else "FaceSwap")
    ]
    result = grouped_split(manifest_of(records, tmp_path), keep_test=False, seed=seed)
    pairs = Counter((r.split, r.method) for r in result if r.label == 1 and r.target_id < r.source_id)
    for split, ratio in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(pairs[(split, "Deepfakes")] - 50 * ratio) <= 1, pairs
        assert abs(pairs[(split, "FaceSwap")] - 20 * ratio) <= 1, pairs


def test_grouped_split_is_seeded(tmp_path):
    manifest = manifest_of(big_corpus(), tmp_path)
    first = splits_of(grouped_split(manifest, seed=7, keep_test=False))
    assert splits_of(grouped_split(manifest, seed=7, keep_test=False)) == first
    assert splits_of(grouped_split(manifest, seed=8, keep_test=False)) != first


def test_keep_test_keeps_official_test_and_pulls_linked_records_in(tmp_path):
    manifest = manifest_of(ffpp(n_ids=60, splits=(20, 5, 5)) + celebdf(), tmp_path)
    official = {r.key for r in manifest if r.split == "test"}
    result = grouped_split(manifest, (0.8, 0.2, 0.0), seed=1)
    test = {r.key for r in result if r.split == "test"}
    assert official <= test
    # id0_0003 is official test, so id0 and its swap partner id1 move to test entirely
    moved = test - official
    pair = {r.key for r in manifest if r.dataset == "celebdf-v2" and r.target_id in ("id0", "id1")}
    assert moved == pair - {("celebdf-v2", "id0_0003")}
    assert all(splits_of(manifest)[key] == "train" for key in moved)
    assert check_leaks(result) == []
    assert {r.split for r in result if r.key not in test} == {"train", "val"}


def test_keep_test_false_replaces_official_splits(tmp_path):
    manifest = manifest_of(ffpp(n_ids=60, splits=(20, 5, 5)), tmp_path)
    official = {r.key for r in manifest if r.split == "test"}
    result = grouped_split(manifest, (0.5, 0.25, 0.25), keep_test=False)
    test = {r.key for r in result if r.split == "test"}
    assert test != official
    assert len(test) == pytest.approx(0.25 * len(manifest), abs=6)
    assert any(splits_of(result)[key] == "train" for key in official)


def test_keep_test_without_test_records_draws_all_three(tmp_path):
    manifest = manifest_of(big_corpus(), tmp_path)
    result = grouped_split(manifest, (0.8, 0.1, 0.1))
    counts = Counter(r.split for r in result)
    assert counts["test"] / len(result) == pytest.approx(0.1, abs=0.03)
    assert counts["train"] / len(result) == pytest.approx(0.8, abs=0.03)
    assert list(result) == list(grouped_split(manifest, (0.8, 0.1, 0.1), keep_test=False))


@pytest.mark.parametrize(
    "ratios",
    [(0.5, 0.5, 0.5), (0.9, 0.2, -0.1), (1.0, 0.0), (float("nan"), 0.5, 0.5), (0.2, 0.2, 0.2)],
)
def test_bad_ratios(tmp_path, ratios):
    with pytest.raises(ValueError, match="ratios"):
        grouped_split(manifest_of(ffpp(), tmp_path), ratios)


def test_keep_test_with_no_room_for_the_rest(tmp_path):
    with pytest.raises(ValueError, match="train/val"):
        grouped_split(manifest_of(ffpp(), tmp_path), (0.0, 0.0, 1.0))


def test_unknown_link_kind(tmp_path):
    with pytest.raises(ValueError, match="link kind"):
        grouped_split(manifest_of(ffpp(), tmp_path), by=("identity", "face"))


def test_by_original_only_may_split_identities(tmp_path):
    # DFDC-style links only: Celeb-DF identities may cross splits, originals never do
    manifest = manifest_of(celebdf(test_ids=()), tmp_path)
    results = [grouped_split(manifest, seed=s, keep_test=False, by=("original",)) for s in range(5)]
    assert all(check_leaks(r, identities=False) == [] for r in results)
    assert any(check_leaks(r) for r in results)


def test_huge_component_goes_whole_and_warns(tmp_path, caplog):
    # every Celeb-DF-like clip shares one identity: a single component that cannot be divided
    records = [r.replace(split=None, source_id="id0") for r in celebdf()]
    result = grouped_split(manifest_of(records, tmp_path), keep_test=False)
    warned = [r for r in caplog.records if r.name == "dftoolkit.splits" and r.levelname == "WARNING"]
    assert {r.getMessage().split(" got ")[0] for r in warned} == {
        "grouped_split: split 'val'",
        "grouped_split: split 'test'",
    }
    assert {r.split for r in result} == {"train"}


def test_split_summary(tmp_path):
    summary = split_summary(manifest_of(ffpp() + dfdc(n_reals=2, split=None), tmp_path))
    assert list(summary.columns) == ["split", "real", "fake", "videos", "share"]
    assert summary["split"].tolist() == ["train", "val", "test", "-"]
    assert summary[["real", "fake"]].values.tolist() == [[12, 24], [4, 8], [4, 8], [2, 6]]
    assert summary["share"].sum() == pytest.approx(1.0)
    assert summary["share"].iloc[0] == pytest.approx(36 / 68)


# -- cross_dataset_split ---------------------------------------------------------------------


@pytest.fixture
def corpora(tmp_path) -> Manifest:
    return manifest_of(ffpp() + celebdf() + dfdc(split=None) + deeperforensics(), tmp_path)


def test_cross_dataset_train_keeps_train_val_and_drops_test(corpora):
    result = cross_dataset_split(corpora, ["ffpp"], ["celebdf-v2"])
    official = splits_of(corpora)
    ffpp_part = {key: split for key, split in splits_of(result).items() if key[0] == "ffpp"}
    assert ffpp_part == {key: s for key, s in official.items() if key[0] == "ffpp" and s != "test"}
    celeb = [r for r in result if r.dataset == "celebdf-v2"]
    assert len(celeb) == sum(r.dataset == "celebdf-v2" for r in corpora)
    assert {r.split for r in celeb} == {"test"}
    assert result.datasets == ["celebdf-v2", "ffpp"]
    assert set(result.roots) == {"celebdf-v2", "ffpp"}


def test_cross_dataset_carves_val_when_missing(corpora):
    result = cross_dataset_split(corpora, ["celebdf-v2"], ["ffpp"], val_ratio=0.25, seed=2)
    celeb = [r for r in result if r.dataset == "celebdf-v2"]
    assert {r.key for r in celeb} == {
        r.key for r in corpora if r.dataset == "celebdf-v2" and r.split == "train"
    }
    assert {r.split for r in celeb} == {"train", "val"}
    assert check_leaks(Manifest(celeb)) == []


def test_cross_dataset_unsplit_train_dataset_is_grouped(corpora):
    result = cross_dataset_split(corpora, ["dfdc"], ["deeperforensics"], val_ratio=0.2)
    counts = Counter(r.split for r in result if r.dataset == "dfdc")
    assert set(counts) == {"train", "val"}
    assert counts["val"] / sum(counts.values()) == pytest.approx(0.2, abs=0.04)  # components of 4 in 120
    assert check_leaks(result) == []


def test_cross_dataset_test_split_only(corpora):
    result = cross_dataset_split(corpora, ["ffpp"], ["celebdf-v2"], test_split_only=True)
    celeb = {r.key for r in result if r.dataset == "celebdf-v2"}
    assert celeb == {r.key for r in corpora if r.dataset == "celebdf-v2" and r.split == "test"}
    with pytest.raises(ValueError, match="no official test"):
        cross_dataset_split(corpora, ["ffpp"], ["dfdc"], test_split_only=True)


def test_cross_dataset_name_errors(corpora):
    with pytest.raises(ValueError, match="both in train and test"):
        cross_dataset_split(corpora, ["ffpp", "dfdc"], ["dfdc"])
    with pytest.raises(ValueError, match=r"unknown test dataset.*celebdf-v1.*present.*deeperforensics"):
        cross_dataset_split(corpora, ["ffpp"], ["celebdf-v1"])
    with pytest.raises(ValueError, match="val_ratio"):
        cross_dataset_split(corpora, ["ffpp"], ["dfdc"], val_ratio=1.0)
    with pytest.raises(ValueError, match="no train records"):
        cross_dataset_split(corpora, ["deeperforensics"], ["dfdc"])
