"""The peak resident memory of a child process's own program, for the benchmarks that launch one.

The kernel's ``ru_maxrss`` of a child (``os.wait4``) is no use here: Linux folds the memory the child had before
``exec`` — a copy of the parent's pages, made by ``fork`` — into it, so a child of a benchmark that holds a gigabyte
reports a gigabyte whatever it does (measured: ``python -c pass`` from a 1 GB parent, 984 MB). ``VmHWM`` in
``/proc/PID/status`` is the high-water mark of the memory the program itself has mapped since ``exec``; it only grows,
so reading it every few milliseconds until the child ends gives its peak.
"""

from __future__ import annotations

import subprocess
import time

POLL_S = 0.02


def _high_water_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_with_peak_rss(proc: subprocess.Popen, timeout: float) -> float | None:
    """Wait for ``proc`` to end (killed after ``timeout`` seconds); its peak resident memory in MiB, or None where the
    system has no ``/proc`` (then nothing is measured). ``proc.returncode`` is set."""
    deadline = time.monotonic() + timeout
    peak = None
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            break
        now = _high_water_mib(proc.pid)
        if now is not None:
            peak = now if peak is None else max(peak, now)
        time.sleep(POLL_S)
    return peak
