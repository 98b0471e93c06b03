"""Face preprocessing: a Manifest of videos -> a FaceStore of consistent crops, landmarks and masks.

>>> from dftoolkit.preprocess import FaceStore, PreprocessConfig, preprocess
>>> report = preprocess(manifest, "faces/", PreprocessConfig(crops=("face", "mouth")))  # doctest: +SKIP
>>> FaceStore("faces/").clip("000", crop="face", frames=8).shape                      # doctest: +SKIP
(8, 3, 256, 256)
"""

from dftoolkit.preprocess.pipeline import ENGINES, PreprocessConfig, RunReport, preprocess, process_video
from dftoolkit.preprocess.store import FaceStore, VideoFaces

__all__ = [
    "ENGINES",
    "FaceStore",
    "PreprocessConfig",
    "RunReport",
    "VideoFaces",
    "preprocess",
    "process_video",
]
