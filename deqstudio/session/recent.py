"""Recent files and the last session, remembered across restarts in the user's config folder."""

from __future__ import annotations

import json
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

    def add(self, path: str) -> None:
        items = [path] + [p for p in self.paths() if p != path]
        self._write({"recent": items[: self.limit]})

    def _write(self, data: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path, json.dumps(data))
        except OSError:
            pass  # remembering recent files is a convenience; failing to is not an error
