"""Wait for a widget's next paint: the event loop's first callback after Qt has drawn it."""

from __future__ import annotations

import asyncio
import contextlib

from PySide6 import QtCore


class _PaintWatch(QtCore.QObject):
    def __init__(self, widget: QtCore.QObject, future: asyncio.Future) -> None:
        super().__init__(widget)
        self.future = future
        widget.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Paint:
            obj.removeEventFilter(self)
            # the filter runs before the paint; the loop's next callback runs after it
            loop = self.future.get_loop()
            loop.call_soon(lambda: self.future.done() or self.future.set_result(None))
        return False


async def next_paint(widget, timeout: float) -> bool:
    """True once ``widget`` has been painted again, False after ``timeout`` seconds (e.g. a hidden window)."""
    future = asyncio.get_running_loop().create_future()
    watch = _PaintWatch(widget, future)
    widget.update()
    try:
        await asyncio.wait_for(future, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        with contextlib.suppress(RuntimeError):  # the widget may be gone
            widget.removeEventFilter(watch)
            watch.deleteLater()
