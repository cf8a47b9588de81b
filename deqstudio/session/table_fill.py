"""Fill the samples table in the background: chunk by chunk on the solve worker, always after the solves.

A chunk starts only while no solve is running or waiting (the newest request is drawn first), and is sized to take
about ``TARGET_S`` so that a slider move waits at most that long behind one. A chunk computed for settings that
changed meanwhile is dropped (``SampleTable.apply``); ``stop`` cancels the fill, keeping what is computed.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

TARGET_S = 0.08  # seconds per chunk: how long a solve may wait behind one
MIN_CHUNK, MAX_CHUNK = 8, 4096


class TableFiller:
    def __init__(self, session) -> None:
        self.session = session
        self.task: asyncio.Task | None = None
        self.chunk = 32
        self.stopped = False  # the user stopped it: it waits for ``request(force=True)`` or a new table
        self.first_rows = lambda: None  # rows to compute first (a view sets it: the rows on screen)
        self.seconds = 0.0  # time spent computing the current table
        self._table = None
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
        self.cancel()

    def cancel(self) -> None:
        if self.running:
            self.task.cancel()
        self.task = None
        self.session.table_progress.emit(self.session.table)

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
                rows = table.next_rows(self.chunk, self.first_rows())
                keys = table.keys()
                need_clean = not table.clean.done[rows].all()
                corruptions = dict(keys[1][1]) if keys[1] is not None else None
                t0 = time.perf_counter()
                clean, now = await runner.run_exclusive(engine.table_chunk, table.indices[rows], keys[0][0],
                                                        corruptions, need_clean)
                spent = time.perf_counter() - t0
                self.seconds += spent
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
        """Aim the next chunk at ``TARGET_S`` (rows per second so far), within bounds."""
        if rows and spent > 0:
            rate = rows / spent
            self.chunk = int(np.clip(0.5 * self.chunk + 0.5 * rate * TARGET_S, MIN_CHUNK, MAX_CHUNK))
