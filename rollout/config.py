"""Parameters of a rollout run, checked once, with errors that say what to change."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

METHODS = ("parallel", "eager_init", "eager_adapt", "eager")
FORK_MODES = ("top2", "alternative", "resample", "recursion")
ENTROPY_SOURCES = ("topk", "full_vocab")
ON_SOLVED = ("finish", "abort")
STOP_RULES = ("solved", "signal")


@dataclass
class EagerConfig:
    """How to generate rollouts for a batch of prompts (see shared spec EAGER.md)."""

    method: str = field(default="eager_init", metadata={"help": f"One of {METHODS}."})
    max_sequences: int = field(default=8, metadata={"help": "Budget M: max sequences (leaves) per prompt."})
    entropy_threshold: float = field(
        default=2.0, metadata={"help": "theta, in nats on the T=1 scale of the top-k distribution."}
    )
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature; must be > 0."})
    max_new_tokens: int = field(default=256, metadata={"help": "Cap on completion tokens of every sequence."})
    fork_mode: str = field(
        default="resample",
        metadata={
            "help": "top2 (paper: parent takes rank 1, child rank 2; off-policy), alternative (parent keeps its "
            "sample, child takes the best other token), resample (child re-samples the position: every "
            "sequence stays an exact policy sample), recursion (EGLR: parent keeps its sample, child takes the "
            "most likely other token of the distribution recursed through the top recursion_span layers; "
            "transformers engine only; off-policy like top2: the child's token is not a policy sample, and its "
            "reported log-prob is the policy's)."
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
            "help": "topk (paper, what the thresholds were tuned on) or full_vocab (opt-in; thresholds are not "
            "comparable, and on vLLM it asks for every token's log-prob, which is slow for large vocabularies)."
        },
    )
    p99_floor: bool = field(
        default=True, metadata={"help": "Raise the threshold to the P99 of the prompt's entropies so far."}
    )
    branch_patience: int = field(
        default=1000, metadata={"help": "Stop branching a prompt after this many steps without a fork."}
    )
    think_end_token_id: int | None = field(
        default=None, metadata={"help": "Token id of </think>: no fork after it. None for models that don't think."}
    )
    stop_token_ids: list[int] = field(
        default_factory=list, metadata={"help": "Extra token ids that end a sequence (besides the model's EOS)."}
    )
    seed: int = field(default=0, metadata={"help": "Base seed; each request gets a seed derived from it."})
    # Budget re-spending (eager, eager_adapt).
    eager_extra_cap: int = field(default=1, metadata={"help": "eager: extra budget per unsolved prompt, in units of M."})
    adapt_extra_cap: int = field(default=3, metadata={"help": "eager_adapt: extra budget per hard prompt, in units of M."})
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
    solved_min_correct: int = field(default=1, metadata={"help": "A prompt is solved with at least this many correct."})
    solved_min_incorrect: int = field(
        default=0, metadata={"help": "...and at least this many wrong (1 asks for a mix: a GRPO learning signal)."}
    )
    stop_rule: str = field(
        default="solved",
        metadata={
            "help": "When a label-aware prompt stops taking budget. solved: once it has solved_min_correct right "
            "answers and solved_min_incorrect wrong ones (the paper: the first right answer). signal (for GRPO): once "
            "its group holds both a right and a wrong answer (a learning signal secured), or signal_easy_k right "
            "answers and no wrong one (too easy: more samples would only confirm it)."
        },
    )
    signal_easy_k: int = field(
        default=3, metadata={"help": "stop_rule=signal: right answers without a wrong one that mark a prompt too easy."}
    )
    on_solved: str = field(
        default="finish",
        metadata={"help": "What a solved prompt's running sequences do: finish (no more forks) or abort (dropped)."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"EagerConfig.{name}={getattr(self, name)!r}: {why}")

        if self.method not in METHODS:
            raise bad("method", f"choose one of {METHODS}.")
        if self.fork_mode not in FORK_MODES:
            raise bad("fork_mode", f"choose one of {FORK_MODES}.")
        if self.fork_mode == "recursion" and self.recursion_span < 1:
            raise bad("recursion_span", "fork_mode='recursion' re-applies the top L >= 1 layers; set recursion_span.")
        if self.recursion_k_max < 1:
            raise bad("recursion_k_max", "at least one re-application.")
        if not 0 <= self.recursion_tol < 1:
            raise bad("recursion_tol", "a total-variation distance in [0, 1).")
        if self.entropy_source not in ENTROPY_SOURCES:
            raise bad("entropy_source", f"choose one of {ENTROPY_SOURCES}.")
        if self.stop_rule not in STOP_RULES:
            raise bad("stop_rule", f"choose one of {STOP_RULES}.")
        if self.signal_easy_k < 1:
            raise bad("signal_easy_k", "a prompt needs at least one right answer to count as too easy.")
        if self.on_solved not in ON_SOLVED:
            raise bad("on_solved", f"choose one of {ON_SOLVED}.")
        if not self.temperature > 0:
            raise bad("temperature", "EAGer needs sampling; set a temperature > 0 (the paper uses 0.6).")
        if self.max_sequences < 1:
            raise bad("max_sequences", "the budget M must be at least 1.")
        if self.entropy_threshold < 0:
            raise bad("entropy_threshold", "entropies are >= 0 nats; use a threshold >= 0 (the paper uses about 2.0).")
        if self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be at least 1.")
        if not 1 <= self.top_logprobs <= 20 and self.entropy_source == "topk":
            raise bad("top_logprobs", "vLLM returns at most 20 log-probs by default; use 1..20.")
        if self.branch_patience < 1:
            raise bad("branch_patience", "must be at least 1 step.")
        for name in ("eager_extra_cap", "adapt_extra_cap", "max_retries", "solved_min_incorrect"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0.")
        if self.solved_min_correct < 1:
            raise bad("solved_min_correct", "a prompt needs at least one correct answer to count as solved.")
        if self.online and self.method not in ("eager", "eager_adapt"):
            raise bad("online", "only the methods that spend saved budget (eager, eager_adapt) run online.")
        if self.pass_roots < 1:
            raise bad("pass_roots", "an extra pass starts at least one root.")
        if not math.isfinite(self.pass_start_limit) or self.pass_start_limit < 0:
            raise bad("pass_start_limit", "must be >= 0 (a fraction of max_new_tokens; 0.5 is the default).")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
