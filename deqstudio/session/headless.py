"""The headless commands' compute: the same session, engine and analyses the studio uses, without a window.

Every problem is a ``UsageError`` (or another ``DeqStudioError``) whose message is the one line a command prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.corruptions import Corruption
from ..core.solvers.settings import SolverSettings
from ..errors import DeqStudioError, LoadError, UsageError
from .state import Session
from .values import SolveResult

HeadlessError = UsageError  # the name the commands catch: a bad argument or file, said in one line


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

    @property
    def adapter(self):
        return self.session.engine.adapter


def load(checkpoint=None, dataset=None, device: str = "cpu", allow_plugins=()) -> Loaded:
    """Open a model (checkpoint, package, or a plugin named in ``allow_plugins``) and a dataset (the bundled
    default for either one not given)."""
    from ..paths import default_checkpoint, default_dataset

    session = Session()
    session.allowed_plugins = frozenset(allow_plugins or ())
    try:
        session.set_device(device)
        session.open(checkpoint or default_checkpoint(), dataset or default_dataset())
    except (LoadError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return Loaded(session)


def parse_corruptions(texts, loaded: Loaded) -> dict[str, Corruption]:
    """``MOD=KIND:SEVERITY[@SEED]`` strings, checked against the loaded model's modalities."""
    info = loaded.session.info
    out = {}
    for text in texts or ():
        try:
            modality, corruption = Corruption.parse(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            loaded.session.set_corruption(modality, corruption)
        except ValueError as exc:
            raise UsageError(f"{text}: {exc}" + (f" (the model has {', '.join(info.modality_names)})"
                                                 if modality not in info.modality_names else "")) from None
        out[modality] = corruption
    return out


def solver_settings(name: str | None, max_iter: int | None = None, tol: float | None = None,
                    base: SolverSettings | None = None) -> SolverSettings:
    """The solver settings a command line asks for, over ``base`` (the default settings when None)."""
    import math

    from ..core.bounds import MAX_ITER, TOL

    if max_iter is not None and not MAX_ITER[0] <= max_iter <= MAX_ITER[1]:
        raise UsageError(f"--max-iter must be a whole number in {MAX_ITER[0]}..{MAX_ITER[1]:,}, got {max_iter}")
    if tol is not None and not (math.isfinite(tol) and TOL[0] <= tol <= TOL[1]):
        raise UsageError(f"--tol must be a positive finite number in [{TOL[0]:g}, {TOL[1]:g}], got {tol}")
    settings = base or SolverSettings()
    changes = {k: v for k, v in (("solver", name), ("max_iter", max_iter), ("tol", tol)) if v is not None}
    try:
        return settings.with_(**changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def default_sample(loaded: Loaded) -> int:
    return int(loaded.dataset.split("test")[0])


def solve(loaded: Loaded, sample: int | None, corruptions=(), solver: SolverSettings | None = None) -> SolveResult:
    """Solve one sample clean and corrupted, exactly as the studio does."""
    n = len(loaded.dataset)
    index = default_sample(loaded) if sample is None else int(sample)
    if not 0 <= index < n:
        raise UsageError(f"sample {index} is outside 0..{n - 1} (dataset {loaded.dataset.name!r})")
    session = loaded.session
    session.set_sample(index)
    parse_corruptions(corruptions, loaded)
    if solver is not None:
        session.set_solver(solver)
    try:
        result = session.engine_solve(session.request())
    except (ValueError, DeqStudioError) as exc:  # e.g. a corruption that cannot apply to this sample: one line
        raise UsageError(str(exc)) from None
    session.accept(result)
    return result


def equilibrium(loaded: Loaded, result: SolveResult):
    """The equilibrium analyses of a solved result (``Engine.equilibrium``), as the studio computes them."""
    try:
        return loaded.engine.equilibrium(result)
    except (ValueError, DeqStudioError) as exc:
        raise UsageError(f"the equilibrium analysis failed: {exc}") from None


def _sweep_arguments(ds, modality, kind, split: str, levels, chunk_size, batch_size, equilibrium_samples) -> dict:
    """The sweep's keyword arguments from the command's options, each option checked (UsageError naming it)."""
    from ..diagnostics.robustness import LEVELS

    if split not in ds.splits:
        raise UsageError(f"no split {split!r} in dataset {ds.name!r}; it has {', '.join(ds.splits)}")
    if len(ds.split(split)) == 0:
        raise UsageError(f"split {split!r} of dataset {ds.name!r} is empty")
    for name, value in (("chunk size", chunk_size), ("batch size", batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"the {name} must be at least 1, got {value}")
    if equilibrium_samples is not None and equilibrium_samples < 0:
        raise UsageError(f"the equilibrium samples must be 0 or more, got {equilibrium_samples}")
    args = dict(modalities=[modality] if modality else None, kinds=[kind] if kind else None,
                levels=LEVELS if levels is None else levels, split=split, chunk_size=chunk_size, batch_size=batch_size)
    if equilibrium_samples is not None:
        args.update(equilibrium=equilibrium_samples > 0, equilibrium_samples=equilibrium_samples)
    return args


def _progress_store(spec, checkpoint_path, dataset_path, device: str, out, restart: bool, note):
    """The progress folder of this sweep (``sweep_store``), opened or started; ``note`` gets what was found there."""
    from ..diagnostics.sweep_store import SweepStore, progress_path, sweep_identity

    identity = sweep_identity(spec, checkpoint_path, dataset_path, device=device)
    store, text = SweepStore.open(progress_path(out, identity), identity, restart=restart)
    if text and note is not None:
        note(text)
    return store


def sweep(loaded: Loaded, modality=None, kind=None, split: str = "test", levels=None, progress=None, cancel=None, *,
          resumable: bool = False, out=None, restart: bool = False, note=None, chunk_size: int | None = None,
          batch_size: int | None = None, equilibrium_samples: int | None = None):
    """The robustness curve and noise calibration over a split (RobustnessSweep).

    ``resumable``: finished chunks go to a progress file (``sweep_store``: in the cache folder, named by the
    sweep and ``out``), and a rerun with the same arguments, model and dataset continues from it (``restart``: start over).
    ``note`` receives the one-line note on what was found there. The store is ``extra["progress_store"]``:
    the caller removes it once the results are written."""
    from ..diagnostics.evaluation import Evaluator
    from ..diagnostics.robustness import robustness_sweep, sweep_spec

    ds = loaded.dataset
    args = _sweep_arguments(ds, modality, kind, split, levels, chunk_size, batch_size, equilibrium_samples)
    evaluator = Evaluator(loaded.adapter, ds)
    path = loaded.checkpoint.path
    try:
        store = None
        if resumable:
            store = _progress_store(sweep_spec(evaluator, **args), path, ds.path, loaded.engine.device, out,
                                    restart, note)
        swept = robustness_sweep(evaluator, **args, model_name=path.name if path else loaded.adapter.name,
                                 progress=progress, cancel=cancel, store=store)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"the sweep's progress file: {exc}") from None
    swept.extra["progress_store"] = store
    return swept


def cluster_sweep(loaded: Loaded, cluster: str, model: str, modality=None, kind=None, split: str = "test",
                  levels=None, progress=None, *, device: str = "auto", resumable: bool = False, out=None,
                  restart: bool = False, note=None, chunk_size: int | None = None, batch_size: int | None = None,
                  equilibrium_samples: int | None = None):
    """``sweep`` with its chunks run on a Dask cluster (``local[N]`` or a scheduler's address): the same table.

    ``model``: the model as the command line named it (a checkpoint is sent to the workers; a package folder or
    a plugin is opened there by that name); the dataset is read by the workers from its path (shared)."""
    from ..diagnostics.dask_cluster import chunk_runner, open_cluster, parse_cluster
    from ..diagnostics.evaluation import Evaluator
    from ..diagnostics.robustness import sweep_spec
    from ..diagnostics.sweep_dispatch import dispatched_sweep

    parse_cluster(cluster)  # a bad --cluster is said before anything is read or started
    ds = loaded.dataset
    args = _sweep_arguments(ds, modality, kind, split, levels, chunk_size, batch_size, equilibrium_samples)
    if ds.path is None:
        raise UsageError("a cluster sweep needs the dataset as a file the workers can read")
    import os

    if not model.startswith("plugin:"):
        model = os.path.abspath(model)
    evaluator = Evaluator(loaded.adapter, ds)
    path = loaded.checkpoint.path
    try:
        spec = sweep_spec(evaluator, **args)  # the plan checked before a cluster is started or reached
        store = None
        with open_cluster(cluster) as client:
            if resumable:  # once the cluster answers: a failed connection leaves no progress folder behind
                store = _progress_store(spec, path, ds.path, device, out, restart, note)
            swept = dispatched_sweep(evaluator, chunk_runner(client, model), checkpoint=model,
                                     dataset=os.path.abspath(ds.path), device=device,
                                     allowed_plugins=tuple(loaded.session.allowed_plugins), **args,
                                     model_name=path.name if path else loaded.adapter.name, progress=progress,
                                     store=store)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"the sweep's progress file: {exc}") from None
    swept.extra["progress_store"] = store
    return swept
