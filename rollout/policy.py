"""The branching rules of EAGer-init, pure: no engine, no budget, just numbers.

A prompt keeps a sorted history of every entropy it has produced; the effective threshold
is `max(theta, P99(history))`, so a prompt whose entropies are all high does not fork at
every token. A fork needs `H > theta_eff`, an open prompt (it has forked within the last
`branch_patience` steps), and a sequence that has not closed its reasoning yet.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np


class EntropyHistory:
    """Sorted entropies of one prompt, with the P99 that `numpy.percentile` would give."""

    def __init__(self) -> None:
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, entropy: float) -> None:
        bisect.insort(self._sorted, entropy)  # O(n) memmove; far cheaper than re-sorting per token

    def percentile(self, q: float = 99.0) -> float | None:
        """Linear-interpolated percentile (numpy's default method); None when empty."""
        a = self._sorted
        if not a:
            return None
        pos = (len(a) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(a) - 1)
        return a[lo] + (a[hi] - a[lo]) * (pos - lo)


@dataclass
class PromptBranching:
    """Mutable branching state of one prompt (one pass: a retry starts a fresh one)."""

    threshold: float
    use_p99_floor: bool = True
    patience: int = 1000
    history: EntropyHistory = field(default_factory=EntropyHistory)
    step: int = 0  # engine steps in which this prompt produced a token
    steps_since_fork: int = 0
    open: bool = True  # False once `patience` steps passed without a fork

    def effective_threshold(self) -> float:
        """theta_eff = max(theta, P99 of the entropies seen so far); theta when nothing is seen yet."""
        if not self.use_p99_floor:
            return self.threshold
        p99 = self.history.percentile(99.0)
        return self.threshold if p99 is None else max(self.threshold, p99)

    def wants_fork(self, entropy: float, reasoning_closed: bool) -> tuple[bool, float]:
        """Decide for one new token (before its entropy joins the history). Returns (fork?, theta_eff)."""
        theta_eff = self.effective_threshold()
        return (self.open and not reasoning_closed and entropy > theta_eff), theta_eff

    def end_step(self, forked: bool) -> None:
        """Close the prompt's step: count it, and stop branching after `patience` idle steps."""
        self.step += 1
        self.steps_since_fork = 0 if forked else self.steps_since_fork + 1
        if self.steps_since_fork >= self.patience:
            self.open = False


def fork_tokens(
    mode: str, sampled: int, topk_ids: np.ndarray, topk_logprobs: np.ndarray
) -> tuple[tuple[int, float], tuple[int, float] | None]:
    """Tokens at the fork position: ((parent token, its log-prob), (child token, log-prob) or None).

    top2: parent takes rank 1, child rank 2 (the paper; both forced, so off-policy).
    alternative: parent keeps its sample, child takes the most likely other token.
    resample: parent keeps its sample, the child re-samples the position itself (None here).
    `topk_ids` are ordered by rank; absent entries carry -inf log-probs.
    """
    valid = np.isfinite(topk_logprobs)
    ids, lps = topk_ids[valid], topk_logprobs[valid]
    order = np.argsort(-lps, kind="stable")
    ids, lps = ids[order], lps[order]
    sampled_lp = float(lps[ids == sampled][0]) if np.any(ids == sampled) else float("nan")
    if mode == "resample":
        return (sampled, sampled_lp), None
    if mode == "top2":
        if len(ids) < 2:
            return (sampled, sampled_lp), None
        return (int(ids[0]), float(lps[0])), (int(ids[1]), float(lps[1]))
    if mode == "alternative":
        others = np.flatnonzero(ids != sampled)
        if len(others) == 0:
            return (sampled, sampled_lp), None
        j = others[0]
        return (sampled, sampled_lp), (int(ids[j]), float(lps[j]))
    raise ValueError(f"fork_mode={mode!r}: choose one of top2, alternative, resample.")


def decisive_position(seq, rule: str = "entropy") -> int | None:
    """Where a finished sample (a rollout.types.Sequence) is forked after the fact (`fill_with` / `probe_with` =
    forks), among the tokens it generated itself (copied ones carry INHERITED entropies): `refill_at=entropy` its
    most uncertain token, `surprise` the token it drew with the lowest probability (where a slip is likeliest);
    the first on a tie; None when it generated none."""
    entropies = seq.entropies  # a list built on each read: read once
    own = [t for t in range(seq.n_inherited, len(entropies)) if entropies[t] >= 0]
    if not own:
        return None
    if rule == "surprise":
        return min(own, key=seq.logprobs.__getitem__)
    return max(own, key=entropies.__getitem__)


def refill_parent(tree, rule: str = "entropy") -> int | None:
    """Which finished sample of `tree` (a rollout.types.PromptTree) a refill fork continues: the one with the fewest
    children so far (so forks spread over the samples), the first in the tree on a tie; None when no finished,
    uncut sample has a token of its own to fork at."""
    children: dict[int, int] = {}
    for seq in tree.sequences:
        if seq.parent is not None:
            children[seq.parent] = children.get(seq.parent, 0) + 1
    ready = [s.index for s in tree.sequences
             if s.finished and s.finish_reason != "abort" and decisive_position(s, rule) is not None]
    return min(ready, key=lambda s: (children.get(s, 0), s), default=None)
