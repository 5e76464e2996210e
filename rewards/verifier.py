"""The batch API: grade predictions against gold answers of any seed layout, from any thread.

    verify_batch(predictions, golds, kind="math") -> [1.0, 0.0, None, ...]
    Verifier(kind="math", timeout_s=5.0, require_box=True)(prediction, gold) -> 1.0 | 0.0 | None

Scores: 1.0 correct, 0.0 wrong, missing box, unparseable prediction or timed out; None when
the gold itself holds no usable answer (TRL then leaves the row out of its group baseline).
Each unusable gold is warned about once, naming its row.

Finding the answer (the last box) and normalising golds happen here, in the caller's
process: regex scans in linear time over input capped in length first. All LaTeX parsing
and comparison happens in the worker pool, which also keeps its messages small.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from rewards.extract import extract_answer, normalize_gold
from rewards.grading import KINDS
from rewards.pool import DEFAULT_TIMEOUT_S, VerifierPool, get_default_pool

logger = logging.getLogger(__name__)

_MAX_WARNED = 10_000  # remember this many bad golds; past that, stop warning rather than grow
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_bad_gold(gold: Any, row: str) -> None:
    key = repr(gold)[:300]
    with _warned_lock:
        if key in _warned or len(_warned) >= _MAX_WARNED:
            return
        _warned.add(key)
    logger.warning("row %s: the gold answer %s holds no usable answer; its reward is None", row, key)


def _check(kind: str, timeout_s: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")


def build_items(
    predictions: Sequence[str],
    golds: Sequence[Any],
    kind: str = "math",
    require_box: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_names: Sequence[str] | None = None,
    fast_path: bool = True,
) -> list[tuple | float | None]:
    """Pool payloads for a batch; None where the gold is unusable (warned once per gold), 0.0
    where the prediction has no answer to grade."""
    _check(kind, timeout_s)
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} golds")
    items: list[tuple | float | None] = []
    for i, (prediction, gold) in enumerate(zip(predictions, golds)):
        gold_answer = normalize_gold(gold, kind)
        if gold_answer is None:
            _warn_bad_gold(gold, row_names[i] if row_names is not None else str(i))
            items.append(None)
            continue
        answer = extract_answer(prediction, kind, require_box)
        items.append(0.0 if answer is None else (kind, answer, gold_answer, fast_path, float(timeout_s)))
    return items


def submit_batch(
    predictions: Sequence[str],
    golds: Sequence[Any],
    kind: str = "math",
    *,
    require_box: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_names: Sequence[str] | None = None,
    pool: VerifierPool | None = None,
) -> Future:
    """Like `verify_batch` but returns at once with a `Future` of the scores.

    For a rollout loop that grades sequences as they finish while it keeps generating.
    """
    items = build_items(predictions, golds, kind, require_box, timeout_s, row_names)
    return (pool or get_default_pool()).submit(items)


def verify_batch(
    predictions: list[str],
    golds: list,
    kind: str = "math",
    *,
    require_box: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_names: Sequence[str] | None = None,
    pool: VerifierPool | None = None,
) -> list[float | None]:
    """Grade each prediction against its gold; safe from any thread, never raises for a slow item.

    Args:
        predictions: completion texts; the last `\\boxed{}` is the answer.
        golds: gold answers as the datasets store them (int, LaTeX string, solution with a
            box, GSM8K `#### N`, or a letter for `kind="choice"`).
        kind: "math" (math-verify, strict) or "choice" (letters).
        require_box: False grades unboxed completions too (evaluation only).
        timeout_s: per-item limit; a timed-out item scores 0.
        row_names: how to name rows in warnings (default: their index).
        pool: a specific pool (default: the process-wide one).
    """
    items = build_items(predictions, golds, kind, require_box, timeout_s, row_names)
    return (pool or get_default_pool()).run(items)


class Verifier:
    """A picklable grader: `Verifier(kind, timeout_s, require_box)(prediction, gold)`.

    Holds only its settings; the worker pool is the process-wide one, looked up per call, so
    an instance can be sent to another process and used there.
    """

    def __init__(self, kind: str = "math", timeout_s: float = DEFAULT_TIMEOUT_S, require_box: bool = True) -> None:
        _check(kind, timeout_s)
        self.kind = kind
        self.timeout_s = float(timeout_s)
        self.require_box = require_box

    def __call__(self, prediction: str, gold: Any) -> float | None:
        return self.batch([prediction], [gold])[0]

    def batch(
        self, predictions: list[str], golds: list, row_names: Sequence[str] | None = None
    ) -> list[float | None]:
        return verify_batch(
            predictions, golds, self.kind, require_box=self.require_box, timeout_s=self.timeout_s, row_names=row_names
        )

    def submit(self, predictions: list[str], golds: list, row_names: Sequence[str] | None = None) -> Future:
        return submit_batch(
            predictions, golds, self.kind, require_box=self.require_box, timeout_s=self.timeout_s, row_names=row_names
        )

    def __repr__(self) -> str:
        return f"Verifier(kind={self.kind!r}, timeout_s={self.timeout_s}, require_box={self.require_box})"


class GoldVerifier:
    """`verifier(prompt_index, completion_ids) -> bool | None`: what label-aware EAGer calls as sequences finish.

    Decodes the completion (`decode`, e.g. the tokenizer's), grades it against the gold of its
    prompt (`golds[prompt_index]`, in the order the prompts were handed to the rollout) with
    `grade(text, gold) -> score | None` (default: `Verifier()`, math-verify in the worker pool),
    and says whether it is right; None when the grader could not decide (the gold is unusable).
    Called from the rollout's background threads: `grade` must be thread-safe (`Verifier` is).
    """

    def __init__(self, decode: Callable[[list[int]], str], golds: Sequence[Any],
                 grade: Callable[[str, Any], float | bool | None] | None = None) -> None:
        self.decode, self.golds = decode, golds
        self.grade = grade if grade is not None else Verifier()

    def __call__(self, prompt_index: int, completion_ids: list[int]) -> bool | None:
        score = self.grade(self.decode(completion_ids), self.golds[prompt_index])
        return None if score is None else float(score) >= 1.0
