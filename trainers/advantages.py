"""Group-relative advantages over groups of any size, the way TRL computes them for fixed ones.

TRL views the gathered rewards as `(-1, num_generations)`: a fixed stride of G rows per
prompt. With EAGer a prompt may hold fewer rows than G (the rest are unused, reward NaN) or
more (rows taken over from solved prompts), so the groups are given by a group id per row.
Each group is laid out as one row of a NaN-padded matrix and goes through TRL's own
NaN-aware statistics (`nanmean`, `trl.trainer.utils.nanstd`), so for equal-size groups the
result is exactly TRL's.

A stopping rule makes the group mean a biased baseline: a label-aware prompt stops sampling
on what it has seen, so its group over-represents the outcome it stopped on (with "stop at
the first right answer" an easy prompt's group is often one right answer, advantage 0). The
alternative, `verdict_baseline`, estimates each row's pass rate only from the verdicts known
when that row started: what decided that the row runs, never its own outcome, so the
policy-gradient estimate stays unbiased under any stopping rule (tests/trainers/test_baseline_bias.py).
"""

from __future__ import annotations

import torch
from trl.trainer.utils import nanstd

EPS = 1e-4  # TRL's


def group_matrix(values: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter rows into a NaN-padded (n_groups, max_group_size, ...) matrix.

    Args:
        values: (N, ...) per-row values.
        groups: (N,) group id per row (any integers).
    Returns:
        the matrix, and (N,) the group index (0..n_groups-1) of every row.
    """
    _, index = torch.unique(groups, return_inverse=True)  # (N,)
    n_groups = int(index.max().item()) + 1 if index.numel() else 0
    sizes = torch.bincount(index, minlength=n_groups)
    slot = torch.zeros_like(index)
    for g in range(n_groups):  # position of each row inside its group
        members = (index == g).nonzero(as_tuple=True)[0]
        slot[members] = torch.arange(members.numel(), device=index.device)
    shape = (n_groups, int(sizes.max().item()) if n_groups else 0, *values.shape[1:])
    matrix = torch.full(shape, float("nan"), dtype=values.dtype, device=values.device)
    matrix[index, slot] = values
    return matrix, index


def verdict_baseline(correct: int, wrong: int) -> float:
    """Pass-rate estimate from verdicts seen so far: the posterior mean under a uniform prior (0.5 with none)."""
    return (1.0 + correct) / (2.0 + correct + wrong)


def group_advantages(
    rewards_per_func: torch.Tensor,
    groups: torch.Tensor,
    weights: torch.Tensor,
    scale_rewards: str = "group",
    aggregation: str = "sum_then_normalize",
    baselines: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages per row, normalised within each row's group.

    Args:
        rewards_per_func: (N, F) rewards of each reward function, NaN where not scored (unused rows
            are NaN everywhere and end with advantage 0).
        groups: (N,) group id per row.
        weights: (F,) reward weights.
        scale_rewards: "group", "batch" or "none", as in GRPOConfig.
        aggregation: GRPOConfig.multi_objective_aggregation.
        baselines: (N,) per-row baselines in reward units (`verdict_baseline`) to use instead of the
            group mean; with scale_rewards="group" a row is then scaled by the Bernoulli std at its
            baseline, sqrt(b (1 - b)), which, like b, does not depend on the row's own reward.
    Returns:
        advantages (N,), and std_rewards (N,): the std each row was scaled by (TRL logs how many are 0).
    """
    weights = weights.to(rewards_per_func.device)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    if aggregation == "sum_then_normalize":
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        grouped, index = group_matrix(rewards, groups)  # (n_groups, max_size)
        mean = torch.nanmean(grouped, dim=1)[index] if baselines is None else baselines.to(rewards)
        if scale_rewards in ("group", "none") and baselines is not None:
            std = torch.sqrt(mean * (1.0 - mean)).clamp_min(0.0)
        elif scale_rewards in ("group", "none"):
            std = nanstd(grouped, dim=1)[index]
        elif scale_rewards == "batch":
            std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        else:
            raise ValueError(f"scale_rewards={scale_rewards!r}: use 'group', 'batch' or 'none'.")
        advantages = rewards - mean
        if scale_rewards != "none":
            advantages = advantages / (std + EPS)
    elif aggregation == "normalize_then_sum" and baselines is not None:
        raise ValueError("eager_advanced.baseline='verdicts' needs multi_objective_aggregation='sum_then_normalize'.")
    elif aggregation == "normalize_then_sum":
        grouped, index = group_matrix(rewards_per_func, groups)  # (n_groups, max_size, F)
        mean_k = torch.nanmean(grouped, dim=1)[index]
        std_k = nanstd(grouped, dim=1)[index]
        rewards = (((rewards_per_func - mean_k) / (std_k + EPS)) * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = (rewards - torch.nanmean(rewards)) / (std + EPS)
    else:
        raise ValueError(f"multi_objective_aggregation={aggregation!r}: use sum_then_normalize or normalize_then_sum.")
    # A group of one scored row has no baseline (std NaN): no signal, advantage 0, as TRL does.
    return torch.nan_to_num(advantages, nan=0.0), std
