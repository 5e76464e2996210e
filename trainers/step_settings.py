"""The settings of a GRPO step that any generator uses: DAPO's dynamic sampling, oversampling, the normaliser.

`StepFields` is a part of `trainers.EagerGRPOConfig` (the old `eager_` spellings of these settings load
through `trainers.advanced.upgrade`). Each setting is refused, with the reason, where it cannot act (a
loss that averages over rows, a KL term, an entropy bonus), so no run pays for rows it believes
dropped. Whether unused rows leave the loss batch is an experiment setting (`eager_advanced:
{drop_unused_rows: ...}`, on by default). What the trainer does with them: `trainers.loss_batch`
(which rows a step trains on and keeps) and `trainers.trainer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

NORMALIZERS = ("tokens", "budget")
# What each of TRL's losses divides by: the one table the row checks read.
LOSS_NORMALISERS = {
    "dapo": "batch tokens", "cispo": "batch tokens", "vespo": "batch tokens",  # the generation batch's, counted
    # before any row leaves
    "bnpo": "micro-batch tokens",  # the tokens of the micro-batch it is given
    "dr_grpo": "constant",  # rows x max_completion_length, the same with or without masks
    "grpo": "rows", "sapo": "rows", "luspo": "rows",  # a mean over per-row losses
}
# Rows can leave the batch without changing the loss of the others.
ROW_FREE_LOSSES = tuple(loss for loss, by in LOSS_NORMALISERS.items() if by == "batch tokens")
# A fully masked (unused) row adds nothing and takes no weight from the real ones.
MASK_SAFE_LOSSES = tuple(loss for loss, by in LOSS_NORMALISERS.items() if by != "rows")


@dataclass
class StepFields:
    """The step's settings (fields of `EagerGRPOConfig`); checked by `check_step` in its `__post_init__`."""

    # The step's settings, for every generator (parallel included): DAPO's dynamic sampling and what it needs.
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "DAPO's dynamic sampling, for any generator: a group whose rewards all agree (all right or all "
                  "wrong: advantage 0) leaves the loss batch and TRL's log-prob pass, so optimisation pays only for "
                  "groups that teach. The loss of the rows that stay is unchanged (the normaliser still counts the "
                  "step's rows). Needs a loss normalised by the batch's tokens (dapo, cispo, vespo), beta=0, no entropy "
                  "bonus and top_entropy_quantile=1, which are checked. With oversample > 1 it picks parallel's "
                  "groups for the step (an EAGer rollout picks its own)."},
    )
    oversample: float = field(
        default=1.0,
        metadata={"help": "f: TRL hands each step f times the prompts it trains on (per_device_train_batch_size keeps "
                  "meaning the rows a step trains on; the trainer records them in rows_per_step). parallel (with "
                  "dynamic_sampling): every handed prompt is sampled and the step trains on the first groups with a "
                  "signal, up to its rows (DAPO with a fixed oversample; generation costs f times). eager (screen "
                  "allocation): the rollout spends at most the step's rows, on the prompts that promise a signal. 1: "
                  "no oversampling."},
    )
    loss_normalizer: str = field(
        default="tokens",
        metadata={"help": "What divides a step's loss (dapo, cispo, vespo; any generator). tokens: TRL's, the loss "
                  "tokens the step holds, so a step of few signal-carrying rows moves the weights about as far as a "
                  "full one. budget: the step's row budget (rows / oversample) x max_completion_length, dr_grpo's "
                  "constant, so a step that carries little signal moves them less.",
                  "choices": NORMALIZERS},
    )
    rows_per_step: int | None = field(
        default=None,
        metadata={"help": "Set by the trainer with oversample: the rows a step trains on per process (the "
                  "per_device_train_batch_size you gave); per_device_train_batch_size becomes that times oversample, "
                  "the rows TRL hands the rollout. Leave unset."},
    )
    def _hand_more_prompts(self) -> None:
        """oversample f: TRL hands f times the rows a step trains on (f x the prompts); the step trains on at most the
        rows (`rows_per_step`). Idempotent: a config rebuilt from its own fields is not scaled twice."""
        if self.oversample == 1:
            return
        if not (math.isfinite(self.oversample) and self.oversample > 1):
            raise self._fail("oversample", "must be a number >= 1 (1: no oversampling).")
        if self.rollout_generator in ("eager_init", "eager_adapt"):  # the shipped recipes set oversample: 2
            raise self._fail("oversample", "a label-free generator spends its budget on every prompt it is handed, "
                             "so it cannot choose the step's rows among more prompts: add --oversample 1.")
        if self.rollout_generator == "parallel" and not self.dynamic_sampling:
            raise self._fail("oversample", "parallel samples every prompt it is handed; only dynamic_sampling picks "
                             "the step's groups among them. Set dynamic_sampling: true, or oversample: 1.")
        if self.rows_per_step is None:
            self.rows_per_step = self.per_device_train_batch_size
        handed = self.rows_per_step * self.oversample
        if abs(handed - round(handed)) > 1e-6 or round(handed) % self.num_generations:
            raise self._fail("oversample", f"per_device_train_batch_size={self.rows_per_step} x "
                             f"oversample={self.oversample} = {handed:g} rows handed a step must be a whole "
                             f"multiple of num_generations={self.num_generations} (whole prompt groups). Choose an "
                             "oversample that makes it one.")
        if self.rollout_generator == "parallel" and self.rows_per_step % self.num_generations:
            raise self._fail("oversample", f"parallel trains on whole groups: per_device_train_batch_size="
                             f"{self.rows_per_step} must be a multiple of num_generations={self.num_generations}.")
        self.per_device_train_batch_size = round(handed)

    def _check_step_rows(self) -> None:
        """Dynamic sampling, oversampling and dropped rows: refused where they cannot act, never paid for silently."""
        if self.loss_normalizer == "budget" and self.loss_type not in ROW_FREE_LOSSES:
            raise ValueError(f"loss_normalizer='budget' with loss_type={self.loss_type!r}: the budget replaces "
                             "the token count that dapo, cispo and vespo divide by; use one of those, or "
                             "loss_normalizer='tokens'.")
        if self.oversample > 1 and self.loss_type == "dr_grpo":
            raise self._fail("oversample", "dr_grpo divides by every row handed (f x the step's rows), so the "
                             "loss would shrink by f; use loss_type='dapo' with loss_normalizer='budget' (the same "
                             "constant over the rows a step trains on).")
        if not self.dynamic_sampling:
            return
        why = {
            "loss_type": (self.loss_type not in ROW_FREE_LOSSES,
                          f"this loss averages over rows (or divides by them), so a group that leaves would change "
                          f"the loss of the rows that stay. Use one of {ROW_FREE_LOSSES} (dapo is TRL's default), or "
                          "dynamic_sampling: false."),
            "beta": (self.beta != 0.0, "a group whose rewards agree still carries the KL term, so it cannot leave. Set "
                     "beta: 0, or dynamic_sampling: false."),
            "entropy_coef": (self.entropy_coef != 0.0 or self.use_adaptive_entropy,
                             "the entropy bonus reads every row, so a flat group cannot leave. Turn the bonus off, or "
                             "dynamic_sampling: false."),
            "top_entropy_quantile": (self.top_entropy_quantile != 1.0,
                                     "TRL takes the entropy quantile over the whole batch, flat rows included. Set "
                                     "top_entropy_quantile: 1, or dynamic_sampling: false."),
            "eager_advanced.drop_unused_rows": (not self.advanced.drop_unused_rows,
                                                "dynamic_sampling drops rows from the loss batch; with "
                                                "drop_unused_rows: false they would stay and cost their forward and "
                                                "backward. Remove drop_unused_rows from eager_advanced."),
            "multi_objective_aggregation": (
                self.multi_objective_aggregation != "sum_then_normalize",
                "normalize_then_sum centres the rewards over the whole batch, so a group whose rewards agree still "
                "has non-zero advantages. Use sum_then_normalize (TRL's default), or dynamic_sampling: false."),
            "eager_advanced.baseline": (self.advanced.baseline == "verdicts",
                                        "under the verdict baseline a group whose rewards agree still has non-zero "
                                        "advantages: its rows teach. Use the group baseline, or dynamic_sampling: "
                                        "false."),
        }
        for name, (bad, reason) in why.items():
            if bad:
                value = getattr(self.advanced, name.split(".")[1]) if "." in name else getattr(self, name)
                raise ValueError(f"dynamic_sampling=True with {name}={value!r}: {reason}")

    @property
    def drops_unused_rows(self) -> bool:
        """Whether rows the step does not train on leave the loss batch (see `Advanced.drop_unused_rows`)."""
        return (self.advanced.drop_unused_rows and (self.is_eager or self.dynamic_sampling)
                and self.loss_type in ROW_FREE_LOSSES)

    def _fail(self, name: str, why: str) -> ValueError:
        return ValueError(f"{name}={getattr(self, name)!r} with rollout_generator={self.rollout_generator!r}: {why}")
