"""Every rollout setting, declared once, checked once, with errors that say what to change.

`EagerConfig` is the source of the rollout's settings. The trainer (`trainers.EagerGRPOConfig`:
the user's settings, `USER_SETTINGS`, as `eager_<name>` fields, the rest as keys of its
`eager_advanced` mapping) and `eager-eval` (as `--<name>` flags) generate their fields from it
with `surface_fields`: the same type, default and help. A surface that sets a field from
something else of its own (TRL's `temperature`, the tokenizer's EOS ids) says so in its own
`DERIVED` table. Validation runs here only; `SettingError` carries the field's name so that
each surface can report it as its user typed it (`rename`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, get_type_hints

METHODS = ("parallel", "eager_init", "eager_adapt", "eager")
FORK_MODES = ("top2", "alternative", "resample", "recursion")
ENTROPY_SOURCES = ("topk", "full_vocab")
ON_SOLVED = ("finish", "abort")
STOP_RULES = ("solved", "signal")
ALLOCATIONS = ("passes", "screen")
REFILLS = ("roots", "forks")
REFILL_AT = ("entropy", "surprise")

# The paper's test-time settings (M = 32, the paper's top2 fork, theta 2.5 for label-aware EAGer) and
# the seed repository's seed: eager-eval's defaults, where training keeps EagerConfig's own.
TEST_TIME_DEFAULTS: dict[str, Any] = {"max_sequences": 32, "entropy_threshold": 2.5, "fork_mode": "top2", "seed": 55}
# The trainer's: label-aware EAGer spends a step's sequences where the gradient is (rollout.screening),
# screening every prompt with 4 roots (the best learning signal per second the gradient-agreement
# benchmark found among 2 and 4 roots, with and without fills; docs/RESULTS.md).
TRAINING_DEFAULTS: dict[str, Any] = {"allocation": "screen", "screen_roots": 4}


# The settings a user sets (the trainer's fields, eager-eval's main flags); every other is an experiment setting,
# kept in a surface's advanced group (the trainer's `eager_advanced` mapping, eager-eval's advanced flags).
USER_SETTINGS = ("method", "max_sequences", "entropy_threshold", "temperature", "max_new_tokens", "think_end_token_id",
                 "stop_token_ids", "seed", "screen_roots", "fill_size", "oversample")


class SettingError(ValueError):
    """A setting's value cannot work; `name` is the EagerConfig field, `why` says what to change."""

    def __init__(self, name: str, value: Any, why: str, label: str | None = None) -> None:
        self.name, self.value, self.why = name, value, why
        super().__init__(f"{label or 'EagerConfig.' + name}={value!r}: {why}")

    def rename(self, label: str) -> SettingError:
        """The same error, naming the field as a surface spells it (`eager_entropy_threshold`, `--seed`)."""
        return SettingError(self.name, self.value, self.why, label)


@dataclass
class EagerConfig:
    """How to generate rollouts for a batch of prompts."""

    method: str = field(default="eager_init", metadata={"help": f"One of {METHODS}.", "choices": METHODS})
    max_sequences: int = field(default=8, metadata={"help": "Budget M: max sequences (leaves) per prompt."})
    entropy_threshold: float = field(
        default=2.0,
        metadata={"help": "Fork where the top-k token entropy (nats, on the T=1 scale) exceeds this; the paper uses "
                  "about 2.0 for eager_init and 2.2-2.5 for eager. Lower means more forks."},
    )
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature; must be > 0 (paper: 0.6)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Cap on completion tokens of every sequence."})
    fork_mode: str = field(
        default="resample",
        metadata={
            "help": "Token choice at a fork. resample (the default for RL): the child re-samples the position, so "
            "every sequence is an exact sample of the policy. alternative: the parent keeps its sample, the child "
            "takes the best other token. top2 (the paper's): parent forced to rank 1, child to rank 2. recursion "
            "(EGLR, transformers engine only): the parent keeps its sample, the child takes the best other token of "
            "the distribution recursed through the top recursion_span layers. alternative, top2 and recursion make "
            "the forced tokens off-policy (their reported log-probs are the policy's).",
            "choices": FORK_MODES,
        },
    )
    recursion_span: int = field(
        default=0, metadata={"help": "fork_mode=recursion: L, the top decoder layers re-applied at a fork (>= 1)."}
    )
    recursion_k_max: int = field(default=4, metadata={"help": "fork_mode=recursion: most re-applications per fork."})
    recursion_tol: float = field(
        default=0.02,
        metadata={"help": "fork_mode=recursion: stop re-applying once two iterations' distributions are within this "
                  "total-variation distance."},
    )
    top_logprobs: int = field(default=20, metadata={"help": "k of the top-k entropy (the paper uses 20)."})
    entropy_source: str = field(
        default="topk",
        metadata={
            "help": "topk (the paper's, what the thresholds were tuned on) or full_vocab (opt-in; thresholds are not "
            "comparable, and on vLLM it asks for every token's log-prob, which is slow for large vocabularies).",
            "choices": ENTROPY_SOURCES,
        },
    )
    p99_floor: bool = field(
        default=True, metadata={"help": "Raise the threshold to the P99 of the prompt's entropies so far."}
    )
    branch_patience: int = field(
        default=1000,
        metadata={"help": "Stop branching a prompt after this many generation steps without a fork (paper: 1000)."},
    )
    think_end_token_id: int | None = field(
        default=None, metadata={"help": "Token id of </think>: no fork after it. None for models that don't think."}
    )
    stop_token_ids: list[int] = field(
        default_factory=list, metadata={"help": "Extra token ids that end a sequence (besides the model's EOS)."}
    )
    seed: int = field(default=0, metadata={"help": "Base seed; each request gets a seed derived from it."})
    # When a prompt gets more budget and when it stops (rollout.schedule).
    extra_cap: int = field(
        default=1, metadata={"help": "eager: an unsolved prompt may take up to this many extra budgets M."}
    )
    adapt_extra_cap: int = field(
        default=3, metadata={"help": "eager_adapt: a hard prompt (one that used its whole budget) may take up to this "
                             "many extra budgets M."}
    )
    max_retries: int = field(default=16, metadata={"help": "Upper bound on extra passes per prompt."})
    online: bool = field(
        default=False,
        metadata={
            "help": "eager / eager_adapt: one call, no second phase. A prompt gets an extra pass as soon as it shows "
            "it needs one (eager: a verdict that leaves it unsolved, sequences being verified as they finish; "
            "eager_adapt: it used its whole budget), while its first pass still runs, with budget that closed "
            "prompts freed (training). False: the paper's two phases (test time)."
        },
    )
    pass_start_limit: float = field(
        default=0.5,
        metadata={
            "help": "online: a new pass (an extra root) starts only up to engine step pass_start_limit x "
            "max_new_tokens of the call (that step included), so the call's critical path stays within (1 + "
            "pass_start_limit) passes of max_new_tokens; later, extra budget goes only to forks of running "
            "sequences (they end with their parents). 0: no extra roots, forks only."
        },
    )
    pass_roots: int = field(
        default=1,
        metadata={"help": "online: root sequences an extra pass starts with (budget allowing); the paper's passes "
                  "start with one."},
    )
    solved_min_correct: int = field(
        default=1, metadata={"help": "eager: a prompt is solved with at least this many correct sequences (paper: 1)."}
    )
    solved_min_incorrect: int = field(
        default=0,
        metadata={"help": "eager: ...and at least this many wrong ones. 1 asks for a mix of right and wrong (a GRPO "
                  "learning signal) before a prompt gives up its remaining budget."},
    )
    stop_rule: str = field(
        default="solved",
        metadata={
            "help": "eager: when a prompt stops taking budget. solved: once it has solved_min_correct right answers "
            "and solved_min_incorrect wrong ones (the paper: the first right answer). signal (for GRPO): once its "
            "group holds both a right and a wrong answer (a learning signal secured), or signal_easy_k right answers "
            "and no wrong one (too easy); solved_min_* play no part.",
            "choices": STOP_RULES,
        },
    )
    signal_easy_k: int = field(
        default=3, metadata={"help": "stop_rule=signal: right answers without a wrong one that mark a prompt too easy."}
    )
    on_solved: str = field(
        default="finish",
        metadata={"help": "eager: what a stopped prompt's running sequences do: finish (no more forks) or abort (cut, "
                  "their slots freed for other prompts).", "choices": ON_SOLVED},
    )

    allocation: str = field(
        default="passes",
        metadata={
            "help": "Label-aware eager: how a call spends its sequences (rollout.schedule); other methods ignore it. "
            "passes (test time; online in training): the paper's extra "
            "passes for unsolved prompts, with the stop rule. screen (training): every prompt starts screen_roots "
            "roots; a prompt whose screening answers are all right stops (too easy), a mixed one is filled to "
            "fill_size sequences, an all-wrong one gets probe_roots more; slots go to prompts in batch order, never "
            "by which finished first (rollout.screening).",
            "choices": ALLOCATIONS,
        },
    )
    fill_start_limit: float = field(
        default=1.5,
        metadata={"help": "allocation=screen: fills and probes start only up to engine step fill_start_limit x "
                  "max_new_tokens of the call, so a step's generation stays within (1 + this) passes."},
    )
    screen_roots: int = field(
        default=2,
        metadata={"help": "allocation=screen: independent roots every prompt starts with (its screening; at most "
                  "max_sequences)."},
    )
    screen_forks: int = field(
        default=0,
        metadata={"help": "allocation=screen: forks a prompt's screening may add where the entropy is high (above "
                  "entropy_threshold), so uncertain prompts are screened wider; the group is then a tree (use the "
                  "trainer's eager_advanced credit: segments)."},
    )
    fill_size: int = field(
        default=0, metadata={"help": "allocation=screen: sequences a mixed prompt is filled to (0: max_sequences)."}
    )
    probe_roots: int = field(
        default=0,
        metadata={"help": "allocation=screen: more sequences (roots, or forks with probe_with=forks) for a prompt whose "
                  "screening answers are all wrong, once every prompt's screening is decided; a right one makes it "
                  "mixed."},
    )
    fill_with: str = field(
        default="roots",
        metadata={"help": "allocation=screen: what fills a mixed prompt: roots (new independent samples) or forks (its "
                  "finished samples, each continued from its most uncertain token, that token drawn again; the group "
                  "becomes a tree).", "choices": REFILLS},
    )
    probe_with: str = field(
        default="roots",
        metadata={"help": "allocation=screen: what probes an all-wrong prompt: roots, or forks of its wrong samples at "
                  "their most uncertain token, that token drawn again (where a wrong answer was decided).",
                  "choices": REFILLS},
    )
    refill_at: str = field(
        default="entropy",
        metadata={"help": "fill_with / probe_with = forks: where a finished sample is continued from: entropy (its most "
                  "uncertain token) or surprise (the token it drew with the lowest probability); the token is drawn "
                  "again there (rollout.policy.decisive_position).", "choices": REFILL_AT},
    )
    oversample: float = field(
        default=1.0,
        metadata={"help": "The call's pool holds max_sequences x prompts / oversample sequences: hand a step f times "
                  "the prompts it trains on, and EAGer spends only the rows of 1/f of them, on the prompts that "
                  "promise a learning signal (allocation=screen). 1: every prompt's full budget."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `SettingError` for the first setting that cannot work."""
        for name, why in _problems(self):
            raise SettingError(name, getattr(self, name), why)

    @property
    def screen_size(self) -> int:
        """Sequences a prompt's screening may hold: its roots (at most max_sequences) and its forks."""
        return min(self.screen_roots, self.max_sequences) + self.screen_forks

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def pool_size(sequences: int, oversample: float) -> int:
    """The sequences a call may spend when its prompts' budgets sum to `sequences` and it was handed `oversample`
    times the prompts it trains on: 1/oversample of them. A float quotient just under a whole number (33 / 1.1 =
    29.999...) counts as that number, not one less."""
    return int(sequences / oversample + 1e-9)


def _choice_problems(c: EagerConfig) -> list[tuple[str, str]]:
    out = []
    for f in fields(c):
        allowed = f.metadata.get("choices")
        if allowed and getattr(c, f.name) not in allowed:
            out.append((f.name, f"choose one of {allowed}."))
    return out


def _problems(c: EagerConfig) -> list[tuple[str, str]]:
    """(field, what to change) for every setting that cannot work, in field order."""
    out = _choice_problems(c)
    checks = [
        ("max_sequences", c.max_sequences >= 1, "the budget M must be at least 1."),
        ("entropy_threshold", c.entropy_threshold >= 0,
         "entropies are >= 0 nats; use a threshold >= 0 (the paper uses about 2.0)."),
        ("temperature", c.temperature > 0, "EAGer needs sampling; set a temperature > 0 (the paper uses 0.6)."),
        ("max_new_tokens", c.max_new_tokens >= 1, "must be at least 1."),
        ("recursion_span", c.fork_mode != "recursion" or c.recursion_span >= 1,
         "fork_mode='recursion' re-applies the top L >= 1 layers; set recursion_span."),
        ("recursion_k_max", c.recursion_k_max >= 1, "at least one re-application."),
        ("recursion_tol", 0 <= c.recursion_tol < 1, "a total-variation distance in [0, 1)."),
        ("top_logprobs", c.entropy_source != "topk" or 1 <= c.top_logprobs <= 20,
         "vLLM returns at most 20 log-probs by default; use 1..20."),
        ("branch_patience", c.branch_patience >= 1, "must be at least 1 step."),
        ("extra_cap", c.extra_cap >= 0, "must be >= 0."),
        ("adapt_extra_cap", c.adapt_extra_cap >= 0, "must be >= 0."),
        ("max_retries", c.max_retries >= 0, "must be >= 0."),
        ("online", not c.online or c.method in ("eager", "eager_adapt"),
         "only the methods that spend saved budget (eager, eager_adapt) run online."),
        ("pass_start_limit", math.isfinite(c.pass_start_limit) and c.pass_start_limit >= 0,
         "must be >= 0 (a fraction of max_new_tokens; 0.5 is the default)."),
        ("pass_roots", c.pass_roots >= 1, "an extra pass starts at least one root."),
        ("solved_min_correct", c.solved_min_correct >= 1,
         "a prompt needs at least one correct answer to count as solved."),
        ("solved_min_incorrect", c.solved_min_incorrect >= 0, "must be >= 0."),
        ("signal_easy_k", c.signal_easy_k >= 1, "a prompt needs at least one right answer to count as too easy."),
        ("allocation", c.allocation != "screen" or c.method != "eager" or c.online,
         "screen runs in one call: label-aware eager needs online=True with it (training), or allocation='passes'."),
        ("on_solved", c.allocation != "screen" or c.method != "eager" or c.on_solved == "finish",
         "allocation=screen decides groups from verdicts; cutting running screening sequences would keep whichever "
         "finished first. Use on_solved='finish', or allocation='passes'."),
        ("fill_start_limit", math.isfinite(c.fill_start_limit) and c.fill_start_limit >= 0,
         "must be >= 0 (a fraction of max_new_tokens)."),
        ("screen_roots", c.screen_roots >= 1, "at least 1 (a prompt screens min(screen_roots, max_sequences))."),
        ("fill_size", c.fill_size >= 0 and (c.allocation != "screen" or c.fill_size <= c.max_sequences),
         "0 (max_sequences) or up to max_sequences."),
        ("probe_roots", c.probe_roots >= 0, "must be >= 0."),
        ("oversample", math.isfinite(c.oversample) and c.oversample >= 1, "must be >= 1 (1: no oversampling)."),
        ("screen_forks", c.screen_forks >= 0, "must be >= 0."),
        # (an oversample below 1 or not finite is named by the check above; pool_size would fail on it)
        ("oversample", c.allocation != "screen" or not (math.isfinite(c.oversample) and c.oversample >= 1)
         or pool_size(c.max_sequences, c.oversample) >= c.screen_size,
         "the pool must screen every prompt: max_sequences / oversample >= min(screen_roots, max_sequences) + "
         "screen_forks."),
        ("oversample", c.oversample == 1 or (c.allocation == "screen" and c.method == "eager"),
         "only label-aware eager's screen allocation spends a pool smaller than every prompt's budget."),
    ]
    return out + [(name, why) for name, ok, why in checks if not ok]


def surface_fields(
    prefix: str = "", skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None, advanced: bool | None = None
) -> list[tuple[str, Any, dataclasses.Field]]:
    """`EagerConfig`'s fields for another dataclass (`dataclasses.make_dataclass`): `prefix + name`, the same
    type, help and choices, and the same default unless `defaults` names another. Fields in `skip` are left out
    (the surface derives them from settings of its own); `advanced` True or False keeps only the experiment
    settings or only the user's (`USER_SETTINGS`)."""
    hints = get_type_hints(EagerConfig)
    out = []
    for f in fields(EagerConfig):
        if f.name in skip or (advanced is not None and advanced == (f.name in USER_SETTINGS)):
            continue
        if defaults and f.name in defaults:
            new = field(default=defaults[f.name], metadata=dict(f.metadata))
        elif f.default_factory is not MISSING:
            new = field(default_factory=f.default_factory, metadata=dict(f.metadata))
        else:
            new = field(default=f.default, metadata=dict(f.metadata))
        out.append((prefix + f.name, hints[f.name], new))
    return out


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (its factory's product for a mutable one)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def non_default(config: EagerConfig, skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> dict:
    """The settings of `config` that differ from their defaults (EagerConfig's, or a surface's), in field order."""
    base = {f.name: field_default(f) for f in fields(config)} | (defaults or {})
    return {f.name: getattr(config, f.name) for f in fields(config)
            if f.name not in skip and getattr(config, f.name) != base[f.name]}


# Where each setting that does not always act does: `inert_settings` reads these, so a setting that does
# nothing under the chosen method and allocation is named with the reason instead of silently ignored.
BRANCHING = ("entropy_threshold", "fork_mode", "p99_floor", "branch_patience")
PASSES = {"extra_cap": ("eager",), "adapt_extra_cap": ("eager_adapt",), "max_retries": ("eager", "eager_adapt"),
          "pass_start_limit": ("eager", "eager_adapt"), "pass_roots": ("eager", "eager_adapt"),
          "solved_min_correct": ("eager",), "solved_min_incorrect": ("eager",), "stop_rule": ("eager",),
          "signal_easy_k": ("eager",), "on_solved": ("eager",)}
SCREEN = ("fill_start_limit", "screen_roots", "screen_forks", "fill_size", "probe_roots", "fill_with", "probe_with")


def inert_settings(c: EagerConfig, names: Iterable[str]) -> dict[str, str]:
    """Of the settings `names` (those a user set), the ones that do nothing under `c`'s method and allocation,
    each with the reason."""
    screen = c.method == "eager" and c.allocation == "screen"
    why: dict[str, str] = {}
    for name in names:
        if name in BRANCHING and c.method == "parallel":
            why[name] = "parallel never forks"
        elif name in BRANCHING and screen and c.screen_forks == 0:
            why[name] = "the screen allocation forks at high entropy only with screen_forks > 0"
        elif name in PASSES and (c.method not in PASSES[name] or screen):
            why[name] = f"it acts in the passes allocation of {' and '.join(PASSES[name])} only"
        elif name == "pass_start_limit" and not c.online:
            why[name] = "it acts in online runs only"
        elif name in (*SCREEN, "refill_at") and not screen:
            why[name] = "it acts in the screen allocation (label-aware eager, allocation=screen) only"
        elif name == "refill_at" and "forks" not in (c.fill_with, c.probe_with):
            why[name] = "it places refill forks, which run only with fill_with or probe_with = forks"
        elif name == "allocation" and c.method != "eager":
            why[name] = "only label-aware eager chooses an allocation"
    return why
