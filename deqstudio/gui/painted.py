"""Run something once a widget has been painted: the event loop's first callback after Qt has drawn it."""

from __future__ import annotations

import asyncio
import contextlib

from PySide6 import QtCore


class PaintWatch(QtCore.QObject):
    """Calls ``then()`` once, after the first paint of ``widget`` for which ``when()`` holds."""

    def __init__(self, widget: QtCore.QObject, then, when=lambda: True) -> None:
        super().__init__(widget)
        self.then, self.when = then, when
        widget.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Paint and self.when():
            obj.removeEventFilter(self)
            # the filter runs before the paint; the loop's next callback runs after it
            asyncio.get_event_loop().call_soon(self.then)
        return False


async def next_paint(widget, timeout: float) -> bool:
    """True once ``widget`` has been painted again, False after ``timeout`` seconds (e.g. a hidden window)."""
    future = asyncio.get_running_loop().create_future()
    watch = PaintWatch(widget, lambda: future.done() or future.set_result(None))
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
