"""Face preprocessing: a Manifest of videos -> a FaceStore of consistent crops, landmarks and masks.

>>> from dftoolkit.preprocess import FaceStore, PreprocessConfig, preprocess
>>> report = preprocess(manifest, "faces/", PreprocessConfig(crops=("face", "mouth")))  # doctest: +SKIP
>>> FaceStore("faces/").clip("000", crop="face", frames=8).shape                      # doctest: +SKIP
(8, 3, 256, 256)
"""

from dftoolkit.preprocess.pipeline import PreprocessConfig, RunReport, preprocess, process_video
from dftoolkit.preprocess.store import FaceStore, StoredTrack, VideoFaces

__all__ = [
    "FaceStore",
    "PreprocessConfig",
    "RunReport",
    "StoredTrack",
    "VideoFaces",
    "preprocess",
    "process_video",
]
