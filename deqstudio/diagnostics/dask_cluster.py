"""Sweep chunks on a Dask distributed cluster: the only module that imports Dask, and only when called.

``parse_cluster("local[N]" | ADDRESS)`` reads the ``--cluster`` argument; ``open_cluster`` connects to a running
scheduler (``tcp://host:8786``, ``host:8786``) or starts a ``LocalCluster`` of N single-threaded worker
processes, and closes what it started on the way out (also on Ctrl+C or an error); ``chunk_runner(client,
checkpoint)`` is the ``run_chunks`` of ``sweep_dispatch.dispatched_sweep``.

The model travels with the work: a checkpoint file is sent to every worker once (``scatter``, broadcast) and
written to the worker's temporary folder under its SHA-256, so the workers need not see the checkpoint's path; a
DEQ package folder or a plugin is opened by its path. The dataset is read by the workers from its path, which
must be shared (the same path on every worker machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError
from .sweep_chunks import ChunkTask, run_chunk_task

CLUSTER_EXTRA = "pip install 'deqstudio[cluster]'"
_LOCAL = re.compile(r"^local\[(\d{1,3})\]$")
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|inproc|ucx)://)?[\w.\-\[\]:]+(:\d{1,5})?/?$")
CONNECT_TIMEOUT_S = 10


def parse_cluster(text: str) -> tuple[str, int | str]:
    """``("local", N)`` for ``local[N]`` (1..64 workers), ``("address", ADDRESS)`` for a scheduler's address;
    UsageError (one line) for anything else."""
    text = str(text).strip()
    found = _LOCAL.match(text)
    if found:
        n = int(found.group(1))
        if not 1 <= n <= 64:
            raise UsageError(f"--cluster {text}: a local cluster has 1 to 64 workers")
        return "local", n
    if text == "local" or text.startswith("local["):
        raise UsageError(f"--cluster {text!r}: write local[N] for N local worker processes, e.g. local[2]")
    if not text or not _ADDRESS.match(text):
        raise UsageError(f"--cluster {text!r}: expected a Dask scheduler address (tcp://HOST:PORT) or local[N]")
    return "address", text


def _dask():
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--cluster needs Dask distributed: {CLUSTER_EXTRA}") from None
    return distributed


@contextlib.contextmanager
def open_cluster(text: str) -> Iterator[object]:
    """A ``distributed.Client`` on the cluster ``text`` names (see ``parse_cluster``); what it started, a local
    cluster's worker processes included, is closed when the block ends, however it ends."""
    kind, value = parse_cluster(text)
    distributed = _dask()
    cluster = None
    if kind == "local":
        interrupted = []
        try:
            # Ctrl+C while the workers start would leave a half-built cluster for Dask's exit handler to trip on:
            # it is held until the cluster is up, which is then closed like any other
            with _sigint_held(interrupted), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "port 8787 in use": its HTTP endpoint then takes another port
                cluster = distributed.LocalCluster(n_workers=int(value), threads_per_worker=1, processes=True,
                                                   dashboard_address=None, silence_logs=50)
        except Exception as exc:  # noqa: BLE001 — whatever stops workers from starting, said in one line
            raise UsageError(f"could not start a local Dask cluster of {value} workers: {_line(exc)}") from None
        if interrupted:
            cluster.close()
            raise KeyboardInterrupt
    try:
        try:
            client = distributed.Client(cluster if cluster is not None else value, timeout=f"{CONNECT_TIMEOUT_S}s",
                                        set_as_default=False)
        except Exception as exc:  # noqa: BLE001 — refused, timed out, a bad host name: one line
            raise UsageError(f"cannot reach the Dask scheduler at {value}: {_line(exc)}") from None
        try:
            if not client.scheduler_info().get("workers"):
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            client.close()
            raise UsageError(f"the Dask scheduler at {value} has no workers ({_line(exc)})") from None
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _sigint_held(interrupted: list):
    """SIGINT noted in ``interrupted`` instead of raised, inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    if before in (signal.SIG_IGN, None):
        yield
        return
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _model_file(data: bytes, sha256: str) -> str:
    """On a worker: the shipped checkpoint written once to its temporary folder, named by its SHA-256."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UsageError("the checkpoint sent to a worker arrived damaged (SHA-256 differs)")
    folder = Path(tempfile.gettempdir()) / "deqstudio-cluster"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256}.pt"
    if not path.is_file():
        part = folder / f".{sha256}.{os.getpid()}.part"
        part.write_bytes(data)
        os.replace(part, path)
    return str(path)


def run_shipped_task(task: ChunkTask, model: bytes | None = None, sha256: str = "") -> dict:
    """One chunk on a worker: the shipped checkpoint (when sent) in place of the task's path; ``auto`` resolved
    on the worker itself (CUDA when that worker has it)."""
    from ..core.device import resolve_device

    if model is not None:
        task = replace(task, checkpoint=_model_file(model, sha256))
    if task.device == "auto":
        task = replace(task, device=resolve_device("auto").device)
    return run_chunk_task(task)


def chunk_runner(client, checkpoint: str | os.PathLike):
    """``run_chunks`` for ``dispatched_sweep`` on ``client``: each chunk a task, results as they finish."""
    path = Path(checkpoint)
    shipped, sha256 = None, ""
    if path.is_file():  # a checkpoint (or a zipped package): its bytes go to every worker once
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        shipped = client.scatter(data, broadcast=True, hash=False)

    def run_chunks(tasks: Sequence[ChunkTask]):
        from ..errors import DeqStudioError

        distributed = _dask()
        futures = [client.submit(run_shipped_task, task, shipped, sha256, pure=False) for task in tasks]
        position = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                i = position[future.key]
                try:
                    result = future.result()
                except DeqStudioError:
                    raise  # a bad model or dataset file, as the worker said it
                except Exception as exc:  # noqa: BLE001 — a worker's failure, said in one line
                    raise UsageError(f"chunk {tasks[i].index} failed on a worker: {_line(exc)}") from None
                yield i, result
        finally:
            client.cancel(futures, force=True)  # an error or Ctrl+C here: nothing left running for us

    return run_chunks
