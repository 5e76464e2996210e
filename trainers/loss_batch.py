"""The loss batch of a step: which rows it keeps, and what normalises its loss.

Three sets of rows, each inside the one before:
- the rows TRL hands the step (oversample x the rows a step trains on);
- the step's rows (`step_groups`): what the loss is defined over and its normaliser counts. For an
  EAGer generator, the rows its rollout used; for parallel under oversample, the first groups with
  a signal up to the step's rows (DAPO's dynamic sampling with a fixed oversample); else all;
- the rows that stay in the loss batch: the step's rows, less (with dynamic sampling) the groups
  whose rewards all agree (`signal_rows`), which have advantage 0.

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
    across processes, which needs equal sizes: each keeps as many rows as the busiest one. A kept
    unused or flat row carries no loss tokens or a zero advantage, so it changes nothing but the cost.
    """
    keep = used.clone()
    extra = most_used - int(used.sum())
    if extra > 0:
        keep[(~used).nonzero().flatten()[:extra]] = True
    return keep


def rows_each_process_keeps(stay_per_process: list[int], slices: int, rows: int) -> int:
    """How many rows every process keeps in its loss batch: as many as the busiest one keeps (TRL's loss gathers
    per-row statistics), at least one per accumulation slice (a step without signal still runs its zero loss;
    `split_rows` gives every slice a row), and at most the `rows` each process holds."""
    return min(max(slices, *stay_per_process), rows)


def split_rows(batch: dict[str, Any], slices: int) -> list[dict[str, Any]]:
    """The loss batch in `slices` slices of consecutive rows whose sizes differ by at most one, for gradient
    accumulation (TRL's split needs equal slices, which would need padding rows that pay a forward and backward).
    A token-normalised loss (dapo, cispo, vespo) divides every slice by the same generation-batch count, so with
    steps_per_generation = gradient_accumulation_steps (TRL's default) the accumulated gradient does not depend on how
    the rows are sliced."""
    n = next(len(v) for k, v in batch.items() if k in ROW_KEYS and v is not None)
    if n < slices:
        raise ValueError(f"{n} rows cannot fill {slices} accumulation slices (rows_each_process_keeps keeps one each)")
    bounds = [n * i // slices for i in range(slices + 1)]
    return [{k: v[lo:hi] if k in ROW_KEYS and v is not None else v for k, v in batch.items()}
            for lo, hi in zip(bounds, bounds[1:])]


def keep_rows(output: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The loss batch with only the rows `keep` marks."""
    return {key: value[keep] if key in ROW_KEYS else value for key, value in output.items()}


def group_signal(rewards: torch.Tensor, groups: torch.Tensor, used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which groups hold rewards that differ.

    Args:
        rewards: (N,) total reward per row, NaN where not scored.
        groups: (N,) group id per row (any integers).
        used: (N,) bool, the row holds a real completion.
    Returns:
        (n_groups,) bool in the order of the sorted group ids, and (N,) each row's group index into it.
    """
    ids, index = torch.unique(groups, return_inverse=True)
    valid = used.bool() & ~torch.isnan(rewards)
    lo = torch.full((len(ids),), float("inf"), device=rewards.device).scatter_reduce(
        0, index, torch.where(valid, rewards.float(), float("inf")), reduce="amin")
    hi = torch.full((len(ids),), float("-inf"), device=rewards.device).scatter_reduce(
        0, index, torch.where(valid, rewards.float(), float("-inf")), reduce="amax")
    return torch.isfinite(lo) & (hi > lo), index


def signal_rows(rewards: torch.Tensor, groups: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the used, scored rows of groups whose rewards differ, the rows dynamic sampling keeps. A group
    whose rewards all agree has advantage 0 under the group baseline: it adds nothing to the loss."""
    signal, index = group_signal(rewards, groups, used)
    return used.bool() & ~torch.isnan(rewards) & signal[index]


def step_groups(signal: list[bool], step_size: int) -> list[bool]:
    """The groups a step trains on among those it was handed (`signal`, one flag per group in batch order): the
    groups with a signal first, in batch order, then groups without, in batch order, `step_size` in all (fewer
    when fewer were handed). Groups without a signal count in the step (its normaliser) but add no gradient."""
    order = [k for k, s in enumerate(signal) if s] + [k for k, s in enumerate(signal) if not s]
    chosen = set(order[:step_size])
    return [k in chosen for k in range(len(signal))]


def budget_normalizer(budget_rows: int, max_completion_length: int, device: Any) -> torch.Tensor:
    """dr_grpo's constant for a step's row budget: the sequences the rollout may spend (`rollout.config.pool_size`
    of the rows it was handed) x max_completion_length loss tokens.

    With it a step that carries little signal moves the weights less than a full one; TRL's `dapo`
    divides by the tokens the step happens to hold, so every step moves them about as far."""
    return torch.tensor(float(budget_rows * max_completion_length), device=device)
