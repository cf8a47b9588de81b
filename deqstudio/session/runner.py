"""One worker, newest request wins, stale results dropped (napari's slicer pattern), on asyncio.

``submit(request)`` is called on the UI thread with an immutable request. If the worker is idle the
request starts at once; if it is busy the request waits in a single slot, replacing any request
already waiting there, so a burst of slider moves costs at most one solve in flight plus one queued.
A finished result is delivered only if no newer request was submitted since; otherwise it is dropped.

``synchronous = True`` (or the ``synchronously()`` context) runs each request at once on the calling
thread and delivers its result before ``submit`` returns: for tests and scripts, as napari's
``force_sync``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import traceback
from typing import Any
from collections.abc import Callable


class Runner:
    def __init__(self, work: Callable[[Any], Any], on_result: Callable[[Any], None],
                 on_error: Callable[[Any, BaseException], None] | None = None, *,
                 thread_setup: Callable[[], None] | None = None, synchronous: bool = False,
                 share: "Runner | None" = None) -> None:
        """``thread_setup`` runs once on the worker thread before its first request (e.g. to set that thread's
        own torch thread count, which leaves every other thread's as it is). ``share``: run on that runner's
        worker thread (after whatever it is doing) instead of one of its own; its ``shutdown`` stops both."""
        self._work = work
        self._on_result = on_result
        self._on_error = on_error
        self._owns_executor = share is None
        self._executor = share._executor if share is not None else concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="deqstudio-solve", initializer=thread_setup)
        self._running = False
        self._waiting = None
        self._latest = 0
        self._idle: asyncio.Future | None = None
        self.synchronous = synchronous

    @property
    def busy(self) -> bool:
        return self._running or self._waiting is not None

    @property
    def queued(self) -> bool:
        """A request waits behind the one running."""
        return self._waiting is not None

    def drop(self) -> None:
        """Make what waits and what runs stale: neither result will be delivered."""
        self._waiting = None
        self._latest = -1

    @contextlib.contextmanager
    def synchronously(self):
        """Within the block, ``submit`` solves at once and delivers before it returns."""
        before, self.synchronous = self.synchronous, True
        try:
            yield self
        finally:
            self.synchronous = before

    def submit(self, request, loop: asyncio.AbstractEventLoop | None = None, delay: float = 0.0) -> None:
        """Queue ``request`` (it must carry a ``generation`` that grows with each submit). ``delay``: when the worker
        is idle, start only after this many seconds (the runner counts as busy meanwhile), so that a burst of
        requests, each making the one before stale, starts none of them but the last."""
        self._latest = request.generation
        if self.synchronous and not self._running:
            self._deliver(request, *self._call(request))
            return
        if self._running:
            self._waiting = request
            return
        loop = loop or asyncio.get_event_loop()
        self._running = True
        if self._idle is None or self._idle.done():
            self._idle = loop.create_future()
        loop.create_task(self._drain(request, delay))

    def _call(self, request) -> tuple[Any, BaseException | None]:
        try:
            return self._work(request), None
        except Exception as exc:  # noqa: BLE001 — every failure becomes a message, never a crash
            return None, exc

    def _deliver(self, request, result, error) -> None:
        if request.generation != self._latest:
            return  # a newer request was submitted meanwhile: this one is stale
        if error is not None:
            if self._on_error is not None:
                self._on_error(request, error)
            return
        try:
            self._on_result(result)
        except Exception:  # noqa: BLE001 — a failing listener must not stop the worker
            traceback.print_exc()

    async def _drain(self, request, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        try:
            while delay > 0 and request is not None:
                await asyncio.sleep(delay)
                if request.generation == self._latest:
                    break
                # made stale while it waited: it never runs; a newer one that came meanwhile waits its own delay
                request, self._waiting = self._waiting, None
            while request is not None:
                outcome = await loop.run_in_executor(self._executor, self._call, request)
                self._deliver(request, *outcome)
                request, self._waiting = self._waiting, None
        finally:
            self._running = False
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    def start_exclusive(self, fn, *args) -> concurrent.futures.Future:
        """Start ``fn`` on the solve worker now, without an event loop (e.g. reading files while the window is
        still being built); await it later with ``asyncio.wrap_future``."""
        if self.synchronous:
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 — delivered to whoever awaits it
                future.set_exception(exc)
            return future
        return self._executor.submit(fn, *args)

    async def run_exclusive(self, fn, *args):
        """Run ``fn`` on the solve worker (after whatever it is doing), e.g. loading or tabulating."""
        if self.synchronous:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is running or queued; TimeoutError after ``timeout`` seconds."""
        while self.busy and self._idle is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._idle), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError("the solve did not finish in time") from None

    def shutdown(self) -> None:
        """Drop what waits, let what runs finish (its result is not delivered), stop the worker."""
        self._waiting = None
        self._latest = -1
        if self._owns_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)
