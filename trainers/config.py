"""`EagerGRPOConfig`: TRL's `GRPOConfig` plus the rollout generator switch and EAGer's settings.

`rollout_generator: parallel` (the default) is TRL's own sampling, untouched, so the class
is a drop-in for `GRPOConfig`. The EAGer generators run through TRL's rollout hook, on the
trainer's colocated vLLM engine or, with `vllm_mode: server`, on TRL's vLLM server.

The rollout's settings are not declared here: every `rollout.EagerConfig` field becomes an
`eager_<name>` field (same type, default and help), except those the trainer sets from its own
settings (`DERIVED`). `__post_init__` checks them with `rollout`'s own validation and refuses
what TRL's side cannot honour, each error naming the field as the user typed it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import MISSING, dataclass, field, fields, make_dataclass

from trl import GRPOConfig

from rollout.config import (METHODS, TRAINING_DEFAULTS, EagerConfig, SettingError, inert_settings, non_default,
                            surface_fields)
from trainers.dataset_check import BAD_ROWS
from trainers.step_settings import MASK_SAFE_LOSSES, RENAMED, StepFields
from trainers.weight_sync import cpu_build

logger = logging.getLogger(__name__)

PREFIX = "eager_"
GENERATORS = METHODS  # rollout.config's methods: parallel is TRL's own sampling here
BASELINES = ("group", "verdicts")
CREDITS = ("rows", "segments")
ANSWER_KINDS = ("math", "choice")
# The rollout settings the trainer does not take as `eager_<name>`: the trainer field each comes from (named
# in errors about it), and how.
DERIVED = {
    "method": ("rollout_generator", ""),
    "max_sequences": ("eager_max_sequences", "None: num_generations"),
    "temperature": ("temperature", "TRL's"),
    "max_new_tokens": ("max_completion_length", "TRL's"),
    "seed": ("seed", "TRL's, drawn afresh for every step and process"),
    "stop_token_ids": ("", "the tokenizer's EOS ids"),
    "think_end_token_id": ("eager_think_end_token", "text: one token of the tokenizer"),
    "online": ("rollout_generator", "on for eager and eager_adapt: one rollout call per step"),
    "oversample": ("oversample", "a setting of the step, for every generator"),
    "recursion_span": ("", "none: EGLR forks need the transformers engine, and TRL generates with vLLM"),
    "recursion_k_max": ("", "none: see recursion_span"),
    "recursion_tol": ("", "none: see recursion_span"),
}
DERIVED_LABELS = {name: label for name, (label, _) in DERIVED.items() if label}


EagerRolloutFields = make_dataclass("EagerRolloutFields",
                                    surface_fields(PREFIX, skip=tuple(DERIVED), defaults=TRAINING_DEFAULTS))
EagerRolloutFields.__module__ = __name__
ROLLOUT_FIELDS = tuple(name for name, _, _ in surface_fields(PREFIX, skip=tuple(DERIVED)))


@dataclass
class EagerGRPOConfig(EagerRolloutFields, StepFields, GRPOConfig):
    """GRPOConfig with `rollout_generator` and the EAGer settings (fields prefixed `eager_`)."""

    rollout_generator: str = field(
        default="parallel",
        metadata={
            "help": "How rollouts are sampled. parallel: TRL's own sampling (num_generations independent samples per "
            "prompt). eager_init: entropy-aware branching, label-free; a confident prompt uses fewer sequences and "
            "its rows stay empty (masked). eager_adapt: eager_init, then the saved budget goes to prompts that used "
            "their whole budget. eager: label-aware; sequences are verified against the gold answer as they finish, "
            "a solved prompt stops branching and its unused rows go to unsolved prompts within the same step. The "
            "eager_* generators need use_vllm=True (vllm_mode colocate or server).",
            "choices": GENERATORS,
        },
    )
    eager_max_sequences: int | None = field(
        default=None,
        metadata={
            "help": "Budget M: sequences per prompt before any reallocation (leaves of the prompt's tree). None "
            "means num_generations; it may not exceed num_generations, the rows each prompt owns in a step."
        },
    )
    eager_think_end_token: str | None = field(
        default=None,
        metadata={
            "help": "The token that closes reasoning, e.g. '</think>' for Qwen3: no fork after it. Must be a single "
            "token of the tokenizer. None for models that do not think."
        },
    )
    eager_baseline: str = field(
        default="group",
        metadata={
            "help": "eager: the advantage baseline. group: the group's mean reward (GRPO; biased when a stop rule "
            "shapes the group). verdicts: each row's pass rate estimated from the verdicts known when it started "
            "(unbiased under any stop rule; assumes a 0/1 accuracy reward).",
            "choices": BASELINES,
        },
    )
    eager_credit: str = field(
        default="rows",
        metadata={
            "help": "How a tree-shaped group's tokens are credited (trainers/tree_credit.py). rows: GRPO's layout, "
            "each row its own advantage over all its tokens; a forked child repeats its parent's prefix, so a "
            "prefix shared by d leaves counts d times (biased toward prefixes that fork). segments: every token "
            "once, with advantage w_t (Q_t - b): Q_t the branch-averaged outcome of the leaves below it, w_t 1/2 per "
            "fork above it, b the row's verdict baseline (needs eager_baseline=verdicts); unbiased with resample "
            "forks. Without forks (allocation=screen) both are the same.",
            "choices": CREDITS,
        },
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={"help": "Stop once this many training seconds have passed (generation, scoring and optimisation "
                  "since the first step: eager/train_wall_s), even before max_steps; for comparing generators at "
                  "equal cost. None: max_steps alone. Any generator."},
    )
    eager_gold_column: str = field(
        default="answer",
        metadata={"help": "eager: the dataset column holding each prompt's gold answer, used to verify sequences."},
    )
    eager_answer_kind: str = field(
        default="math",
        metadata={"help": "eager: how sequences are graded against the gold: math (boxed answer) or choice (letter).",
                  "choices": ANSWER_KINDS},
    )

    bad_rows: str = field(
        default="stop",
        metadata={"help": "What a training row no step can train on does (an empty prompt, a prompt that fills "
                  "vllm_max_model_length, for eager a gold answer in eager_gold_column no verifier can grade), checked "
                  "when the trainer is built: stop (an error naming every such row by index and column) or skip (they "
                  "leave the dataset; their count is logged). Any generator.", "choices": BAD_ROWS},
    )

    def __post_init__(self) -> None:
        self._take_old_spellings()
        self._hand_more_prompts()
        super().__post_init__()
        self._check_choices()
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise ValueError(f"max_train_seconds={self.max_train_seconds!r}: give a positive number of seconds, or "
                             "None to stop at max_steps only.")
        if self.use_vllm and self.vllm_mode == "colocate" and self.vllm_enable_sleep_mode and cpu_build():
            raise ValueError(
                "vllm_enable_sleep_mode=True on the CPU build of vLLM: sleep/wake are no-ops there and waking the "
                "weights left the next generate hanging. Set vllm_enable_sleep_mode=False."
            )
        self._check_step_rows()
        if not self.is_eager:
            self._warn_inert(None)
        if self.is_eager:
            self._check_engine()
            self._check_sampling()
            self._check_batch()
            self._check_eager_fields()
            self._warn_inert(self.rollout_settings())  # rollout's own checks, with the trainer's field names
            if self.eval_strategy != "no":  # what evaluation steps will run, checked now, not mid-training
                self.step_settings(self.num_generations_eval or self.num_generations, training=False)

    def _warn_inert(self, rollout: EagerConfig | None) -> None:
        """Warn, once per setting and reason, about an eager_ setting the user changed that does nothing under the
        chosen generator and allocation (`rollout.config.inert_settings`); every one under parallel."""
        changed = [f.name for f in fields(self) if f.name.startswith(PREFIX) and f.name not in RENAMED
                   and getattr(self, f.name) != _default(f)]
        changed = [name for name in changed if name != "eager_gold_column"]  # the accuracy rewards read it too
        if rollout is None:
            why = {name: "rollout_generator=parallel is TRL's own sampling" for name in changed}
        else:
            why = {PREFIX + k: v for k, v in inert_settings(rollout, [n[len(PREFIX):] for n in changed]).items()}
            if "eager_answer_kind" in changed and self.rollout_generator != "eager":
                why["eager_answer_kind"] = "it grades sequences for label-aware eager only"
        for name, reason in why.items():
            if (name, reason) not in _WARNED:
                _WARNED.add((name, reason))
                logger.warning("%s=%r does nothing here: %s.", name, getattr(self, name), reason)

    def _check_choices(self) -> None:
        """Every setting of this package that lists its choices (metadata "choices") holds one of them."""
        own = {f.name for cls in (EagerGRPOConfig, StepFields, EagerRolloutFields) for f in fields(cls)} - {
            f.name for f in fields(GRPOConfig)}
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if f.name in own and allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name}={getattr(self, f.name)!r}: choose one of {tuple(allowed)}.")

    @property
    def is_eager(self) -> bool:
        """True for the generators that run EAGer through the rollout hook."""
        return self.rollout_generator != "parallel"

    @property
    def eager_budget(self) -> int:
        """Budget M per prompt (`eager_max_sequences`, defaulting to `num_generations`)."""
        return self.eager_max_sequences if self.eager_max_sequences is not None else self.num_generations

    def rollout_settings(self, **overrides) -> EagerConfig:
        """The `rollout.EagerConfig` these settings describe (`overrides`: what a step sets, e.g. its seed)."""
        values = {name[len(PREFIX):]: getattr(self, name) for name in ROLLOUT_FIELDS}
        values.update(method=self.rollout_generator, max_sequences=self.eager_budget, temperature=self.temperature,
                      oversample=self.oversample,
                      max_new_tokens=self.max_completion_length, seed=self.seed,
                      online=self.rollout_generator in ("eager", "eager_adapt"))
        values.update(overrides)
        try:
            return EagerConfig(**values)
        except SettingError as err:
            raise err.rename(DERIVED_LABELS.get(err.name, PREFIX + err.name)) from None

    def step_settings(self, group_size: int, training: bool, **overrides) -> EagerConfig:
        """The rollout settings of one step: a prompt owns at most `group_size` rows, and only training batches are
        handed oversample x the prompts (evaluation batches are TRL's own)."""
        return self.rollout_settings(max_sequences=min(self.eager_budget, group_size),
                                     oversample=self.oversample if training else 1.0, **overrides)

    @property
    def run_tag(self) -> str:
        """The generator and every setting that differs from its default (W&B group and run names)."""
        tag = f"{self.rollout_generator}-G{self.num_generations}-T{self.temperature:g}"
        for name in STEP_TAGGED:
            if getattr(self, name) != self.__dataclass_fields__[name].default:
                tag += f"-{name}={_short(getattr(self, name))}"
        if self.is_eager:
            changed = non_default(self.rollout_settings(), skip=tuple(DERIVED), defaults=TRAINING_DEFAULTS)
            if self.eager_max_sequences is not None:
                changed["max_sequences"] = self.eager_max_sequences
            for name in TRAINER_TAGGED:
                if getattr(self, name) != self.__dataclass_fields__[name].default:
                    changed[name[len(PREFIX):]] = getattr(self, name)
            tag += "".join(f"-{name}={_short(value)}" for name, value in changed.items())
        if len(tag) > 128:  # W&B's limit on group names: keep a readable head and a hash of the whole
            tag = tag[:111] + "-" + hashlib.sha256(tag.encode()).hexdigest()[:16]
        return tag

    @property
    def vllm_server_url(self) -> str:
        """The server TRL's client connects to (`vllm_mode: server`), as TRL builds it from these fields."""
        return self.vllm_server_base_url or f"http://{self.vllm_server_host}:{self.vllm_server_port}"

    def _check_engine(self) -> None:
        if not self.use_vllm:
            raise self._fail("use_vllm", "EAGer generates on TRL's vLLM engine (colocated or a server): set "
                             "use_vllm=True.")
        if self.vllm_mode not in ("colocate", "server"):
            raise self._fail("vllm_mode", "EAGer generates on TRL's vLLM engine: set vllm_mode='colocate' or 'server'.")
        if self.vllm_enable_sleep_mode and self.vllm_mode == "colocate":
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
        """What TRL's side cannot honour; rollout's own checks follow in `rollout_settings`."""
        if not 1 <= self.eager_budget <= self.num_generations:
            raise self._fail(
                "eager_max_sequences",
                f"the budget must be between 1 and num_generations={self.num_generations} (the rows a prompt owns).",
            )
        if self.eager_fork_mode == "recursion":
            raise self._fail("eager_fork_mode", "EGLR forks re-apply the model's layers, which only the transformers "
                             "engine can (rollout.hf_engine); TRL generates with vLLM. Choose resample, alternative "
                             "or top2.")
        if self.eager_entropy_source == "full_vocab":
            raise self._fail("eager_entropy_source", "TRL builds its vLLM engine with at most 20 log-probs per token; "
                             "use topk.")
        if self.eager_baseline == "verdicts" and self.rollout_generator != "eager":
            raise self._fail("eager_baseline", "'verdicts' needs the label-aware generator (rollout_generator: eager).")
        if self.eager_credit == "segments" and self.eager_baseline != "verdicts":
            raise self._fail("eager_credit", "segment credit needs a baseline that never saw the row's own outcome: "
                             "set eager_baseline='verdicts'.")
        if self.eager_baseline == "verdicts" and self.multi_objective_aggregation != "sum_then_normalize":
            raise self._fail("eager_baseline", "'verdicts' needs multi_objective_aggregation='sum_then_normalize'.")
        if self.rollout_generator == "eager" and not self.eager_gold_column:
            raise self._fail("eager_gold_column", "label-aware EAGer needs the dataset column with the gold answers.")
        if self.eager_fork_mode != "resample":
            logger.warning(
                "eager_fork_mode=%r forces tokens at forks: those tokens are off-policy. Use 'resample' for exact "
                "policy samples.", self.eager_fork_mode,
            )


# What a run tag names besides the rollout's settings: the step's settings (not the trainer's record of them,
# nor old spellings) and the trainer's own eager_ settings that change what is sampled or trained (not
# eager_max_sequences, tagged as max_sequences, nor the data's gold column).
STEP_TAGGED = tuple(f.name for f in fields(StepFields) if f.name != "rows_per_step" and f.name not in RENAMED)
TRAINER_TAGGED = tuple(f.name for f in fields(EagerGRPOConfig) if f.name.startswith(PREFIX) and f.name not in
                       {*ROLLOUT_FIELDS, *RENAMED, "eager_max_sequences", "eager_gold_column"})


_WARNED: set[tuple[str, str]] = set()  # (setting, reason) already warned about in this process


def _default(f) -> object:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
