"""When a prompt gets more budget: per-prompt budgets, a shared pool, the solved rule, the pass bound.

Budget counts leaves (sequences), finished ones included. `Ledger` answers one question,
`can_add(i)`, for the driver. With a pool (label-aware EAGer during training), a prompt may
go past its own budget into slots that closed prompts (solved, or finished with room to
spare) left unused, up to its cap; open prompts keep their own budget reserved, so
borrowing never starves a prompt that is still working on its share.

Online runs (`EagerConfig.online`) give a prompt an extra pass as soon as it shows it needs
one (`needs_more`: a verdict that leaves it unsolved, or, label-free, a finished sequence
of a prompt that used its whole budget), while its first pass still runs. A new pass starts
only within `pass_start_deadline` engine steps (`pass_start_limit x max_new_tokens`), so
the call's critical path is at most that bound plus one pass; later, the extra budget is
spent only by forking the prompt's running sequences, which end with their parents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollout.config import EagerConfig


class Ledger:
    def __init__(self, limits: list[int], extra_caps: list[int] | None = None, pooled: bool = False) -> None:
        if any(m < 0 for m in limits):
            raise ValueError(f"budgets must be >= 0, got {limits}")
        self.limits = list(limits)
        self.extra_caps = list(extra_caps) if extra_caps is not None else [0] * len(limits)
        self.pooled = pooled
        self.total = sum(self.limits)  # the pool never grows past what the batch was given
        self.used = [0] * len(limits)
        self.closed = [False] * len(limits)

    def free_pool(self) -> int:
        """Slots no open prompt has a claim on: total - used - budgets still reserved by open prompts."""
        reserved = sum(max(0, m - u) for m, u, c in zip(self.limits, self.used, self.closed) if not c)
        return self.total - sum(self.used) - reserved

    def can_add(self, i: int) -> bool:
        if self.closed[i]:
            return False
        if self.used[i] < self.limits[i]:
            return True
        if not self.pooled:
            return False
        return self.used[i] < self.limits[i] + self.extra_caps[i] and self.free_pool() > 0

    def add(self, i: int) -> None:
        if not self.can_add(i):
            raise RuntimeError(f"prompt {i} has no budget left (used {self.used[i]} of {self.limits[i]})")
        self.used[i] += 1

    def release(self, i: int) -> None:
        """A sequence was dropped (aborted after its prompt was solved): its slot returns to the pool."""
        self.used[i] -= 1

    def close(self, i: int) -> None:
        """The prompt takes no more sequences; what it did not use becomes free for the others."""
        self.closed[i] = True


def split_saved_budget(saved: int, targets: list[int], cap: int) -> dict[int, int]:
    """Split `saved` slots evenly over `targets` (prompt indices, in order), each capped at `cap`.

    The remainder goes one by one in order. Slots a capped prompt cannot take are not
    passed on (the spec caps each prompt; what is left stays unspent).
    """
    if not targets or saved <= 0:
        return {}
    base, rem = divmod(saved, len(targets))
    return {i: min(cap, base + (1 if k < rem else 0)) for k, i in enumerate(targets)}


def solved(correct: int, wrong: int, config: EagerConfig) -> bool:
    """Label-aware EAGer's stop rule: the prompt takes no more budget (`EagerConfig.stop_rule`).

    solved: enough right answers (and, with solved_min_incorrect, wrong ones). signal: both a
    right and a wrong answer (a GRPO learning signal), or signal_easy_k right and no wrong one.
    The one rule behind `rollout.is_solved` (stored verdicts) and the driver (verdicts as they
    arrive); a sequence whose verdict is None (unverifiable) counts as wrong in both.
    """
    if config.stop_rule == "signal":
        return (correct >= 1 and wrong >= 1) or (correct >= config.signal_easy_k and wrong == 0)
    return correct >= config.solved_min_correct and wrong >= config.solved_min_incorrect


def pass_start_deadline(limit: float, max_new_tokens: int) -> int:
    """Last engine step (from the start of the call) at which an online run may start a new pass."""
    return int(limit * max_new_tokens)
