"""The one interface every corpus loader implements, and layout validation shared by all.

A loader turns a corpus tree on disk into a :class:`~dftoolkit.manifest.Manifest` without
decoding anything, and describes the official layout as :class:`ExpectedFolder` entries so
:func:`validate_layout` can report what is missing before hours of preprocessing.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dftoolkit.errors import DftoolkitError
from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.records import RecordError, VideoRecord
from dftoolkit.registry import Registry

__all__ = [
    "CORPORA",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Corpus",
    "CorpusError",
    "ExpectedFolder",
    "FolderReport",
    "ValidationReport",
    "build_manifest",
    "counted",
    "examples",
    "expected_folders",
    "list_files",
    "missing_files",
    "read_json",
    "read_lines",
    "register_corpus",
    "validate_hint",
    "validate_layout",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpeg", ".mpg", ".flv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

CORPORA: Registry[type[Corpus]] = Registry("corpus")


class CorpusError(DftoolkitError, ValueError):
    """A corpus tree or one of its metadata files is missing or malformed; the message names the file."""


def examples(names: Sequence[str], limit: int = 5) -> str:
    """Up to ``limit`` of ``names`` for a message: ``"a, b, c, ..."``."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def counted(names: Sequence[str], limit: int = 5) -> str:
    """``"N: a, b, c, ..."``: how many, then up to ``limit`` of them."""
    return f"{len(names)}: {examples(names, limit)}"


def validate_hint(corpus: str, root: Path) -> str:
    """The sentence that points a user from an indexing error to the layout report."""
    return f"run `dftoolkit validate {corpus} {root}` for the full list"


def register_corpus(cls: type[Corpus]) -> type[Corpus]:
    """Class decorator: make a loader available by its ``name`` (CLI, configs, :func:`index_corpus`)."""
    return CORPORA.register(cls.name, cls.description)(cls)


@dataclass(frozen=True)
class ExpectedFolder:
    """One folder of a corpus's official layout.

    Attributes:
        relpath: folder relative to the corpus root (``""`` for the root itself).
        required: the corpus is incomplete without it (optional parts: masks, other compressions).
        suffixes: file suffixes that belong in it (lower case); other files are "unexpected".
        expected: names of the files that must be there, when metadata lists them; None when
            only the kind of file is known.
        exclusive: with ``expected``, files not listed are "unexpected"; False when metadata
            names only some of the files (e.g. Celeb-DF's test list).
        recursive: files may sit in sub-folders (frame sequences, nested archives).
        description: what the folder holds, shown in reports.
    """

    relpath: str
    required: bool = True
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES
    expected: frozenset[str] | None = None
    exclusive: bool = True
    recursive: bool = False
    description: str = ""


@dataclass
class FolderReport:
    """What :func:`validate_layout` found in one expected folder (file names relative to it)."""

    folder: ExpectedFolder
    exists: bool
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    undecodable: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if not self.exists:
            return not self.folder.required
        return not (self.missing or self.empty or self.undecodable)


@dataclass
class ValidationReport:
    """The result of validating a corpus tree against its official layout.

    ``problems`` holds corpus-level findings (a malformed metadata file, an escaping path).
    ``ok`` is False when a required folder is missing, an expected file is absent, empty or
    undecodable, or there is any problem.
    """

    corpus: str
    root: Path
    folders: list[FolderReport]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.ok for f in self.folders)

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "root": str(self.root),
            "ok": self.ok,
            "problems": self.problems,
            "folders": [
                {
                    "folder": f.folder.relpath or ".",
                    "required": f.folder.required,
                    "exists": f.exists,
                    "found": f.found,
                    "expected": None if f.folder.expected is None else len(f.folder.expected),
                    "missing": f.missing,
                    "unexpected": f.unexpected,
                    "empty": f.empty,
                    "undecodable": f.undecodable,
                    "ok": f.ok,
                }
                for f in self.folders
            ],
        }


class Corpus(ABC):
    """A public corpus: how to index its tree and what its official layout is.

    Subclasses set ``name`` and ``description``, implement :meth:`index` and :meth:`layout`, and
    are registered with :func:`register_corpus`. Options (``compression="c23"`` ...) are keyword
    arguments of both methods; unknown options raise TypeError.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def index(self, root: Path, **options: Any) -> Manifest:
        """Records for every video of the tree (no decoding); the official split where there is one."""

    @abstractmethod
    def layout(self, root: Path, **options: Any) -> list[ExpectedFolder]:
        """The folders the official layout has, with the files metadata says they hold."""

    def validate(self, root: Path, probe: bool = False, **options: Any) -> ValidationReport:
        """Compare the tree with :meth:`layout`; with ``probe``, also try to open every file."""
        problems: list[str] = []
        try:
            folders = self.layout(root, **options)
        except CorpusError as err:
            problems.append(str(err))
            folders = []
        report = validate_layout(self.name, root, folders, probe=probe)
        report.problems[:0] = problems
        return report


# -- helpers for loaders ----------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a JSON metadata file; CorpusError naming the file when it is missing, malformed or
    nested deeper than Python's recursion limit."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise CorpusError(f"{path}: metadata file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: malformed JSON ({err})") from None
    except RecursionError:
        raise CorpusError(f"{path}: JSON nested too deeply to read (not a metadata file)") from None


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text list; CorpusError naming the file when it is missing."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        raise CorpusError(f"{path}: list file not found") from None
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not a UTF-8 text file ({err})") from None


def list_files(
    folder: Path,
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES,
    recursive: bool = False,
    *,
    loops: list[str] | None = None,
) -> Iterator[str]:
    """Names (POSIX, relative to ``folder``) of the files with ``suffixes``, sorted; none if absent.

    Uses ``os.scandir`` (no stat beyond what the directory listing gives) so 100k files list in
    well under a second. A symlink that cannot be followed (it points at itself or into a ring of
    links) or that leads back to a folder the walk is in (``real/up -> ..``) is never entered: its
    path and why are appended to ``loops`` when given and the walk goes on, else CorpusError names it.
    """
    if not folder.is_dir():
        return iter(())
    names: list[str] = []
    stack = [("", str(folder), (os.path.realpath(folder),))]
    while stack:
        prefix, path, inside = stack.pop()  # inside: the real paths of the folders walked into
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError as err:  # ELOOP
                    _loop(f"{entry.path}: a symlink that cannot be followed ({err.strerror})", loops)
                    continue
                if not is_dir:
                    if entry.name.lower().endswith(suffixes):
                        names.append(prefix + entry.name)
                    continue
                if not recursive:
                    continue
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if any(_within(Path(real), Path(walked)) for walked in inside):
                        _loop(
                            f"{entry.path}: symlink loop (it leads back to {real}, a folder it is in)", loops
                        )
                        continue
                else:
                    real = os.path.join(inside[-1], entry.name)
                stack.append((prefix + entry.name + "/", entry.path, (*inside, real)))
    return iter(sorted(names))


def _loop(message: str, loops: list[str] | None) -> None:
    """A symlink :func:`list_files` does not enter: noted in ``loops``, else a CorpusError."""
    if loops is None:
        raise CorpusError(f"{message}; remove or fix the link")
    loops.append(f"{message}; not followed")


def missing_files(root: Path, relpaths: Iterable[str]) -> list[str]:
    """The ``relpaths`` (files or folders) absent under ``root``, from one listing per folder (no stat)."""
    listings: dict[str, set[str]] = {}
    missing = []
    for relpath in relpaths:
        parent, _, name = relpath.rpartition("/")
        if parent not in listings:
            try:
                listings[parent] = set(os.listdir(root / parent))
            except (FileNotFoundError, NotADirectoryError):
                listings[parent] = set()
        if name not in listings[parent]:
            missing.append(relpath)
    return missing


def expected_folders(relpaths: Iterable[str], description: str) -> list[ExpectedFolder]:
    """One required :class:`ExpectedFolder` per folder holding ``relpaths``, expecting exactly those names."""
    groups: dict[str, set[str]] = defaultdict(set)
    for relpath in relpaths:
        parent, _, name = relpath.rpartition("/")
        groups[parent].add(name)
    folders = []
    for parent, names in sorted(groups.items()):
        suffixes = {os.path.splitext(name)[1].lower() for name in names}
        # A listed name without a suffix can only be matched by the empty suffix (every file).
        kinds = ("",) if "" in suffixes else tuple(sorted(suffixes | set(VIDEO_SUFFIXES)))
        folders.append(
            ExpectedFolder(parent, suffixes=kinds, expected=frozenset(names), description=description)
        )
    return folders


def build_manifest(
    records: list[VideoRecord], root: Path, *, roots: dict[str, Path] | None = None
) -> Manifest:
    """A Manifest of ``records`` under ``root`` (or per-dataset ``roots``, e.g. DeeperForensics
    fakes with FF++ reals). Duplicate ids and paths leading outside their root through a symlink
    raise CorpusError naming the files."""
    roots = roots or {record.dataset: root for record in records}
    escaping = list(_escaping(records, roots))
    if escaping:
        raise CorpusError(
            f"{root}: {len(escaping)} path(s) lead outside the corpus root: {examples(escaping)}"
        )
    try:
        return Manifest(records, roots=roots)
    except (ManifestError, RecordError) as err:
        raise CorpusError(f"{root}: {err}") from None


def _escaping(records: list[VideoRecord], roots: dict[str, Path]) -> Iterator[str]:
    """Relpaths whose real location is outside their dataset's root.

    Each distinct folder is resolved once and only files that are symlinks are resolved on their
    own: one ``lstat`` per file instead of a full resolution (119k files: ~0.3 s, not ~7 s).
    """
    real_roots = {name: Path(path).resolve() for name, path in roots.items()}
    folder_inside: dict[tuple[str, str], bool] = {}
    for record in records:
        root, real_root = roots[record.dataset], real_roots[record.dataset]
        for relpath in (record.relpath, record.mask_relpath):
            if relpath is None:
                continue
            folder, _, _ = relpath.rpartition("/")
            key = (record.dataset, folder)
            if key not in folder_inside:
                real_folder = (Path(root) / folder).resolve()
                folder_inside[key] = real_folder == real_root or real_root in real_folder.parents
            path = os.path.join(root, relpath)
            if not folder_inside[key] or (
                os.path.islink(path) and not _within(real_root, Path(path).resolve())
            ):
                yield relpath


def _within(real_root: Path, real: Path) -> bool:
    return real == real_root or real_root in real.parents


def validate_layout(
    corpus: str, root: Path, folders: list[ExpectedFolder], probe: bool = False
) -> ValidationReport:
    """Check each expected folder: present, expected files there, nothing empty (or undecodable).

    With ``probe``, every video file is opened and every image file decoded; metadata files are
    only checked for being non-empty. Symlink loops are not entered and are listed as problems.
    """
    root = Path(root)
    reports = []
    loops: list[str] = []
    for spec in folders:
        folder = root / spec.relpath if spec.relpath else root
        if not folder.is_dir():
            reports.append(FolderReport(spec, exists=False, missing=sorted(spec.expected or ())))
            continue
        everything = set(list_files(folder, ("",), spec.recursive, loops=loops))
        present = {name for name in everything if name.lower().endswith(spec.suffixes)}
        report = FolderReport(spec, exists=True, found=len(present))
        unexpected = everything - present
        if spec.expected is not None:
            report.missing = sorted(spec.expected - present)
            if spec.exclusive:
                unexpected |= present - spec.expected
        report.unexpected = sorted(unexpected)
        report.empty = sorted(name for name in present if (folder / name).stat().st_size == 0)
        if probe:
            for name in sorted(present - set(report.empty)):
                reason = _undecodable(folder / name)
                if reason:
                    report.undecodable[name] = reason
        reports.append(report)
    return ValidationReport(corpus, root, reports, loops)


def _undecodable(path: Path) -> str | None:
    """Why a video or image file cannot be decoded, or None (also for other kinds of file).

    A video must open and decode its first frame (a header can open while no frame decodes).

    Files without a suffix are taken as images (VidTIMIT ships frames named ``001``, ``002``...).
    """
    from dftoolkit.video import VideoDecodeError
    from dftoolkit.video import probe as probe_video
    from dftoolkit.video.probe import check_decodable

    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or not suffix:
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if image is not None and image.size else "not a readable image"
    if suffix not in VIDEO_SUFFIXES:
        return None
    try:
        info = probe_video(path, exact=False)
        if not (info.width and info.height):
            return "no frame size: not a decodable video"
        check_decodable(path)
    except (VideoDecodeError, OSError) as err:
        return str(err)
    return None
