"""The headless commands' compute: the same Engine and analyses the studio uses, without a window."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..core.corruptions import CorruptionSpec
from .engine import CorruptionChoice, SolveRequest, SolveResult, SolverChoice
from .state import LoadError, Session


class HeadlessError(ValueError):
    """A bad argument or file; the message is the one line the command prints."""


@dataclass
class Loaded:
    session: Session

    @property
    def checkpoint(self):
        return self.session.checkpoint

    @property
    def dataset(self):
        return self.session.dataset

    @property
    def engine(self):
        return self.session.engine


def load(checkpoint=None, dataset=None, device: str = "cpu") -> Loaded:
    """Open a checkpoint and a dataset (the bundled default for either one not given)."""
    from ..paths import default_checkpoint, default_dataset

    session = Session()
    session.solver = SolverChoice(device=device)
    try:
        session.open(checkpoint or default_checkpoint(), dataset or default_dataset())
    except LoadError as exc:
        raise HeadlessError(str(exc)) from None
    return Loaded(session)


def parse_corruptions(texts, loaded: Loaded) -> dict[str, CorruptionChoice]:
    """``MOD=KIND:SEVERITY[@SEED]`` strings, checked against the loaded model's modalities."""
    info = loaded.session.info
    out = {}
    for text in texts or ():
        try:
            spec = CorruptionSpec.parse(text)
        except ValueError as exc:
            raise HeadlessError(str(exc)) from None
        choice = CorruptionChoice(spec.kind, spec.severity, spec.seed)
        try:
            loaded.session.set_corruption(spec.modality, choice)
        except ValueError as exc:
            raise HeadlessError(f"{text}: {exc}" + (f" (the model has {', '.join(info.modality_names)})"
                                                   if spec.modality not in info.modality_names else "")) from None
        out[spec.modality] = choice
    return out


def solver_choice(name: str | None, device: str = "cpu", max_iter: int | None = None, tol: float | None = None) -> SolverChoice:
    from ..core.solvers import available_solvers

    choice = SolverChoice(device=device)
    if name is not None:
        if name not in available_solvers():
            raise HeadlessError(f"unknown solver {name!r}; expected one of {', '.join(available_solvers())}")
        choice = SolverChoice(solver=name, device=device)
    if max_iter is not None:
        if max_iter < 1:
            raise HeadlessError(f"--max-iter must be at least 1, got {max_iter}")
        choice = replace(choice, max_iter=max_iter)
    if tol is not None:
        if not (math.isfinite(tol) and tol > 0):
            raise HeadlessError(f"--tol must be a positive finite number, got {tol}")
        choice = replace(choice, tol=tol)
    return choice


def default_sample(loaded: Loaded) -> int:
    return int(loaded.dataset.split("test")[0])


def solve(loaded: Loaded, sample: int | None, corruptions=(), solver: SolverChoice | None = None) -> SolveResult:
    """Solve one sample clean and corrupted, exactly as the studio does."""
    n = len(loaded.dataset)
    index = default_sample(loaded) if sample is None else int(sample)
    if not 0 <= index < n:
        raise HeadlessError(f"sample {index} is outside 0..{n - 1} (dataset {loaded.dataset.name!r})")
    session = loaded.session
    session.set_sample(index)
    parse_corruptions(corruptions, loaded)
    if solver is not None:
        session.solver = solver
    try:
        result = session.engine_solve(session.request())
    except ValueError as exc:  # e.g. a corruption that cannot apply to this sample: one line, not a traceback
        raise HeadlessError(str(exc)) from None
    session.accept(result)
    return result


def sweep(loaded: Loaded, modality=None, kind=None, split: str = "test", levels=None, progress=None, cancel=None):
    """The robustness curve and noise calibration over a split (RobustnessSweep)."""
    from ..diagnostics.evaluation import Evaluator
    from ..diagnostics.robustness import LEVELS, robustness_sweep

    ds = loaded.dataset
    if split not in ds.splits:
        raise HeadlessError(f"no split {split!r} in dataset {ds.name!r}; it has {', '.join(ds.splits)}")
    if len(ds.split(split)) == 0:
        raise HeadlessError(f"split {split!r} of dataset {ds.name!r} is empty")
    evaluator = Evaluator(loaded.checkpoint.model, ds, device=loaded.engine.device)
    try:
        return robustness_sweep(
            evaluator, modalities=[modality] if modality else None, kinds=[kind] if kind else None,
            levels=LEVELS if levels is None else levels, split=split,
            model_name=loaded.checkpoint.path.name if loaded.checkpoint.path else "", progress=progress, cancel=cancel,
        )
    except ValueError as exc:
        raise HeadlessError(str(exc)) from None
