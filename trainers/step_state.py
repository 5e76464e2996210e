"""What a training step's rollout hook and the trainer's overrides share: one typed object per step.

TRL calls the rollout hook (`rollout_func`) inside its own step with only the prompts and the
trainer, and calls the trainer's overrides around it (`trainers.trainer`). They hand each other the
step's rows through `EagerGRPOTrainer.eager_step`, a `StepState` made fresh when a step begins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Scored:
    """The step's rows scored right after generation, gathered over processes (N rows in all)."""

    rewards_per_func: torch.Tensor  # (N, reward functions), NaN for unused rows
    groups: torch.Tensor  # (N,) group id: the prompt a row answers, unique across processes
    used: torch.Tensor  # (N,) bool: the row holds a real completion
    stats: torch.Tensor  # (3,) generated tokens and forks (summed), engine steps (the slowest process)
    baselines: torch.Tensor  # (N,) the verdict baseline of each row (`trainers.advantages.verdict_baseline`)


@dataclass
class StepState:
    """One step's rows, from the batch TRL hands over to the loss batch it keeps."""

    inputs: list[dict] = field(default_factory=list)  # this process's batch rows (the hook reads their columns)
    rollout: Any = None  # this process's `rollout.RolloutResult` (EAGer generators)
    row_sequences: list[tuple[int, int] | None] = field(default_factory=list)  # per row: (prompt, sequence) or None
    logp_rows: torch.Tensor | None = None  # (n,) bool: the rows TRL's log-prob pass covers (while the step runs)
    sampling_logps: list | None = None  # the engine's log-probs per row (fill for the rows that pass skips)
    rewards: torch.Tensor | None = None  # scored after generation, handed to TRL's `_calculate_rewards` once
    scored: Scored | None = None
    row_prompts: list = field(default_factory=list)  # gathered: the prompt each row holds (EAGer generators)
    shapes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2))  # gathered (length, truncated) per row
    step_rows: torch.Tensor | None = None  # gathered (N,) bool: the rows the step trains on
    loss_rows: torch.Tensor | None = None  # gathered (N,) bool: those that stay in the loss batch
    score_s: float = 0.0  # seconds the reward functions took
    rows_without_loss: int = 0  # rows the loss batch holds that add nothing to the loss, over processes (they still
    # cost a forward and a backward): padding to the busiest process's rows or a row per slice, or every masked row when rows are not dropped
