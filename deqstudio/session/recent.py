"""Recent files and the last session, remembered across restarts in the user's config folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..io import atomic
from ..io.config import config_dir

__all__ = ["RecentFiles", "config_dir"]


class RecentFiles:
    """Most recent first, at most ``limit``; a damaged store is treated as empty, never an error."""

    def __init__(self, path: Path | None = None, limit: int = 10) -> None:
        self.path = path or config_dir() / "recent.json"
        self.limit = limit

    def paths(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
            return [p for p in data.get("recent", []) if isinstance(p, str)][: self.limit]
        except (OSError, ValueError, AttributeError):
            return []

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def add(self, path: str) -> None:
        items = [path] + [p for p in self.paths() if p != path]
        self._write(dict(self._read(), recent=items[: self.limit]))

    def folder(self, kind: str) -> str:
        """The folder last used for ``kind`` (e.g. "export"), or "" when none is remembered or it is gone."""
        folders = self._read().get("folders", {})
        folder = folders.get(kind, "") if isinstance(folders, dict) else ""
        return folder if isinstance(folder, str) and folder and os.path.isdir(folder) else ""

    def set_folder(self, kind: str, folder: str) -> None:
        data = self._read()
        folders = data.get("folders") if isinstance(data.get("folders"), dict) else {}
        self._write(dict(data, folders=dict(folders, **{kind: str(folder)})))

    def _write(self, data: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path, json.dumps(data))
        except OSError:
            pass  # remembering recent files is a convenience; failing to is not an error
