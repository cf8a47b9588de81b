"""View › Dark theme: the window's Qt palette and every plot's colours from ``palette.THEMES``."""

from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from . import palette

_LIGHT_QT_PALETTE: list = []


def _qt_palette(t: palette.Theme) -> QtGui.QPalette:
    p = QtGui.QPalette()
    role, c = QtGui.QPalette.ColorRole, QtGui.QColor
    for r, value in ((role.Window, t.window), (role.WindowText, t.foreground), (role.Base, t.base),
                     (role.AlternateBase, t.window), (role.Text, t.foreground), (role.Button, t.window),
                     (role.ButtonText, t.foreground), (role.ToolTipBase, t.base), (role.ToolTipText, t.foreground),
                     (role.PlaceholderText, t.muted), (role.Highlight, "#3d6fb0"), (role.HighlightedText, "#ffffff"),
                     (role.Link, "#8ab4f8"), (role.BrightText, "#ff6b6b")):
        p.setColor(r, c(value))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(QtGui.QPalette.ColorGroup.Disabled, r, c(t.faint))
    return p


def apply_theme(window, name: str) -> None:
    """Switch the application and ``window`` (its plots, banner, badges, analysis windows) to theme ``name``."""
    app = QtWidgets.QApplication.instance()
    if not _LIGHT_QT_PALETTE:
        _LIGHT_QT_PALETTE.append(QtGui.QPalette(app.palette()))
    t = palette.set_theme(name)
    app.setPalette(_LIGHT_QT_PALETTE[0] if name == "light" else _qt_palette(t))
    window.banner.setStyleSheet(f"QFrame#banner {{ background: {t.banner[0]}; border-radius: 3px; }} "
                                f"QFrame#banner QLabel {{ color: {t.banner[1]}; }}")
    for plot in window.plots:
        plot.apply_theme()
        plot.badge.setStyleSheet(f"QLabel#stale_badge {{ background: {t.badge[0]}; color: {t.badge[1]}; "
                                 f"border: 1px solid {t.badge[2]}; border-radius: 3px; padding: 1px 5px; }}")
    if getattr(window.view, "hover", None) is not None:
        window.view.hover.restyle()
    for controls in window.corruption.controls.values():
        if controls.image is not None:
            controls.image.apply_theme(t.background, t.foreground)
    window.scrubber.restyle()
