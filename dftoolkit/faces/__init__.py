"""Face analysis: detection and 68-point landmarks behind one interface (see :mod:`.base`), and the one
home of face geometry: crops and alignment (:mod:`.geometry`), tracks and smoothing (:mod:`.tracking`).

>>> from dftoolkit.faces import DetectionCascade, face_track, get_backend
>>> cascade = DetectionCascade(get_backend("mediapipe"))          # doctest: +SKIP
>>> faces = cascade.detect_video(frames)  # one Faces per frame   # doctest: +SKIP
>>> track = face_track("video.mp4", cascade)  # the main face's landmarks in every frame  # doctest: +SKIP

Backends: ``mediapipe`` (default: BlazeFace + face mesh, CPU, fastest), ``dlib`` (HOG + 68-point
predictor, as DeepfakeBench) and ``fan`` (face_alignment S3FD + FAN; weights from disk).
"""

from dftoolkit.faces import dlib_hog, fan, mediapipe_mesh  # noqa: F401 - importing registers the backends
from dftoolkit.faces.base import FACE_BACKENDS, FaceBackend, Faces
from dftoolkit.faces.cascade import DetectionCascade
from dftoolkit.faces.tracking import FaceTrack, face_track, tracked_face

__all__ = [
    "FACE_BACKENDS",
    "DetectionCascade",
    "FaceBackend",
    "FaceTrack",
    "Faces",
    "describe_backends",
    "face_track",
    "get_backend",
    "list_backends",
    "tracked_face",
]


def list_backends() -> list[str]:
    """The registered face backend names, sorted."""
    return FACE_BACKENDS.names()


def describe_backends() -> dict[str, str]:
    """Face backend name -> one-line description."""
    return FACE_BACKENDS.describe()


def get_backend(name: str, **options: object) -> FaceBackend:
    """A new instance of the backend registered as ``name``, built with ``options``."""
    return FACE_BACKENDS.get(name)(**options)
