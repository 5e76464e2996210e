"""Slot accounting: how many sequences each prompt may hold, and the pool that closed prompts leave.

Pure arithmetic; the decisions that use it are in `rollout.schedule` (the paper's passes). The
training allocation (`rollout.screening`) does not use it: it counts its own pool and slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollout.config import EagerConfig
    from rollout.types import PromptTree


class Ledger:
    """Slots per prompt: its own budget, and with a pool the slots closed prompts left unused."""

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
        """A sequence was dropped (cut when its prompt stopped): its slot returns to the pool."""
        self.used[i] -= 1

    def close(self, i: int) -> None:
        """The prompt takes no more sequences; what it did not use becomes free for the others."""
        self.closed[i] = True


def split_saved_budget(saved: int, targets: list[int], cap: int) -> dict[int, int]:
    """The paper's phase-2 split: `saved` slots evenly over `targets` (in order), each capped at `cap`.

    The remainder goes one by one in order. Slots a capped prompt cannot take are not passed on.
    """
    if not targets or saved <= 0:
        return {}
    base, rem = divmod(saved, len(targets))
    return {i: min(cap, base + (1 if k < rem else 0)) for k, i in enumerate(targets)}


def call_ledger(trees: list[PromptTree], config: EagerConfig) -> Ledger:
    """The budgets of one `generate` call: M per prompt; online, a pool that lends up to the method's cap."""
    limits = [t.budget for t in trees]
    if not config.online:
        return Ledger(limits)
    cap = config.extra_cap if config.method == "eager" else config.adapt_extra_cap
    return Ledger(limits, [cap * config.max_sequences] * len(trees), pooled=True)
