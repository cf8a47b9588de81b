"""A report folder: every current plot as PNG/SVG/PDF/CSV, the trace as HDF5, provenance, report.html.

The studio's "Export report" and the headless ``deqstudio report`` both call ``write_report``. The folder
is assembled in a temporary sibling folder and swapped into place as one unit (``atomic.swap_folder``,
with a commit journal), so a failure leaves no half-written report and keeps any earlier one, and a
swap interrupted by a kill is completed the next time that folder is written or read (``recover_report``).
"""

from __future__ import annotations

import glob
import html
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic
from ..session.traces import write_trace_hdf5
from ..errors import ExportError
from .solve_view import FIGURES
from .export import render_pdf, render_png, render_svg, write_json, write_plot_csv

PNG_WIDTH = 1400


@dataclass
class Figure:
    slug: str  # file stem
    title: str
    widget: object  # a plot panel with data_table()
    caption: str = ""


def _prepare_folder(out: Path) -> Path:
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"cannot write the report to {out}: it is a file, not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write the report to {out}: folder {parent} does not exist")
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ExportError(f"cannot write the report to {out}: folder {parent} is not writable "
                          f"({exc.strerror or exc})") from None


def _is_earlier_report(folder: Path) -> bool:
    try:
        import json

        record = json.loads((folder / "provenance.json").read_text())
        return record.get("format") == "deqstudio-provenance" and record.get("what") == "report"
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(out: Path) -> None:
    """A new folder, an empty one, or an earlier report (replaced whole); never someone's other files."""
    if out.is_dir() and any(out.iterdir()) and not _is_earlier_report(out):
        raise ExportError(f"cannot write the report to {out}: the folder holds other files; "
                          "choose a new or empty folder (an earlier report there is replaced)")


def _move_into(tmp: Path, out: Path) -> None:
    os.chmod(tmp, atomic.default_mode(folder=True))
    atomic.swap_folder(tmp, out)


def recover_report(out: str | os.PathLike) -> bool:
    """Complete a report swap that a kill interrupted, so the report is at ``out`` again; True if one was.

    Also brings back an earlier report that an older version of this app left only in a hidden
    ``.<name>.*.old`` folder when it was killed mid-swap.
    """
    out = Path(out).expanduser()
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return False
    try:
        found = atomic.recover(out)
    except atomic.WriteError as exc:
        raise ExportError(str(exc)) from None
    if not (out.exists() or out.is_symlink()):
        for old in sorted(parent.glob(f".{glob.escape(out.name)}.*.old")):
            earlier = old / out.name
            if old.is_dir() and not old.is_symlink() and earlier.is_dir() and _is_earlier_report(earlier):
                try:
                    os.replace(earlier, out)
                except OSError as exc:
                    raise ExportError(f"cannot restore the earlier report at {out}: {exc.strerror or exc}") from None
                shutil.rmtree(old, ignore_errors=True)
                return True
    return found


def write_report(out: str | os.PathLike, figures: list[Figure], provenance: dict, result=None, analyses=(),
                 title: str = "DEQ Studio report", equilibrium=None) -> Path:
    """Write the folder; ``analyses`` are (slug, object with to_csv/to_hdf5) pairs; ``equilibrium``, the
    result's equilibrium analyses (in the trace and the summary). Returns the folder."""
    out = Path(out).expanduser()
    try:
        recover_report(out)
    except OSError as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    _check_target(out)
    tmp = _prepare_folder(out)
    try:
        files: dict[str, dict[str, str]] = {}
        for fig in figures:
            names = {fmt: f"{fig.slug}.{fmt}" for fmt in ("png", "svg", "pdf", "csv")}
            render_png(fig.widget, tmp / names["png"], PNG_WIDTH)
            render_svg(fig.widget, tmp / names["svg"], fig.title)
            render_pdf(fig.widget, tmp / names["pdf"], fig.title)
            write_plot_csv(fig.widget, tmp / names["csv"])
            files[fig.slug] = names
        data_files = []
        if result is not None:
            write_trace_hdf5(result, tmp / "trace.h5", provenance, equilibrium=equilibrium)
            data_files.append(("trace.h5", "solver trace of the sample, clean and corrupted (HDF5)"))
        for slug, analysis in analyses:
            analysis.to_csv(tmp / f"{slug}.csv")
            analysis.to_hdf5(tmp / f"{slug}.h5")
            data_files += [(f"{slug}.csv", f"{slug} table (CSV)"), (f"{slug}.h5", f"{slug} arrays (HDF5)")]
        record = dict(provenance, files=sorted(p.name for p in tmp.iterdir()) + ["provenance.json", "report.html"])
        write_json(tmp / "provenance.json", record)
        atomic.write_text(tmp / "report.html", report_html(title, figures, files, data_files, provenance, result,
                                                           equilibrium))
        _move_into(tmp, out)
    except atomic.WriteError as exc:
        raise ExportError(str(exc)) from None
    except OSError as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _stability_row(equilibrium) -> list[tuple[str, str]]:
    rep = None if equilibrium is None else equilibrium.corrupted
    if rep is None:
        return []
    clean = equilibrium.clean
    agree = {True: "agree (one equilibrium)", False: "DISAGREE: more than one equilibrium",
             None: "too few converged to compare"}[rep.starts.agree]
    text = (f"ρ(J) {rep.spectral_radius:.3f}" + (" ≥ 1: UNSTABLE, plain iteration cannot converge" if rep.unstable
                                                 else " < 1")
            + (f" (clean {clean.spectral_radius:.3f})" if clean is not None and clean is not rep else "")
            + f"; {rep.starts.count} starts {agree}")
    if rep.shift_ratio is not None:
        text += f"; actual / linear shift {rep.shift_ratio:.2f}"
    return [("stability", text)]


def _summary_rows(provenance: dict, result, equilibrium=None) -> list[tuple[str, str]]:
    ck, ds = provenance.get("checkpoint", {}), provenance.get("dataset", {})
    rows = [
        ("checkpoint", f"{Path(ck.get('path', '')).name} ({ck.get('fusion', '?')}, sha256 {ck.get('sha256', '')[:12]}…)"),
        ("dataset", f"{ds.get('name', '?')} ({ds.get('samples', '?')} samples, sha256 {ds.get('sha256', '')[:12]}…)"),
    ]
    if result is not None and result.corrupted.nstep == 0:
        run = result.corrupted
        rows += [
            ("sample", f"{result.request.sample} ({result.truth_summary()})"),
            ("corruptions", ", ".join(result.request.corruption_specs()) or "none"),
            ("prediction", result.prediction_summary(run)),
            ("solver", f"none: a {result.fusion} model has no fixed point to solve"),
            ("device", result.device),
        ]
    elif result is not None:
        run = result.corrupted
        state = "converged" if run.converged else f"not converged ({run.reason})"
        rows += [
            ("sample", f"{result.request.sample} ({result.truth_summary()})"),
            ("corruptions", ", ".join(result.request.corruption_specs()) or "none"),
            ("prediction", result.prediction_summary(run)),
            ("solver", f"{result.request.solver.solver}, tol {result.request.solver.tol:g} "
                       f"({result.request.solver.stop_mode}), max {result.request.solver.max_iter} steps"),
            ("solve", f"{run.nstep} steps, {state}" + (f", final relative residual {run.final_rel:.2e}" if run.nstep else "")),
            ("device", result.device),
            *_stability_row(equilibrium),
        ]
    pk = provenance.get("packages", {})
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in pk.items())))
    rows.append(("created", provenance.get("created", "")))
    return rows


def report_html(title: str, figures, files, data_files, provenance: dict, result, equilibrium=None) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
        "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
        "figure{margin:2em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:0.9em;color:#444}"
        "a{color:#1f5f9f}</style></head><body>",
        f"<h1>{e(title)}</h1>", "<table>",
    ]
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
              for k, v in _summary_rows(provenance, result, equilibrium)]
    parts.append("</table>")
    for fig in figures:
        names = files[fig.slug]
        links = " · ".join(f"<a href='{e(names[f])}'>{f.upper()}</a>" for f in ("svg", "pdf", "csv", "png"))
        caption = e(fig.caption) + (" — " if fig.caption else "") + links
        parts.append(f"<figure><h2>{e(fig.title)}</h2><img src='{e(names['png'])}' alt='{e(fig.title)}'>"
                     f"<figcaption>{caption}</figcaption></figure>")
    if data_files:
        parts.append("<h2>Data</h2><ul>")
        parts += [f"<li><a href='{e(name)}'>{e(name)}</a> — {e(desc)}</li>" for name, desc in data_files]
        parts.append("</ul>")
    parts.append("<p>Provenance (checkpoint and dataset hashes, corruption and solver settings, package versions): "
                 "<a href='provenance.json'>provenance.json</a></p></body></html>")
    return "\n".join(parts) + "\n"


def solve_figures(widgets: dict) -> list[Figure]:
    """Figures for the panels of one solved sample, keyed as ``SolveView``'s ``FIGURES``."""
    return [Figure(slug, title, widgets[slug], caption) for slug, title, caption in FIGURES if slug in widgets]


def stability_figures(widget) -> list[Figure]:
    """The Stability panel as a figure, when it shows an analysis."""
    if widget is None or getattr(widget, "equilibrium", None) is None or widget.equilibrium.corrupted is None:
        return []
    return [Figure("stability", "Equilibrium stability", widget,
                   "ρ(J) at z* (≥ 1: plain iteration cannot converge), block coupling ‖∂f_row/∂z_col‖₂, the "
                   "prediction's sensitivity through the equilibrium beside the gate share and UDML weights, the "
                   "linear response beside the actual shift, and whether solves from several starts agree")]


def sweep_figures(robustness_widget, calibration_widget) -> list[Figure]:
    return [
        Figure("robustness", "Accuracy under corruption", robustness_widget,
               "accuracy vs severity per modality; AUC is the area under the curve over the severity span"),
        Figure("calibration", "Noise calibration", calibration_widget,
               "mean predicted σ̂ vs severity; ρ: Spearman rank correlation per sample, UDML and the PE baseline"),
    ]
