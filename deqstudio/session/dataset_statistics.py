"""A big dataset's statistics pass, in the background of the studio.

A lazily read dataset (``io.dataset``) needs one pass over its values for its statistics (every value checked for
NaN and Inf, the training split's per-feature std that scales Gaussian corruptions, the ranges), cached beside the
file. The session starts it on a thread of its own once the first result is shown: the first plot never waits for
it, and the first Gaussian corruption usually finds it done (else waits for it). A file holding NaN or Inf is
reported in the session's message when found; the pass stops when the dataset is replaced or solving stops.
"""

from __future__ import annotations

import asyncio
import threading

from ..errors import Cancelled, DeqStudioError


def start_statistics_pass(session) -> None:
    """Start the pass for the session's dataset, once per dataset; nothing for a dataset held in memory, one whose
    statistics are cached, or without a running event loop (a script: computed when first needed)."""
    ds = session.dataset
    if ds is None or ds is session._statistics_of or not getattr(ds, "lazy", False):
        return
    session._statistics_of = ds
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if ds.statistics_known:
        return
    cancel = lambda: session.dataset is not ds or session.runner is None  # noqa: E731

    def work() -> None:
        try:
            ds.statistics(cancel=cancel)
        except Cancelled:
            return
        except DeqStudioError as exc:
            loop.call_soon_threadsafe(session.message.emit, str(exc), True)
        except Exception as exc:  # noqa: BLE001 — a pass that fails is a message, never a crash
            loop.call_soon_threadsafe(session.message.emit, f"could not read the values of {ds.label}: {exc}", True)

    threading.Thread(target=work, name="deqstudio-statistics", daemon=True).start()
