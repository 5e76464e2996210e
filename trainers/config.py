"""`EagerGRPOConfig`: TRL's `GRPOConfig` plus the rollout generator switch and EAGer's settings.

`rollout_generator: parallel` (the default) is TRL's own sampling, untouched, so the class
is a drop-in for `GRPOConfig`. The EAGer generators run through TRL's rollout hook, on the
trainer's colocated vLLM engine or, with `vllm_mode: server`, on TRL's vLLM server.

The rollout's settings are not declared here: each `rollout.EagerConfig` field a user sets
(`rollout.config.USER_SETTINGS`) becomes an `eager_<name>` field (same type, default and help),
every experiment setting a key of `eager_advanced` (trainers/advanced.py), except those the
trainer sets from its own settings (`DERIVED`). `__post_init__` checks them with `rollout`'s own
validation and refuses what TRL's side cannot honour, each error naming the field as the user
typed it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from trl import GRPOConfig

from rollout.config import (METHODS, TRAINING_DEFAULTS, EagerConfig, SettingError, field_default, inert_settings,
                            non_default, surface_fields)
from trainers.advanced import (DERIVED, DERIVED_LABELS, PREFIX, ROLLOUT_KEYS, TRAINER_KEYS, Advanced, resolve, upgrade)
from trainers.dataset_check import BAD_ROWS
from trainers.step_settings import MASK_SAFE_LOSSES, StepFields
from trainers.weight_sync import cpu_build

logger = logging.getLogger(__name__)

GENERATORS = METHODS  # rollout.config's methods: parallel is TRL's own sampling here
ANSWER_KINDS = ("math", "choice")

# The rollout's user settings as eager_<name> fields; its experiment settings are keys of eager_advanced.
EagerRolloutFields = make_dataclass("EagerRolloutFields", surface_fields(PREFIX, skip=tuple(DERIVED),
                                                                         defaults=TRAINING_DEFAULTS, advanced=False))
EagerRolloutFields.__module__ = __name__
ROLLOUT_FIELDS = tuple(name for name, _, _ in surface_fields(PREFIX, skip=tuple(DERIVED), advanced=False))


@dataclass
class EagerGRPOFields(EagerRolloutFields, StepFields, GRPOConfig):
    """GRPOConfig with `rollout_generator`, the step's settings and EAGer's (fields prefixed `eager_`); what
    `EagerGRPOConfig` declares and checks."""

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

    eager_advanced: dict | str | None = field(
        default=None,
        metadata={"help": "Experiment settings, as one mapping (trainers/advanced.py): the rollout's (allocation, "
                  "fork_mode, fill_with, probe_roots, stop_rule, ...), the baseline and credit of trees, and "
                  "drop_unused_rows. E.g. {allocation: passes, baseline: verdicts}; on a command line its YAML or JSON "
                  "text (recipes.grpo merges it key by key over the recipe's). python -m trainers.advanced lists every "
                  "key."},
    )
    bad_rows: str = field(
        default="stop",
        metadata={"help": "What a training row no step can train on does (an empty prompt, a prompt that fills "
                  "vllm_max_model_length, for eager a gold answer in eager_gold_column no verifier can grade), checked "
                  "when the trainer is built: stop (an error naming every such row by index and column) or skip (they "
                  "leave the dataset; their count is logged). Any generator.", "choices": BAD_ROWS},
    )

    def __post_init__(self) -> None:
        self.advanced = resolve(self.eager_advanced)  # typed (a command line gives the mapping as text)
        self.eager_advanced = dict(self.advanced.given) or None  # what the user set, typed
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
        """Warn, once per setting and reason, about an EAGer setting the user changed that does nothing under the
        chosen generator and allocation (`rollout.config.inert_settings`); every one under parallel."""
        labels = {f.name: f.name[len(PREFIX):] for f in fields(self) if f.name.startswith(PREFIX)
                  and f.name not in ("eager_advanced", "eager_gold_column")  # (the accuracy rewards read the gold too)
                  and getattr(self, f.name) != field_default(f)}
        advanced = self.eager_advanced or {}
        labels.update({f"eager_advanced.{key}": key for key in self.advanced.rollout})
        if rollout is None:
            labels.update({f"eager_advanced.{key}": key for key in ("baseline", "credit") if key in advanced})
            why = {label: "rollout_generator=parallel is TRL's own sampling" for label in labels}
        else:
            inert = inert_settings(rollout, labels.values())
            why = {label: inert[name] for label, name in labels.items() if name in inert}
            if "eager_answer_kind" in labels and self.rollout_generator != "eager":
                why["eager_answer_kind"] = "it grades sequences for label-aware eager only"
        for label, reason in why.items():
            if (label, reason) not in _WARNED:
                _WARNED.add((label, reason))
                value = advanced[labels[label]] if label.startswith("eager_advanced.") else getattr(self, label)
                logger.warning("%s=%r does nothing here: %s.", label, value, reason)

    def _check_choices(self) -> None:
        """Every setting of this package that lists its choices (metadata "choices") holds one of them."""
        own = {f.name for f in fields(EagerGRPOFields)} - {f.name for f in fields(GRPOConfig)}
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
        values.update({key: value for key, value in TRAINING_DEFAULTS.items() if key in ROLLOUT_KEYS})
        values.update(self.advanced.rollout)
        values.update(method=self.rollout_generator, max_sequences=self.eager_budget, temperature=self.temperature,
                      oversample=self.oversample,
                      max_new_tokens=self.max_completion_length, seed=self.seed,
                      online=self.rollout_generator in ("eager", "eager_adapt"))
        values.update(overrides)
        try:
            return EagerConfig(**values)
        except SettingError as err:
            label = f"eager_advanced.{err.name}" if err.name in ROLLOUT_KEYS else PREFIX + err.name
            raise err.rename(DERIVED_LABELS.get(err.name, label)) from None

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
        for key in TRAINER_KEYS:
            if getattr(self.advanced, key) != Advanced.__dataclass_fields__[key].default:
                tag += f"-{key}={_short(getattr(self.advanced, key))}"
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
        rollout, advanced = self.advanced.rollout, self.advanced
        if rollout.get("fork_mode") == "recursion":
            raise self._fail_advanced("fork_mode", "EGLR forks re-apply the model's layers, which only the transformers "
                                      "engine can (rollout.hf_engine); TRL generates with vLLM. Choose resample, "
                                      "alternative or top2.")
        if rollout.get("entropy_source") == "full_vocab":
            raise self._fail_advanced("entropy_source", "TRL builds its vLLM engine with at most 20 log-probs per "
                                      "token; use topk.")
        if advanced.baseline == "verdicts" and self.rollout_generator != "eager":
            raise self._fail_advanced("baseline", "'verdicts' needs the label-aware generator (rollout_generator: "
                                      "eager).")
        if advanced.credit == "segments" and advanced.baseline != "verdicts":
            raise self._fail_advanced("credit", "segment credit needs a baseline that never saw the row's own "
                                      "outcome: set eager_advanced.baseline: verdicts.")
        if advanced.baseline == "verdicts" and self.multi_objective_aggregation != "sum_then_normalize":
            raise self._fail_advanced("baseline", "'verdicts' needs multi_objective_aggregation='sum_then_normalize'.")
        if self.rollout_generator == "eager" and not self.eager_gold_column:
            raise self._fail("eager_gold_column", "label-aware EAGer needs the dataset column with the gold answers.")
        if rollout.get("fork_mode", "resample") != "resample":
            logger.warning(
                "eager_advanced.fork_mode=%r forces tokens at forks: those tokens are off-policy. Use 'resample' for "
                "exact policy samples.", rollout["fork_mode"],
            )

    def _fail_advanced(self, key: str, why: str) -> ValueError:
        value = self.advanced.rollout.get(key, getattr(self.advanced, key, None))
        return ValueError(f"eager_advanced.{key}={value!r} with rollout_generator={self.rollout_generator!r}: {why}")


class EagerGRPOConfig(EagerGRPOFields):
    """GRPOConfig with `rollout_generator`, the step's settings and EAGer's (`EagerGRPOFields`). Keys from before
    `eager_advanced` still load, each with a message that says where it went (`trainers.advanced.upgrade`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **upgrade(kwargs))


# What a run tag names besides the rollout's settings and the trainer's experiment settings: the step's settings
# (not the trainer's record of them) and the trainer's own eager_ fields that change what is sampled or trained
# (not eager_max_sequences, tagged as max_sequences, nor the data's gold column).
STEP_TAGGED = tuple(f.name for f in fields(StepFields) if f.name != "rows_per_step")
TRAINER_TAGGED = tuple(f.name for f in fields(EagerGRPOFields) if f.name.startswith(PREFIX) and f.name not in
                       {*ROLLOUT_FIELDS, "eager_max_sequences", "eager_gold_column", "eager_advanced"})


_WARNED: set[tuple[str, str]] = set()  # (setting, reason) already warned about in this process


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
