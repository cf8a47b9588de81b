"""The Plugins menu: installed plugins listed from metadata (nothing imported), run only after consent.

Consent is asked once per plugin name, version and hash of its files (a changed file asks again), with
"Don't run" as the default answer; it is remembered in the config folder (``io.plugins.ConsentStore``).
"""

from __future__ import annotations

import contextlib

from PySide6 import QtWidgets

from ..errors import printable
from ..io.plugins import ConsentStore, Plugin, discover, safe_mode


class PluginActions:
    def __init__(self, window, session, files, status, store: ConsentStore | None = None) -> None:
        self.window, self.session, self.files, self.status = window, session, files, status
        self.store = store or ConsentStore()

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        self.menu = menu
        menu.aboutToShow.connect(self._fill)

    def _fill(self) -> None:
        self.menu.clear()
        if safe_mode():
            self.menu.addAction("(safe mode: plugins are hidden)").setEnabled(False)
            return
        plugins = discover()
        if not plugins:
            self.menu.addAction("(no plugins installed)").setEnabled(False)
        for p in plugins:
            label = printable(f"{p.name} {p.version}")
            self.menu.addAction(f"Open {label}", lambda p=p: self.open_with(p))
            self.menu.addAction(f"Open a file with {label}…", lambda p=p: self.open_file_with(p))

    def consent_text(self, plugin: Plugin) -> str:
        return printable(
            f"{plugin.name} {plugin.version} from the installed package {plugin.distribution} "
            f"({plugin.target}; {plugin.files} files, sha256 {plugin.files_hash[:16]}).") + (
            f"\n\n{printable(plugin.summary)}" if plugin.summary else "") + (
            "\n\nWhat it can do: open a model for the studio, and anything else its code does. This runs the "
            "plugin's Python code with your permissions; DEQ Studio cannot sandbox it. Run it only if you trust "
            "where it came from. You are asked again when its version or any of its files change.")

    def consent_box(self, plugin: Plugin) -> QtWidgets.QMessageBox:
        """The consent dialog; "Don't run" is its default (and Escape) button."""
        box = QtWidgets.QMessageBox(self.window)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("Run a plugin?")
        box.setText(printable(f"Run the plugin {plugin.name}?"))
        box.setInformativeText(self.consent_text(plugin))
        run = box.addButton("Run it", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        dont = box.addButton("Don't run", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(dont)
        box.setEscapeButton(dont)
        box.run_button = run
        return box

    def ask_consent(self, plugin: Plugin) -> bool:
        box = self.consent_box(plugin)
        box.exec()
        return box.clickedButton() is box.run_button

    def consent(self, plugin: Plugin) -> bool:
        """Whether the plugin may run: remembered consent for this version and these files, or asked now."""
        if not self.store.granted(plugin):
            if not self.ask_consent(plugin):
                self.status.show_message(printable(f"The plugin {plugin.name} was not run."), False)
                return False
            with contextlib.suppress(OSError):  # unremembered, consent for this run stands; asked again next time
                self.store.grant(plugin)
        self.session.allowed_plugins = self.session.allowed_plugins | {plugin.name}
        return True

    def open_with(self, plugin: Plugin, path: str | None = None) -> bool:
        if not self.consent(plugin):
            return False
        self.files.open_in_background(checkpoint=f"plugin:{plugin.name}" + (f":{path}" if path else ""))
        return True

    def open_file_with(self, plugin: Plugin) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, f"Open a file with {plugin.name}", "",
                                                        "All files (*)")
        if path:
            self.open_with(plugin, path)
