"""Colours and line styles, in one place: separate palettes for modalities, classes and solvers (a colour means
one thing only), all chosen to stay apart under colour-vision deficiency, each with a light and a dark theme.

- modalities: Okabe & Ito's palette (designed for deuteranopia and protanopia), each with its own line style;
- classes: Paul Tol's "muted" scheme (light) and "light" scheme (dark background);
- solvers: greys, told apart by line style and marker (no hue, so never read as a modality or a class).

``contrast`` is WCAG's contrast ratio; ``simulate_deuteranopia`` applies Machado, Oliveira & Fernandes (2009)'s
matrix (severity 1) in linear RGB, as the deuteranopia screenshot does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore

Pen = QtCore.Qt.PenStyle
MODALITY_STYLES = (Pen.SolidLine, Pen.DashLine, Pen.DashDotLine, Pen.DotLine, Pen.DashDotDotLine)
SOLVER_STYLES = (Pen.SolidLine, Pen.DashLine, Pen.DotLine, Pen.DashDotLine)
SOLVER_SYMBOLS = ("o", "s", "t", "d")


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str  # text, axes, the fused block
    muted: str  # notes under titles, secondary text
    marker: str  # the step marker, crosshair
    faint: str  # tolerance line, joint residual
    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    solvers: tuple[str, ...]
    window: str  # Qt's window colour
    base: str  # Qt's base (text fields, tables)
    banner: tuple[str, str]  # background, text
    badge: tuple[str, str, str]  # background, text, border


LIGHT = Theme(
    name="light", background="#ffffff", foreground="#000000", muted="#444444", marker="#808080", faint="#9a9a9a",
    modalities=("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"),
    classes=("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
             "#6b6b6b"),
    solvers=("#000000", "#5a5a5a", "#9a9a9a"),
    window="#efefef", base="#ffffff", banner=("#fdecea", "#611a15"), badge=("#fff4e0", "#7a4a00", "#e0b060"),
)
DARK = Theme(
    name="dark", background="#1b1b1d", foreground="#f2f2f2", muted="#c8c8c8", marker="#9a9a9a", faint="#8a8a8a",
    modalities=("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#F0E442", "#D55E00"),
    classes=("#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00", "#DDDDDD",
             "#f4a6d7"),
    solvers=("#f2f2f2", "#b0b0b0", "#7a7a7a"),
    window="#2a2a2d", base="#1f1f22", banner=("#5c1f1b", "#ffdad4"), badge=("#4a3512", "#ffd591", "#8a6420"),
)
THEMES = {t.name: t for t in (LIGHT, DARK)}
_current = [LIGHT]


def theme() -> Theme:
    return _current[0]


def set_theme(name: str) -> Theme:
    _current[0] = THEMES[name]
    return _current[0]


def modality_colour(i: int) -> str:
    t = theme()
    return t.modalities[i % len(t.modalities)]


def modality_style(i: int) -> Pen:
    return MODALITY_STYLES[i % len(MODALITY_STYLES)]


def class_colour(c: int) -> str:
    t = theme()
    return t.classes[c % len(t.classes)]


def solver_colour(s: int) -> str:
    t = theme()
    return t.solvers[s % len(t.solvers)]


def fused_colour() -> str:
    return theme().foreground


# -- colour science (for tests and the deuteranopia screenshot) -------------------------------------------------
MACHADO_DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968],
                                 [0.280085, 0.672501, 0.047413],
                                 [-0.011820, 0.042940, 0.968881]])


def _rgb(colour: str) -> np.ndarray:
    colour = colour.lstrip("#")
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255.0


def to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def simulate_deuteranopia(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] (any shape ending in 3) as a deuteranope sees them."""
    return to_srgb(to_linear(np.asarray(srgb, dtype=np.float64)) @ MACHADO_DEUTERANOPIA.T)


def luminance(colour: str) -> float:
    r, g, b = to_linear(_rgb(colour))
    return float(0.2126 * r + 0.7152 * g + 0.0722 * b)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lab(srgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB values in [0, 1]."""
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = to_linear(np.asarray(srgb, dtype=np.float64)) @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def deuteranope_distance(a: str, b: str) -> float:
    """ΔE (CIE76) between two colours as a deuteranope sees them."""
    la, lb = lab(simulate_deuteranopia(_rgb(a))), lab(simulate_deuteranopia(_rgb(b)))
    return float(np.linalg.norm(la - lb))
