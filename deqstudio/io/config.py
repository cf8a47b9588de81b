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
    try:
        import platformdirs
    except ImportError:  # a bare torch + numpy + h5py machine: the same places platformdirs gives
        return _platform_config_dir()
    return Path(platformdirs.user_config_dir("deqstudio", appauthor=False))


def _platform_config_dir() -> Path:
    """platformdirs' user_config_dir("deqstudio", appauthor=False), for when it is not installed."""
    import sys

    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "deqstudio"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "deqstudio"
    return Path(os.environ.get("XDG_CONFIG_HOME", "").strip() or home / ".config") / "deqstudio"
