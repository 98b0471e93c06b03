"""dftoolkit: build, curate, score and validate deepfake video datasets."""

from importlib.metadata import PackageNotFoundError, version

from dftoolkit.errors import DftoolkitError
from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.records import RecordError, VideoRecord

try:
    __version__ = version("dftoolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["DftoolkitError", "Manifest", "ManifestError", "RecordError", "VideoRecord", "__version__"]
