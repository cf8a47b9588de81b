"""Per modality: a corruption kind, a severity slider with snap points 1–5, a seed; the image before and after."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...core.corruptions import CORRUPTIONS, Corruption, kinds_for, parameter_for

SLIDER_SCALE = 100  # slider units per severity level
SNAP = 8  # slider units within which a severity snaps to the nearest level 1–5


class ImagePair(pg.GraphicsLayoutWidget):
    """An image modality before and after corruption, drawn as the user sees the digit."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setFixedHeight(130)
        self.items = []
        for _ in ("before", "after"):
            vb = self.addViewBox(lockAspect=True, enableMouse=False)
            vb.invertY(True)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            self.items.append((vb, img))
        self.addLabel("before · after", row=1, col=0, colspan=2, size="8pt")

    def show(self, before: np.ndarray, after: np.ndarray) -> None:
        lo, hi = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
        if hi <= lo:
            hi = lo + 1.0
        for (vb, img), arr in zip(self.items, (before, after)):
            img.setImage(np.asarray(arr, dtype=float), levels=(lo, hi))
            img.setLookupTable(pg.colormap.get("CET-L1").getLookupTable(nPts=256)[::-1])
            vb.autoRange(padding=0.02)
        super().show()


class ModalityControls(QtWidgets.QGroupBox):
    changed = QtCore.Signal(str, object)  # modality, Corruption

    def __init__(self, name: str, kind: str, parent=None) -> None:
        super().__init__(f"{name} ({kind})", parent)
        self.name, self.modality_kind = name, kind
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(list(kinds_for(kind)))
        self.kind.setObjectName(f"kind_{name}")
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 10**6)
        self.seed.setPrefix("seed ")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"severity_{name}")
        self.slider.setRange(0, 5 * SLIDER_SCALE)
        self.slider.setSingleStep(10)
        self.slider.setPageStep(SLIDER_SCALE)
        self.slider.setTickInterval(SLIDER_SCALE)
        self.slider.setTickPosition(QtWidgets.QSlider.TickPosition.TicksBelow)
        self.value = QtWidgets.QLabel()
        self.value.setMinimumWidth(150)
        grid.addWidget(self.kind, 0, 0)
        grid.addWidget(self.seed, 0, 1)
        grid.addWidget(self.slider, 1, 0, 1, 2)
        grid.addWidget(self.value, 2, 0, 1, 2)
        self.image = None
        if kind == "image":
            self.image = ImagePair()
            grid.addWidget(self.image, 3, 0, 1, 2)
        self.kind.currentTextChanged.connect(self._emit)
        self.seed.valueChanged.connect(self._emit)
        self.slider.valueChanged.connect(self._slid)
        self._update_label()

    def severity(self) -> float:
        return self.slider.value() / SLIDER_SCALE

    def choice(self) -> Corruption:
        return Corruption(self.kind.currentText(), self.severity(), self.seed.value())

    def set_choice(self, choice: Corruption) -> None:
        for w in (self.kind, self.seed, self.slider):
            w.blockSignals(True)
        self.kind.setCurrentText(choice.kind)
        self.seed.setValue(choice.seed)
        self.slider.setValue(int(round(choice.severity * SLIDER_SCALE)))
        for w in (self.kind, self.seed, self.slider):
            w.blockSignals(False)
        self._update_label()

    def _slid(self, value: int) -> None:
        nearest = int(round(value / SLIDER_SCALE)) * SLIDER_SCALE
        if value != nearest and abs(value - nearest) <= SNAP and not self.slider.isSliderDown():
            self.slider.setValue(nearest)  # snap points 1–5; re-enters with the snapped value
            return
        self._emit()

    def _update_label(self) -> None:
        s = self.severity()
        kind = self.kind.currentText()
        spec = CORRUPTIONS[kind]
        level = f"level {int(round(s))}" if abs(s - round(s)) < 1e-9 else f"severity {s:.2f}"
        self.value.setText(f"{level}: {spec.parameter} {parameter_for(kind, s):.3g}" if s > 0 else "clean")

    def _emit(self, *_) -> None:
        self._update_label()
        self.changed.emit(self.name, self.choice())


class CorruptionPanel(QtWidgets.QWidget):
    """One ``ModalityControls`` per modality of the open model, and a reset. Follows the session."""

    changed = QtCore.Signal(str, object)
    reset_requested = QtCore.Signal()

    def __init__(self, parent=None, session=None) -> None:
        super().__init__(parent)
        self.setObjectName("CorruptionPanel")
        self.layout_ = QtWidgets.QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.controls: dict[str, ModalityControls] = {}
        # what the sliders act on, when it is not the raw data (an imported model fed its fusion's features)
        self.input_note = QtWidgets.QLabel()
        self.input_note.setObjectName("input_note")
        self.input_note.setWordWrap(True)
        self.input_note.setStyleSheet("color: #8a5a00;")
        self.input_note.hide()
        self.layout_.addWidget(self.input_note)
        self.reset = QtWidgets.QPushButton("Reset all to clean")
        self.reset.clicked.connect(self.reset_requested.emit)
        self.layout_.addWidget(self.reset)
        self.layout_.addStretch(1)
        self.session = session
        if session is not None:
            self.changed.connect(self._apply)
            self.reset_requested.connect(session.reset_corruptions)
            session.loaded.connect(self._on_loaded)
            session.corruption_changed.connect(self.set_choice)
            session.result_changed.connect(lambda result: self.show_images(result.images))

    def _apply(self, modality: str, corruption) -> None:
        try:
            self.session.set_corruption(modality, corruption)
        except ValueError as exc:
            self.session.message.emit(str(exc), True)

    def _on_loaded(self, info) -> None:
        self.set_modalities(info.modality_names, info.modality_kinds, self.session.corruptions)
        self.set_input_note(getattr(info, "input_note", ""))

    def set_input_note(self, note: str) -> None:
        """Say what the corruptions act on when it is not the raw data ("" hides it)."""
        if note:
            self.input_note.setText(f"{note[:1].upper()}{note[1:]}: the dataset holds the features the model's "
                                    "fusion received, and the sliders perturb those.")
        self.input_note.setVisible(bool(note))

    def set_modalities(self, names, kinds, choices) -> None:
        for c in self.controls.values():
            c.setParent(None)
            c.deleteLater()
        self.controls = {}
        for i, (name, kind) in enumerate(zip(names, kinds)):
            ctl = ModalityControls(name, kind)
            ctl.set_choice(choices[name])
            ctl.changed.connect(self.changed.emit)
            self.layout_.insertWidget(i + 1, ctl)  # after the input note
            self.controls[name] = ctl

    def set_choice(self, name: str, choice) -> None:
        if name in self.controls:
            self.controls[name].set_choice(choice)

    def show_images(self, images: dict) -> None:
        for name, (before, after) in images.items():
            ctl = self.controls.get(name)
            if ctl is not None and ctl.image is not None:
                ctl.image.show(before, after)
