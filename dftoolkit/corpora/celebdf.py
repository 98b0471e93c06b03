"""Celeb-DF v2 and v1: celebrity interview clips, YouTube clips and face swaps between celebrities.

Both versions share one layout (v2: 590 + 300 real, 5,639 fake, 518 test videos; v1: 408 real,
795 fake)::

    Celeb-real/id0_0000.mp4            real: identity id0, clip 0000
    YouTube-real/00170.mp4             real: an unnamed person
    Celeb-synthesis/id0_id1_0000.mp4   fake: id0's clip 0000 with id1's face
    List_of_testing_videos.txt         lines "<label> <relative path>", where 1 = REAL and 0 = FAKE
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from dftoolkit.corpora.base import (
    Corpus,
    CorpusError,
    ExpectedFolder,
    build_manifest,
    examples,
    list_files,
    read_lines,
    register_corpus,
)
from dftoolkit.manifest import Manifest
from dftoolkit.paths import PathEscapeError, normalise_relpath
from dftoolkit.records import VideoRecord

__all__ = ["FOLDERS", "TEST_LIST", "CelebDF", "CelebDFv1"]

FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}
"""Folder -> label (0 real, 1 fake)."""

TEST_LIST = "List_of_testing_videos.txt"

_NAMES = {
    "Celeb-real": (re.compile(r"(id\d+)_(\d+)"), "id<n>_<clip>"),
    "YouTube-real": (re.compile(r"\d+"), "<number>"),
    "Celeb-synthesis": (re.compile(r"(id\d+)_(id\d+)_(\d+)"), "id<target>_id<source>_<clip>"),
}

_DESCRIPTIONS = {
    "Celeb-real": "real celebrity videos",
    "YouTube-real": "real YouTube videos",
    "Celeb-synthesis": "face-swapped videos",
}


@register_corpus
class CelebDF(Corpus):
    """Celeb-DF: ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and the official test list.

    Records: ``video_id`` is the file stem; ``method`` the folder name. ``Celeb-real/id0_0000``
    has ``target_id`` ``id0``; ``YouTube-real/00170`` has ``target_id`` ``youtube-00170`` (the
    person is unknown, one per clip); the fake ``Celeb-synthesis/id0_id1_0000`` has ``target_id``
    ``id0``, ``source_id`` ``id1`` and ``original_id`` ``id0_0000`` (the Celeb-real clip it
    modifies).

    Split: the videos of the test list are ``"test"``, all others ``"train"``. The official
    protocol has no val: build one with :func:`dftoolkit.splits.grouped_split`, which keeps the
    test videos in test and identities disjoint. The list's inverted labels (1 = real) are
    converted, and each line must agree with its folder.

    Options:
        test_list: the official test list, relative to the root or absolute (default
            ``List_of_testing_videos.txt`` in the root; a missing file is an error). ``None``
            indexes without it: every ``split`` is None.
    """

    name: ClassVar[str] = "celebdf-v2"
    description: ClassVar[str] = (
        "Celeb-DF v2: 590 Celeb-real + 300 YouTube-real videos, 5,639 face swaps, official test list"
    )

    def index(self, root: Path, *, test_list: str | os.PathLike[str] | None = TEST_LIST) -> Manifest:
        absent = [folder for folder in FOLDERS if not (root / folder).is_dir()]
        if absent:
            raise CorpusError(
                f"{root}: missing folder(s) {', '.join(f + '/' for f in absent)}; "
                f"run `dftoolkit validate {self.name} {root}` to see what is missing"
            )
        tests = None
        if test_list is not None:
            path = root / test_list
            if not path.is_file():
                raise CorpusError(
                    f"{path}: the official test list is missing; pass test_list=None "
                    f"(CLI: -O test_list=none) to index without splits; "
                    f"`dftoolkit validate {self.name} {root}` shows what else is missing"
                )
            tests = self._read_test_list(path)
        records: list[VideoRecord] = []
        misnamed: list[str] = []
        for folder in FOLDERS:
            for name in list_files(root / folder):
                record = self._record(folder, name, tests)
                if record is None:
                    misnamed.append(f"{folder}/{name}")
                else:
                    records.append(record)
        if misnamed:
            patterns = "; ".join(f"{folder}/{pattern}" for folder, (_, pattern) in _NAMES.items())
            raise CorpusError(
                f"{root}: {len(misnamed)} video(s) do not follow the Celeb-DF naming ({patterns}): "
                f"{examples(misnamed)}"
            )
        if tests:
            not_on_disk = sorted(tests - {record.relpath for record in records})
            if not_on_disk:
                raise CorpusError(
                    f"{path}: {len(not_on_disk)} listed video(s) are not on disk (partial "
                    f"download?): {examples(not_on_disk)}; run `dftoolkit validate {self.name} {root}`"
                )
        return build_manifest(records, root)

    def layout(
        self, root: Path, *, test_list: str | os.PathLike[str] | None = TEST_LIST
    ) -> list[ExpectedFolder]:
        """The three folders (expected to hold the listed test videos) and the test list itself."""
        expected: dict[str, set[str]] | None = None
        extra = []
        if test_list is not None:
            path = root / test_list
            if path.is_file():
                expected = {folder: set() for folder in FOLDERS}
                for relpath in self._read_test_list(path):
                    folder, name = relpath.split("/", 1)
                    expected[folder].add(name)
            try:
                parent = path.parent.relative_to(root).as_posix()
            except ValueError:  # a list kept outside the corpus
                parent = str(path.parent)
            extra.append(
                ExpectedFolder(
                    "" if parent == "." else parent,
                    suffixes=(".txt",),
                    expected=frozenset({path.name}),
                    exclusive=False,
                    description="official test list",
                )
            )
        folders = [
            ExpectedFolder(
                folder,
                expected=None if expected is None else frozenset(expected[folder]),
                exclusive=False,  # the test list names only the test videos; train videos belong too
                description=description,
            )
            for folder, description in _DESCRIPTIONS.items()
        ]
        return folders + extra

    def _record(self, folder: str, name: str, tests: set[str] | None) -> VideoRecord | None:
        """The record of ``folder/name`` (split from ``tests``), or None when the name is not Celeb-DF's."""
        stem = os.path.splitext(name)[0]
        match = _NAMES[folder][0].fullmatch(stem)
        if match is None:
            return None
        if folder == "Celeb-real":
            fields = {"target_id": match[1]}
        elif folder == "YouTube-real":
            fields = {"target_id": f"youtube-{stem}"}
        else:
            fields = {"target_id": match[1], "source_id": match[2], "original_id": f"{match[1]}_{match[3]}"}
        relpath = f"{folder}/{name}"
        split = None if tests is None else ("test" if relpath in tests else "train")
        return VideoRecord(self.name, stem, relpath, FOLDERS[folder], method=folder, split=split, **fields)

    @staticmethod
    def _read_test_list(path: Path) -> set[str]:
        """Relative paths of the test videos; CorpusError (file, line) for a bad line or label."""
        relpaths = set()
        for number, line in enumerate(read_lines(path), 1):
            fields = line.split()
            where = f"{path}: line {number} ({line!r})"
            if len(fields) != 2:
                raise CorpusError(f"{where}: expected '<label> <relative path>'")
            if fields[0] not in ("0", "1"):
                raise CorpusError(f"{where}: label must be 1 (real) or 0 (fake) in this list")
            try:
                relpath = normalise_relpath(fields[1])
            except PathEscapeError as err:
                raise CorpusError(f"{where}: {err}") from None
            folder = relpath.split("/", 1)[0]
            if folder not in FOLDERS or "/" not in relpath:
                raise CorpusError(f"{where}: not a video of {', '.join(f + '/' for f in FOLDERS)}")
            if (fields[0] == "1") != (FOLDERS[folder] == 0):
                listed, actual = ("real", "fake") if fields[0] == "1" else ("fake", "real")
                raise CorpusError(f"{where}: label {fields[0]} means {listed}, but {folder}/ holds {actual}")
            relpaths.add(relpath)
        return relpaths


@register_corpus
class CelebDFv1(CelebDF):
    """Celeb-DF v1 (408 real, 795 fake videos): the layout, records and options of ``celebdf-v2``."""

    name: ClassVar[str] = "celebdf-v1"
    description: ClassVar[str] = "Celeb-DF v1: 408 real and 795 face-swapped videos, official test list"
