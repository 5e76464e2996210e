"""`EagerGRPOConfig`: TRL's `GRPOConfig` plus the rollout generator switch and EAGer's knobs.

`rollout_generator: parallel` (the default) is TRL's own sampling, untouched, so the class
is a drop-in for `GRPOConfig`. The three EAGer generators run on the trainer's colocated
vLLM engine through TRL's rollout hook; `__post_init__` refuses the settings they cannot
honour, each error naming the field to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from trl import GRPOConfig

from trainers.weight_sync import cpu_build

logger = logging.getLogger(__name__)

GENERATORS = ("parallel", "eager_init", "eager_adapt", "eager")
FORK_MODES = ("resample", "alternative", "top2")
ON_SOLVED = ("finish", "abort")
STOP_RULES = ("solved", "signal")
BASELINES = ("group", "verdicts")
ANSWER_KINDS = ("math", "choice")
# Losses whose normaliser does not count rows: a fully masked (unused) row adds nothing and takes
# no weight from the real ones. dapo/cispo/vespo divide by the global token count, bnpo by the
# local one, dr_grpo by a constant (rows x max_completion_length, the same with or without masks).
MASK_SAFE_LOSSES = ("dapo", "bnpo", "cispo", "vespo", "dr_grpo")
# grpo, sapo and luspo average per-row losses over rows: unused rows would count in that mean.
ROW_FREE_LOSSES = ("dapo", "bnpo", "cispo", "vespo")  # normalised by tokens: rows can leave the batch (not dr_grpo)


@dataclass
class EagerGRPOConfig(GRPOConfig):
    """GRPOConfig with `rollout_generator` and the EAGer parameters (fields prefixed `eager_`)."""

    rollout_generator: str = field(
        default="parallel",
        metadata={
            "help": "How rollouts are sampled. parallel: TRL's own sampling (num_generations independent samples per "
            "prompt). eager_init: entropy-aware branching, label-free; a confident prompt uses fewer sequences and "
            "its rows stay empty (masked). eager_adapt: eager_init, then the saved budget goes to prompts that used "
            "their whole budget. eager: label-aware; sequences are verified against the gold answer as they finish, "
            "a solved prompt stops branching and its unused rows go to unsolved prompts within the same step. The "
            "eager_* generators need use_vllm=True with vllm_mode='colocate'."
        },
    )
    eager_entropy_threshold: float = field(
        default=2.0,
        metadata={
            "help": "Fork where the top-20 token entropy (nats, on the T=1 scale) exceeds this; the paper uses about "
            "2.0 for eager_init and 2.2-2.5 for eager. Lower means more forks."
        },
    )
    eager_fork_mode: str = field(
        default="resample",
        metadata={
            "help": "Token choice at a fork. resample (default for RL): the child re-samples the position, so every "
            "sequence is an exact sample of the policy. alternative: the child takes the best token other than the "
            "sampled one. top2 (the paper's): parent forced to rank 1, child to rank 2. alternative and top2 make "
            "the forced tokens off-policy (their log-probs are still recorded for importance sampling)."
        },
    )
    eager_max_sequences: int | None = field(
        default=None,
        metadata={
            "help": "Budget M: sequences per prompt before any reallocation (leaves of the prompt's tree). None "
            "means num_generations; it may not exceed num_generations, the rows each prompt owns in a step."
        },
    )
    eager_solved_min_correct: int = field(
        default=1,
        metadata={"help": "eager: a prompt counts as solved with at least this many correct sequences (paper: 1)."},
    )
    eager_solved_min_incorrect: int = field(
        default=0,
        metadata={
            "help": "eager: ...and at least this many wrong ones. 1 asks for a mix of right and wrong, i.e. a GRPO "
            "learning signal, before a prompt gives up its remaining budget."
        },
    )
    eager_stop_rule: str = field(
        default="solved",
        metadata={
            "help": "eager: when a prompt stops taking budget. solved: at eager_solved_min_correct right answers (and "
            "eager_solved_min_incorrect wrong ones). signal: once its group holds a right and a wrong answer (a "
            "learning signal), or eager_signal_easy_k right answers and no wrong one (too easy)."
        },
    )
    eager_signal_easy_k: int = field(
        default=3, metadata={"help": "eager_stop_rule=signal: right answers with no wrong one that mark a prompt too easy."}
    )
    eager_baseline: str = field(
        default="group",
        metadata={
            "help": "eager: the advantage baseline. group: the group's mean reward (GRPO; biased when a stop rule "
            "shapes the group). verdicts: each row's pass rate estimated from the verdicts known when it started "
            "(unbiased under any stop rule; assumes a 0/1 accuracy reward)."
        },
    )
    eager_drop_unused_rows: bool = field(
        default=True,
        metadata={
            "help": "Leave a step's unused rows (no reward, no loss tokens) out of the loss batch, so the loss step's "
            "forward and backward passes cost what the rollout used, not prompts x num_generations. The loss is the "
            "same. Applies with steps_per_generation=1 and a token-normalised loss (dapo, bnpo, cispo, vespo) on "
            "text; otherwise the rows stay. With several processes each keeps as many rows as the busiest one."
        },
    )
    eager_on_solved: str = field(
        default="finish",
        metadata={
            "help": "eager: what a solved prompt's still-running sequences do. finish: they run to the end but fork "
            "no more. abort: they are cut and their rows freed for unsolved prompts."
        },
    )
    eager_extra_cap: int = field(
        default=1,
        metadata={"help": "eager: an unsolved prompt may take up to this many extra budgets M from solved ones."},
    )
    eager_adapt_extra_cap: int = field(
        default=3,
        metadata={"help": "eager_adapt: a hard prompt may take up to this many extra budgets M."},
    )
    eager_pass_start_limit: float = field(
        default=0.5,
        metadata={
            "help": "eager, eager_adapt: a prompt's extra pass starts while its first pass runs, but a new root only "
            "within the first eager_pass_start_limit x max_completion_length engine steps, so a step's generation "
            "stays within (1 + this) passes; later, extra budget only goes to forks of running sequences."
        },
    )
    eager_pass_roots: int = field(
        default=1,
        metadata={"help": "eager, eager_adapt: root sequences an extra pass starts with (budget allowing)."},
    )
    eager_branch_patience: int = field(
        default=1000,
        metadata={"help": "Stop branching a prompt after this many generation steps without a fork (paper: 1000)."},
    )
    eager_think_end_token: str | None = field(
        default=None,
        metadata={
            "help": "The token that closes reasoning, e.g. '</think>' for Qwen3: no fork after it. Must be a single "
            "token of the tokenizer. None for models that do not think."
        },
    )
    eager_gold_column: str = field(
        default="answer",
        metadata={"help": "eager: the dataset column holding each prompt's gold answer, used to verify sequences."},
    )
    eager_answer_kind: str = field(
        default="math",
        metadata={"help": "eager: how sequences are graded against the gold: math (boxed answer) or choice (letter)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rollout_generator not in GENERATORS:
            raise ValueError(f"rollout_generator={self.rollout_generator!r}: choose one of {GENERATORS}.")
        if self.use_vllm and self.vllm_mode == "colocate" and self.vllm_enable_sleep_mode and cpu_build():
            raise ValueError(
                "vllm_enable_sleep_mode=True on the CPU build of vLLM: sleep/wake are no-ops there and waking the "
                "weights left the next generate hanging. Set vllm_enable_sleep_mode=False."
            )
        if self.is_eager:
            self._check_engine()
            self._check_sampling()
            self._check_batch()
            self._check_eager_fields()

    @property
    def is_eager(self) -> bool:
        """True for the generators that run EAGer through the rollout hook."""
        return self.rollout_generator != "parallel"

    @property
    def drops_unused_rows(self) -> bool:
        """Whether unused rows leave the loss batch (see eager_drop_unused_rows)."""
        return (self.is_eager and self.eager_drop_unused_rows and self.steps_per_generation == 1
                and self.loss_type in ROW_FREE_LOSSES)

    @property
    def eager_budget(self) -> int:
        """Budget M per prompt (`eager_max_sequences`, defaulting to `num_generations`)."""
        return self.eager_max_sequences if self.eager_max_sequences is not None else self.num_generations

    @property
    def run_tag(self) -> str:
        """The generator and its parameters in a few characters (W&B group and run names)."""
        tag = f"{self.rollout_generator}-G{self.num_generations}-T{self.temperature:g}"
        if self.is_eager:
            tag += f"-th{self.eager_entropy_threshold:g}-M{self.eager_budget}-{self.eager_fork_mode}"
        if self.rollout_generator == "eager":
            tag += f"-solved{self.eager_solved_min_correct}c{self.eager_solved_min_incorrect}w-{self.eager_on_solved}"
        return tag

    def _fail(self, name: str, why: str) -> ValueError:
        return ValueError(f"{name}={getattr(self, name)!r} with rollout_generator={self.rollout_generator!r}: {why}")

    def _check_engine(self) -> None:
        if not self.use_vllm:
            raise self._fail("use_vllm", "EAGer generates on the colocated vLLM engine: set use_vllm=True.")
        if self.vllm_mode != "colocate":
            raise self._fail(
                "vllm_mode",
                "EAGer forks requests token by token, which needs the engine in the trainer's process; a vLLM server "
                "only takes whole generate calls. Set vllm_mode='colocate' (or rollout_generator='parallel').",
            )
        if self.vllm_enable_sleep_mode:
            raise self._fail(
                "vllm_enable_sleep_mode",
                "the EAGer rollout keeps the engine awake for the whole step; set vllm_enable_sleep_mode=False.",
            )
        if self.loss_type not in MASK_SAFE_LOSSES:
            raise self._fail(
                "loss_type",
                "EAGer leaves unused rows masked, and this loss averages over rows, so masked rows would dilute the "
                f"gradient of the real ones. Set loss_type to one of {MASK_SAFE_LOSSES} (dapo is TRL's default).",
            )

    def _check_sampling(self) -> None:
        if not self.temperature > 0:
            raise self._fail("temperature", "EAGer samples; set a temperature > 0 (the paper uses 0.6).")
        neutral = {"top_p": (1.0,), "top_k": (0, -1, None), "min_p": (None, 0.0), "repetition_penalty": (1.0,)}
        for name, allowed in neutral.items():
            if getattr(self, name) not in allowed:
                raise self._fail(
                    name,
                    "the EAGer engine samples with temperature only, so that each sequence is an exact sample of the "
                    f"policy the loss sees. Set {name}={allowed[0]!r}.",
                )
        if self.generation_kwargs:
            raise self._fail("generation_kwargs", "EAGer sets the sampling parameters itself; leave it unset.")
        if self.vllm_structured_outputs_regex:
            raise self._fail("vllm_structured_outputs_regex", "structured outputs are not supported; leave it unset.")
        if not self.max_completion_length:
            raise self._fail("max_completion_length", "EAGer caps every sequence; set a positive length.")

    def _check_batch(self) -> None:
        rows = self.per_device_train_batch_size * self.steps_per_generation
        if rows % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size * steps_per_generation = {rows} rows per process is not a multiple of "
                f"num_generations={self.num_generations}: with rollout_generator={self.rollout_generator!r} each "
                "process generates whole prompt groups on its own engine, so a group may not straddle processes. "
                "Change per_device_train_batch_size (or steps_per_generation / gradient_accumulation_steps)."
            )
        g_eval = self.num_generations_eval or self.num_generations
        if self.do_eval and self.eval_strategy != "no" and self.per_device_eval_batch_size % g_eval:
            raise ValueError(
                f"per_device_eval_batch_size={self.per_device_eval_batch_size} is not a multiple of the evaluation "
                f"group size {g_eval}: each process must hold whole groups. Change per_device_eval_batch_size."
            )

    def _check_eager_fields(self) -> None:
        if not 1 <= self.eager_budget <= self.num_generations:
            raise self._fail(
                "eager_max_sequences",
                f"the budget must be between 1 and num_generations={self.num_generations} (the rows a prompt owns).",
            )
        choices = {"eager_fork_mode": FORK_MODES, "eager_on_solved": ON_SOLVED, "eager_answer_kind": ANSWER_KINDS,
                   "eager_stop_rule": STOP_RULES, "eager_baseline": BASELINES}
        if self.eager_fork_mode == "recursion":
            raise self._fail("eager_fork_mode", "EGLR forks re-apply the model's layers, which only the transformers "
                             f"engine can (rollout.hf_engine); TRL's GRPO generates with vLLM. Choose one of {FORK_MODES}.")
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise self._fail(name, f"choose one of {allowed}.")
        if self.eager_entropy_threshold < 0:
            raise self._fail("eager_entropy_threshold", "entropies are >= 0 nats; use a threshold >= 0.")
        if self.eager_solved_min_correct < 1:
            raise self._fail("eager_solved_min_correct", "a solved prompt needs at least one correct sequence.")
        nonnegative = ("eager_solved_min_incorrect", "eager_extra_cap", "eager_adapt_extra_cap", "eager_pass_start_limit")
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise self._fail(name, "must be >= 0.")
        if self.eager_signal_easy_k < 1:
            raise self._fail("eager_signal_easy_k", "a prompt needs at least one right answer to count as too easy.")
        if self.eager_baseline == "verdicts" and self.rollout_generator != "eager":
            raise self._fail("eager_baseline", "'verdicts' needs the label-aware generator (rollout_generator: eager).")
        if self.eager_baseline == "verdicts" and self.multi_objective_aggregation != "sum_then_normalize":
            raise self._fail("eager_baseline", "'verdicts' needs multi_objective_aggregation='sum_then_normalize'.")
        if self.eager_pass_roots < 1:
            raise self._fail("eager_pass_roots", "an extra pass starts at least one root.")
        if self.eager_branch_patience < 1:
            raise self._fail("eager_branch_patience", "must be at least 1 step.")
        if self.rollout_generator == "eager" and not self.eager_gold_column:
            raise self._fail("eager_gold_column", "label-aware EAGer needs the dataset column with the gold answers.")
        if self.eager_fork_mode != "resample":
            logger.warning(
                "eager_fork_mode=%r forces tokens at forks: those tokens are off-policy. Use 'resample' for exact "
                "policy samples.", self.eager_fork_mode,
            )
