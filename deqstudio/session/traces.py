"""A solved sample as plain data: the headless ``solve --json`` object and the HDF5 trace file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import hdf5
from .values import RunView, SolveResult

TRACE_FORMAT = "deqstudio-trace"
RUN_ARRAYS = ("rel", "abs", "block_rel", "probabilities", "gates", "gate_share", "final_probabilities", "z_star",
              "sigma_hat", "weights", "pe", "energy")


def _finite_or_none(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _list(values) -> list:
    return [_finite_or_none(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _per_modality(names, values) -> dict | None:
    if values is None:
        return None
    return {n: _finite_or_none(v) for n, v in zip(names, values)}


def run_to_json(result: SolveResult, run: RunView) -> dict:
    """One run's fields. A multilabel model's ``prediction`` is its predicted label set (a list of class
    names, ``prediction_index`` their indices), its probabilities a sigmoid per label, and ``f1`` the F1 of
    the set against the sample's labels."""
    names = result.modality_names
    probs = run.final_probabilities
    if result.multilabel:
        prediction = {"prediction": [result.class_names[i] for i in run.predicted],
                      "prediction_index": list(run.predicted), "f1": result.sample_f1(run)}
    else:
        prediction = {"prediction": result.class_names[run.prediction], "prediction_index": run.prediction}
    return {
        **prediction,
        "probabilities": {c: _finite_or_none(p) for c, p in zip(result.class_names, probs)},
        "nstep": run.nstep,
        "converged": run.converged,
        "reason": run.reason,
        "final_rel_residual": _finite_or_none(run.final_rel) if run.nstep else None,
        "rel_residual": _list(run.rel),
        "block_rel_residual": {b: _list(run.block_rel[:, i]) for i, b in enumerate(result.block_names)},
        "gates": {m: _list(run.gate_share[:, i]) for i, m in enumerate(names)},
        "probabilities_per_step": {c: _list(run.probabilities[:, i]) for i, c in enumerate(result.class_names)},
        "udml": {
            "noise": _per_modality(names, run.sigma_hat),
            "dependency": {m: _finite_or_none(result.dependency[m]) for m in names if m in result.dependency} or None,
            "weights": _per_modality(names, run.weights),
            "pe": _per_modality(names, run.pe),
            "energy": _per_modality(names, run.energy),
        },
        "solve_ms": run.wall_ms,
    }


def equilibrium_to_json(report, result: SolveResult) -> dict | None:
    """One run's ``equilibrium`` object (``EquilibriumReport.to_json``); None for a model without a fixed point."""
    return None if report is None else report.to_json(result.class_names)


def result_to_json(result: SolveResult, equilibrium=None) -> dict:
    """The corrupted run's fields at the top level (what was asked for), the clean run under ``clean``;
    with ``equilibrium`` (an ``EquilibriumResult`` of this result) each run's ``equilibrium`` object."""
    out = {
        "sample": result.request.sample,
        "label": ([result.class_names[i] for i in result.label_set] if result.multilabel
                  else result.class_names[result.label]),
        "label_index": list(result.label_set) if result.multilabel else result.label,
        "task": result.task,
        "fusion": result.fusion,
        "corruptions": result.request.corruption_specs(),
        "solver": result.request.solver.to_dict(),
        "device": result.device,
    }
    if result.input_note:
        out["input_note"] = result.input_note
    out.update(run_to_json(result, result.corrupted))
    out["equilibrium_shift"] = {b: _finite_or_none(v) for b, v in zip(result.block_names, result.shift)}
    out["clean"] = run_to_json(result, result.clean)
    if equilibrium is not None:
        out["equilibrium"] = equilibrium_to_json(equilibrium.corrupted, result)
        out["clean"]["equilibrium"] = equilibrium_to_json(equilibrium.clean, result)
    return out


def write_trace_hdf5(result: SolveResult, path: str | os.PathLike, provenance: dict | None = None,
                     sidecar: dict | None = None, equilibrium=None) -> Path:
    """``/clean`` and ``/corrupted`` groups of per-step arrays, names as attributes; written atomically.

    Built in memory, then written in one step; with ``sidecar``, ``<path>.provenance.json`` is written
    with it as one unit. With ``equilibrium`` (of this result), each group gets an ``equilibrium`` subgroup.
    """
    def fill(h5) -> None:
        _fill_trace(h5, result, provenance)
        if equilibrium is not None:
            for tag, report in (("clean", equilibrium.clean), ("corrupted", equilibrium.corrupted)):
                if report is not None:
                    _fill_equilibrium(h5[tag].create_group("equilibrium"), report)

    return hdf5.write(path, fill, sidecar)


def _fill_equilibrium(g, report) -> None:
    """Scalars as attributes (null → NaN), per-block and per-modality arrays as datasets."""
    starts = report.starts
    hdf5.set_attrs(g, {
        "spectral_radius": report.spectral_radius, "spectral_method": report.spectral_method,
        "contraction_observed": np.nan if report.contraction_observed is None else report.contraction_observed,
        "derivatives": report.derivatives, "labels": list(report.labels), "inits_count": starts.count,
        "inits_converged": starts.converged, "inits_max_distance": starts.max_distance,
        "inits_agree": json.dumps(starts.agree),
    })
    g.create_dataset("coupling", data=np.asarray(report.coupling, dtype=np.float64))
    g.create_dataset("sensitivity", data=np.asarray(report.sensitivity, dtype=np.float64))
    g.create_dataset("sensitivity_share", data=report.sensitivity_share)
    for key in ("predicted_shift", "actual_shift"):
        value = getattr(report, key)
        if value is not None:
            g.create_dataset(key, data=np.asarray(value, dtype=np.float64))


def _fill_trace(h5, result: SolveResult, provenance: dict | None) -> None:
    hdf5.set_attrs(h5, {
        "format": TRACE_FORMAT, "version": 1, "sample": result.request.sample, "label": result.label,
        "task": result.task, "label_set": list(result.label_set),
        "modality_names": list(result.modality_names), "block_names": list(result.block_names),
        "class_names": list(result.class_names), "corruptions": json.dumps(result.request.corruption_specs()),
        "solver": json.dumps(result.request.solver.to_dict()), "device": result.request.device,
    })
    if provenance is not None:
        hdf5.set_attrs(h5, {"provenance": json.dumps(provenance)})
    h5.create_dataset("equilibrium_shift", data=np.asarray(result.shift, dtype=np.float64))
    for tag, run in (("clean", result.clean), ("corrupted", result.corrupted)):
        g = h5.create_group(tag)
        hdf5.set_attrs(g, {"nstep": run.nstep, "converged": run.converged, "reason": run.reason,
                           "best_step": run.best_step, "prediction": run.prediction,
                           "predicted": list(run.predicted)})
        for key in RUN_ARRAYS:
            value = getattr(run, key)
            if value is not None:
                g.create_dataset(key, data=np.asarray(value))


def read_trace_hdf5(path: str | os.PathLike) -> dict:
    """{'attrs': {...}, 'clean': {name: array, ...}, 'corrupted': {...}} as written above."""
    with hdf5.open_for_reading(path) as h5:
        attrs = hdf5.get_attrs(h5)
        if attrs.get("format") != TRACE_FORMAT:
            raise ValueError(f"{Path(path).name}: not a DEQ Studio trace file")
        out = {"attrs": attrs, "equilibrium_shift": h5["equilibrium_shift"][()]}
        for tag in ("clean", "corrupted"):
            g = h5[tag]
            out[tag] = {k: g[k][()] for k in g if k != "equilibrium"}
            out[tag].update(hdf5.get_attrs(g))
            if "equilibrium" in g:
                e = g["equilibrium"]
                out[tag]["equilibrium"] = {**{k: e[k][()] for k in e}, **hdf5.get_attrs(e)}
    return out
