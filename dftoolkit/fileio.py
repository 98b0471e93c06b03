"""Atomic file writes, content hashes and file identities.

Every file the toolkit writes goes through :func:`atomic_path`: the data lands in a temporary
file beside the destination and is renamed over it only when complete, so an interrupted run
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_identities",
    "sha256_file",
]


def _default_mode() -> int:
    """What a plain ``open(..., "w")`` would give: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; rename it to ``dest`` if the block succeeds.

    The temporary name keeps ``dest``'s extension (or ``suffix``) so writers that pick a format
    from the extension still work. On an exception the temporary file is removed and ``dest`` is
    left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(_default_mode())  # mkstemp creates 0600
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def _new_dir(parent: Path, prefix: str) -> Path:
    """Create and return a new empty folder ``parent/<prefix><8 random hex>``.

    Unlike ``tempfile.mkdtemp`` (always 0o700), the folder gets the mode of a plain ``mkdir``:
    0o777 less the umask, applied by the OS (no process-wide umask juggling).
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free name {prefix}XXXXXXXX in {parent}")


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; it replaces ``dest`` if the block succeeds.

    The temporary folder is named ``.<dest name>.<random>`` (a leading ``.`` marks it as partial)
    and has the mode a plain ``mkdir`` would give, so the committed folder is as readable as any.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_dir(dest.parent, f".{dest.name}.")
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``dest`` atomically."""
    atomic_write_bytes(dest, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def file_identities(paths: Iterable[str]) -> dict[str, tuple]:
    """Path -> a token equal for paths to one file or to identical copies.

    ``("inode", st_dev, st_ino)``; ``("sha256", hex digest)`` for files that share their size with
    a file of another inode (only those are read); ``("path", path)`` when it cannot be stat'ed.
    """
    ids: dict[str, tuple] = {}
    stats = {}
    for path in paths:
        try:
            stats[path] = os.stat(path)
        except OSError:
            ids[path] = ("path", path)
    inodes_of_size = defaultdict(set)
    for stat in stats.values():
        inodes_of_size[stat.st_size].add((stat.st_dev, stat.st_ino))
    digests: dict[tuple[int, int], str] = {}
    for path, stat in stats.items():
        inode = (stat.st_dev, stat.st_ino)
        if len(inodes_of_size[stat.st_size]) == 1:
            ids[path] = ("inode", *inode)
        else:
            if inode not in digests:
                digests[inode] = sha256_file(path)
            ids[path] = ("sha256", digests[inode])
    return ids
