"""Verifier throughput: MATH-500 gold answers against correct and perturbed predictions.

    python -m benchmarks.verifier_throughput [--data PATH] [--workers N]

Three predictions per row, each a short completion ending in a box:
- exact: the gold as written (the common case in RL; the canonical-string fast path),
- respelled: an equivalent form (`5.0` for `5`, `(a)/(b)` for `\\frac{a}{b}`, else the
  last box of the reference solution); where its canonical string differs from the gold's
  (counted as `respelled_parsed`) math-verify has to parse and compare,
- perturbed: a wrong answer (integer + 1, a sign flip, or another row's answer).

Every (gold, prediction) pair is distinct, so the workers' result caches never help; each
gold is parsed once per worker, as it would be across a GRPO group. The headline figure is
the steady state of a pool that has been working a while, as in training: the first
`--cold-rows` rows run first (reported as `cold_verifications_per_s`; a fresh worker's
LaTeX parser is still filling its prediction cache), then the remaining rows are timed.
Prints `name=value` lines, `verifications_per_s=<x>` (wall clock) last; on a shared machine
`worker_cpu_s` and `verifications_per_worker_cpu_s` say how much CPU the workers got.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from rewards.extract import extract_boxed
from rewards.grading import canonical_string
from rewards.pool import DEFAULT_TIMEOUT_S, VerifierPool, default_num_workers
from rewards.verifier import verify_batch

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "math500.jsonl"
_LONE_FRAC = re.compile(r"(-?)\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")


def respell(answer: str, solution_box: str | None) -> str:
    """An equivalent spelling of `answer`, whose canonical string differs where one is known.

    Integers get a decimal point, a lone fraction becomes a slash; otherwise the last box of
    the reference solution (often spelled differently from the `answer` column).
    """
    if re.fullmatch(r"-?\d+", answer):
        return answer + ".0"
    frac = _LONE_FRAC.fullmatch(answer)
    if frac:
        return f"{frac.group(1)}({frac.group(2)})/({frac.group(3)})"
    return solution_box or answer


def perturb(answer: str, other: str) -> str:
    """A wrong answer: integer + 1, a sign flip for a single expression, else another row's."""
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + 1)
    if "," not in answer and "\\text" not in answer and "=" not in answer:
        return answer[1:] if answer.startswith("-") else "-(" + answer + ")"
    return other


def completion(answer: str) -> str:
    return f"We simplify step by step and check the result.\nTherefore the final answer is $\\boxed{{{answer}}}$."


def build(rows: list[dict]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Predictions, golds, each item's category and its boxed answer, row by row."""
    predictions, golds, categories, answers = [], [], [], []
    for i, row in enumerate(rows):
        gold, other = row["answer"], rows[(i + 1) % len(rows)]["answer"]
        respelled = respell(gold, extract_boxed(row.get("solution", "")))
        for category, answer in (("exact", gold), ("respelled", respelled), ("perturbed", perturb(gold, other))):
            predictions.append(completion(answer))
            golds.append(gold)
            categories.append(category)
            answers.append(answer)
    return predictions, golds, categories, answers


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of processes, from /proc (Linux); None elsewhere."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def start_pool(workers: int, startup_timeout_s: float = 300.0) -> VerifierPool:
    """A pool whose workers are all up (a worker still starting would skew either pass)."""
    pool = VerifierPool(num_workers=workers)
    deadline = time.monotonic() + startup_timeout_s
    while len(pool.worker_pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool


def timed_pass(pool: VerifierPool, predictions: list[str], golds: list[str], timeout_s: float) -> dict:
    """Scores, wall seconds and the workers' CPU seconds (None if unreadable or a worker was replaced)."""
    pids = pool.worker_pids()
    cpu_before = cpu_seconds(pids)
    start = time.perf_counter()
    scores = verify_batch(predictions, golds, pool=pool, timeout_s=timeout_s)
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(pids) if pool.worker_pids() == pids else None
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {"scores": scores, "seconds": elapsed, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MATH-500 JSON Lines (needs `answer`)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: usable CPUs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-item limit, seconds")
    parser.add_argument("--cold-rows", type=int, default=100, help="rows of the first (cold, untimed) pass")
    args = parser.parse_args(argv)

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    predictions, golds, categories, answers = build(rows)
    split = 3 * min(args.cold_rows, len(rows) - 1)  # three predictions per row

    start = time.perf_counter()
    pool = start_pool(args.workers or default_num_workers())
    startup_s = time.perf_counter() - start
    try:
        cold = timed_pass(pool, predictions[:split], golds[:split], args.timeout)
        warm = timed_pass(pool, predictions[split:], golds[split:], args.timeout)
    finally:
        pool.close()
    scores = cold["scores"] + warm["scores"]

    expected = {"exact": 1.0, "respelled": 1.0, "perturbed": 0.0}
    print(f"rows={len(rows)}")
    print(f"workers={pool.num_workers}")
    print(f"startup_s={startup_s:.2f}")
    for category, want in expected.items():
        got = [s for s, c in zip(scores, categories) if c == category]
        print(f"{category}_agree={sum(s == want for s in got)}/{len(got)}")
    parsed = sum(
        c == "respelled" and canonical_string(a) != canonical_string(g) for a, g, c in zip(answers, golds, categories)
    )
    print(f"respelled_parsed={parsed}")
    print(f"worker_restarts={pool.restarts}")
    print(f"cold_verifications={split}")
    print(f"cold_verifications_per_s={split / cold['seconds']:.1f}")
    # The machine may be shared: the CPU the workers got says how much of the wall time was theirs.
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    n = len(warm["scores"])
    if warm["cpu"] is not None:
        print(f"worker_cpu_s={warm['cpu']:.2f}")
        print(f"verifications_per_worker_cpu_s={n / max(warm['cpu'], 1e-9):.1f}")
    print(f"verifications={n}")
    print(f"seconds={warm['seconds']:.3f}")
    print(f"verifications_per_s={n / warm['seconds']:.1f}")


if __name__ == "__main__":
    main()
