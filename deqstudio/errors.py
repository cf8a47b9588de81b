"""The errors DEQ Studio raises for things a user can act on, one class per kind.

Every message is one line, of a readable length, naming the problem. Callers catch ``DeqStudioError`` (or one
kind of it) instead of tuples of built-in exceptions; the command line prints ``error: <message>`` and exits 2,
the studio shows the message in its banner.
"""

from __future__ import annotations

MAX_MESSAGE = 400


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """The message on one line (white space folded), cut to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DeqStudioError(Exception):
    """Base class: a problem with what the user gave or asked for; the message is for the user."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))


class InputError(DeqStudioError, ValueError):
    """A bad argument, setting or file content."""


class CheckpointError(InputError):
    """A file that cannot be used as a model (checkpoint, package); the message names the file."""


class DatasetError(InputError):
    """A dataset file that cannot be used; the message names the file and the problem."""


class SessionFileError(InputError):
    """A session file that cannot be restored; nothing in the studio was changed."""


class MismatchError(InputError):
    """A model and a dataset that do not fit together (modalities, sizes, classes)."""


class LoadError(InputError):
    """Something could not be opened in the studio; what was open stays open."""


class UsageError(InputError):
    """A bad command-line argument or combination of arguments."""


class WriteError(DeqStudioError, OSError):
    """A file could not be written; the message names the file and the reason. Earlier files stay intact."""


class ExportError(WriteError):
    """An export (plot, trace, report, analysis table) could not be written."""


class Cancelled(Exception):
    """Raised inside a long computation when its ``cancel`` callback asked it to stop (not an error)."""
