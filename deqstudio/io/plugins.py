"""Plugins: installed packages that bring a ``ModelAdapter`` in Python, run only with the user's consent.

A plugin is an entry point in group ``deqstudio.adapters`` whose object is a callable
``open_model(path: str | None) -> ModelAdapter``. Discovery reads the distributions' metadata only
(``entry_points.txt``, ``METADATA``, ``RECORD``) and hashes the plugin's files: nothing is imported. Running one
imports it and runs arbitrary Python, by design; so it happens only for a plugin named in ``allowed``, which the
studio fills after consent (remembered per name + version + hash of the files: a changed file asks again) and a
headless command from ``--allow-plugin NAME``. Safe mode (``--safe-mode`` or ``DEQSTUDIO_SAFE_MODE=1``) hides
every plugin. No sandbox is claimed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import CheckpointError, one_line
from . import atomic
from .config import config_dir

GROUP = "deqstudio.adapters"
SAFE_MODE_ENV = "DEQSTUDIO_SAFE_MODE"
PREFIX = "plugin:"
_MAX_FILES = 5000
_MAX_BYTES = 256 * 1024**2
TRUST = "runs the plugin's Python code with your permissions (consented; no sandbox)"


def safe_mode() -> bool:
    """Whether plugins are hidden: ``DEQSTUDIO_SAFE_MODE`` set to 1, true, yes or on."""
    return os.environ.get(SAFE_MODE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Plugin:
    """What metadata says about one plugin, read without importing it."""

    name: str  # the entry point's name: what --allow-plugin and plugin:NAME use
    target: str  # "module:attribute"
    distribution: str
    version: str
    summary: str
    files_hash: str
    files: int

    @property
    def key(self) -> dict:
        return {"name": self.name, "version": self.version, "hash": self.files_hash}

    def describe(self) -> str:
        return f"{self.name} {self.version} (from {self.distribution}: {self.target})"


def _plugin_files(dist, target: str) -> list[Path]:
    """The distribution's files (RECORD) and the entry point's top-level module, found without importing."""
    paths = set()
    for f in dist.files or ():
        if "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        paths.add(Path(dist.locate_file(f)))
    top = target.split(":", 1)[0].split(".", 1)[0].strip()
    if top:
        try:
            spec = importlib.machinery.PathFinder.find_spec(top)  # searches sys.path; imports nothing
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            origin = Path(spec.origin)
            if spec.submodule_search_locations:
                for folder in spec.submodule_search_locations:
                    paths.update(p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            else:
                paths.add(origin)
    return sorted(paths)[:_MAX_FILES]


def _hash_files(paths: list[Path]) -> str:
    h, budget = hashlib.sha256(), _MAX_BYTES
    for p in paths:
        h.update(str(p).encode("utf-8", "backslashreplace") + b"\0")
        try:
            with open(p, "rb") as fh:
                while budget > 0 and (chunk := fh.read(min(1 << 20, budget))):
                    budget -= len(chunk)
                    h.update(chunk)
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\n")
    return h.hexdigest()


def discover() -> list[Plugin]:
    """Every installed plugin (none in safe mode), by entry-point name; nothing is imported."""
    if safe_mode():
        return []
    found: dict[str, Plugin] = {}
    for dist in metadata.distributions():
        try:
            points = [ep for ep in dist.entry_points if ep.group == GROUP]
        except Exception:  # noqa: BLE001 — a damaged distribution's metadata hides its plugins, nothing else
            continue
        for ep in points:
            if ep.name in found:
                continue  # the first on sys.path wins, as an import would
            meta = dist.metadata
            files = _plugin_files(dist, ep.value)
            found[ep.name] = Plugin(ep.name, ep.value, meta.get("Name") or "?", dist.version or "?",
                                    meta.get("Summary") or "", _hash_files(files), len(files))
    return sorted(found.values(), key=lambda p: p.name)


def find(name: str) -> Plugin:
    if safe_mode():
        raise CheckpointError(f"plugins are off (safe mode): plugin {name!r} was not run")
    plugins = discover()
    for p in plugins:
        if p.name == name:
            return p
    have = ", ".join(p.name for p in plugins) or "none"
    raise CheckpointError(f"no installed plugin is named {name!r} (installed plugins: {have})")


class ConsentStore:
    """Which plugins the user agreed to run, per name + version + hash of files; a damaged store is empty."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "plugins.json"

    def _entries(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text())
            return [e for e in data.get("consents", []) if isinstance(e, dict)]
        except (OSError, ValueError, AttributeError):
            return []

    def granted(self, plugin: Plugin) -> bool:
        key = plugin.key
        return any(all(e.get(k) == v for k, v in key.items()) for e in self._entries())

    def grant(self, plugin: Plugin) -> None:
        entries = [e for e in self._entries() if e.get("name") != plugin.name] + [plugin.key]
        self._write(entries)

    def revoke(self, name: str) -> None:
        self._write([e for e in self._entries() if e.get("name") != name])

    def _write(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path, json.dumps({"version": 1, "consents": entries}, indent=1))


@dataclass
class PluginModel:
    """A plugin's model: what a checkpoint offers the studio (path, hash of the plugin's files, adapter)."""

    path: Path
    sha256: str
    adapter: object
    plugin: Plugin
    metrics: dict
    dataset: dict


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``plugin:NAME`` or ``plugin:NAME:PATH`` → (NAME, PATH or None)."""
    rest = reference[len(PREFIX):] if reference.startswith(PREFIX) else reference
    name, _, path = rest.partition(":")
    if not name:
        raise CheckpointError(f"{reference!r}: name a plugin, as plugin:NAME or plugin:NAME:PATH")
    return name, (path or None)


def open_plugin_model(reference: str, allowed=frozenset()) -> PluginModel:
    """Import and run an allowed plugin's ``open_model``; CheckpointError for anything else, run or not."""
    from ..core.adapter import ModelAdapter, ModelSource

    name, path = parse_reference(reference)
    plugin = find(name)
    if name not in allowed:
        raise CheckpointError(f"plugin {name!r} runs its own Python code, so it runs only with consent: in the "
                              f"studio, Plugins › {name}; in a headless command, --allow-plugin {name}")
    try:
        entry = metadata.EntryPoint(name=name, value=plugin.target, group=GROUP)
        adapter = entry.load()(path)
    except Exception as exc:  # noqa: BLE001 — whatever the plugin raises is its failure, said in one line
        raise CheckpointError(f"plugin {name!r} failed: {type(exc).__name__}: {one_line(exc, 200)}") from None
    if not isinstance(adapter, ModelAdapter):
        raise CheckpointError(f"plugin {name!r} returned a {type(adapter).__name__}, not a model adapter")
    with contextlib.suppress(AttributeError, TypeError):  # an adapter that keeps its own source says it itself
        adapter.source = ModelSource("plugin", path or "", plugin.files_hash, plugin.describe(), TRUST,
                                     details={"plugin": plugin.name, "version": plugin.version})
    return PluginModel(Path(path) if path else Path(f"{PREFIX}{name}"), plugin.files_hash, adapter, plugin, {}, {})
