"""A hang-proof pool of verifier worker processes, callable from any thread.

Why processes and not threads: math-verify's own timeouts are SIGALRM-based and only work
on the main thread; a reward computed from a trainer's background thread with them either
raises or runs unbounded. And a sympy call stuck in C code cannot be interrupted at all,
only killed. So every parse and comparison runs in a worker process, and the parent
enforces a hard deadline per item from outside.

Design:
- One manager thread per worker. Callers split their batch into chunks on one shared FIFO
  queue and wait on a `Future`; managers take chunks, send each in one message (a worker
  holds up to two, so it never idles between them), and read back one result per item.
- Deadlines: an item may take `timeout_s` (the worker's own alarm) plus `kill_grace_s`
  counted from the previous result. Past that the worker is killed, the item scores 0,
  the rest of its chunk goes back on the queue, and a fresh worker is started.
- Nothing raises to a caller for a slow or crashing item: it scores 0 and is logged.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # per item; math-verify's default, long enough for honest answers
_STOP = None  # queue sentinel for manager threads
_CLOSE_CHECK_S = 0.1  # how often a manager waiting on a slow item looks whether the pool closed


def default_num_workers() -> int:
    """Workers for the default pool: `EAGER_VERIFIER_WORKERS`, else the usable CPUs (at most 8)."""
    configured = os.environ.get("EAGER_VERIFIER_WORKERS")
    if configured:
        return max(1, int(configured))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


class _Job:
    """One caller's batch: results fill in from any manager thread; the future completes once."""

    def __init__(self, n: int) -> None:
        self.future: Future = Future()
        self.results: list[float | None] = [None] * n
        self._open = [True] * n
        self._remaining = n
        self._lock = threading.Lock()
        if n == 0:
            self.future.set_result([])

    def resolve(self, index: int, score: float | None) -> None:
        with self._lock:
            if not self._open[index]:
                return  # already answered, or given up on when the pool closed
            self._open[index] = False
            self.results[index] = score
            self._remaining -= 1
            done = self._remaining == 0
        if done:
            self.future.set_result(self.results)


# An item on its way: its job, its index in the job, and the payload for the worker.
_Entry = tuple[_Job, int, tuple]


class _Worker:
    """One live worker process and its end of the socket."""

    def __init__(self, memory_mb: int, startup_timeout_s: float) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"  # sympy needs no thread pools; they would only fight the trainer
        cmd = [sys.executable, "-m", "rewards._worker", "--fd", str(child_sock.fileno()), "--memory-mb", str(memory_mb)]
        try:
            self.proc = subprocess.Popen(
                cmd, pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        except OSError:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        try:
            if not self.conn.poll(startup_timeout_s):
                raise RuntimeError(f"verifier worker did not start within {startup_timeout_s:.0f}s")
            tag = self.conn.recv()[0]
            if tag != "ready":
                raise RuntimeError(f"verifier worker sent {tag!r} instead of 'ready'")
        except (EOFError, OSError) as exc:
            self.kill()
            raise RuntimeError(f"verifier worker exited during startup (code {self.proc.poll()})") from exc
        except RuntimeError:
            self.kill()
            raise
        self.inflight: deque[_Entry] = deque()  # sent, not yet answered, in the worker's order
        self.started = 0.0  # when the head of `inflight` began (the previous answer, or its send)

    def send(self, entries: list[_Entry]) -> None:
        if not self.inflight:
            self.started = time.monotonic()
        self.conn.send(("grade", [payload for _, _, payload in entries]))
        self.inflight.extend(entries)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            logger.error("verifier worker %d could not be reaped", self.proc.pid)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.proc.wait(timeout=2)
            self.conn.close()
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class VerifierPool:
    """Worker processes that grade (answer, gold) items with hard per-item time limits.

    Args:
        num_workers: worker processes (default: `default_num_workers()`).
        kill_grace_s: how long past an item's `timeout_s` the parent waits before killing.
        memory_mb: address-space limit per worker (0: none).
        max_chunk: most items sent to a worker in one message. A worker holds at most two
            messages, so it never waits for the parent between them, and the socket buffer
            never fills (a blocked send would stall the deadline watch).
        startup_timeout_s: how long a new worker may take to import and warm up.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        kill_grace_s: float = 1.0,
        memory_mb: int = 4096,
        max_chunk: int = 16,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.num_workers = num_workers or default_num_workers()
        if self.num_workers < 1 or kill_grace_s <= 0 or max_chunk < 1:
            raise ValueError("num_workers and max_chunk must be >= 1 and kill_grace_s > 0")
        self.kill_grace_s = kill_grace_s
        self.memory_mb = memory_mb
        self.max_chunk = max_chunk
        self.startup_timeout_s = startup_timeout_s
        self.pid = os.getpid()  # a forked child must not use its parent's threads
        self.restarts = 0  # workers replaced after a timeout or crash (for tests and metrics)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._submit_lock = threading.Lock()  # nothing is queued after `close` has drained
        self._live: set[_Worker] = set()  # for `worker_pids` only; each manager owns its worker
        self._threads = [
            threading.Thread(target=self._serve, name=f"verifier-{slot}", daemon=True)
            for slot in range(self.num_workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and fault-injection tests)."""
        return sorted(w.pid for w in list(self._live))

    def submit(self, items: list[tuple | float | None]) -> Future:
        """Queue payloads `(kind, answer, gold, fast_path, timeout_s)` for the workers.

        A float or None item is already decided and resolves to itself at once. Returns a
        Future of the scores, in order: 1.0, 0.0 (timeouts included) or None.
        """
        job = _Job(len(items))
        todo: list[_Entry] = []
        for index, item in enumerate(items):
            if isinstance(item, tuple):
                todo.append((job, index, item))
            else:
                job.resolve(index, item)
        size = max(1, min(self.max_chunk, math.ceil(len(todo) / (2 * self.num_workers))))
        with self._submit_lock:
            if self._closed:
                raise RuntimeError("this VerifierPool is closed")
            for start in range(0, len(todo), size):
                self._queue.put(todo[start : start + size])
        return job.future

    def run(self, items: list[tuple | float | None]) -> list[float | None]:
        """`submit` and wait. Never raises for a slow item; it scores 0.0."""
        future = self.submit(items)
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if self._closed or not any(t.is_alive() for t in self._threads):
                    self._drain()  # nobody left to answer: what is queued scores 0
                    return future.result(timeout=self.kill_grace_s + 10.0)

    def close(self) -> None:
        """Stop the workers now: queued and in-flight items score 0, no process outlives this.

        Idempotent. Called at interpreter exit for the default pool, so it does not wait for
        slow items: the managers abandon them and kill their workers.
        """
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
        self._drain()
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5.0)
        for worker in list(self._live):  # a manager that did not finish in time
            self._live.discard(worker)
            worker.kill()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                return
            for job, index, _ in chunk or ():
                job.resolve(index, 0.0)

    def _serve(self) -> None:
        """Manager thread of one worker: feed it, watch its deadlines, replace it when stuck."""
        worker = self._start_worker()
        stopping = False
        while not stopping or (worker is not None and worker.inflight):
            try:
                if not stopping:
                    worker, stopping = self._top_up(worker)
                if worker is not None and worker.inflight and self._closed:
                    for job, index, _ in worker.inflight:
                        job.resolve(index, 0.0)  # closing: abandoned, not waited for
                    self._live.discard(worker)
                    worker.kill()
                    worker = None
                elif worker is not None and worker.inflight:
                    worker = self._collect(worker)
            except Exception:  # a bug here must not strand callers: fail the items, go on
                logger.exception("verifier manager error; in-flight items score 0")
                for job, index, _ in worker.inflight if worker is not None else ():
                    job.resolve(index, 0.0)
                worker = self._replace(worker)
        if worker is not None:
            self._live.discard(worker)
            worker.stop()

    def _top_up(self, worker: _Worker | None) -> tuple[_Worker | None, bool]:
        """Send queued chunks until the worker holds two; block only when it holds none."""
        while worker is None or len(worker.inflight) < self.max_chunk:
            try:
                chunk = self._queue.get(block=worker is None or not worker.inflight)
            except queue.Empty:
                return worker, False
            if chunk is _STOP:
                return worker, True
            if worker is not None and not worker.inflight and worker.proc.poll() is not None:
                worker = self._replace(worker)  # it died while idle; no item of ours is to blame
            if worker is None:
                worker = self._start_worker()
            if worker is None:
                logger.error("no verifier worker could be started; %d items score 0", len(chunk))
                for job, index, _ in chunk:
                    job.resolve(index, 0.0)
                continue
            try:
                worker.send(chunk)
            except OSError:  # it died while idle: nothing of this chunk ran, so resend it
                self._queue.put(chunk)
                worker = self._fail(worker, "died")
            except Exception:  # e.g. an unpicklable payload: those items fail, the worker is fine
                logger.exception("could not send %d items to a verifier worker; they score 0", len(chunk))
                for job, index, _ in chunk:
                    job.resolve(index, 0.0)
        return worker, False

    def _collect(self, worker: _Worker) -> _Worker | None:
        """Wait for the head item's answer until its hard deadline; fail it past that."""
        job, index, payload = worker.inflight[0]
        deadline = worker.started + float(payload[-1]) + self.kill_grace_s
        # Wait in short slices so that `close` is noticed; poll returns as soon as data is in.
        while not worker.conn.poll(min(_CLOSE_CHECK_S, max(0.0, deadline - time.monotonic()))):
            if self._closed:
                return worker  # the loop in `_serve` abandons the in-flight items
            if time.monotonic() >= deadline:
                return self._fail(worker, "timed out")
        try:
            score, status = worker.conn.recv()
        except (EOFError, OSError):
            return self._fail(worker, "crashed")
        worker.inflight.popleft()
        now = time.monotonic()
        if status != "ok":
            logger.warning("verifier item %s after %.1fs; scored 0", status, now - worker.started)
        worker.started = now
        job.resolve(index, score)
        return worker

    def _fail(self, worker: _Worker, why: str) -> _Worker | None:
        """The head item scores 0, the rest go back on the queue, the worker is replaced."""
        if worker.inflight:
            job, index, payload = worker.inflight.popleft()
            logger.warning(
                "verifier worker %d %s on an item (limit %.1fs + %.1fs grace); scored 0, replacing the worker",
                worker.proc.pid, why, float(payload[-1]), self.kill_grace_s,
            )
            job.resolve(index, 0.0)
        if worker.inflight:
            self._queue.put(list(worker.inflight))
            worker.inflight.clear()
        return self._replace(worker)

    def _replace(self, worker: _Worker | None) -> _Worker | None:
        if worker is not None:
            self._live.discard(worker)
            worker.kill()
            self.restarts += 1
        return None if self._closed else self._start_worker()

    def _start_worker(self) -> _Worker | None:
        try:
            worker = _Worker(self.memory_mb, self.startup_timeout_s)
        except (RuntimeError, OSError) as exc:
            logger.error("verifier worker failed to start: %s", exc)
            return None
        self._live.add(worker)
        return worker


_default_pool: VerifierPool | None = None
_default_lock = threading.Lock()


def get_default_pool() -> VerifierPool:
    """The process-wide pool, created on first use and shut down at interpreter exit."""
    global _default_pool
    with _default_lock:
        pool = _default_pool
        if pool is None or pool.closed or pool.pid != os.getpid():
            pool = _default_pool = VerifierPool()
        return pool


def set_default_pool(pool: VerifierPool | None) -> VerifierPool | None:
    """Install `pool` as the process-wide pool (None: create lazily again); returns the old one.

    The caller owns the old pool and should close it.
    """
    global _default_pool
    with _default_lock:
        old, _default_pool = _default_pool, pool
    return old


def shutdown_default_pool() -> None:
    """Close the process-wide pool, if this process created one. Registered with `atexit`."""
    global _default_pool
    with _default_lock:
        pool, _default_pool = _default_pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(shutdown_default_pool)
