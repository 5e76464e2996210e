"""Phase 2 of eager / eager_adapt at test time: spend eager_init's saved budget, resumably.

The split of the saved budget B depends on every prompt of the pool (B itself, the order of
the target prompts, the remainder), so a run interrupted half-way through phase 2 must give
the prompts still missing exactly the shares planned for them. The plan is made once with
`rollout.plan_saved_budget`, stored in the results file, and spent with
`rollout.spend_saved_budget(shares=..., active=...)` for the missing prompts only, over the
whole pool so that request seeds stay those of an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rollout
from rollout import EagerConfig, PromptTree, Verifier
from rollout.engine import Engine


def plan_shares(trees: list[PromptTree], config: EagerConfig) -> dict[str, Any]:
    """The stored plan: B, the target prompts, the per-prompt cap, and each target's share.

    For eager the verdicts of eager_init's answers must already be on the sequences.
    """
    shares = rollout.plan_saved_budget(trees, config)
    m = max((t.budget for t in trees), default=0)
    cap = (config.extra_cap if config.method == "eager" else config.adapt_extra_cap) * m
    return {
        "saved_budget": sum(t.budget for t in trees) - sum(t.n_sequences for t in trees),
        "targets": list(shares),
        "cap_per_prompt": cap,
        "shares": {str(i): s for i, s in shares.items()},  # JSON keys are strings
    }


def spend_shares(
    engine: Engine,
    trees: list[PromptTree],
    config: EagerConfig,
    shares: dict[int, int],
    active: list[int],
    verifier: Verifier | None = None,
    on_tree_done: Callable[[PromptTree], None] | None = None,
) -> None:
    """Give each prompt in `active` its planned share (trees are extended in place)."""
    for k, tree in enumerate(trees):
        if tree.prompt_index != k:
            raise ValueError(f"trees[{k}].prompt_index is {tree.prompt_index}: pass the whole pool in prompt order.")
    rollout.spend_saved_budget(engine, trees, config, verifier, on_tree_done, shares=shares, active=active)
