"""One worker, newest request wins, stale results dropped (napari's slicer pattern), on asyncio.

``submit(request)`` is called on the UI thread with an immutable request. If the worker is idle the
request starts at once; if it is busy the request waits in a single slot, replacing any request
already waiting there, so a burst of slider moves costs at most one solve in flight plus one queued.
A finished result is delivered only if no newer request was submitted since; otherwise it is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from typing import Any, Callable


class Runner:
    def __init__(self, work: Callable[[Any], Any], on_result: Callable[[Any], None],
                 on_error: Callable[[Any, BaseException], None] | None = None) -> None:
        self._work = work
        self._on_result = on_result
        self._on_error = on_error
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deqstudio-solve")
        self._busy = False
        self._waiting = None
        self._latest = 0
        self._task: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self._busy or self._waiting is not None

    def submit(self, request, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Queue ``request`` (it must carry a ``generation`` that grows with each submit)."""
        self._latest = request.generation
        if self._busy:
            self._waiting = request
            return
        loop = loop or asyncio.get_event_loop()
        self._busy = True
        self._task = loop.create_task(self._drain(request))

    async def _drain(self, request) -> None:
        loop = asyncio.get_running_loop()
        try:
            while request is not None:
                try:
                    result = await loop.run_in_executor(self._executor, self._work, request)
                except Exception as exc:  # noqa: BLE001 — every failure becomes a message, never a crash
                    if request.generation == self._latest and self._on_error is not None:
                        self._on_error(request, exc)
                else:
                    if request.generation == self._latest:
                        try:
                            self._on_result(result)
                        except Exception:  # noqa: BLE001
                            traceback.print_exc()
                request, self._waiting = self._waiting, None
        finally:
            self._busy = False

    async def run_exclusive(self, fn, *args):
        """Run ``fn`` on the solve worker (after whatever it is doing), e.g. loading or tabulating."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is running or queued (for tests and headless screenshots)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.busy:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the solve did not finish in time")
            await asyncio.sleep(0.005)

    def shutdown(self) -> None:
        self._waiting = None
        self._executor.shutdown(wait=True, cancel_futures=True)
