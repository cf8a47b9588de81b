"""A model with its data: the dataset a checkpoint records, looked for beside the checkpoint, among the recent files,
among the bundled datasets, and where it was trained (in that order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DeqStudioError, printable
from ..io.dataset_lookup import DATASET_SUFFIXES, datasets_in, find_dataset
from ..paths import datasets_dir


@dataclass(frozen=True)
class RecordedDataset:
    """What a checkpoint says it was trained on, and where that file was found (``path`` None: not found)."""

    name: str
    sha256: str
    path: Path | None = None
    where: str = ""

    def describe(self) -> str:
        what = f"'{printable(self.name)}'" + (f" (sha256 {self.sha256[:12]}…)" if self.sha256 else "")
        if self.path is None:
            return (f"This model was trained on the dataset {what}; it was not found beside the checkpoint, "
                    "among the recent files or the bundled datasets. Choose it below.")
        return f"This model was trained on the dataset {what}, found {self.where}: {printable(self.path)}"


def candidates(checkpoint_path: Path | None, record: dict, recent_paths=()) -> list[tuple[Path, str]]:
    found = []
    if checkpoint_path is not None:
        found += [(p, "beside the checkpoint") for p in datasets_in(Path(checkpoint_path).parent)]
    found += [(Path(p), "among the recent files") for p in recent_paths
              if isinstance(p, str) and Path(p).suffix.lower() in DATASET_SUFFIXES]
    found += [(p, "among the bundled datasets") for p in datasets_in(datasets_dir())]
    recorded = record.get("path")
    if isinstance(recorded, str) and recorded:
        found.append((Path(recorded), "where it was trained"))
    return found


def recorded_dataset(checkpoint, recent_paths=()) -> RecordedDataset | None:
    """The dataset ``checkpoint`` (a loaded ``Checkpoint``) records, found or not; None when it records none."""
    record = getattr(checkpoint, "dataset", None) or {}
    name = record.get("name") if isinstance(record.get("name"), str) else ""
    sha = record.get("sha256") if isinstance(record.get("sha256"), str) else ""
    if not name and not sha:
        return None
    hit = find_dataset(record, candidates(getattr(checkpoint, "path", None), record, recent_paths))
    return RecordedDataset(name, sha, *(hit or (None, "")))


def recorded_dataset_of(checkpoint_path, recent_paths=()) -> RecordedDataset | None:
    """Load the checkpoint at ``checkpoint_path`` (on a worker: it imports torch) and find its dataset.
    A file that cannot be loaded records nothing (opening it says why)."""
    from ..io.checkpoint import load_checkpoint

    try:
        checkpoint = load_checkpoint(checkpoint_path)
    except (DeqStudioError, OSError):
        return None
    return recorded_dataset(checkpoint, recent_paths)
