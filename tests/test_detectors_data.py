"""The detectors' datasets on a real FaceStore: two sample reals and their swapped fakes, every frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dftoolkit import Manifest
from dftoolkit.detectors import build_detector
from dftoolkit.detectors.data import FaceClipDataset, FaceFrameDataset, default_augment, loader
from dftoolkit.faces.geometry import box_matrix, warp
from dftoolkit.video import VideoReader, sample_indices

STIL = build_detector("stil", "small").spec  # face 64 px, 8 segments (16 at test), N(TC)HW
LIPS = build_detector("lipforensics", "small").spec  # mouth 32 px grey, 25 consecutive, NCTHW
FEW = "jesper_few"  # jesper_webcam's frames with only 3 of them ok


@pytest.fixture(scope="module")
def store(swap_store):
    """Every frame of the reals and of one naive swap each way, face and mouth crops, plus FEW
    (added to the session's store: a video no manifest names)."""
    made = swap_store
    table = made.frames_of("srdf", "jesper_webcam")
    table["video_id"] = FEW
    bad = ~table.frame_index.isin([0, 10, 20])
    table.loc[bad, ["status", "reason"]] = ["no_face", "made faceless for the test"]
    for column in ("crop_path_face", "crop_path_mouth", "crop_path_ffhq"):
        table.loc[bad, column] = None
    folder = made.root / "videos" / "srdf"
    (folder / FEW).mkdir()
    schema = pq.read_schema(folder / "jesper_webcam" / "frames.parquet")
    pq.write_table(pa.Table.from_pandas(table, schema, preserve_index=False), folder / FEW / "frames.parquet")
    return made


def _pixels(item, spec) -> torch.Tensor:
    """The item's clip de-normalised, as ``(T, C, H, W)`` values in [0, 1]."""
    clip, c = item["clip"], spec.channels
    clip = clip.transpose(0, 1) if spec.layout == "NCTHW" else clip.reshape(-1, c, *clip.shape[-2:])
    return clip * torch.tensor(spec.std).view(-1, 1, 1) + torch.tensor(spec.mean).view(-1, 1, 1)


@pytest.mark.parametrize(("spec", "train"), [(STIL, False), (STIL, True), (LIPS, False), (LIPS, True)])
def test_items_follow_the_clip_item_contract(store, spec, train):
    data = FaceClipDataset(store, spec, train=train, augment=default_augment(spec))
    assert len(data) == 4 and data.skipped == {f"srdf/{FEW}": "not in the manifest (no label)"}
    t = spec.frames if train else spec.test_frames or spec.frames
    shape = (spec.channels, t, spec.size, spec.size) if spec.layout == "NCTHW" else (t * 3, 64, 64)
    for item in (data[0], data[3]):
        assert set(item) == {"clip", "label", "frame_labels", "frames", "dataset", "video_id", "method"}
        assert item["clip"].shape == shape and item["clip"].dtype == torch.float32
        assert item["frames"].shape == item["frame_labels"].shape == (t,)
        assert item["frames"].dtype == torch.int64 and item["frame_labels"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].shape == ()
        pixels = _pixels(item, spec)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.05
    assert [v.video_id for v in data.videos] == sorted(v.video_id for v in data.videos)


def test_test_crops_at_the_stored_scale_and_size_are_the_stored_crops(store):
    spec = dataclasses.replace(STIL, size=256)
    item = FaceClipDataset(store, spec)[0]
    stored = store.clip(item["video_id"], "face", frames=16, dataset=item["dataset"])
    assert torch.equal((_pixels(item, spec) * 255).round().to(torch.uint8), torch.from_numpy(stored))


def test_face_crops_at_other_scales_match_a_crop_from_the_video(store):
    """Narrower than stored (1.0): from the stored crops, close to the video's; wider (1.45): the video's."""
    for scale, tolerance in ((1.0, 2.0), (1.45, 0.0)):
        spec = dataclasses.replace(STIL, train_scale=(scale, scale))
        data = FaceClipDataset(store, spec, train=True)
        item, video = data[0], data.videos[0]
        frames = item["frames"].numpy()
        boxes = np.stack(store.frames_of(video.dataset, video.video_id).set_index("frame_index").box[frames])
        expected = warp(VideoReader(video.path).read(frames), box_matrix(boxes, 64, scale), 64)
        got = (_pixels(item, spec) * 255).round().permute(0, 2, 3, 1).numpy()
        assert np.abs(got - expected).mean() <= tolerance, scale


def test_segments_are_spread_at_test_and_reproducible_per_epoch_in_training(store):
    test = FaceClipDataset(store, STIL)
    first = test[0]
    assert torch.equal(first["clip"], test[0]["clip"])
    assert first["frames"].tolist() == sample_indices(120, 16, "segments").tolist()  # the middles
    train = FaceClipDataset(store, STIL, train=True, seed=5, augment=default_augment(STIL))
    draws = {}
    for epoch in (0, 1):
        train.set_epoch(epoch)
        draws[epoch] = train[0]
        frames = draws[epoch]["frames"].numpy()
        assert len(frames) == 8 and (np.diff(frames) > 0).all() and (frames // 15 == np.arange(8)).all()
    assert not torch.equal(draws[0]["frames"], draws[1]["frames"])
    again = FaceClipDataset(store, STIL, train=True, seed=5, augment=default_augment(STIL))
    again.set_epoch(1)
    assert torch.equal(again[0]["clip"], draws[1]["clip"]) and torch.equal(
        again[0]["frames"], draws[1]["frames"]
    )


def test_consecutive_clips_have_consecutive_frames(store):
    centre = FaceClipDataset(store, LIPS)[0]["frames"]  # carphone: 120 frames
    assert centre.tolist() == list(range(47, 72))
    train = FaceClipDataset(store, LIPS, train=True)
    for epoch in range(3):
        train.set_epoch(epoch)
        for item in (train[0], train[1]):
            assert (np.diff(item["frames"].numpy()) == 1).all() and len(item["frames"]) == 25


def test_a_video_with_too_few_usable_frames_is_skipped_not_replaced(store):
    kept = store.manifest()
    jesper = next(r for r in kept if r.video_id == "jesper_webcam")
    extra = [dataclasses.replace(jesper, video_id=FEW), dataclasses.replace(jesper, video_id="absent")]
    manifest = Manifest([*kept, *extra], roots=kept.roots)
    for spec in (STIL, LIPS):
        data = FaceClipDataset(store, spec, manifest=manifest)
        need = spec.test_frames or spec.frames
        assert len(data) == 4 and FEW not in {v.video_id for v in data.videos}
        assert data.skipped == {
            f"srdf/{FEW}": f"3 usable frames, a clip needs {need}",
            "srdf/absent": "not in the store (no committed video)",
        }
    three = dataclasses.replace(LIPS, frames=3)
    runs = FaceClipDataset(store, three, manifest=manifest, train=True)
    assert runs.skipped[f"srdf/{FEW}"] == "no run of 3 consecutive usable frames"  # frames 0, 10, 20


def test_frame_labels_and_records(store):
    data = FaceClipDataset(store, STIL)
    for item in (data[i] for i in range(len(data))):
        fake = item["video_id"].startswith("swap")
        assert item["label"] == int(fake) and item["method"] == ("swap+naive" if fake else "real")
        assert item["frame_labels"].tolist() == [float(fake)] * 16 and item["dataset"] == "srdf"


def test_split_keeps_that_splits_videos(store):
    manifest = store.manifest().map_records(
        lambda r: dataclasses.replace(r, split="test" if "jesper_webcam_" in r.video_id else "train")
    )
    data = FaceClipDataset(store, STIL, split="test", manifest=manifest)
    assert [v.video_id for v in data.videos] == ["swap-naive-jesper_webcam_carphone_pristine"]


def test_frame_dataset_gives_evenly_spaced_single_frames(store):
    spec = dataclasses.replace(STIL, sampling="frame", layout="NCHW", frames=1, test_frames=None)
    data = FaceFrameDataset(store, spec, frames_per_video=5)
    assert len(data) == 20 and data[0]["clip"].shape == (3, 64, 64)
    assert [int(data[i]["frames"][0]) for i in range(5)] == sample_indices(120, 5, "even").tolist()
    assert len(FaceFrameDataset(store, spec)) == 2 * (120 + 68)
    with pytest.raises(ValueError, match="FaceClipDataset"):
        FaceFrameDataset(store, STIL)


def _batches(data, train: bool, workers: int, epochs: int) -> list[dict]:
    batches = []
    load = loader(data, 2, train=train, workers=workers, seed=3)
    for epoch in range(epochs):
        data.set_epoch(epoch)
        batches += list(load)
    return batches


@pytest.mark.parametrize("train", [False, True])
def test_workers_give_the_same_batches(store, train):
    """Also in training, across epochs: set_epoch reaches the persistent workers."""
    make = lambda: FaceClipDataset(store, STIL, train=train, augment=default_augment(STIL))  # noqa: E731
    alone, pooled = _batches(make(), train, 0, 2), _batches(make(), train, 2, 2)
    assert len(alone) == len(pooled) == 4
    for a, b in zip(alone, pooled, strict=True):
        assert a["video_id"] == b["video_id"] and isinstance(a["video_id"], list)
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["frames"], b["frames"])
    if train:  # each epoch drew other frames of each video
        drawn = [
            {v: tuple(f.tolist()) for b in epoch for v, f in zip(b["video_id"], b["frames"], strict=True)}
            for epoch in (alone[:2], alone[2:])
        ]
        assert all(drawn[0][v] != drawn[1][v] for v in drawn[0].keys() & drawn[1].keys())


def test_masks_are_the_stored_ones_for_fakes_and_zero_for_reals(store):
    """At the stored scale and size the mask is the store's; a fake with only hull masks is weighted 0."""
    table = store.frames()
    fakes = table.video_id.str.startswith("swap")
    assert set(table[fakes].mask_source) == {"generated"} and set(table[~fakes].mask_source) == {"hull"}
    spec = dataclasses.replace(STIL, size=256, masks=True)
    data = FaceClipDataset(store, spec)
    items = {v.video_id: data[i] for i, v in enumerate(data.videos)}
    swap = "swap-naive-carphone_pristine_jesper_webcam"
    fake, real = items[swap], items["carphone_pristine"]
    stored = store.masks(swap, "face", frames=16, dataset="srdf")  # the same segment middles
    assert fake["mask"].shape == (16, 1, 256, 256) and fake["mask"].dtype == torch.float32
    assert torch.equal(fake["mask"], torch.from_numpy(stored > 127).float())
    assert 0.05 < fake["mask"].mean() < 0.9 and fake["mask_weight"] == 1
    assert real["mask"].abs().sum() == 0 and real["mask_weight"] == 1
    k = next(i for i, v in enumerate(data.videos) if v.video_id == swap)
    hull = data.videos[k].mask_source.copy()
    hull[np.searchsorted(data.videos[k].frames, int(fake["frames"][5]))] = "hull"  # one frame of the clip
    data.videos[k] = dataclasses.replace(data.videos[k], mask_source=hull)
    only_hull = data[k]
    assert torch.equal(only_hull["mask"], fake["mask"]) and only_hull["mask_weight"] == 0
    assert "mask" not in FaceClipDataset(store, STIL)[0]  # only when the spec asks


def test_masks_of_resized_and_mouth_crops_and_frames(store):
    spec = dataclasses.replace(STIL, masks=True)  # 64 px from the 256 px store: area, then 0/1
    fake = next(i for i, v in enumerate(FaceClipDataset(store, spec).videos) if v.label == 1)
    item = FaceClipDataset(store, spec)[fake]
    assert item["mask"].shape == (16, 1, 64, 64) and set(item["mask"].unique().tolist()) == {0.0, 1.0}
    lips = FaceClipDataset(store, dataclasses.replace(LIPS, masks=True))[fake]
    assert lips["mask"].shape == (25, 1, 32, 32) and lips["mask"].max() == 1
    frame_spec = dataclasses.replace(spec, sampling="frame", layout="NCHW", frames=1, test_frames=None)
    frames = FaceFrameDataset(store, frame_spec, frames_per_video=2)
    assert frames[2 * fake]["mask"].shape == (1, 64, 64)


def test_augmentation_flips_the_mask_with_the_clip(store):
    from torchvision.transforms import v2

    spec = dataclasses.replace(STIL, masks=True)
    plain = FaceClipDataset(store, spec, train=True, seed=1)
    flipped = FaceClipDataset(store, spec, train=True, seed=1, augment=v2.RandomHorizontalFlip(p=1))
    fake = next(i for i, v in enumerate(plain.videos) if v.label == 1)
    a, b = plain[fake], flipped[fake]
    assert torch.equal(a["frames"], b["frames"])
    assert torch.equal(b["mask"], a["mask"].flip(-1)) and torch.allclose(b["clip"], a["clip"].flip(-1))
    assert not torch.equal(a["mask"], b["mask"])


def test_dense_sampling_takes_a_run_from_each_segment(store):
    spec = dataclasses.replace(STIL, sampling="dense", frames=8, test_frames=8, segment_frames=4)
    centre = FaceClipDataset(store, spec)[0]["frames"]  # carphone: 120 frames, segments [0, 60), [60, 120)
    assert centre.tolist() == [*range(28, 32), *range(88, 92)]
    train = FaceClipDataset(store, spec, train=True)
    starts = set()
    for epoch in range(4):
        train.set_epoch(epoch)
        runs = train[0]["frames"].numpy().reshape(2, 4)
        assert (np.diff(runs, axis=1) == 1).all() and runs[0, 0] <= 56 and 60 <= runs[1, 0] <= 116
        starts.add(tuple(runs[:, 0]))
    assert len(starts) > 1
    with pytest.raises(ValueError, match="segment_frames"):
        dataclasses.replace(spec, segment_frames=3)  # does not divide 8
    with pytest.raises(ValueError, match="segment_frames"):
        dataclasses.replace(STIL, segment_frames=4)  # not dense


def test_fixed_alignment_cuts_every_frame_with_the_median_box(store):
    with pytest.raises(ValueError, match="fixed_alignment"):
        dataclasses.replace(LIPS, fixed_alignment=True)
    for scale, tolerance in ((1.0, 2.0), (1.45, 0.0)):  # from the stored crops; from the video
        spec = dataclasses.replace(STIL, train_scale=(scale, scale), fixed_alignment=True)
        data = FaceClipDataset(store, spec, train=True)
        item, video = data[0], data.videos[0]
        frames = item["frames"].numpy()
        boxes = np.stack(store.frames_of(video.dataset, video.video_id).set_index("frame_index").box[frames])
        one = box_matrix(np.median(boxes, axis=0)[None], 64, scale)[0]
        expected = warp(VideoReader(video.path).read(frames), one, 64)
        got = (_pixels(item, spec) * 255).round().permute(0, 2, 3, 1).numpy()
        assert np.abs(got - expected).mean() <= tolerance, scale
