"""A session's settings to a file and back (``io.session_file`` reads and writes the JSON)."""

from __future__ import annotations

from pathlib import Path

from ..core.device import NO_CUDA
from ..errors import LoadError
from ..io.session_file import SavedSession, read_session


def saved_state(session) -> SavedSession:
    # a plugin's model is not a file to reopen: its session keeps no model path (the plugin asks again)
    path = lambda f: Path(f.path).resolve() if f is not None and f.path and not hasattr(f, "plugin") else None  # noqa: E731
    return SavedSession(path(session.checkpoint), path(session.dataset), session.solver, session.device,
                        dict(session.corruptions), session.sample, session.split, session.step)


def restore(session, path) -> None:
    """Restore a saved session into ``session``; a bad file is a LoadError and changes nothing."""
    saved = read_session(path)
    device, notice = saved.device, ""
    if device.startswith("cuda"):
        from ..core.device import cuda_available

        if not cuda_available():
            device, notice = "cpu", f"{saved.label}: this session ran on {saved.device}, but {NO_CUDA}"
    runner, session.runner = session.runner, None  # the whole session is one change: one solve at the end
    before = session.device
    try:
        session.device = device
        try:
            session.open(saved.checkpoint, saved.dataset)
        except LoadError:
            session.device = before
            raise
        session.set_solver(saved.solver)
        for m, c in saved.corruptions.items():
            if m in session.corruptions:
                try:
                    session.set_corruption(m, c)
                except ValueError as exc:
                    session.message.emit(f"{saved.label}: {exc}; left clean", True)
        if session.dataset is not None and 0 <= saved.sample < len(session.dataset):
            session.set_sample(saved.sample)
        else:
            session.message.emit(f"{saved.label}: sample {saved.sample} is not in the dataset; showing sample "
                                 f"{session.sample}", True)
        session.set_step(saved.step)
    finally:
        session.runner = runner
    session.device_changed.emit(session.device)
    if notice:
        session.message.emit(notice, False)
    session.solve()
