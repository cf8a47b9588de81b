"""Regenerate the screenshots in resources/screenshots/ (offscreen, in one process):

- default-1400x900.png, default-1024x700.png: the default model at two window sizes, a digit under noise;
- dark-1400x900.png: the same in the dark theme (View › Dark theme);
- open-model-and-data.png: File › Open model and data with the breast-cancer model chosen and its recorded
  dataset found; breast-cancer-1400x900.png: the window after opening that pair through the dialog;
- deuteranopia-1400x900.png: default-1400x900.png as a deuteranope sees it (Machado, Oliveira & Fernandes 2009,
  severity 1, applied in linear RGB: ``deqstudio.gui.palette.simulate_deuteranopia``).

The README's resources/screenshot.png is written by the ``deqstudio gui --screenshot`` command the README shows.
Run: ``python scripts/make_screenshots.py [OUT_DIR]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE, CORRUPT, STEP = 1602, ("pix=gaussian:4", "zer=mask:3"), 6


def image_array(image) -> np.ndarray:
    """An RGB32 QImage as an (H, W, 3) uint8 array (RGB)."""
    from PySide6 import QtGui

    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    raw = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    bgra = raw[:, : image.width() * 4].reshape(image.height(), image.width(), 4)
    return bgra[..., 2::-1].copy()


def save_array(rgb: np.ndarray, path: Path) -> None:
    from PySide6 import QtGui

    rgb = np.ascontiguousarray(rgb)
    image = QtGui.QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.shape[1] * 3, QtGui.QImage.Format.Format_RGB888)
    if not image.copy().save(str(path)):
        raise SystemExit(f"error: cannot write {path}")


def deuteranopia(source: Path, target: Path) -> None:
    from PySide6 import QtGui

    from deqstudio.gui.palette import simulate_deuteranopia

    rgb = image_array(QtGui.QImage(str(source))).astype(np.float64) / 255.0
    seen = simulate_deuteranopia(rgb)
    save_array(np.round(seen * 255).astype(np.uint8), target)


async def shoot(out: Path) -> None:
    from PySide6 import QtWidgets

    from deqstudio.core.corruptions import Corruption
    from deqstudio.gui.app import wait_for_table
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.paths import datasets_dir, default_checkpoint, default_dataset, models_dir

    window = MainWindow(remember=False)
    app = QtWidgets.QApplication.instance()

    async def settle(table=True):
        await window.runner.wait_idle(timeout=120)
        if table:
            await wait_for_table(window)
        await window.runner.wait_idle(timeout=120)
        for _ in range(5):
            await asyncio.sleep(0.05)

    def grab(widget, name: str) -> Path:
        path = out / name
        if not widget.grab().save(str(path)):
            raise SystemExit(f"error: cannot write {path}")
        print(f"saved {path}")
        return path

    window.resize(1400, 900)
    window.show()
    await window.open_files(default_checkpoint(), default_dataset())
    s = window.session
    s.set_sample(SAMPLE)
    for text in CORRUPT:
        modality, corruption = Corruption.parse(text)
        s.set_corruption(modality, corruption)
    await settle()
    window.scrubber.set_value(STEP - 1)
    await settle(False)
    default = grab(window, "default-1400x900.png")
    deuteranopia(default, out / "deuteranopia-1400x900.png")
    print(f"saved {out / 'deuteranopia-1400x900.png'}")
    window.dark_action.trigger()
    await settle(False)
    grab(window, "dark-1400x900.png")
    window.dark_action.trigger()
    window.resize(1024, 700)
    await settle(False)
    grab(window, "default-1024x700.png")
    window.resize(1400, 900)
    await settle(False)
    # File › Open model and data: the breast-cancer model, its recorded dataset found, then opened
    dialog = window.files.ask_pair()
    dialog.checkpoint.setText(str(models_dir() / "breast_cancer_deq_udml.pt"))
    dialog.look_up(dialog.checkpoint.text())
    await dialog.lookup
    await asyncio.sleep(0.1)
    assert Path(dialog.dataset.text()).parent == datasets_dir().resolve(), dialog.dataset.text()
    grab(dialog, "open-model-and-data.png")
    dialog.open_button.click()
    while s.dataset.name != "breast-cancer-wisconsin" or s.result is None or \
            s.result.modality_names != ("mean", "se", "worst"):
        await asyncio.sleep(0.05)
    s.set_corruption("worst", Corruption("gaussian", 3.0))
    await settle()
    grab(window, "breast-cancer-1400x900.png")
    window.close()
    app.quit()


def main() -> int:
    import qasync
    from PySide6 import QtWidgets

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "resources" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(shoot(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
