"""Shared fixtures: the real sample media, fetched once into the user cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftoolkit.fetch import debian_available
from dftoolkit.samples import fetch_samples, sample_path


@pytest.fixture(scope="session")
def samples_manifest():
    """The real sample corpus (Manifest); Debian media included where apt-get exists."""
    return fetch_samples()


@pytest.fixture(scope="session")
def sample():
    """``sample("hello_720p")`` -> path of that fetched sample; skips Debian media without apt-get."""
    from dftoolkit.samples import _lookup

    def get(name: str) -> Path:
        if _lookup(name).origin == "debian" and not debian_available():
            pytest.skip(f"sample {name} needs apt-get (Debian)")
        return sample_path(name)

    return get


@pytest.fixture(scope="session")
def dlib_backend():
    """The ``dlib`` face backend (HOG upsampled once + 68-point predictor); skips without its model."""
    from dftoolkit.faces import get_backend
    from dftoolkit.fetch import FetchError

    try:
        return get_backend("dlib")
    except (FetchError, ImportError) as err:
        pytest.skip(f"dlib's 68-point predictor unavailable: {err}")


@pytest.fixture(scope="session")
def cascade():
    """The default face detection cascade (mediapipe), loaded once per test session."""
    from dftoolkit.faces import DetectionCascade, get_backend

    return DetectionCascade(get_backend("mediapipe"))


@pytest.fixture(scope="session")
def track(sample, cascade):
    """``track("carphone_pristine")`` -> the sample's main face in every frame (a FaceTrack), cached."""
    from dftoolkit.faces.tracking import face_track

    tracks = {}

    def get(name: str):
        if name not in tracks:
            tracks[name] = face_track(sample(name), cascade)
        return tracks[name]

    return get


@pytest.fixture(scope="session")
def swap_store(samples_manifest, tmp_path_factory):
    """A FaceStore of every frame (face, mouth and FFHQ crops) of two sample reals (carphone_pristine,
    jesper_webcam) and of one naive swap each way, built once per session (about 20 s)."""
    from dftoolkit.generators import build_dataset
    from dftoolkit.preprocess import PreprocessConfig, preprocess

    out = tmp_path_factory.mktemp("swap_store")
    reals = samples_manifest.filter(lambda r: r.video_id in ("carphone_pristine", "jesper_webcam"))
    corpus = build_dataset(reals, out / "corpus", methods=["swap"], blends=["naive"], crf=None, workers=1)
    return preprocess(
        corpus, out / "store", PreprocessConfig(crops=("face", "mouth", "ffhq"), policy="all"), workers=1
    ).store
