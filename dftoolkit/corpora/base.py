"""The one interface every corpus loader implements, and layout validation shared by all.

A loader turns a corpus tree on disk into a :class:`~dftoolkit.manifest.Manifest` without
decoding anything, and describes the official layout as :class:`ExpectedFolder` entries so
:func:`validate_layout` can report what is missing before hours of preprocessing.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dftoolkit.manifest import Manifest, ManifestError
from dftoolkit.paths import PathEscapeError, resolve_within
from dftoolkit.records import RecordError, VideoRecord
from dftoolkit.registry import Registry

__all__ = [
    "CORPORA",
    "VIDEO_SUFFIXES",
    "Corpus",
    "CorpusError",
    "ExpectedFolder",
    "FolderReport",
    "ValidationReport",
    "build_manifest",
    "list_files",
    "read_json",
    "read_lines",
    "register_corpus",
    "validate_layout",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpeg", ".mpg", ".flv")

CORPORA: Registry[type[Corpus]] = Registry("corpus")


class CorpusError(ValueError):
    """A corpus tree or one of its metadata files is missing or malformed; the message names the file."""


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
        recursive: files may sit in sub-folders (frame sequences, nested archives).
        description: what the folder holds, shown in reports.
    """

    relpath: str
    required: bool = True
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES
    expected: frozenset[str] | None = None
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
    """Parse a JSON metadata file; CorpusError naming the file when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise CorpusError(f"{path}: metadata file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: malformed JSON ({err})") from None


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text list; CorpusError naming the file when it is missing."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        raise CorpusError(f"{path}: list file not found") from None
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not a UTF-8 text file ({err})") from None


def list_files(folder: Path, suffixes: tuple[str, ...] = VIDEO_SUFFIXES, recursive: bool = False) -> Iterator[str]:
    """Names (POSIX, relative to ``folder``) of the files with ``suffixes``, sorted; none if absent.

    Uses ``os.scandir`` (no stat beyond what the directory listing gives) so 100k files list in
    well under a second.
    """
    if not folder.is_dir():
        return iter(())
    names: list[str] = []
    stack = [("", str(folder))]
    while stack:
        prefix, path = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir():
                    if recursive:
                        stack.append((prefix + entry.name + "/", entry.path))
                elif entry.name.lower().endswith(suffixes):
                    names.append(prefix + entry.name)
    return iter(sorted(names))


def build_manifest(records: list[VideoRecord], root: Path, *, roots: dict[str, Path] | None = None) -> Manifest:
    """A Manifest of ``records`` under ``root`` (or per-dataset ``roots``, e.g. DeeperForensics
    fakes with FF++ reals). Duplicate ids and paths leading outside their root through a symlink
    raise CorpusError naming the files."""
    roots = roots or {record.dataset: root for record in records}
    escaping = []
    for record in records:
        for relpath in (record.relpath, record.mask_relpath):
            if relpath is None:
                continue
            try:
                resolve_within(roots[record.dataset], relpath)
            except PathEscapeError:
                escaping.append(relpath)
    if escaping:
        shown = ", ".join(escaping[:5]) + (", ..." if len(escaping) > 5 else "")
        raise CorpusError(f"{root}: {len(escaping)} path(s) lead outside the corpus root: {shown}")
    try:
        return Manifest(records, roots=roots)
    except (ManifestError, RecordError) as err:
        raise CorpusError(f"{root}: {err}") from None


def validate_layout(corpus: str, root: Path, folders: list[ExpectedFolder], probe: bool = False) -> ValidationReport:
    """Check each expected folder: present, expected files there, nothing empty (or undecodable)."""
    from dftoolkit.video import VideoDecodeError
    from dftoolkit.video import probe as probe_video

    root = Path(root)
    reports = []
    for spec in folders:
        folder = root / spec.relpath if spec.relpath else root
        if not folder.is_dir():
            reports.append(FolderReport(spec, exists=False, missing=sorted(spec.expected or ())))
            continue
        present = set(list_files(folder, spec.suffixes, spec.recursive))
        everything = set(list_files(folder, ("",), spec.recursive)) if not spec.recursive else present
        report = FolderReport(spec, exists=True, found=len(present))
        report.unexpected = sorted(everything - present)
        if spec.expected is not None:
            report.missing = sorted(spec.expected - present)
            report.unexpected = sorted((everything - present) | (present - spec.expected))
        report.empty = sorted(name for name in present if (folder / name).stat().st_size == 0)
        if probe:
            for name in sorted(present - set(report.empty)):
                if (folder / name).is_dir():
                    continue
                try:
                    probe_video(folder / name, exact=False)
                except (VideoDecodeError, OSError) as err:
                    report.undecodable[name] = str(err)
        reports.append(report)
    return ValidationReport(corpus, root, reports)
