"""What comes from a file is never trusted: only regular files are opened, and its strings are shown escaped.

``printable`` is the one helper every message and every printed summary passes file-derived text
through: bytes are decoded without failing, and control characters (terminal escape sequences,
newlines, bidirectional overrides) become visible escapes, so a file cannot move the cursor, colour
the terminal or print a line of its own. ``regular_file`` answers at once for a FIFO, a device, a
socket or a folder (a FIFO would block ``open()`` forever), checked on the resolved path.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import decode, printable, printable_data

__all__ = ["decode", "file_sha256", "open_regular", "printable", "printable_data", "regular_file"]

def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file; refused without reading it"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file; refused without reading it"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file; refused without reading it"
    return "is not a regular file; refused without reading it"


def regular_file(path: str | os.PathLike) -> tuple[Path, os.stat_result]:
    """The resolved path and its stat; ValueError naming why it cannot be opened otherwise.

    Symbolic links are followed (a link to a regular file is fine); what they lead to must be a
    regular file. Nothing is opened, so a FIFO or a device never blocks.
    """
    path = Path(path)
    if "\x00" in str(path):
        raise ValueError("is not a valid file name (it holds a NUL character)")
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except RuntimeError:  # a symbolic link loop
        raise ValueError("is a loop of symbolic links") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.stat(resolved)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    problem = _kind(info.st_mode)
    if problem:
        raise ValueError(problem)
    return resolved, info


def open_regular(path: str | os.PathLike):
    """Open for reading in binary, refusing anything but a regular file without ever blocking.

    The check is made again on the opened descriptor (opened non-blocking), so a file swapped for a
    FIFO between the check and the open is refused too. Raises ValueError with the reason.
    """
    resolved, _ = regular_file(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        problem = _kind(os.fstat(fd).st_mode)
        if problem:
            raise ValueError(problem)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file's bytes, read in blocks (OSError naming the file when it is not one)."""
    h = hashlib.sha256()
    try:
        fh = open_regular(path)
    except ValueError as exc:
        raise OSError(f"{Path(path).name}: {exc}") from None
    with fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
