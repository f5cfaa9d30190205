"""Run a benchmark case in a fresh process, so that its peak memory is its own."""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module


def in_own_process(target, *args):
    """``target(*args, queue)`` in a spawned process; returns what it put on the queue, or raises when the
    process ended without a result (a crash there must fail the bench, not hang it)."""
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    while True:
        alive = process.is_alive()  # read before waiting: a result put just before the exit is still read
        try:
            result = results.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not alive:
                raise RuntimeError(f"{getattr(target, '__name__', target)} ended (exit code {process.exitcode}) "
                                   "without a result; its error is printed above") from None
    process.join()
    return result
