"""The data that crosses module borders: sequences, branch events, trees and batches.

Everything here is token ids and floats; nothing knows about text, TRL or an engine.
A prompt's tree is stored as a flat list of leaves (sequences): each sequence holds its
full token list, and `n_inherited` says how many leading tokens it shares with its parent.
That keeps every sequence a complete completion (what a trainer needs) while the
accounting still counts a shared prefix once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INHERITED = -1.0  # entropy marker for a token copied from the parent at a fork (never a real entropy)


@dataclass
class Sequence:
    """One leaf of a prompt's tree: a complete completion.

    `tokens`, `logprobs` and `entropies` are aligned, one entry per completion token.
    `logprobs[t]` is the sampling log-prob of `tokens[t]` (after temperature when the engine
    reports processed log-probs, which is what TRL's importance-sampling correction wants).
    `entropies[t]` is the top-k entropy at position t on the T = 1 scale, or INHERITED for
    positions copied from the parent.
    """

    index: int  # position in its tree's `sequences`
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    parent: int | None = None  # index of the sequence it was forked from (None for a root)
    n_inherited: int = 0  # leading tokens copied from the parent (the shared prefix)
    forced: list[int] = field(default_factory=list)  # positions whose token was chosen, not sampled (top2/alternative)
    retry: int = 0  # 0 for the first pass; k for a root started by the k-th retry of its prompt
    finished: bool = False
    finish_reason: str | None = None  # "stop" (end token), "length" (cap), "abort" (cut when the prompt was solved)
    score: float | None = None  # verifier verdict, when a verifier ran during generation
    # (right, wrong) verdicts of its prompt known when this sequence started: what decided that it runs,
    # and so all a baseline may use without biasing its own advantage (trainers' eager_baseline).
    verdicts_at_start: tuple[int, int] = (0, 0)

    @property
    def n_generated(self) -> int:
        """Tokens this sequence added beyond its shared prefix (what it cost to produce)."""
        return len(self.tokens) - self.n_inherited


@dataclass(frozen=True)
class BranchEvent:
    """A fork: sequence `seq` at completion position `position` spawned sequence `new_seq`."""

    seq: int
    step: int  # the prompt's generation step (engine steps in which the prompt was active)
    position: int  # completion position of the fork token (== len(shared prefix))
    entropy: float
    threshold: float  # the effective threshold at that moment (max(theta, P99 floor))
    original_token: int  # the token the parent holds at `position` after the fork
    branch_token: int | None  # the child's token at `position` (None for resample: the engine drew it later)
    new_seq: int
    recursion_span: int | None = None  # fork_mode="recursion": the span L whose recursed distribution gave branch_token


@dataclass
class PromptTree:
    """Every sequence generated for one prompt, and how they branched."""

    prompt_index: int
    prompt_ids: list[int]
    budget: int  # M: sequences this prompt may hold in its first pass (leaves, finished included); 0 if skipped
    threshold: float  # the base entropy threshold used for its first pass
    sequences: list[Sequence] = field(default_factory=list)
    branches: list[BranchEvent] = field(default_factory=list)
    retries: int = 0  # extra passes started for this prompt (eager / eager_adapt)
    solved: bool = False  # set by a label-aware run once the solved criterion held

    @property
    def n_sequences(self) -> int:
        return len(self.sequences)

    @property
    def tokens_generated(self) -> int:
        """Each generated token counted once: a shared prefix is not counted again in the child."""
        return sum(s.n_generated for s in self.sequences)

    def full_entropies(self, index: int) -> list[float]:
        """Entropies of sequence `index` with inherited positions filled in from its ancestors."""
        seq = self.sequences[index]
        out = list(seq.entropies)
        if seq.parent is not None and seq.n_inherited:
            out[: seq.n_inherited] = self.full_entropies(seq.parent)[: seq.n_inherited]
        return out

    def kept(self) -> list[Sequence]:
        """Sequences to hand to a trainer or a scorer (aborted ones carry no complete answer)."""
        return [s for s in self.sequences if s.finish_reason != "abort"]


@dataclass
class RolloutResult:
    """The trees of a batch of prompts, with totals for logging and comparison."""

    method: str
    trees: list[PromptTree]
    errors: dict[int, str] = field(default_factory=dict)  # prompt index -> why it was not generated
    wall_time_s: float = 0.0
    engine_steps: int = 0  # engine steps the call took: its critical path (a step costs about the same at any width)
    peak_running: int = 0  # most sequences the engine ran at once

    @property
    def tokens_generated(self) -> int:
        return sum(t.tokens_generated for t in self.trees)

    @property
    def n_sequences(self) -> int:
        return sum(t.n_sequences for t in self.trees)

    @property
    def n_branches(self) -> int:
        return sum(len(t.branches) for t in self.trees)

    def summary(self) -> dict[str, float]:
        n = max(len(self.trees), 1)
        return {
            "tokens_generated": float(self.tokens_generated),
            "sequences": float(self.n_sequences),
            "branches": float(self.n_branches),
            "tokens_per_prompt": self.tokens_generated / n,
            "sequences_per_prompt": self.n_sequences / n,
            "wall_time_s": self.wall_time_s,
            "engine_steps": float(self.engine_steps),
            "peak_running": float(self.peak_running),
        }
