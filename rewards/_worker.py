"""The verifier worker process: `python -m rewards._worker --fd N`.

Started by `rewards.pool` as a fresh interpreter (not a fork, so nothing of the trainer's
threads, CUDA state or locks comes along, and the trainer's `__main__` is never re-run).
It talks over one socket with `multiprocessing.connection` framing:

    parent -> worker  ("grade", [(kind, answer, gold, fast_path, timeout_s), ...])
                      ("stop",)
    worker -> parent  ("ready", pid) once, then (score, status) per item, in order

Each item runs under its own SIGALRM (this is the worker's main thread, so signals work
here, unlike in the trainer's threads). C code that never returns to the interpreter
(a big-integer power) ignores the alarm; the parent's hard deadline kills us then.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any


class _ItemTimeout(BaseException):
    """Raised by the alarm. A BaseException so that math-verify's `except Exception` lets it out."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _ItemTimeout()


def _die_with_parent() -> None:
    # If the trainer is killed outright, a worker busy in C code would otherwise run on,
    # orphaned, until its item ends. Linux only; elsewhere the closed socket ends us later.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit_memory(memory_mb: int) -> None:
    # A runaway sympy expansion should end in MemoryError here, not in the host's OOM killer.
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_item(item: tuple, grade: Any) -> tuple[float, str]:
    kind, answer, gold, fast_path, timeout_s = item
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, max(float(timeout_s), 1e-3))
            score = grade(kind, answer, gold, fast_path)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _ItemTimeout:
        return 0.0, "timeout"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # RecursionError, MemoryError, sympy's own errors: all a 0
        return 0.0, f"error:{type(exc).__name__}"
    return float(score), "ok"


def serve(conn: Connection) -> None:
    """Answer grading requests until the parent says stop or goes away."""
    from rewards.grading import grade, warm_up

    warm_up()  # before reporting ready, so no item's time limit pays for it
    signal.signal(signal.SIGALRM, _on_alarm)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] != "grade":
            return
        for item in message[1]:
            try:
                conn.send(_run_item(item, grade))
            except OSError:
                return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the parent")
    parser.add_argument("--memory-mb", type=int, default=0, help="address-space limit (0: none)")
    args = parser.parse_args(argv)
    # The parent owns our lifetime: a Ctrl-C in the terminal must not kill us mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # this process's own logging only
    _limit_memory(args.memory_mb)
    serve(Connection(args.fd))
    os._exit(0)  # nothing to flush; skipping interpreter teardown (sympy's caches) makes stop quick


if __name__ == "__main__":
    main()
