"""Per-token credit for tree-shaped groups: every generated token once, weighted by its branch.

What a shared prefix contributes with per-row credit (`eager_advanced: {credit: rows}`, GRPO's layout): a
forked child's row repeats its parent's tokens, so a prefix shared by d leaves enters the loss d
times, each time with one leaf's advantage, and is counted d times in `dapo`'s token count. The
tree's shape is decided on the prefix (forks happen where the entropy is high), so prefixes that
fork a lot weigh more than the policy gradient says: the estimate is biased toward them.

`eager_advanced: {credit: segments}` gives each token exactly one place in the loss (its first row; inherited
copies are masked) and the advantage `w_t (Q_t - b)`:
- `Q_t`, the value after token t: the mean outcome of the leaves below it, each branch point
  averaging its two branches (the parent's continuation and the child), recursively;
- `w_t`, the token's weight: 1/2 per fork above it (on its own path), so the weights of the tokens
  at any depth of a root's tree sum to what one sample's would;
- `b`, the row's baseline, from the verdicts known when the row started (`eager_advanced:
  {baseline: verdicts}`): it never depends on the token's own outcome.
With resample forks every branch is a policy sample from its branch state, so in expectation each
root's tree contributes exactly one sample's policy gradient, whatever the forks (tested against
the exact gradient of a small tabular policy, tests/trainers/test_tree_credit.py).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from rollout.types import PromptTree


def token_credit(tree: PromptTree, rewards: dict[int, float]) -> dict[int, tuple[list[float], list[float]]]:
    """Per sequence with a reward: (weights, values) per completion position; inherited positions get weight 0.

    Args:
        tree: a prompt's tree; `branches` record each fork (parent `seq`, `position`, child `new_seq`).
        rewards: reward of each sequence (leaf) by index; sequences without one (aborted) are left out of
            the values and get no credit.
    """
    forks: dict[int, list[tuple[int, int]]] = {}
    for b in tree.branches:
        if b.new_seq in rewards and b.seq in rewards:
            forks.setdefault(b.seq, []).append((b.position, b.new_seq))
    for s in forks:
        forks[s].sort()

    @lru_cache(maxsize=None)
    def value(s: int, t: int) -> float:
        """Value of the state before token t of sequence s: its forks at positions >= t split it in halves."""
        later = [(p, c) for p, c in forks.get(s, ()) if p >= t]
        if not later:
            return rewards[s]
        p, c = later[0]
        return 0.5 * value(c, p + 1) + 0.5 * value(s, p + 1)

    start_weight = {s: 1.0 for s, seq in enumerate(tree.sequences) if seq.parent is None}
    out: dict[int, tuple[list[float], list[float]]] = {}
    for s in _parents_first(tree):
        if s not in rewards:
            continue
        seq = tree.sequences[s]
        fork_at = {p for p, _ in forks.get(s, ())}
        w = start_weight.get(s, 0.0)
        weights, values = [], []
        for t in range(seq.n_tokens):
            if t in fork_at:
                w *= 0.5
            weights.append(w if t >= seq.n_inherited else 0.0)
            values.append(value(s, t + 1))
        for p, c in forks.get(s, ()):
            start_weight[c] = weights[p] if p < len(weights) else w
        out[s] = (weights, values)
    return out


def _parents_first(tree: PromptTree) -> list[int]:
    """Sequence indices with every parent before its children (a child is appended after its parent)."""
    return list(range(len(tree.sequences)))


def segment_advantages(trees: list[PromptTree], rows: list[tuple[int, int] | None], rewards: torch.Tensor,
                       baselines: torch.Tensor, width: int, scale: bool, eps: float = 1e-4) -> torch.Tensor:
    """(R, width) per-token advantages `w_t (Q_t - b)` of a process's rows (0 for unused rows and inherited tokens).

    Args:
        trees: this process's prompt trees; rows: per row, (prompt, sequence index) or None (unused).
        rewards: (R,) the rows' total rewards; baselines: (R,) each row's verdict baseline b.
        scale: divide by the Bernoulli std at the baseline, sqrt(b (1 - b)) (scale_rewards="group").
    """
    out = torch.zeros(len(rows), width, dtype=torch.float32)
    by_prompt: dict[int, dict[int, float]] = {}
    for (k, s), reward in ((row, float(r)) for row, r in zip(rows, rewards.tolist()) if row is not None):
        by_prompt.setdefault(k, {})[s] = reward
    credit = {k: token_credit(trees[k], leaf_rewards) for k, leaf_rewards in by_prompt.items()}
    for r, row in enumerate(rows):
        if row is None:
            continue
        weights, values = credit[row[0]][row[1]]
        b = float(baselines[r])
        adv = torch.tensor(weights) * (torch.tensor(values) - b)
        if scale:
            adv = adv / (max(b * (1 - b), 0.0) ** 0.5 + eps)
        out[r, : len(weights)] = adv[:width]
    return out
