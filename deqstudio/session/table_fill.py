"""Fill the samples table in the background: chunk by chunk on the solve worker, always after the solves.

A chunk starts only while no solve is running or waiting (the newest request is drawn first) and none was asked for
in the last ``QUIET_S`` (a drag goes on undisturbed), and is sized to take about ``TARGET_S`` so that a slider move
waits at most that long behind one. A chunk computed for settings that
changed meanwhile is dropped (``SampleTable.apply``); ``stop`` cancels the fill, keeping what is computed.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

TARGET_S = 0.1  # seconds per chunk: about how long a solve may wait behind one
LONGEST_S = 0.3  # ... and at most, even for a model whose batched solve costs more than TARGET_S by itself
QUIET_S = 0.3  # no chunk starts sooner than this after a solve was asked for: a slider drag never meets one
MIN_CHUNK, MAX_CHUNK = 16, 8192


class TableFiller:
    def __init__(self, session) -> None:
        self.session = session
        self.task: asyncio.Task | None = None
        self.chunk = 32
        self.stopped = False  # the user stopped it: it waits for ``request(force=True)`` or a new table
        self.first_rows = lambda: None  # rows to compute first (a view sets it: the rows on screen)
        self.seconds = 0.0  # time spent computing the current table
        self._table = None
        self._history: list[tuple[int, float]] = []  # (rows, seconds) of the last chunks
        self.error = ""

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def request(self, force: bool = False) -> bool:
        """Start filling the current table if it has rows left (and the user did not stop it, unless ``force``).
        Returns whether a fill is running."""
        s = self.session
        if force:
            self.stopped = False
        if self.running:
            return True
        table = s.table
        if self.stopped or s.runner is None or table is None or table.complete or not s.ready:
            return False
        self.error = ""
        if table is not self._table:
            self._table, self.seconds = table, 0.0
        self.task = asyncio.ensure_future(self._fill(table))
        return True

    def stop(self) -> None:
        """Cancel the fill; what is computed stays."""
        self.stopped = True
        running = self.running
        self.cancel()
        if not running:
            self.session.table_progress.emit(self.session.table)  # views say it is stopped

    def cancel(self) -> None:
        if self.running:
            self.task.cancel()
            self.task = None
            self.session.table_progress.emit(self.session.table)
        self.task = None

    async def _fill(self, table) -> None:
        s = self.session
        engine = s.engine
        try:
            while s.table is table and s.engine is engine and not table.complete and s.runner is not None:
                runner = s.runner
                if runner.busy:  # solves first: what the user looks at is never behind the table
                    try:
                        await runner.wait_idle()
                    except TimeoutError:
                        continue
                    continue
                quiet = time.monotonic() - s.requested_at
                if quiet < QUIET_S:  # the user is moving something: wait until they pause
                    await asyncio.sleep(QUIET_S - quiet)
                    continue
                rows = table.next_rows(self.chunk, self.first_rows())
                keys = table.keys()
                need_clean = not table.clean.done[rows].all()
                corruptions = dict(keys[1][1]) if keys[1] is not None else None
                t0 = time.perf_counter()
                clean, now = await runner.run_exclusive(engine.table_chunk, table.indices[rows], keys[0][0],
                                                        corruptions, need_clean)
                spent = time.perf_counter() - t0
                self.seconds += spent
                if len(rows) == self.chunk or not self._history:  # a short last chunk says little
                    self._resize(len(rows), spent)
                if table.apply(rows, keys, clean, now if corruptions else None):
                    s.table_progress.emit(table)
                await asyncio.sleep(0)  # let the event loop deliver what the user did meanwhile
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — a table that cannot be made is a message, never a crash
            self.error = f"could not tabulate the {table.split} split: {exc}"
            s.message.emit(self.error, True)
        finally:
            if s.table is table:
                s.table_progress.emit(table)

    def _resize(self, rows: int, spent: float) -> None:
        """Size the next chunk. A chunk's time is not proportional to its rows: a batched solve pays for its
        iterations whatever the batch, so it is ``fixed + per_row × rows``. Fitted on the last chunks, the next
        one aims at ``TARGET_S`` (growing at most twofold), or at twice the fixed cost when that alone exceeds it (so that at least half of
        the time computes rows), never above ``LONGEST_S``. Until two sizes are known: double while fast, halve
        while slow."""
        self._history = ([*self._history, (rows, spent)])[-8:]
        sizes = {r for r, _ in self._history}
        if len(sizes) >= 2:
            x = np.array([r for r, _ in self._history], float)
            y = np.array([t for _, t in self._history], float)
            per_row, fixed = np.polyfit(x, y, 1)
            per_row, fixed = max(per_row, 1e-7), max(fixed, 0.0)
            budget = min(max(TARGET_S, 2 * fixed), LONGEST_S)
            wanted = (budget - fixed) / per_row  # at most doubled per chunk: a fit of noisy times can overshoot
            self.chunk = int(np.clip(min(wanted, 2 * self.chunk), MIN_CHUNK, MAX_CHUNK))
        elif spent < TARGET_S / 2:
            self.chunk = min(self.chunk * 2, MAX_CHUNK)
        elif spent > TARGET_S * 1.5:
            self.chunk = max(self.chunk // 2, MIN_CHUNK)
