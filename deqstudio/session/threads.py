"""torch's intra-op thread count, kept per thread: no thread changes another's.

With OpenMP, ``torch.set_num_threads`` sets the calling thread's count, and torch also stores it as the count
every thread started *later* begins with. So each thread that runs torch work sets its own count when it starts:
the solve worker one thread (``engine.worker_thread_setup``), an analysis the process's count as read on the
main thread (``process_threads``) — never the number a worker happened to leave behind.
"""

from __future__ import annotations

import contextlib

_PROCESS_THREADS: int | None = None


def process_threads() -> int:
    """The process's thread count, read once (on the first call, from the thread that makes it: the main one)."""
    global _PROCESS_THREADS
    if _PROCESS_THREADS is None:
        import torch

        _PROCESS_THREADS = torch.get_num_threads()
    return _PROCESS_THREADS


def use_threads(count: int) -> None:
    """Run the calling thread's torch work on ``count`` threads."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@contextlib.contextmanager
def threads_for_batches():
    """Within the block, the calling thread uses the process's count (a batch of many samples gains from it);
    afterwards its own count again."""
    import torch

    own = torch.get_num_threads()
    use_threads(process_threads())
    try:
        yield
    finally:
        use_threads(own)
