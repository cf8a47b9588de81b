"""The step scrubber: one slider over solver steps, with play/pause, step, speed and loop."""

from __future__ import annotations

import typing

from PySide6 import QtCore, QtWidgets


class Scrubber(QtWidgets.QWidget):
    """Moves the session's step over the stored trace; playback never re-solves. Follows the session."""

    step_changed = QtCore.Signal(int)

    SPEEDS: typing.ClassVar[dict[str, int]] = {"5 steps/s": 5, "10 steps/s": 10, "30 steps/s": 30, "60 steps/s": 60}

    def __init__(self, parent=None, session=None) -> None:
        super().__init__(parent)
        self.setObjectName("Scrubber")
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(4, 2, 4, 2)
        style = self.style()
        self.back = QtWidgets.QToolButton()
        self.back.setIcon(style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaSeekBackward))
        self.back.setToolTip("step back (←)")
        self.play = QtWidgets.QToolButton()
        self.play.setCheckable(True)
        self.play.setToolTip("play / pause (space)")
        self.forward = QtWidgets.QToolButton()
        self.forward.setIcon(style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaSeekForward))
        self.forward.setToolTip("step forward (→)")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setObjectName("step_slider")
        self.slider.setRange(0, 0)
        self.label = QtWidgets.QLabel("step – / –")
        self.label.setMinimumWidth(110)
        self.speed = QtWidgets.QComboBox()
        self.speed.addItems(list(self.SPEEDS))
        self.speed.setCurrentText("10 steps/s")
        self.loop = QtWidgets.QCheckBox("loop")
        for w in (self.back, self.play, self.forward):
            row.addWidget(w)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        row.addWidget(self.speed)
        row.addWidget(self.loop)
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.play.toggled.connect(self._toggle)
        self.back.clicked.connect(lambda: self.nudge(-1))
        self.forward.clicked.connect(lambda: self.nudge(1))
        self.slider.valueChanged.connect(self._moved)
        self.speed.currentTextChanged.connect(self._set_interval)
        self._set_interval()
        self._toggle(False)
        self.session = session
        if session is not None:
            self.step_changed.connect(session.set_step)
            session.result_changed.connect(self._on_result_changed)

    def _on_result_changed(self, result) -> None:
        self.set_steps(max(result.corrupted.nstep, 1), self.session.step)

    @property
    def steps(self) -> int:
        return self.slider.maximum() + 1

    def set_steps(self, steps: int, keep: int = -1) -> None:
        """Show ``steps`` steps; select ``keep`` (or the last step when -1 or out of range)."""
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(steps - 1, 0))
        value = keep if 0 <= keep < steps else max(steps - 1, 0)
        self.slider.setValue(value)
        self.slider.blockSignals(False)
        self._label()

    def value(self) -> int:
        return self.slider.value()

    def set_value(self, step: int) -> None:
        self.slider.setValue(max(0, min(step, self.slider.maximum())))

    def nudge(self, delta: int) -> None:
        self.set_value(self.slider.value() + delta)

    def toggle_play(self) -> None:
        self.play.setChecked(not self.play.isChecked())

    def _toggle(self, playing: bool) -> None:
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPause if playing else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay
        self.play.setIcon(self.style().standardIcon(icon))
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self.timer.start()
        else:
            self.timer.stop()

    def _set_interval(self, *_) -> None:
        self.timer.setInterval(int(1000 / self.SPEEDS[self.speed.currentText()]))

    def _tick(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            if self.loop.isChecked():
                self.slider.setValue(0)
            else:
                self.play.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)

    def _moved(self, value: int) -> None:
        self._label()
        self.step_changed.emit(value)

    def _label(self) -> None:
        self.label.setText(f"step {self.slider.value() + 1} / {self.steps}")
