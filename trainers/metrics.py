"""The `eager/...` metrics of one generation step, from the gathered rows of every process.

They are computed the same way for every generator (parallel included), so runs compare:
    rollout_tokens                 tokens generated this step, a forked prefix counted once
    rollout_tokens_cumulative      the same, summed since the start of training (the caller keeps it)
    rows_used_frac                 rows holding a real completion / rows available
    sequences_per_prompt_{mean,min,max}
    branches_per_prompt            forks per prompt (0 for parallel)
    frac_solved                    prompts with a correct row (total reward >= 1.0, i.e. a verified answer)
    frac_with_signal               prompts whose rewards differ (a non-zero group-relative advantage)
    rows_reallocated               rows a prompt holds beyond its own num_generations
    engine_steps                   the step's rollout critical path in engine steps (parallel: its longest
                                   completion), on the slowest process (the trainer adds it)
The trainer adds what the step trained on (training steps): rows_trained (the rows left in the loss batch,
padding aside), fork_rows_frac (the share of them an entropy fork started) and moved_rows_frac
(the share of the used rows that started after a verdict on their prompt: fills, probes, extra passes) and
rows_without_loss (rows the loss batch holds that add nothing to the loss but cost a forward and a backward:
padding to the busiest process's rows or to one row per accumulation slice, or every masked row when rows are not dropped);
and the step's seconds (`trainers.trainer`): time_generation_s (all of TRL's
`_generate_and_score_completions` but the rewards: weight sync, rollouts, and TRL's log-prob
pass for its importance-sampling correction, over the rows that stay in the loss batch on one process), time_scoring_s (reward functions)
and train_wall_s (seconds since the first step began, at each log: everything above plus the
optimisation, and checkpoint saves, which the trainer makes after a log).
"""

from __future__ import annotations

import torch

SOLVED_REWARD = 1.0  # boxed_accuracy's reward for a correct answer


def step_metrics(
    rewards: torch.Tensor,
    groups: torch.Tensor,
    used: torch.Tensor,
    group_size: int,
    tokens: float,
    branches: float,
) -> dict[str, float]:
    """Metrics of one step.

    Args:
        rewards: (N,) total (weighted) reward per row, NaN for unused or unscorable rows.
        groups: (N,) group id per row, the prompts numbered 0..N/G-1 across processes.
        used: (N,) bool, the row holds a real completion.
        group_size: G, the rows each prompt owns.
        tokens, branches: generated tokens and forks of the step, summed over processes.
    """
    rewards, groups, used = rewards.float().cpu(), groups.cpu(), used.bool().cpu()
    n_prompts = max(len(rewards) // group_size, 1)
    per_prompt = torch.bincount(groups[used].long(), minlength=n_prompts).float()  # (P,) sequences
    valid = used & ~torch.isnan(rewards)  # scored real rows
    ids = groups.long()
    lo = torch.full((n_prompts,), float("inf")).scatter_reduce(
        0, ids, torch.where(valid, rewards, float("inf")), reduce="amin")
    hi = torch.full((n_prompts,), float("-inf")).scatter_reduce(
        0, ids, torch.where(valid, rewards, float("-inf")), reduce="amax")
    with_signal = torch.isfinite(lo) & (hi > lo)
    return {
        "eager/rollout_tokens": float(tokens),
        "eager/rows_used_frac": used.float().mean().item(),
        "eager/sequences_per_prompt_mean": per_prompt.mean().item(),
        "eager/sequences_per_prompt_min": per_prompt.min().item(),
        "eager/sequences_per_prompt_max": per_prompt.max().item(),
        "eager/branches_per_prompt": float(branches) / n_prompts,
        "eager/frac_solved": (hi >= SOLVED_REWARD).float().mean().item(),
        "eager/frac_with_signal": with_signal.float().mean().item(),
        "eager/rows_reallocated": torch.clamp(per_prompt - group_size, min=0).sum().item(),
    }
