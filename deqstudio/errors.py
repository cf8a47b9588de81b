"""The errors DEQ Studio raises for things a user can act on, one class per kind.

Every message is one line, of a readable length, naming the problem. Callers catch ``DeqStudioError`` (or one
kind of it) instead of tuples of built-in exceptions; the command line prints ``error: <message>`` and exits 2,
the studio shows the message in its banner.
"""

from __future__ import annotations

MAX_MESSAGE = 400
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def decode(value) -> str:
    """A str from bytes or str that never fails: invalid UTF-8 bytes become \\xNN escapes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else str(value)


def printable(value) -> str:
    """``value`` as one line of plain text: control and invisible formatting characters escaped.

    Every string from a file passes through this before it reaches a terminal or a window, so a file cannot
    move the cursor, colour the terminal or print a line of its own. Idempotent; ordinary non-ASCII text (σ̂,
    é) is unchanged.
    """
    text = decode(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def printable_data(value):
    """``printable`` applied to every string (keys too) in nested dicts and lists, e.g. before JSON output."""
    if isinstance(value, (str, bytes)):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, (str, bytes)) else k: printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """The message on one line (white space folded, control characters escaped), cut to ``limit`` characters."""
    text = printable(" ".join(decode(message).split()))
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


class MismatchError(InputError):
    """A model and a dataset that do not fit together (modalities, sizes, classes)."""


class LoadError(InputError):
    """Something could not be opened in the studio; what was open stays open."""


class SessionFileError(LoadError):
    """A session file that cannot be restored; nothing in the studio was changed."""


class InspectError(InputError):
    """A file ``deqstudio inspect`` cannot summarise: neither a model nor a dataset, or unreadable."""


class UsageError(InputError):
    """A bad command-line argument or combination of arguments."""


class WriteError(DeqStudioError, OSError):
    """A file could not be written; the message names the file and the reason. Earlier files stay intact."""


class ExportError(WriteError):
    """An export (plot, trace, report, analysis table) could not be written."""


class Cancelled(Exception):
    """Raised inside a long computation when its ``cancel`` callback asked it to stop (not an error)."""
