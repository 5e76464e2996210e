"""The trainer's experiment settings: one mapping, `eager_advanced`, and where every old key went.

`EagerGRPOConfig` shows the settings a user sets: the generator, the budget M, the fork threshold, the
think-end token, the gold column, the answer kind, the screening roots and fill size, and the step's
(dynamic sampling, oversampling, the loss normaliser). Every other setting is an experiment setting, kept
in one mapping so that the config's surface stays small:

    eager_advanced: {allocation: passes, baseline: verdicts}

Its keys are the rollout's experiment settings (their `rollout.EagerConfig` names: `fork_mode`,
`allocation`, `fill_with`, ...) and the trainer's own (`Advanced`: the baseline and credit of trees, and
whether unused rows leave the loss batch). `python -m trainers.advanced` lists every key with its default
and help. Keys written before the move (`eager_fill_with: forks`, `eager_oversample: 2`) still load:
`upgrade` rewrites them, with a message that says where each went.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from rollout.config import TRAINING_DEFAULTS, USER_SETTINGS, EagerConfig, field_default

PREFIX = "eager_"
# The rollout settings the trainer takes from elsewhere: the trainer field each comes from (named in errors
# about it), and how.
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
ROLLOUT_KEYS = tuple(f.name for f in fields(EagerConfig) if f.name not in USER_SETTINGS and f.name not in DERIVED)
BASELINES = ("group", "verdicts")
CREDITS = ("rows", "segments")


@dataclass(frozen=True)
class Advanced:
    """`eager_advanced` resolved: the trainer's own experiment settings, and the rollout's that were set."""

    baseline: str = field(
        default="group",
        metadata={
            "help": "eager: the advantage baseline. group: the group's mean reward (GRPO; biased when a stop rule "
            "shapes the group). verdicts: each row's pass rate estimated from the verdicts known when it started "
            "(unbiased under any stop rule; assumes a 0/1 accuracy reward).",
            "choices": BASELINES,
        },
    )
    credit: str = field(
        default="rows",
        metadata={
            "help": "How a tree-shaped group's tokens are credited (trainers/tree_credit.py). rows: GRPO's layout, "
            "each row its own advantage over all its tokens; a forked child repeats its parent's prefix, so a "
            "prefix shared by d leaves counts d times (biased toward prefixes that fork). segments: every token "
            "once, with advantage w_t (Q_t - b): Q_t the branch-averaged outcome of the leaves below it, w_t 1/2 per "
            "fork above it, b the row's verdict baseline (needs baseline=verdicts); unbiased with resample forks. "
            "Without forks both are the same.",
            "choices": CREDITS,
        },
    )
    drop_unused_rows: bool = field(
        default=True,
        metadata={
            "help": "Leave a step's unused rows (an EAGer prompt's empty rows, or parallel's groups beyond the step's "
            "rows under oversample) out of the loss batch, so the loss step's forward and backward passes cost what "
            "the step trains on. The loss is the same. Applies with a loss normalised by the batch's tokens (dapo, "
            "cispo, vespo) on text; otherwise the rows stay, masked. With several processes each keeps as many rows "
            "as the busiest one (padded with rows that add nothing to the loss); with steps_per_generation > 1 the "
            "rows are split over the accumulation slices unevenly, by at most a row. false only to measure what "
            "dropping saves."
        },
    )
    given: dict[str, Any] = field(default_factory=dict, metadata={"help": "Every key that was set, typed."})

    @property
    def rollout(self) -> dict[str, Any]:
        """The rollout's keys that were set (`rollout.EagerConfig` names)."""
        return {key: value for key, value in self.given.items() if key in ROLLOUT_KEYS}


TRAINER_KEYS = tuple(f.name for f in fields(Advanced) if f.name != "given")
KEYS = ROLLOUT_KEYS + TRAINER_KEYS
_HINTS = {**get_type_hints(EagerConfig), **get_type_hints(Advanced)}
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")  # as transformers' string_to_bool reads a flag
_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number"}
# Keys of the trainer before `eager_advanced`: old key -> (the field it is now, the key of eager_advanced or None).
OLD_KEYS: dict[str, tuple[str, str | None]] = {
    "eager_oversample": ("oversample", None), "eager_drop_flat_rows": ("dynamic_sampling", None),
    "eager_loss_normalizer": ("loss_normalizer", None), "eager_rows_per_step": ("rows_per_step", None),
    "eager_drop_unused_rows": ("eager_advanced", "drop_unused_rows"),
    "drop_unused_rows": ("eager_advanced", "drop_unused_rows"),
    **{PREFIX + key: ("eager_advanced", key) for key in ROLLOUT_KEYS + ("baseline", "credit")},
}


def parse(mapping: dict | str | None) -> dict[str, Any]:
    """`eager_advanced` as a dict: a mapping, or its text (JSON or YAML, as a command line gives it)."""
    if mapping is None:
        return {}
    if isinstance(mapping, str):
        import yaml

        try:
            mapping = json.loads(mapping)  # first: YAML reads JSON's 1e-07 as text
        except json.JSONDecodeError:
            mapping = yaml.safe_load(mapping) if mapping.strip() else {}
    if not isinstance(mapping, dict):
        raise ValueError(f"eager_advanced={mapping!r}: give a mapping of experiment settings, e.g. "
                         "eager_advanced: {allocation: passes} (on a command line: --eager_advanced '{allocation: "
                         "passes}'); python -m trainers.advanced lists the keys.")
    return dict(mapping)


def resolve(mapping: dict | str | None) -> Advanced:
    """The typed settings of `eager_advanced`: each value as its setting's type and among its choices; an unknown
    key, or a value that is neither, is refused by name."""
    values = parse(mapping)
    for key, value in values.items():
        if key in KEYS:
            continue
        label = (DERIVED[key][0] if key in DERIVED else PREFIX + key) if key in USER_SETTINGS else ""
        if label:
            raise ValueError(f"eager_advanced.{key}={value!r}: {key} is a setting of its own; write {label}: "
                             f"{json.dumps(value)} instead.")
        if key in DERIVED:
            raise ValueError(f"eager_advanced.{key}={value!r}: the trainer sets {key} ({DERIVED[key][1]}); remove it.")
        raise ValueError(f"eager_advanced.{key}: no such setting. The keys: {', '.join(KEYS)} (python -m "
                         "trainers.advanced says what each does).")
    given = {key: _typed(key, value) for key, value in values.items()}
    return Advanced(**{k: given[k] for k in TRAINER_KEYS if k in given}, given=given)


def _typed(key: str, value: Any) -> Any:
    """`value` as the type of setting `key` (YAML reads `1e-3` as text, a flag gives `0` for false), among its
    choices, or a ValueError that names the setting."""
    kind = _HINTS[key]
    try:
        if kind is bool:
            text = str(value).lower()
            if not isinstance(value, bool) and text not in (*_TRUE, *_FALSE):
                raise ValueError
            out = value if isinstance(value, bool) else text in _TRUE
        elif kind in (int, float):
            out = kind(value)
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and value != out):
                raise ValueError
        else:
            out = value
    except (TypeError, ValueError):
        raise ValueError(f"eager_advanced.{key}={value!r}: give {_KIND_NAMES[kind]}.") from None
    allowed = _field(key).metadata.get("choices")
    if allowed and out not in allowed:
        raise ValueError(f"eager_advanced.{key}={value!r}: choose one of {tuple(allowed)}.")
    return out


def upgrade(settings: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """`settings` (config fields) with every old key (`OLD_KEYS`) moved to where it is now: a FutureWarning per key
    names the new spelling; an old key and its new place set to different values are refused."""
    if not any(key in OLD_KEYS for key in settings):
        return settings
    moved = [key for key in settings if key in OLD_KEYS and settings[key] is not None]  # (None: the old unset)
    out = {k: v for k, v in settings.items() if k not in OLD_KEYS}  # (old keys set to None are dropped too)
    advanced = parse(out.get("eager_advanced"))
    for old in moved:
        value, (new, key) = settings[old], OLD_KEYS[old]
        place, spelling = (out, new) if key is None else (advanced, key)
        if spelling in place and place[spelling] != value:
            where = new if key is None else f"eager_advanced.{key}"
            raise ValueError(f"{old}={value!r} and {where}={place[spelling]!r}: {old} is the old name of {where}; "
                             f"set {where} only.")
        place[spelling] = value
        if warn:
            now = f"{new}: {json.dumps(value)}" if key is None else f"eager_advanced: {{{key}: {json.dumps(value)}}}"
            warnings.warn(f"{old} is deprecated: write {now}" + ("" if key is None else " (an experiment setting)")
                          + ".", FutureWarning, stacklevel=3)
    if advanced:
        out["eager_advanced"] = advanced
    return out


def overlay(settings: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`settings` with `over`'s on top, their `eager_advanced` mappings merged key by key (`over`'s keys win)."""
    advanced = {**parse(settings.get("eager_advanced")), **parse(over.get("eager_advanced"))}
    return {**settings, **over} | {"eager_advanced": advanced or None}


def _field(key: str) -> dataclasses.Field:
    return EagerConfig.__dataclass_fields__.get(key) or Advanced.__dataclass_fields__[key]


def default(key: str) -> Any:
    """A key's value when eager_advanced does not set it (the trainer's defaults, `TRAINING_DEFAULTS`, first)."""
    f = _field(key)
    return TRAINING_DEFAULTS.get(key, field_default(f))


def canonical(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` as they resolve, whatever their spelling: old keys moved (silently) and keys of eager_advanced at
    their default left out, so that respelling a recipe does not change what it describes."""
    out = dict(upgrade(settings, warn=False))
    advanced = {key: value for key, value in parse(out.pop("eager_advanced", None)).items()
                if key not in KEYS or value != default(key)}
    return out | ({"eager_advanced": advanced} if advanced else {})


def describe() -> str:
    """Every key of `eager_advanced`, its default under the trainer and its help."""
    return "\n".join(f"{key} (default {default(key)!r}): {_field(key).metadata['help']}" for key in KEYS)


if __name__ == "__main__":
    print(describe())
