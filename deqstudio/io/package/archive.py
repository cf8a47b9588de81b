"""The files of a package, folder or zip, read into memory only from inside it.

A member name is a relative POSIX path: never absolute, never with a ``..`` part, a drive, a backslash or a
NUL. In a folder the resolved path must stay inside the resolved folder (a symbolic link leading out is
refused) and be a regular file. In a zip, symbolic-link members, repeated names and members that declare
far more bytes than the archive holds (a decompression bomb) refuse the whole archive before anything is
decompressed; nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .. import guard
from .contract import CONTRACT

MAX_TOTAL = 2 * 1024**3  # every member together (ONNX programs are at most 2 GiB each anyway)
MAX_EXPANSION = 32  # members may declare at most this many times the archive's bytes (plus MAX_SLACK)
MAX_SLACK = 1 << 20
MAX_MEMBERS = 10_000


class ArchiveError(ValueError):
    """A package whose files cannot be read safely; the message names the member and the problem."""


def check_member_name(name: str) -> str:
    """``name`` as a safe relative POSIX path, or ArchiveError saying why it is not one."""
    shown = guard.printable(name)[:200]
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ArchiveError(f"member name {shown!r} is empty or holds a NUL character")
    if "\\" in name:
        raise ArchiveError(f"member name {shown!r} holds a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"member name {shown!r} is an absolute path")
    parts = PurePosixPath(name).parts
    if any(p == ".." for p in parts):
        raise ArchiveError(f"member name {shown!r} points outside the package (..)")
    return str(PurePosixPath(*[p for p in parts if p != "."]))


class PackageFiles:
    """Reads members by name; keeps the SHA-256 of each member it read (for the package's hash)."""

    path: Path
    label: str

    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}
        self.total = 0

    def read(self, name: str) -> bytes:
        data = self._read(check_member_name(name))
        self.total += len(data)
        if self.total > MAX_TOTAL:
            raise ArchiveError(f"the package holds more than {MAX_TOTAL / 1024**3:.0f} GiB")
        self.hashes[name] = hashlib.sha256(data).hexdigest()
        return data

    def _read(self, name: str) -> bytes:
        raise NotImplementedError

    def sha256(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderFiles(PackageFiles):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root
        self.label = root.name or str(root)
        self.root = root.resolve(strict=True)

    def _read(self, name: str) -> bytes:
        candidate = self.root / name
        try:
            resolved = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise ArchiveError(f"{name}: no such file in the package") from None
        except (OSError, RuntimeError) as exc:
            raise ArchiveError(f"{name}: cannot be read ({exc})") from None
        if not resolved.is_relative_to(self.root):
            raise ArchiveError(f"{name} leads outside the package (a symbolic link); refused without reading it")
        try:
            fh = guard.open_regular(resolved)
        except ValueError as exc:
            raise ArchiveError(f"{name} {exc}") from None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_TOTAL:
                raise ArchiveError(f"{name} is {size / 1024**3:.1f} GiB, more than a package may hold")
            return fh.read(MAX_TOTAL + 1)

    def sha256(self) -> str:
        """A hash of every member read, by name (a folder has no bytes of its own)."""
        h = hashlib.sha256()
        for name in sorted(self.hashes):
            h.update(f"{name}\0{self.hashes[name]}\n".encode())
        return h.hexdigest()


class ZipFiles(PackageFiles):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.label = path.name
        try:
            self._fh = guard.open_regular(path)
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None
        try:
            self._open()
        except BaseException:
            self._fh.close()
            raise

    def _open(self) -> None:
        size = os.fstat(self._fh.fileno()).st_size
        try:
            self._zip = zipfile.ZipFile(self._fh)
            members = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, NotImplementedError):
            raise ArchiveError("the zip archive is truncated or corrupt") from None
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(f"the archive has {len(members):,} members, more than {MAX_MEMBERS:,}")
        self._members: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for info in members:
            name = check_member_name(info.filename.rstrip("/") or info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"member {guard.printable(info.filename)[:200]!r} is a symbolic link; refused")
            if info.is_dir():
                continue
            if name in self._members:
                raise ArchiveError(f"member {guard.printable(name)[:200]!r} appears twice")
            self._members[name] = info
            declared += info.file_size
        if declared > MAX_TOTAL or declared > MAX_EXPANSION * size + MAX_SLACK:
            raise ArchiveError(f"its members declare {declared:,} bytes in an archive of {size:,} (a decompression "
                               "bomb); refused before decompressing anything")
        self.prefix = _common_folder(self._members)

    def _read(self, name: str) -> bytes:
        info = self._members.get(self.prefix + name)
        if info is None:
            raise ArchiveError(f"{name}: no such member in the archive")
        try:
            with self._zip.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ArchiveError(f"{name}: cannot be decompressed ({type(exc).__name__})") from None
        if len(data) != info.file_size:
            raise ArchiveError(f"{name}: holds {len(data):,} bytes, its entry declares {info.file_size:,}")
        return data

    def sha256(self) -> str:
        return guard.file_sha256(self.path)

    def close(self) -> None:
        self._zip.close()
        self._fh.close()


def _common_folder(members: dict) -> str:
    """``"pkg/"`` when the contract sits in one top folder holding every member (a zipped folder), else ``""``."""
    if CONTRACT in members:
        return ""
    tops = {name.split("/", 1)[0] for name in members}
    if len(tops) == 1 and all("/" in n for n in members):
        top = tops.pop()
        if f"{top}/{CONTRACT}" in members:
            return f"{top}/"
    return ""


def open_files(path: Path) -> PackageFiles:
    """The package's files: a folder, or a zip archive."""
    return FolderFiles(path) if path.is_dir() else ZipFiles(path)


def zip_has_contract(path: Path) -> bool:
    """Whether a zip file holds ``contract.json`` at its top (or in its one top folder): a package, not a
    checkpoint. Reads only the archive's directory; any problem reading it says no."""
    try:
        with guard.open_regular(path) as fh, zipfile.ZipFile(fh) as z:
            names = z.namelist()[:MAX_MEMBERS]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError):
        return False
    if CONTRACT in names:
        return True
    tops = {n.split("/", 1)[0] for n in names}
    return len(tops) == 1 and f"{next(iter(tops))}/{CONTRACT}" in names
