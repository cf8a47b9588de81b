"""The studio's first solve, computed in a helper process while the window is being built.

Importing torch holds the interpreter's lock for 1–2 s, and importing Qt and building the window hold it for
another second; in one process the two add up, however they are threaded. At start-up the studio therefore runs
this module as a program (``FirstSolve``: ``deqstudio.session.first_solve CHECKPOINT DATASET``) on the machine's
other core. The window's process reads the dataset meanwhile and sends it on the helper's standard input; the
helper imports torch, opens the model with the studio's own loaders, solves the request a freshly opened session
makes (``Session.adopt`` picks its sample) with the studio's own engine on one thread, and writes the
``ModelInfo``, the ``SolveResult`` and the machine's devices to its standard output. The window plots that result
as soon as it arrives, then loads its own engine, which takes over (``startup.show_first_solve``,
``Session.install``).

Both directions are read with unpicklers that resolve only the classes the data holds (the studio's values or
dataset, and numpy's array and scalar rebuilders): nothing else is constructed or called.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
from pathlib import Path

MAGIC = b"DEQSTUDIO-FIRST-SOLVE\n"
# ``-c`` puts the working folder first on sys.path as "" (unless PYTHONSAFEPATH is set): taken out again
_BOOTSTRAP = ("import runpy, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
              "runpy.run_module('deqstudio.session.first_solve', run_name='__main__')")
_LENGTH = struct.Struct("<Q")
MAX_BYTES = 256 * 1024**2  # a result holds two runs' traces and, for image modalities, two images each
_NUMPY = {  # arrays and scalars, as numpy 1 and 2 name their rebuilders
    "numpy": {"ndarray", "dtype"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.core.numeric": {"_frombuffer"},
}
_ALLOWED = {
    "deqstudio.session.values": {"SolveRequest", "SolveResult", "RunView", "ModelInfo"},
    "deqstudio.core.adapter": {"Capabilities"},
    "deqstudio.core.corruptions": {"Corruption"},
    "deqstudio.core.solvers.settings": {"SolverSettings"},
    **_NUMPY,
}


def applies(checkpoint_path) -> bool:
    """A helper is worth starting for a model file on a machine with a core to spare: a plugin's model runs the
    plugin's code (once is enough), and on one core the helper would only take turns with the window. (The window
    opens on the CPU; the helper solves there too.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return checkpoint_path is not None and not str(checkpoint_path).startswith("plugin:") and cores >= 2


# what the window sends the helper: the dataset it has read (``io.dataset.Dataset`` pickles its arrays, or a
# lazily read file's name and layout)
_DATASET_ALLOWED = {
    "deqstudio.io.dataset": {"Dataset", "Modality"},
    "deqstudio.io.dataset_stats": {"DatasetStats", "ModalityStats"},
    "deqstudio.io.lazy_rows": {"LazyFile", "LazyRows"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    **_NUMPY,
}


class _ValuesOnly(pickle.Unpickler):
    allowed = _ALLOWED

    def find_class(self, module: str, name: str):
        if name in self.allowed.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the first solve's data names {module}.{name}, which it never holds")


class _DatasetOnly(_ValuesOnly):
    allowed = _DATASET_ALLOWED


def decode(payload: bytes):
    """``(ModelInfo, SolveResult, devices)`` from the helper's pickle; UnpicklingError for anything else."""
    from .values import ModelInfo, SolveResult

    outcome = _ValuesOnly(io.BytesIO(payload)).load()
    if not (isinstance(outcome, tuple) and len(outcome) == 3 and isinstance(outcome[0], ModelInfo)
            and isinstance(outcome[1], SolveResult) and isinstance(outcome[2], tuple)
            and all(isinstance(d, str) for d in outcome[2])):
        raise pickle.UnpicklingError("the first solve's output is not a model description, a result and devices")
    return outcome


def _read_exactly(stream, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the helper ended before its result was complete")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FirstSolve:
    """One helper process and the future of what it sends: ``(ModelInfo, SolveResult, devices)`` (the devices
    the machine offers: asking costs the window's process torch's import), or None when it failed,
    was cancelled or sent something else (the studio's own loading then says what is wrong with the files)."""

    def __init__(self, checkpoint_path, dataset_path) -> None:
        import concurrent.futures  # here, not in the helper program, which has no use for them
        import subprocess
        import threading

        self.paths = (checkpoint_path, dataset_path)
        self.model_path = Path(checkpoint_path)
        self.future = concurrent.futures.Future()
        # the dataset, read here while the window is built: for the window, and handed to the helper, which then
        # spends its time on torch alone (h5py's import and the read: ~0.2 s of its ~2)
        self.dataset = concurrent.futures.Future()
        self._cancelled = False
        # run as ``-m`` would, but without the working folder on sys.path: a stray deqstudio/, torch.py or h5py.py
        # there is never imported
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(Path(checkpoint_path).resolve()), str(Path(dataset_path).resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._collect, name="deqstudio-first-solve", daemon=True).start()
        threading.Thread(target=self._read_and_send, args=(dataset_path,), name="deqstudio-read", daemon=True).start()

    def _read_and_send(self, dataset_path) -> None:
        from ..io.dataset import read_dataset

        payload = b""
        try:
            dataset = read_dataset(dataset_path)
        except BaseException as exc:  # noqa: BLE001 — delivered to whoever awaits it; the helper reads the file
            self.dataset.set_exception(exc)
        else:
            self.dataset.set_result(dataset)
            payload = pickle.dumps(dataset, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._proc.stdin.write(_LENGTH.pack(len(payload)) + payload)  # waits until the helper reads it
            self._proc.stdin.close()
        except OSError:  # the helper is gone
            pass

    def _collect(self) -> None:
        outcome = None
        try:
            if _read_exactly(self._proc.stdout, len(MAGIC)) == MAGIC:
                (size,) = _LENGTH.unpack(_read_exactly(self._proc.stdout, _LENGTH.size))
                if size <= MAX_BYTES:
                    outcome = decode(_read_exactly(self._proc.stdout, size))
        except Exception:  # noqa: BLE001 — no result from the helper is no preview; the files are opened anyway
            outcome = None
        finally:
            self._proc.stdout.close()
            self._proc.wait()
        if not self.future.done():
            self.future.set_result(None if self._cancelled else outcome)

    def cancel(self) -> None:
        """Stop the helper (its future then gives None)."""
        self._cancelled = True
        if self._proc.poll() is None:
            self._proc.kill()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None


def _dataset_from_window():
    """The dataset the window read and sent on standard input, or None (then the helper reads the file)."""
    from ..io.dataset import Dataset

    if sys.stdin is None or sys.stdin.isatty():
        return None
    try:
        (size,) = _LENGTH.unpack(_read_exactly(sys.stdin.buffer, _LENGTH.size))
        dataset = _DatasetOnly(io.BytesIO(_read_exactly(sys.stdin.buffer, size))).load() if size else None
    except (EOFError, pickle.UnpicklingError, struct.error):
        return None
    return dataset if isinstance(dataset, Dataset) else None


def _solve(checkpoint_path: str, dataset_path: str):
    from .engine import worker_thread_setup
    from .state import Session

    worker_thread_setup()  # one torch thread, as the studio's solve worker: the same numbers it would compute
    session = Session()
    session.dataset = _dataset_from_window()
    checkpoint, dataset, engine = session.prepare(checkpoint_path,
                                                  dataset_path if session.dataset is None else None)
    session.adopt(checkpoint, dataset, engine)
    return session.info, engine.solve(session.request()), session.available_devices()


def main(argv: list[str]) -> int:
    from ..runtime import prepare_process

    prepare_process()
    # the result goes to the stdout the parent reads; anything a library prints goes to stderr instead
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        outcome = _solve(*argv)
    except Exception as exc:  # noqa: BLE001 — the parent opens the files itself and reports the problem
        print(f"first solve: {exc}", file=sys.stderr)
        return 1
    payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(MAGIC + _LENGTH.pack(len(payload)) + payload)
    out.flush()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)  # skips torch's teardown (half a second of the core the window is using)
