"""Exporting what the studio draws: PNG, SVG, PDF and CSV per plot, a provenance sidecar beside each file.

Every file is drawn in memory and written atomically (a temporary file in the target folder, then one
rename), so a failed export leaves any earlier file at the target intact. A plot and its sidecar are
written as one unit (``atomic.write_files``): both, or neither.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtCore, QtGui, QtSvg, QtWidgets

from ..diagnostics.results import csv_bytes
from ..io.atomic import json_bytes, sidecar_path
from ..errors import ExportError
from ..io import atomic

SCREEN_DPI = 96  # PDF pages at screen resolution: at 300 dpi pyqtgraph's text and pens garble
DEFAULT_PNG_WIDTH = 1600


def write_json(path: str | os.PathLike, data: dict) -> Path:
    return atomic.write_bytes(path, json_bytes(data))


def _size(widget: QtWidgets.QWidget) -> QtCore.QSize:
    size = widget.size()
    if size.width() < 50 or size.height() < 50:
        size = widget.sizeHint().expandedTo(QtCore.QSize(640, 400))
        widget.resize(size)
    return size


def _paint(widget: QtWidgets.QWidget, device: QtGui.QPaintDevice, size: QtCore.QSize, scale: float = 1.0) -> None:
    """Draw the widget onto a paint device; plots render their scene as vectors, other widgets as themselves."""
    painter = QtGui.QPainter(device)
    try:
        painter.setRenderHints(QtGui.QPainter.RenderHint.Antialiasing | QtGui.QPainter.RenderHint.TextAntialiasing)
        painter.scale(scale, scale)
        if isinstance(widget, QtWidgets.QGraphicsView):
            target = QtCore.QRectF(0, 0, size.width(), size.height())
            QtWidgets.QGraphicsView.render(widget, painter, target, widget.viewport().rect(),
                                           QtCore.Qt.AspectRatioMode.IgnoreAspectRatio)
        else:
            QtWidgets.QWidget.render(widget, painter, QtCore.QPoint(), QtGui.QRegion(),
                                     QtWidgets.QWidget.RenderFlag.DrawChildren)
    finally:
        painter.end()


def _buffer() -> QtCore.QBuffer:
    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    return buf


def png_bytes(widget: QtWidgets.QWidget, width: int | None = None) -> bytes:
    """The widget scaled to ``width`` pixels (its height in proportion), white background, as PNG."""
    size = _size(widget)
    width = int(width or DEFAULT_PNG_WIDTH)
    if not 16 <= width <= 20000:
        raise ExportError(f"PNG width must be between 16 and 20000 pixels, got {width}")
    scale = width / size.width()
    image = QtGui.QImage(width, max(1, round(size.height() * scale)), QtGui.QImage.Format.Format_ARGB32)
    image.setDevicePixelRatio(scale)  # drawn as on a high-density screen: text and pens stay in proportion
    image.fill(QtGui.QColor("white"))
    _paint(widget, image, size)
    buf = _buffer()
    if not image.save(buf, "PNG"):
        raise ExportError("the PNG encoder failed")
    return bytes(buf.data())


def svg_bytes(widget: QtWidgets.QWidget, title: str = "") -> bytes:
    size = _size(widget)
    buf = _buffer()
    gen = QtSvg.QSvgGenerator()
    gen.setOutputDevice(buf)
    gen.setSize(size)
    gen.setViewBox(QtCore.QRect(QtCore.QPoint(0, 0), size))
    gen.setResolution(SCREEN_DPI)
    gen.setTitle(title or widget.objectName())
    gen.setDescription("exported by DEQ Studio")
    _paint(widget, gen, size)
    del gen
    return bytes(buf.data())


def pdf_bytes(widget: QtWidgets.QWidget, title: str = "") -> bytes:
    """One page the size of the widget, at 96 dpi."""
    size = _size(widget)
    buf = _buffer()
    writer = QtGui.QPdfWriter(buf)
    writer.setResolution(SCREEN_DPI)
    points = QtCore.QSizeF(size.width() * 72.0 / SCREEN_DPI, size.height() * 72.0 / SCREEN_DPI)
    writer.setPageSize(QtGui.QPageSize(points, QtGui.QPageSize.Unit.Point, "plot"))
    writer.setPageMargins(QtCore.QMarginsF(0, 0, 0, 0))
    writer.setTitle(title or widget.objectName())
    writer.setCreator("DEQ Studio")
    _paint(widget, writer, size)
    del writer  # the PDF is finished when the writer goes away
    return bytes(buf.data())


def plot_csv_bytes(widget) -> bytes:
    header, rows = widget.data_table()
    return csv_bytes(header, rows)


class Exporter:
    """One export format, in pyqtgraph's shape: a name, a file suffix, and the bytes of a widget."""

    name = ""
    suffix = ""

    def to_bytes(self, widget, *, width: int | None = None, title: str = "") -> bytes:  # pragma: no cover
        raise NotImplementedError


class PNGExporter(Exporter):
    name, suffix = "PNG image (width of your choice; text and lines scale together)", "png"

    def to_bytes(self, widget, *, width=None, title=""):
        return png_bytes(widget, width)


class SVGExporter(Exporter):
    name, suffix = "SVG vector image", "svg"

    def to_bytes(self, widget, *, width=None, title=""):
        return svg_bytes(widget, title)


class PDFExporter(Exporter):
    name, suffix = "PDF document (one page at 96 dpi)", "pdf"

    def to_bytes(self, widget, *, width=None, title=""):
        return pdf_bytes(widget, title)


class CSVExporter(Exporter):
    name, suffix = "CSV of the plotted numbers (full precision)", "csv"

    def to_bytes(self, widget, *, width=None, title=""):
        return plot_csv_bytes(widget)


EXPORTERS: dict[str, Exporter] = {e.suffix: e for e in (PNGExporter(), SVGExporter(), PDFExporter(), CSVExporter())}
FORMATS = tuple(EXPORTERS)


def exporter_for(path: Path) -> Exporter:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in EXPORTERS:
        raise ExportError(f"cannot export to {path.name}: unknown format {path.suffix or '(none)'!r}; "
                          f"use one of {', '.join('.' + f for f in FORMATS)}")
    return EXPORTERS[fmt]


def _write(path, data: bytes) -> Path:
    try:
        return atomic.write_bytes(path, data)
    except atomic.WriteError as exc:
        raise ExportError(str(exc)) from None


def render_png(widget: QtWidgets.QWidget, path: str | os.PathLike, width: int | None = None) -> Path:
    return _write(path, png_bytes(widget, width))


def render_svg(widget: QtWidgets.QWidget, path: str | os.PathLike, title: str = "") -> Path:
    return _write(path, svg_bytes(widget, title))


def render_pdf(widget: QtWidgets.QWidget, path: str | os.PathLike, title: str = "") -> Path:
    return _write(path, pdf_bytes(widget, title))


def write_plot_csv(widget, path: str | os.PathLike) -> Path:
    return _write(path, plot_csv_bytes(widget))


def export_plot(widget, path: str | os.PathLike, *, width: int | None = None, provenance: dict | None = None,
                title: str = "") -> list[Path]:
    """Write the plot in the format its suffix names, plus the provenance sidecar; return the files."""
    path = Path(path)
    exporter = exporter_for(path)
    try:
        files = {path: exporter.to_bytes(widget, width=width, title=title)}
        if provenance is not None:
            record = dict(provenance, exported=path.name, plot=title or widget.objectName())
            files[sidecar_path(path)] = json_bytes(record)
        return atomic.write_files(files)  # the plot and its sidecar: both, or neither
    except ExportError:
        raise
    except atomic.WriteError as exc:
        raise ExportError(str(exc)) from None
