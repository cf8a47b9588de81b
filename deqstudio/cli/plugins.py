"""``deqstudio plugins``: the installed plugins, read from metadata without importing any of them."""

from __future__ import annotations

import argparse
import json

from ..errors import printable


def add_safe_mode(p: argparse.ArgumentParser, top: bool = False) -> None:
    p.add_argument("--safe-mode", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="hide every plugin (as DEQSTUDIO_SAFE_MODE=1 does)")


def add_parsers(sub) -> None:
    plugins = sub.add_parser("plugins", help="list installed model plugins (nothing is imported or run)")
    plugins.add_argument("--json", action="store_true", help="print one JSON object")
    add_safe_mode(plugins)
    plugins.set_defaults(run=run_plugins)


def run_plugins(args: argparse.Namespace) -> int:
    from ..io.plugins import ConsentStore, discover, safe_mode

    store = ConsentStore()
    found = [{"name": p.name, "version": p.version, "distribution": p.distribution, "entry_point": p.target,
              "summary": p.summary, "files": p.files, "sha256": p.files_hash, "consented": store.granted(p)}
             for p in discover()]
    if args.json:
        print(json.dumps({"safe_mode": safe_mode(), "plugins": found}, indent=2))
        return 0
    if safe_mode():
        print("safe mode: plugins are hidden")
        return 0
    if not found:
        print("no plugins installed (entry points in group deqstudio.adapters)")
    for p in found:
        state = "consented" if p["consented"] else "not consented"
        print(printable(f"{p['name']} {p['version']}  ({p['distribution']}: {p['entry_point']})  {state}  "
                        f"sha256 {p['sha256'][:12]}"))
        if p["summary"]:
            print(printable(f"    {p['summary']}"))
    return 0
