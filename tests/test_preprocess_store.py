"""FaceStore: atomic per-video commits, frame tables, clips, yields and sheets, on real sample frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from dftoolkit.cli.faces import register
from dftoolkit.manifest import Manifest
from dftoolkit.preprocess import store as store_module
from dftoolkit.preprocess.store import FaceStore, StoredTrack, VideoFaces
from dftoolkit.records import VideoRecord
from dftoolkit.video import VideoReader, sample_indices

CONFIG = {"backend": "test", "crop_size": 64, "crops": ["face", "mouth"], "frames": 12}
BOX = (40, 8, 136, 120)  # x0, y0, x1, y1 in carphone's 176x144 frames
SIZE = 64
MOUTH = 96
FAILED = {2: ("no_face", "no face found by the detector"), 7: ("decode_error", "packet 57 is corrupt")}


@pytest.fixture(scope="module")
def carphone(sample):
    """12 evenly sampled real frames of carphone: ``(indices, (12, 144, 176, 3) uint8)``."""
    reader = VideoReader(sample("carphone_pristine"))
    indices = sample_indices(reader.num_frames, 12)
    return indices, reader.read(indices)


def crop_matrix(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The 2x3 map from frame pixels to a ``size``-pixel resize of ``box``."""
    x0, y0, x1, y1 = box
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)


def make_result(carphone, dataset="samples", video_id="carphone", failed=FAILED, shift=0) -> VideoFaces:
    """VideoFaces from real frames: crops are cv2 resizes of fixed boxes, masks filled ellipses."""
    indices, frames = carphone
    n = len(indices)
    x0, y0, x1, y1 = BOX
    mouth_box = (x0 + 20, y0 + 60, x1 - 20, y1)
    status = ["ok"] * n
    reason: list[str | None] = [None] * n
    for i, (s, r) in failed.items():
        status[i], reason[i] = s, r
    ok = np.array([s == "ok" for s in status])
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.stack([88 + 30 * np.cos(angles), 64 + 40 * np.sin(angles)], axis=1)
    landmarks = np.stack([ring + np.array([shift + i, 0]) for i in range(n)]).astype(np.float32)
    landmarks[~ok] = np.nan
    boxes = np.tile(np.array(BOX, np.float32), (n, 1))
    boxes[~ok] = np.nan
    face_mask = cv2.ellipse(np.zeros((SIZE, SIZE), np.uint8), (32, 34), (20, 26), 0, 0, 360, 255, -1)
    mouth_mask = cv2.ellipse(np.zeros((MOUTH, MOUTH), np.uint8), (48, 48), (30, 14), 0, 0, 360, 255, -1)
    faces, mouths = [], []
    for frame, keep in zip(frames, ok, strict=True):
        face = cv2.resize(frame[y0:y1, x0:x1], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        mouth = cv2.cvtColor(
            frame[mouth_box[1] : mouth_box[3], mouth_box[0] : mouth_box[2]], cv2.COLOR_RGB2GRAY
        )
        faces.append(face if keep else None)
        mouths.append(cv2.resize(mouth, (MOUTH, MOUTH), interpolation=cv2.INTER_AREA) if keep else None)
    matrices = np.stack([crop_matrix(BOX, SIZE)] * n)
    matrices[~ok] = np.nan
    return VideoFaces(
        dataset=dataset,
        video_id=video_id,
        frame_indices=indices,
        status=status,
        reason=reason,
        face_index=np.where(ok, 0, -1),
        scores=np.where(ok, 0.9, np.nan).astype(np.float32),
        boxes=boxes,
        landmarks=landmarks,
        crops={"face": faces, "mouth": mouths},
        masks={
            "face": [face_mask if k else None for k in ok],
            "mouth": [mouth_mask if k else None for k in ok],
        },
        matrices={"face": matrices},
    )


@pytest.fixture
def store(tmp_path):
    return FaceStore.create(tmp_path / "store", CONFIG)


def ok_crops(result: VideoFaces, kind: str = "face") -> np.ndarray:
    return np.stack([c for c in result.crops[kind] if c is not None])


# -- round trip ------------------------------------------------------------------------------


def test_commit_round_trip_png(store, carphone):
    result = make_result(carphone)
    folder = store.commit(result)
    assert folder == store.root / "videos" / "samples" / "carphone" and (folder / "frames.parquet").is_file()
    table = store.frames_of(None, "carphone")
    assert table.frame_index.tolist() == carphone[0].tolist()
    assert table.status.tolist() == result.status
    assert [None if pd.isna(r) else r for r in table.reason] == result.reason
    assert table.face_index.tolist() == result.face_index.tolist()
    np.testing.assert_array_equal(table.score.to_numpy(), result.scores)
    ok = table.status == "ok"
    landmarks = np.stack(table.landmarks[ok]).reshape(-1, 68, 2)
    np.testing.assert_array_equal(landmarks, result.landmarks[ok.to_numpy()])
    assert table.landmarks[~ok].isna().all() and table.box[~ok].isna().all()
    np.testing.assert_array_equal(np.stack(table.box[ok]), result.boxes[ok.to_numpy()])
    np.testing.assert_array_equal(
        np.stack(table.matrix_face[ok]).reshape(-1, 2, 3), result.matrices["face"][ok]
    )
    assert table.matrix_mouth.isna().all()  # no matrices given for mouth
    # pixels: PNG is exact, RGB order kept
    np.testing.assert_array_equal(store.clip("carphone"), ok_crops(result).transpose(0, 3, 1, 2))
    masks = store.masks("carphone")
    assert masks.shape == (10, 1, SIZE, SIZE)
    np.testing.assert_array_equal(masks[:, 0], np.stack([m for m in result.masks["face"] if m is not None]))
    assert set(np.unique(masks)) == {0, 255}
    assert sorted(p.name for p in (folder / "face").iterdir())[0] == f"{carphone[0][0]:06d}.png"


def test_track_reads_the_kept_face_back(store, carphone):
    result = make_result(carphone)
    store.commit(result)
    track = store.track("samples", "carphone")
    assert isinstance(track, StoredTrack) and len(track) == len(result.frame_indices)
    assert track.frame_indices.dtype == np.int64 and track.frame_indices.tolist() == carphone[0].tolist()
    assert track.status == result.status
    assert track.boxes.shape == (12, 4) and track.boxes.dtype == np.float32
    assert track.landmarks.shape == (12, 68, 2) and track.landmarks.dtype == np.float32
    np.testing.assert_array_equal(track.boxes, result.boxes)  # NaN rows where no face
    np.testing.assert_array_equal(track.landmarks, result.landmarks)
    np.testing.assert_array_equal(track.scores, result.scores)
    assert track.face_index.tolist() == result.face_index.tolist()
    assert track.found.tolist() == [s == "ok" for s in result.status]

    with pytest.raises(KeyError, match="samples/nope"):
        store.track("samples", "nope")
    with pytest.raises(KeyError, match="other/carphone"):
        store.track("other", "carphone")


def test_track_of_a_frame_that_failed_the_score(store, carphone):
    """A low-score frame keeps its score in the frame table but has no face: NaN in the track."""
    result = make_result(carphone, failed={})
    result.status[3], result.reason[3] = "low_score", "face score 0.20 < min_score 0.5"
    for name in ("crops", "masks"):
        for images in getattr(result, name).values():
            images[3] = None
    result.boxes[3], result.landmarks[3], result.matrices["face"][3] = np.nan, np.nan, np.nan
    store.commit(result)
    track = store.track("samples", "carphone")
    assert store.frames_of("samples", "carphone").score[3] == pytest.approx(0.9)
    assert np.isnan(track.scores[3]) and np.isnan(track.boxes[3]).all() and track.face_index[3] == -1
    assert track.found.sum() == 11


def test_commit_jpeg_is_close_and_masks_stay_png(store, carphone):
    result = make_result(carphone)
    store.commit(result, image_format="jpg", jpeg_quality=95)
    table = store.frames("face")
    assert all(p.endswith(".jpg") for p in table.crop_path.dropna())
    assert all(p.endswith(".png") for p in table.mask_path_face.dropna())
    clip = store.clip("carphone").astype(np.int16)
    diff = np.abs(clip - ok_crops(result).transpose(0, 3, 1, 2))
    assert 0 < diff.mean() < 3
    with pytest.raises(ValueError, match="image_format"):
        store.commit(result, image_format="webp")


def test_frames_concatenates_datasets_and_paths_point_at_files(store, carphone, sample):
    reader = VideoReader(sample("jesper_webcam"))
    jesper_indices = sample_indices(reader.num_frames, 12)
    frames = np.stack([cv2.resize(f, (176, 144)) for f in reader.read(jesper_indices)])
    jesper = (jesper_indices, frames)
    store.commit(make_result(carphone, dataset="b", video_id="carphone"))
    face_only = make_result(jesper, dataset="a", video_id="jesper", failed={})
    face_only.crops.pop("mouth"), face_only.masks.pop("mouth")
    store.commit(face_only)
    table = store.frames(crop="face")
    assert len(table) == 24
    assert table[["dataset", "video_id"]].drop_duplicates().values.tolist() == [
        ["a", "jesper"],
        ["b", "carphone"],
    ]
    assert (table.crop_path.isna() == (table.status != "ok")).all()
    assert table.crop_path_mouth[table.video_id == "jesper"].isna().all()  # no mouth crops: null
    assert table.crop_path_mouth[(table.video_id == "carphone") & (table.status == "ok")].notna().all()
    assert table.crop_path.equals(table.crop_path_face)
    for column in ("crop_path_face", "crop_path_mouth", "mask_path_face"):
        for rel in table[column].dropna():
            assert not rel.startswith("/") and store.path(rel).is_file()
    assert store.frames().columns.tolist()[:9] == [
        "dataset", "video_id", "frame_index", "status", "reason", "face_index", "score", "box", "landmarks",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="crop kinds"):
        store.frames(crop="ffhq")


# -- clips -----------------------------------------------------------------------------------


def test_clip_order_even_picks_repeats_and_mouth(store, carphone):
    result = make_result(carphone)
    store.commit(result)
    full = store.clip("carphone")
    assert full.shape == (10, 3, SIZE, SIZE) and full.dtype == np.uint8
    picked = store.clip("carphone", frames=5)
    np.testing.assert_array_equal(picked, full[[1, 3, 5, 7, 9]])  # middle of 5 equal segments of 10
    repeated = store.clip("carphone", frames=25)
    assert repeated.shape[0] == 25
    which = [next(k for k in range(10) if np.array_equal(frame, full[k])) for frame in repeated]
    assert which == sorted(which) and set(which) == set(range(10))
    assert set(np.bincount(which)) <= {2, 3}  # each ok frame T // K or T // K + 1 times
    mouth = store.clip("carphone", crop="mouth", frames=4)
    assert mouth.shape == (4, 1, 88, 88)
    stored = ok_crops(result, "mouth")[sample_indices(10, 4, "segments")]
    np.testing.assert_array_equal(mouth[:, 0], stored[:, 4:92, 4:92])
    assert store.masks("carphone", crop="mouth", frames=4).shape == (4, 1, 88, 88)


def test_clip_errors(store, carphone):
    every = {i: ("no_face", "nothing detected") for i in range(6)}
    every.update({i: ("decode_error", "bad packet") for i in range(6, 12)})
    store.commit(make_result(carphone, video_id="empty", failed=every))
    with pytest.raises(ValueError, match=r"samples/empty has no ok frames.*no_face.*6.*decode_error"):
        store.clip("empty")
    store.commit(make_result(carphone))
    with pytest.raises(LookupError, match="'nope' is not in the store"):
        store.clip("nope")
    with pytest.raises(ValueError, match="no 'aligned' crops"):
        store.clip("carphone", crop="aligned")
    store.commit(make_result(carphone, dataset="other"))
    with pytest.raises(ValueError, match=r"several datasets \['other', 'samples'\]"):
        store.clip("carphone")
    assert store.clip("carphone", dataset="other", frames=2).shape == (2, 3, SIZE, SIZE)


def test_unreadable_video_row(store, carphone):
    unreadable = VideoFaces(
        dataset="samples",
        video_id="broken",
        frame_indices=np.array([-1]),
        status=["decode_error"],
        reason=["broken.mp4: moov atom not found"],
        face_index=np.array([-1]),
        scores=np.full(1, np.nan),
        boxes=np.full((1, 4), np.nan),
        landmarks=np.full((1, 68, 2), np.nan),
        crops={"face": [None]},
        masks={"face": [None]},
    )
    store.commit(unreadable)
    store.commit(make_result(carphone))
    assert store.summary().loc[0].tolist() == ["samples", 2, 13, 10, 2, 1, round(10 / 13, 4)]
    with pytest.raises(
        ValueError, match=r"broken has no ok frames \(1 sampled; statuses \{'decode_error': 1\}"
    ):
        store.clip("broken")
    with pytest.raises(LookupError, match="'broken' of dataset 'ffpp' is not in the store"):
        store.clip("broken", dataset="ffpp")
    fields = {name: getattr(unreadable, name) for name in unreadable.__dataclass_fields__}
    with pytest.raises(ValueError, match="frame -1 stands for the whole video"):
        VideoFaces(**{**fields, "status": ["ok"], "crops": {}, "masks": {}})


def test_masks_missing_is_an_error(store, carphone):
    result = make_result(carphone)
    result.masks["face"][0] = None
    store.commit(result)
    with pytest.raises(ValueError, match=r"no mask_path_face for frame\(s\) \[0\]"):
        store.masks("carphone")


# -- listing, atomicity, config ----------------------------------------------------------------


def test_has_and_videos(store, carphone):
    assert store.videos() == [] and not store.has("samples", "carphone")
    store.commit(make_result(carphone))
    store.commit(make_result(carphone, dataset="ffpp", video_id="000_003"))
    assert store.has("samples", "carphone") and not store.has("ffpp", "carphone")
    assert store.videos() == [("ffpp", "000_003"), ("samples", "carphone")]
    assert FaceStore(store.root).videos() == store.videos()


def test_commit_is_atomic(store, carphone, monkeypatch):
    store.commit(make_result(carphone))
    before = store.frames_of(None, "carphone")
    real_write = store_module._write_image
    calls = []

    def failing(path, image, params):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real_write(path, image, params)

    monkeypatch.setattr(store_module, "_write_image", failing)
    changed = make_result(carphone, failed={0: ("low_score", "score 0.2 below 0.5")})
    with pytest.raises(OSError, match="disk full"):
        store.commit(changed)
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        store.commit(make_result(carphone, video_id="fresh"))
    assert store.frames_of(None, "carphone").equals(before)  # old folder intact
    assert not store.has("samples", "fresh") and not (store.root / "videos" / "samples" / "fresh").exists()
    assert sorted(p.name for p in (store.root / "videos" / "samples").iterdir()) == ["carphone"]
    monkeypatch.setattr(store_module, "_write_image", real_write)
    store.commit(changed)  # a rerun replaces the old folder once complete
    assert store.frames_of(None, "carphone").status.iloc[0] == "low_score"


def test_clean_partial_removes_leftovers(store, carphone):
    import shutil

    folder = store.commit(make_result(carphone))
    leftover = folder.parent / ".carphone.k1ll3d00"  # what a killed atomic_dir leaves
    shutil.copytree(folder, leftover)
    stray = store.root / ".store.json.abc123.json"
    stray.write_text("{")
    assert store.videos() == [("samples", "carphone")] and len(store.frames()) == 12
    assert sorted(store.clean_partial()) == sorted([leftover, stray])
    assert not leftover.exists() and not stray.exists() and store.has("samples", "carphone")
    assert store.clean_partial() == []


def test_config_reuse_and_mismatch(store):
    same = FaceStore.create(store.root, {**CONFIG, "crops": ("face", "mouth")})  # tuple == stored list
    assert same.config == CONFIG
    with pytest.raises(ValueError, match="resuming needs the same settings") as info:
        FaceStore.create(store.root, {**CONFIG, "crop_size": 128, "detector_threshold": 0.5})
    message = str(info.value)
    assert "crop_size: stored 64, given 128" in message and "detector_threshold: stored <absent>" in message
    assert "frames" not in message.split("Differing keys:")[1]
    with pytest.raises(TypeError, match="JSON-serialisable"):
        FaceStore.create(store.root / "x", {"bad": object()})


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        FaceStore(tmp_path / "none")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "store.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        FaceStore(bad)
    with pytest.raises(ValueError, match="not valid JSON"):
        FaceStore.create(bad, CONFIG)
    (bad / "store.json").write_text(json.dumps({"schema_version": 99, "config": {}}))
    with pytest.raises(ValueError, match="schema version 99 is newer"):
        FaceStore(bad)
    (bad / "store.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="expected"):
        FaceStore(bad)


# -- summary and sheet ----------------------------------------------------------------------------


def test_summary_yields(store, carphone):
    assert store.summary().columns.tolist() == ["dataset", "videos", "sampled", "ok", "yield"]
    store.commit(make_result(carphone))
    store.commit(make_result(carphone, video_id="again", failed={0: ("low_score", "score 0.3")}))
    store.commit(make_result(carphone, dataset="other", failed={}))
    summary = store.summary().set_index("dataset")
    assert summary.columns.tolist() == [
        "videos",
        "sampled",
        "ok",
        "decode_error",
        "low_score",
        "no_face",
        "yield",
    ]
    assert summary.loc["samples"].tolist() == [2, 24, 21, 1, 1, 1, round(21 / 24, 4)]
    assert summary.loc["other"].tolist() == [1, 12, 12, 0, 0, 0, 1.0]
    with pytest.raises(ValueError, match="needs the input manifest"):
        store.summary(by=("dataset", "method"))
    records = [
        VideoRecord("samples", "carphone", "carphone.mp4", 0, method="real"),
        VideoRecord("samples", "again", "again.mp4", 1, method="swap"),
        VideoRecord("other", "carphone", "carphone.mp4", 1, method="swap"),
    ]
    store.set_manifest(Manifest(records, root=store.root.parent))
    by_method = store.summary(by=("label", "method")).set_index("method")
    assert by_method.loc["swap"].tolist() == ["fake", 2, 24, 23, 0, 1, 0, round(23 / 24, 4)]
    assert by_method.loc["real", "yield"] == round(10 / 12, 4)
    with pytest.raises(ValueError, match="unknown field"):
        store.summary(by=("colour",))


def test_sheet(store, carphone, tmp_path):
    result = make_result(carphone)
    store.commit(result)
    out = store.sheet("carphone", tmp_path / "sheet.png", crops=("face", "mouth"), max_frames=6)
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert sheet.shape == (4 * (96 + 2), 180 + 6 * 96, 3)  # face, face mask, mouth, mouth mask rows
    face_row = sheet[:96, 180:].astype(int)
    green = (face_row[..., 1] > 200) & (face_row[..., 0] < 80) & (face_row[..., 2] < 80)
    assert green.sum() > 50  # landmarks drawn through the stored matrix
    first_crop = cv2.resize(ok_crops(result)[0], (96, 96), interpolation=cv2.INTER_AREA).astype(int)
    mask_row = sheet[98 : 98 + 96, 180 : 180 + 96].astype(int)
    redder = (mask_row[..., 0] - first_crop[..., 0]) - (mask_row[..., 1] - first_crop[..., 1])
    assert redder[48, 48] > 40 and abs(redder[2, 2]) < 10  # tinted inside the ellipse only
    with pytest.raises(LookupError):
        store.sheet("nope", tmp_path / "x.png")


# -- VideoFaces validation ---------------------------------------------------------------------


def test_videofaces_validation(carphone):
    result = make_result(carphone)
    fields = {name: getattr(result, name) for name in result.__dataclass_fields__}

    def build(**changes):
        return VideoFaces(**{**fields, **changes})

    with pytest.raises(ValueError, match=f"frame {carphone[0][2]} has status 'no_face' but no reason"):
        build(reason=[None] * 12)
    crops = list(result.crops["face"])
    crops[2] = crops[0]
    with pytest.raises(ValueError, match="status 'no_face' but a 'face' crop"):
        build(crops={**result.crops, "face": crops})
    crops[2], crops[0] = None, None
    with pytest.raises(ValueError, match="ok frame 0 has no 'face' crop"):
        build(crops={**result.crops, "face": crops})
    with pytest.raises(ValueError, match="status has 11 entries for 12 frames"):
        build(status=result.status[:11])
    with pytest.raises(ValueError, match="landmarks must have shape"):
        build(landmarks=result.landmarks[:, :5])
    with pytest.raises(ValueError, match="11 'face' crops for 12 frames"):
        build(crops={"face": result.crops["face"][:11]}, masks={}, matrices={})
    with pytest.raises(ValueError, match="strictly increasing"):
        build(frame_indices=result.frame_indices[::-1].copy())
    with pytest.raises(ValueError, match=r'not start with "\."'):
        build(video_id=".hidden")
    boxes = result.boxes.copy()
    boxes[0, 1] = np.nan
    with pytest.raises(ValueError, match="boxes rows \\[0\\] mix numbers and NaN"):
        build(boxes=boxes)
    masks = [None if m is None else m[:32] for m in result.masks["face"]]
    with pytest.raises(ValueError, match="does not match its crop"):
        build(masks={"face": masks})
    with pytest.raises(ValueError, match=r"\(S, S, 3\) uint8 RGB"):
        build(
            crops={**result.crops, "face": [None if c is None else c[..., 0] for c in result.crops["face"]]}
        )
    with pytest.raises(ValueError, match="matrices for 'ffhq' but no 'ffhq' crops"):
        build(matrices={"ffhq": result.matrices["face"]})
    with pytest.raises(ValueError, match=r"mask_source \['drawn'\] not in"):
        build(mask_source=["drawn"] * 12)


# -- CLI -----------------------------------------------------------------------------------


def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keep "faces" as a sub-command
        pass

    return app


def test_cli(store, carphone, tmp_path):
    runner = CliRunner()
    app = cli()
    store.commit(make_result(carphone))
    summary = runner.invoke(app, ["faces", str(store.root)])
    assert summary.exit_code == 0, summary.output
    assert "samples" in summary.stdout and "0.8333" in summary.stdout
    video = runner.invoke(app, ["faces", str(store.root), "carphone"])
    assert video.exit_code == 0, video.output
    assert "10 of 12 sampled frames ok" in video.stdout and "packet 57 is corrupt" in video.stdout
    out = tmp_path / "cli_sheet.png"
    made = runner.invoke(
        app, ["faces", str(store.root), "carphone", "--sheet", str(out), "--crops", "face,mouth"]
    )
    assert made.exit_code == 0, made.output
    assert cv2.imread(str(out)).shape == (4 * 98, 180 + 8 * 96, 3)
    for args, expected in [
        (["faces", str(tmp_path / "missing")], "no face store"),
        (["faces", str(store.root), "nope"], "'nope' is not in the store"),
        (["faces", str(store.root), "carphone", "--sheet", str(out), "--crops", "ffhq"], "no 'ffhq' crops"),
        (["faces", str(store.root), "--by", "method"], "needs the input manifest"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
