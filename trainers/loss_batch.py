"""The loss batch of a step: which rows it keeps, and what normalises its loss.

TRL's `_generate_and_score_completions` returns per-row tensors (`ROW_KEYS`) and what spans
the batch (`BATCH_KEYS`). A row whose every token has advantage 0 adds nothing to the policy
gradient (with no KL term and no entropy bonus), and an unused row has no loss tokens at all:
both can leave the batch, so the loss step's forward and backward passes cost what carries
signal; the loss is the same, because the normaliser (`num_items_in_batch`) is computed before.
"""

from __future__ import annotations

from typing import Any

import torch

ROW_KEYS = frozenset({"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "tool_mask",
                      "old_per_token_logps", "importance_sampling_ratio", "sampling_per_token_logps",
                      "ref_per_token_logps"})
BATCH_KEYS = frozenset({"num_items_in_batch"})  # the generation batch's loss tokens: TRL's dapo normaliser


def rows_to_keep(used: torch.Tensor, most_used: int) -> torch.Tensor:
    """(n,) bool: the used rows, plus the first unused ones until `most_used` rows are kept.

    Processes may use different numbers of rows, and TRL's loss gathers per-row statistics
    across processes, which needs equal sizes: each keeps as many rows as the busiest one. A
    kept unused row carries no loss tokens, so it changes nothing but the cost.
    """
    keep = used.clone()
    extra = most_used - int(used.sum())
    if extra > 0:
        keep[(~used).nonzero().flatten()[:extra]] = True
    return keep


def keep_rows(output: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The loss batch with only the rows `keep` marks."""
    return {key: value[keep] if key in ROW_KEYS else value for key, value in output.items()}


def carrying_rows(advantages: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """(N,) bool: used rows with a non-zero advantage somewhere (advantages (N,) or per token (N, T))."""
    nonzero = advantages != 0 if advantages.dim() == 1 else (advantages != 0).any(dim=1)
    return used & nonzero


def budget_normalizer(budget_rows: int, max_completion_length: int, device: Any) -> torch.Tensor:
    """dr_grpo's constant for a step's row budget: the sequences the rollout may spend (`rollout.config.pool_size`
    of the rows it was handed) x max_completion_length loss tokens.

    With it a step that carries little signal moves the weights less than a full one; TRL's `dapo`
    divides by the tokens the step happens to hold, so every step moves them about as far."""
    return torch.tensor(float(budget_rows * max_completion_length), device=device)
