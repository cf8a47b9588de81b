"""Start-up: the window shows a helper process's first solve while its own engine loads (``first_solve``)."""

from __future__ import annotations

import asyncio


async def show_first_solve(session, first, wait_s: float) -> bool:
    """Show the helper's result in ``session`` while its engine loads, with the dataset ``first`` read in this process
    (``show_preview``). False (nothing shown) when the helper failed or took over ``wait_s`` seconds, the dataset
    cannot be read, something was opened meanwhile, or the result is not of the request the session makes."""
    reading = asyncio.wrap_future(first.dataset)  # read by the helper's own thread here, from the start
    try:
        outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(first.future)), wait_s)
    except asyncio.TimeoutError:
        outcome = None
    first.cancel()
    try:
        dataset = await reading
    except Exception:  # noqa: BLE001 — the files are opened the usual way next, which says what is wrong
        return False
    return outcome is not None and show_preview(session, dataset, outcome, first.model_path)


class Preview:
    """The first solve's model while its engine loads (``Session.preview``): its path (the window's title) and
    description (``Session.install`` announces the model again only if its own differs)."""

    def __init__(self, model_path, info) -> None:
        self.model_path, self.info = model_path, info


def show_preview(session, dataset, outcome, model_path) -> bool:
    """Announce a helper's model and plot its result while the engine loads; False, changing nothing, when
    something is open already or the result is not of the request the session makes."""
    from dataclasses import replace

    info, result, devices = outcome
    if session.engine is not None or session.dataset is not None or session.checkpoint is not None:
        return False
    before = (session.info, dict(session.corruptions), session.split, session.sample)
    session.adopt_info(info, dataset)
    asked = session.request()
    if (result.request.sample, result.request.corruptions, result.request.solver, result.request.device) != \
            (asked.sample, asked.corruptions, asked.solver, asked.device):
        session.info, session.corruptions, session.split, session.sample = before
        return False
    session.dataset, session._devices = dataset, devices  # the helper asked the machine (torch) already
    session.preview = Preview(model_path, info)
    session.result = replace(result, request=asked)
    session.step = -1
    session.loaded.emit(info)
    session.solve_requested.emit(asked.generation)
    session.result_changed.emit(session.result)
    return True
