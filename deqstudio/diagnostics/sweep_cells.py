"""The model runs inside one sweep chunk: cells evaluated batch by batch with the clean encodings reused, and
the equilibrium statistics of the chunk's subsample rows (``sweep_chunks.evaluate_chunk`` drives both)."""

from __future__ import annotations

import numpy as np

from ..core.evaluate import concat_runs
from ..errors import Cancelled
from .evaluation import BatchOutcome, Evaluator


class CellRunner:
    """One chunk's model runs, batch by batch (batches aligned to the split: see ``SweepSpec``). A model that can
    encode modalities apart (``encode_modalities``, DEQ Studio's own) encodes the clean inputs once per batch;
    a cell that corrupts one modality re-encodes that one only: the same values, a fraction of the encoders'
    work (the image encoder dominates a run)."""

    def __init__(self, evaluator: Evaluator, ids: np.ndarray, clean_inputs, settings, batch_size: int, cancel):
        self.evaluator, self.ids, self.clean_inputs = evaluator, ids, clean_inputs
        self.settings, self.batch_size, self.cancel = settings, batch_size, cancel
        self.encode = getattr(evaluator.adapter, "encode_modalities", None)
        self.clean_encodings: dict[int, list] = {}

    def run(self, inputs, changed: int | None = None) -> BatchOutcome:
        """The model on ``inputs`` (the clean inputs with modality ``changed`` corrupted; None: clean)."""
        adapter, parts = self.evaluator.adapter, []
        for start in range(0, len(self.ids), self.batch_size):
            if self.cancel is not None and self.cancel():
                raise Cancelled()
            rows = slice(start, start + self.batch_size)
            batch = [x[rows] for x in inputs]
            if self.encode is None:
                parts.append(adapter(batch, self.settings, False))
                continue
            if start not in self.clean_encodings:
                self.clean_encodings[start] = self.encode([x[rows] for x in self.clean_inputs])
            encodings = list(self.clean_encodings[start])
            if changed is not None:
                encodings[changed] = None
            parts.append(adapter(batch, self.settings, False, encodings=encodings))
        return self.evaluator.outcome(self.ids, concat_runs(parts))


class EquilibriumCells:
    """ρ(J) and the shift ratio of one chunk's equilibrium subsample rows ``sub``, cell by cell: the values
    ``equilibrium.sweep_cell`` gives (same batches, same maps), with the clean problem built once per chunk and,
    for a model that encodes modalities apart, the unchanged modalities' encodings reused."""

    def __init__(self, evaluator: Evaluator, sub: np.ndarray, clean_inputs, settings, batch_size: int):
        from .equilibrium import _settings

        self.evaluator, self.adapter = evaluator, evaluator.adapter
        self.settings = _settings(self.adapter, settings)
        self.batches = [sub[i : i + batch_size] for i in range(0, len(sub), batch_size)]
        self.sub = sub
        self.clean_inputs = clean_inputs
        self.encode = getattr(self.adapter, "encode_modalities", None)
        self.clean_problems: dict[int, tuple] = {}
        self.clean_cell: dict | None = None

    def _clean(self, b: int):
        if b not in self.clean_problems:
            x0 = [x[self.batches[b]] for x in self.clean_inputs]
            enc = self.encode(x0) if self.encode is not None else None
            problem = self.adapter.fixed_point_problem(x0, encodings=enc) if enc is not None else \
                self.adapter.fixed_point_problem(x0)
            self.clean_problems[b] = (x0, enc, problem)
        return self.clean_problems[b]

    def cell(self, corr, changed: int | None, r: BatchOutcome, clean: BatchOutcome, inputs) -> dict[str, np.ndarray]:
        from ..core.equilibrium.analysis import linear_shift, spectral_radii
        from .equilibrium import SWEEP_ARNOLDI_STEPS, SWEEP_LINEAR_TOL

        if corr is None and self.clean_cell is not None:
            return self.clean_cell
        n = len(self.sub)
        rho, ratio = np.full(n, np.nan), np.full(n, np.nan)
        z, z0 = r.run.z_star, clean.run.z_star
        if z is None:
            return {"spectral_radius": rho, "shift_ratio": ratio}
        at = 0
        for b, rows in enumerate(self.batches):
            out = slice(at, at + len(rows))
            at += len(rows)
            _, enc, clean_problem = self._clean(b)
            if corr is None:
                problem = clean_problem
            else:
                x = [a[rows] for a in inputs]
                if enc is not None:
                    given = list(enc)
                    given[changed] = None
                    problem = self.adapter.fixed_point_problem(x, encodings=given)
                else:
                    problem = self.adapter.fixed_point_problem(x)
            rho[out] = spectral_radii(problem, z[rows], steps=SWEEP_ARNOLDI_STEPS)
            if corr is not None and z0 is not None:
                predicted = linear_shift(clean_problem, z0[rows], x, self.settings,
                                         input_scales=self.adapter.feature_scales, tol=SWEEP_LINEAR_TOL)
                actual = np.linalg.norm(z[rows] - z0[rows], axis=1)
                ok = r.converged[rows] & clean.converged[rows] & (predicted > 0) & np.isfinite(predicted)
                ratio[out] = np.where(ok, actual / np.where(ok, predicted, 1.0), np.nan)
        cell = {"spectral_radius": rho, "shift_ratio": ratio}
        if corr is None:
            self.clean_cell = cell
        return cell
