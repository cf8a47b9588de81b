"""The user's config folder, where the studio remembers things (recent files, the last session, plugin consents)."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """Where the studio remembers things: $DEQSTUDIO_CONFIG_DIR, else the platform's own place
    (~/.config/deqstudio or $XDG_CONFIG_HOME on Linux, ~/Library/Application Support on macOS, %APPDATA% on Windows)."""
    override = os.environ.get("DEQSTUDIO_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("deqstudio", appauthor=False))
