"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the target.

A failed write (full disk, read-only folder, an exception while writing) leaves any previous file
at the target intact and no temporary file behind.

Files that belong together (a table and its provenance sidecar, a plot and its sidecar) are written
as one unit by ``write_files``, and a report folder replaces an earlier one by ``swap_folder``. Both
use a small commit journal in the target folder:

1. every temporary file (or the new folder) is written completely and flushed;
2. a journal naming the renames is written (atomically: it exists whole or not at all);
3. the renames are performed;
4. the journal is removed.

A process killed before step 2 leaves the earlier files untouched (and stray temporaries); killed
after it, the commit is completed ("rolled forward") by ``recover``, which every write here runs
for its target first and which readers call before reading. A swap whose new folder is gone is
rolled back: the earlier folder returns to its place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator, Mapping

from ..errors import WriteError

JOURNAL_SUFFIX = ".deqstudio-commit"
JOURNAL_FORMAT = "deqstudio-commit"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The permissions a plain ``open()`` or ``mkdir`` would give (mkstemp's are owner-only)."""
    return (0o777 if folder else 0o666) & ~_umask()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _folder(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise WriteError(f"cannot write {path}: folder {folder} does not exist")
    return folder


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system syncs folders; the renames are still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename."""
    path = Path(path)
    folder = _folder(path)
    recover(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: folder {folder} is not writable ({_reason(exc)})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, default_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


# -- units of files, with a commit journal ---------------------------------------------------------
def _write_journal(folder: Path, primary: Path, record: dict) -> Path:
    """The journal, written whole or not at all (temporary file, flush, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{primary.name}.", suffix=".journal.tmp", dir=folder)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        journal = tmp_path.with_name(tmp_path.name[: -len(".journal.tmp")] + JOURNAL_SUFFIX)
        os.replace(tmp_path, journal)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return journal


def write_files(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files of one folder as one unit: all of them, or (on failure) none of them.

    Raises WriteError naming the file and the reason; earlier files at the targets stay as they were.
    """
    targets = [Path(p) for p in files]
    if not targets:
        return []
    folders = {_folder(t).resolve() for t in targets}
    if len(folders) != 1:
        raise WriteError("cannot write files of one unit into different folders: " + ", ".join(map(str, targets)))
    folder = _folder(targets[0])
    for target in targets:
        recover(target)
    temps: list[Path] = []
    current = targets[0]
    try:
        for target, data in zip(targets, files.values()):
            current = target
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, default_mode())
        current = targets[0]
        record = {"format": JOURNAL_FORMAT, "kind": "files",
                  "moves": [[t.name, target.name] for t, target in zip(temps, targets)]}
        journal = _write_journal(folder, targets[0], record)
    except OSError as exc:
        for t in temps:
            t.unlink(missing_ok=True)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"cannot write {current}: {_reason(exc)}") from None
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        raise
    try:
        _roll_forward(folder, journal, record)
    except OSError as exc:  # the journal stays: the next write or read of these files completes the commit
        raise WriteError(f"cannot write {targets[0]}: {_reason(exc)}") from None
    return targets


def swap_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` (a sibling of ``target``) in the place of ``target``, as one unit.

    An earlier folder at ``target`` steps aside, the new one takes its place, the earlier one is
    removed. Interrupted at any point, ``recover(target)`` completes the swap.
    """
    new, target = Path(new), Path(target)
    folder = _folder(target)
    old = folder / f".{target.name}.{os.urandom(4).hex()}.old"
    record = {"format": JOURNAL_FORMAT, "kind": "swap", "target": target.name, "new": new.name, "old": old.name}
    journal = _write_journal(folder, target, record)
    try:
        _roll_forward(folder, journal, record)
    except OSError:  # a rename failed (not a kill): put the earlier folder back at once
        try:
            if not _exists(target) and _exists(old):
                os.replace(old, target)
            journal.unlink(missing_ok=True)
        except OSError:
            pass  # the journal stays; recover() completes it on the next write or read
        raise


def _safe_name(name, target: str | None = None, suffixes=(".tmp",)) -> bool:
    """A journal names only our own temporaries beside its targets: no paths, nothing else."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        return False
    if target is None:
        return True
    return name.startswith(f".{target}.") and name.endswith(suffixes)


def _valid(record) -> bool:
    if not isinstance(record, dict) or record.get("format") != JOURNAL_FORMAT:
        return False
    if record.get("kind") == "files":
        moves = record.get("moves")
        return isinstance(moves, list) and bool(moves) and all(
            isinstance(m, list) and len(m) == 2 and _safe_name(m[1]) and _safe_name(m[0], m[1]) for m in moves)
    if record.get("kind") == "swap":
        target = record.get("target")
        return (_safe_name(target) and _safe_name(record.get("new"), target, (".tmp",))
                and _safe_name(record.get("old"), target, (".old",)))
    return False


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _roll_forward(folder: Path, journal: Path, record: dict) -> None:
    if record["kind"] == "files":
        for tmp_name, target_name in record["moves"]:
            tmp = folder / tmp_name
            if _exists(tmp):  # not yet renamed
                os.replace(tmp, folder / target_name)
    else:
        target, new, old = folder / record["target"], folder / record["new"], folder / record["old"]
        if _exists(new):
            if _exists(target) and not _exists(old):
                os.replace(target, old)  # the earlier folder steps aside ...
            os.replace(new, target)  # ... the new one takes its place
        elif not _exists(target) and _exists(old):
            os.replace(old, target)  # the new folder is gone: roll back to the earlier one
        if _exists(old):
            shutil.rmtree(old, ignore_errors=True)
    _fsync_folder(folder)
    journal.unlink(missing_ok=True)


def _journals(folder: Path):
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(JOURNAL_SUFFIX):
            yield Path(entry.path)


def recover(path: str | os.PathLike) -> bool:
    """Complete an interrupted commit that involves ``path``; True when there was one.

    Journals that are not ours or name anything but our own temporaries are left alone. Raises
    WriteError when the commit cannot be completed (the journal then stays for the next attempt).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    found = False
    for journal in _journals(folder):
        try:
            with open(journal, "rb") as fh:
                record = json.loads(fh.read(1 << 20))
        except (OSError, ValueError, RecursionError):
            continue
        if not _valid(record):
            continue
        names = {m[1] for m in record["moves"]} if record["kind"] == "files" else {record["target"]}
        if path.name not in names:
            continue
        try:
            _roll_forward(folder, journal, record)
        except OSError as exc:
            raise WriteError(f"cannot complete an interrupted write of {path}: {_reason(exc)}") from None
        found = True
    return found


SIDECAR_SUFFIX = ".provenance.json"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where a file's provenance record goes: ``NAME.EXT.provenance.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def json_bytes(record: Mapping) -> bytes:
    return (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")


def write_with_sidecar(path: str | os.PathLike, data: bytes, sidecar: Mapping | None = None) -> Path:
    """``data`` at ``path``; with a ``sidecar`` record, ``<path>.provenance.json`` too, both as one unit."""
    if sidecar is None:
        return write_bytes(path, data)
    write_files({Path(path): data, sidecar_path(path): json_bytes(sidecar)})
    return Path(path)
