"""The worker pool never hangs and never raises: hostile completions, threads, stuck and dead workers."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewards import verify_batch
from rewards.pool import VerifierPool

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

TIMEOUT_S = 0.5
# Guards against a hang only (a failing pool would never answer): how fast the pool answers is the
# verifier benchmark's business, never a timed assertion here.
HANG_GUARD_S = 600

# (name, completion, gold, expected score or None when only "0 or 1, in time" is asserted)
HOSTILE = [
    ("10k nested braces", "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1", 0.0),
    ("400 nested braces, under the length cap", "\\boxed{" + "{" * 400 + "1" + "}" * 400 + "}", "1", None),
    ("30 nested parentheses", "\\boxed{" + "(" * 30 + "3" + ")" * 30 + "}", "3", None),
    ("100k characters of prose", "lorem ipsum dolor " * 5_600, "1", 0.0),
    ("100k characters of prose, then a box", "lorem ipsum dolor " * 5_600 + "\\boxed{12}", "12", 1.0),
    ("exponent tower", "\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "5", 0.0),
    ("exponent tower of nines", "\\boxed{9^{9^{9^{9}}}}", "9", 0.0),
    ("tower minus itself", "\\boxed{10^{10^{10}} - 10^{10^{10}}}", "0", None),
    ("huge factorial", "\\boxed{1000000!}", "5", 0.0),
    ("unbalanced opening", "\\boxed{3", "3", 0.0),
    ("unbalanced closing", "}}}}\\boxed{4}}}}}", "4", 1.0),
    ("control characters", "\x00\x01\x1b[31m\\boxed{\x07 7}\x7f", "7", 1.0),
    ("lone surrogate", "\ud800\\boxed{\ud800}", "1", 0.0),
    ("empty", "", "1", 0.0),
    ("several boxes", "\\boxed{1} no \\boxed{2} wait \\boxed{3}", "3", 1.0),
    ("a boxed set", "\\boxed{\\{1, 2, 3\\}}", "\\{1,2,3\\}", 1.0),
    ("a boxed set for one number", "\\boxed{\\{1, 2, 3\\}}", "1", 0.0),
    ("a 900-digit integer", "\\boxed{" + "9" * 900 + "}", "9" * 900, 1.0),
    ("deep fractions", "\\boxed{" + "\\frac{1}{" * 60 + "2" + "}" * 60 + "}", "2", None),
]


def wait_ended(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    """Wait until each process has ended (a zombie counts; nothing is reaped); returns those still running.

    A wait on the processes themselves (pidfd), not a sleep: it returns the moment they are
    gone, and the timeout only bounds a failure.
    """
    deadline = time.monotonic() + timeout_s
    running = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone and reaped
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
        if not ready:
            running.append(pid)
    return running


def _check(scores: list) -> None:
    for (name, _, _, expected), score in zip(HOSTILE, scores, strict=True):
        assert score in (0.0, 1.0), (name, score)
        if expected is not None:
            assert score == expected, name


def _verify(pool: VerifierPool, items: list[tuple[str, str]], timeout_s: float) -> list:
    """verify_batch on a thread, so that a hang fails the test instead of stalling the suite."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(lambda: verify_batch([c for c, _ in items], [g for _, g in items], pool=pool,
                                                      timeout_s=timeout_s))
        return future.result(timeout=HANG_GUARD_S)


def test_hostile_corpus_from_the_main_thread(pool: VerifierPool) -> None:
    assert threading.current_thread() is threading.main_thread()
    scores = verify_batch([c for _, c, _, _ in HOSTILE], [g for _, _, g, _ in HOSTILE], pool=pool, timeout_s=TIMEOUT_S)
    _check(scores)


def test_each_hostile_item_alone_is_answered_by_its_worker_or_its_deadline(pool: VerifierPool) -> None:
    """One item at a time on an idle pool: a worker answers it, or the pool kills that worker at the item's
    deadline and replaces it; either way the item is answered and the pool keeps its size."""
    for name, completion, gold, _ in HOSTILE:
        restarts = pool.restarts
        (score,) = _verify(pool, [(completion, gold)], TIMEOUT_S)
        assert score in (0.0, 1.0), name
        assert pool.restarts in (restarts, restarts + 1), name  # at most the one worker it was stuck in
        assert len(pool.worker_pids()) <= pool.num_workers


def test_hostile_corpus_from_worker_threads_concurrently(pool: VerifierPool) -> None:
    completions, golds = [c for _, c, _, _ in HOSTILE], [g for _, _, g, _ in HOSTILE]

    def run(_: int) -> tuple[list, bool]:
        scores = verify_batch(completions, golds, pool=pool, timeout_s=0.5)
        return scores, threading.current_thread() is threading.main_thread()

    with ThreadPoolExecutor(max_workers=3) as executor:
        results = [f.result(timeout=HANG_GUARD_S) for f in [executor.submit(run, k) for k in range(3)]]
    for scores, on_main in results:
        assert not on_main
        _check(scores)


@pytest.fixture(scope="module")
def solo_pool() -> VerifierPool:
    """A one-worker pool of its own: these tests stop and kill its worker, then close it."""
    pool = VerifierPool(num_workers=1, kill_grace_s=0.5)
    assert pool.run([("math", "1", "1", True, 1.0)]) == [1.0]  # started and warm
    yield pool
    pool.close()


def test_a_stuck_worker_is_killed_and_replaced(solo_pool: VerifierPool) -> None:
    """A worker frozen by SIGSTOP ignores its own alarm, as one stuck in C code would."""
    (pid,) = solo_pool.worker_pids()
    restarts = solo_pool.restarts
    os.kill(pid, signal.SIGSTOP)
    future = solo_pool.submit([("math", "1", "1", True, 1.0), ("math", "2", "2", True, 1.0)])
    scores = future.result(timeout=HANG_GUARD_S)
    assert scores == [0.0, 1.0]  # the item it was stuck on scores 0; the next ran on the replacement
    assert solo_pool.restarts == restarts + 1 and solo_pool.worker_pids() != [pid]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_a_worker_that_died_while_idle_costs_no_item(solo_pool: VerifierPool) -> None:
    (pid,) = solo_pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    assert wait_ended([pid]) == []  # dead (not yet reaped) before the pool is asked anything: "while idle"
    assert solo_pool.run([("math", "3", "3", True, 1.0)]) == [1.0]


def test_close_resolves_everything_and_refuses_new_work(solo_pool: VerifierPool) -> None:
    future = solo_pool.submit([("math", "x^2", "x^2", False, 5.0)] * 40)
    solo_pool.close()
    assert all(s in (0.0, 1.0) for s in future.result(timeout=HANG_GUARD_S))
    assert solo_pool.closed and solo_pool.worker_pids() == []
    with pytest.raises(RuntimeError, match="closed"):
        solo_pool.submit([("math", "1", "1", True, 1.0)])


EXIT_SCRIPT = r"""
import threading, rewards

scores = []
thread = threading.Thread(target=lambda: scores.extend(rewards.verify_batch([r"\boxed{2}"], [2])))
thread.start(); thread.join()
assert scores == [1.0], scores
rewards.submit_batch([r"\boxed{9^{9^{9^{9}}}}"] * 4, ["1"] * 4)  # still in flight at exit
print(" ".join(map(str, rewards.get_default_pool().worker_pids())), flush=True)
"""


def test_the_default_pool_shuts_down_at_exit_without_orphans() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids
    assert wait_ended(pids) == []
