"""The data that crosses module borders: sequences, branch events, trees and batches.

Everything here is token ids and floats; nothing knows about text, TRL or an engine.
A prompt's tree is a flat list of leaves (sequences). Each sequence stores only the tokens it
generated itself; `n_inherited` says how many leading tokens it shares with its parent, and
those stay stored once, in the parent. Reading `tokens` (or `logprobs`) gives the complete
completion, built on demand, which is what a trainer or a verifier needs; the accounting
counts a shared prefix once.

Storage is compact: a live sequence appends to three `array`s (int32 token ids, float32
log-probs and entropies: vLLM's own precision); when it finishes, its values move to its
tree's `Arena`, three arrays end to end, so a finished sequence costs a small object plus
12 bytes a token (`benchmarks.step_memory` measures it).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

INHERITED = -1.0  # entropy marker for a token copied from the parent at a fork (never a real entropy)
_CODES = ("i", "f", "f")  # token ids, log-probs, entropies
TOKENS, LOGPROBS, ENTROPIES = range(3)
_PAIRS: dict[tuple[int, int], tuple[int, int]] = {}


class Arena:
    """A tree's finished sequences' own tokens, log-probs and entropies, end to end in three compact arrays."""

    __slots__ = ("columns",)

    def __init__(self) -> None:
        self.columns = tuple(array(code) for code in _CODES)

    def __len__(self) -> int:
        return len(self.columns[TOKENS])


class Sequence:
    """One leaf of a prompt's tree: a complete completion.

    `tokens`, `logprobs` and `entropies` are aligned, one entry per completion token (lists, built on
    each read: use `n_tokens`, `token_at` and `last_token` in loops). `logprobs[t]` is the sampling
    log-prob of `tokens[t]` (after temperature when the engine reports processed log-probs, which
    is what TRL's importance-sampling correction wants). `entropies[t]` is the top-k entropy at
    position t on the T = 1 scale, or INHERITED for positions copied from the parent.

    A fork passes its parent as `shares`: its first `n_inherited` tokens are then read from the
    parent, not stored again. Without `shares` a sequence stores every value it is given.
    """

    __slots__ = ("index", "parent", "n_inherited", "retry", "finished", "finish_reason", "score", "_forced",
                 "_verdicts", "_source", "_start", "_own", "_arena", "_offset", "_n")

    def __init__(self, index: int, tokens: Iterable[int] = (), logprobs: Iterable[float] = (),
                 entropies: Iterable[float] = (), parent: int | None = None, n_inherited: int = 0,
                 forced: Iterable[int] = (), retry: int = 0, finished: bool = False, finish_reason: str | None = None,
                 score: float | None = None, verdicts_at_start: tuple[int, int] = (0, 0),
                 shares: Sequence | None = None) -> None:
        self.index = index  # position in its tree's `sequences`
        self.parent = parent  # index of the sequence it was forked from (None for a root)
        self.n_inherited = n_inherited  # leading tokens shared with the parent (the shared prefix)
        self.retry = retry  # 0 for the first pass; k for a root started by the k-th retry of its prompt
        self.finished = finished
        self.finish_reason = finish_reason  # "stop" (end token), "length" (cap), "abort" (cut when solved)
        self.score = score  # verifier verdict, when a verifier ran during generation
        self._forced = tuple(forced)
        pair = tuple(verdicts_at_start)
        self._verdicts = _PAIRS.setdefault(pair, pair)  # one object per distinct pair, not one per sequence
        if shares is not None and (any(True for _ in tokens) or not 0 <= n_inherited <= shares.n_tokens):
            raise ValueError(f"a fork shares its parent's first n_inherited={n_inherited} tokens (the parent holds "
                             f"{shares.n_tokens}) and is given none of its own at creation")
        self._source = shares
        self._start = n_inherited if shares is not None else 0  # the first position stored here
        self._own: tuple[array, ...] | None = tuple(array(code, values) for code, values in
                                                    zip(_CODES, (tokens, logprobs, entropies)))
        self._arena: Arena | None = None  # set once the values moved to the tree's arena: then they are
        self._offset = self._n = 0  # its [_offset, _offset + _n), and `_own` is None

    # --- what the rest of the code reads ------------------------------------------------------------
    @property
    def verdicts_at_start(self) -> tuple[int, int]:
        """(right, wrong) verdicts of its prompt known when this sequence started: what decided that it runs,
        and so all a baseline may use without biasing its own advantage (the trainer's verdict baseline)."""
        return self._verdicts

    @property
    def forced(self) -> list[int]:
        """Positions whose token was chosen, not sampled (top2/alternative forks)."""
        return list(self._forced)

    @property
    def n_tokens(self) -> int:
        return self._start + self._count(TOKENS)

    @property
    def n_generated(self) -> int:
        """Tokens this sequence added beyond its shared prefix (what it cost to produce)."""
        return self.n_tokens - self.n_inherited

    @property
    def tokens(self) -> list[int]:
        return self._values(TOKENS, self.n_tokens)

    @property
    def logprobs(self) -> list[float]:
        return self._values(LOGPROBS, self._start + self._count(LOGPROBS))

    @property
    def entropies(self) -> list[float]:
        return self._values(ENTROPIES, self._start + self._count(ENTROPIES))

    def token_at(self, pos: int) -> int:
        return self._at(TOKENS, pos)

    def entropy_at(self, pos: int) -> float:
        return INHERITED if pos < self._start else self._at(ENTROPIES, pos)

    @property
    def last_token(self) -> int | None:
        return self.token_at(self.n_tokens - 1) if self.n_tokens else None

    # --- what the driver writes ---------------------------------------------------------------------
    def append(self, token: int, logprob: float, entropy: float) -> None:
        own = self._live()
        own[TOKENS].append(token)
        own[LOGPROBS].append(logprob)
        own[ENTROPIES].append(entropy)

    def set_token(self, pos: int, token: int, logprob: float) -> None:
        """Replace an own token (a top2 fork moves the parent onto another token at the fork position)."""
        if pos < self._start:
            raise IndexError(f"position {pos} is in the prefix sequence {self.index} shares with its parent")
        own = self._live()
        own[TOKENS][pos - self._start], own[LOGPROBS][pos - self._start] = token, logprob

    def mark_forced(self, pos: int) -> None:
        self._forced += (pos,)

    def seal(self, arena: Arena) -> None:
        """Move the own values to the tree's arena (the sequence has finished; reads go on as before)."""
        own = self._own
        if own is None or len({len(column) for column in own}) != 1:
            return  # sealed already, or a hand-built sequence with unequal columns: it keeps its own
        self._offset, self._n = len(arena), len(own[TOKENS])
        for column, values in zip(arena.columns, own):
            column.extend(values)
        self._arena, self._own = arena, None

    def copy(self, index: int) -> Sequence:
        """The same completion as a standalone sequence at `index` (its values copied, its prefix included)."""
        return Sequence(index, self.tokens, self.logprobs, self.entropies, self.parent, self.n_inherited,
                        self._forced, self.retry, self.finished, self.finish_reason, self.score, self._verdicts)

    def __repr__(self) -> str:
        return (f"Sequence(index={self.index}, n_tokens={self.n_tokens}, parent={self.parent}, "
                f"n_inherited={self.n_inherited}, finish_reason={self.finish_reason!r}, score={self.score})")

    # --- storage ------------------------------------------------------------------------------------
    def _live(self) -> tuple[array, ...]:
        if self._own is None:  # written again after it finished (rare): take the values back from the arena
            self._own = tuple(column[self._offset:self._offset + self._n] for column in self._arena.columns)
            self._arena = None
        return self._own

    def _count(self, kind: int) -> int:
        return len(self._own[kind]) if self._own is not None else self._n

    def _at(self, kind: int, pos: int) -> float:
        if pos < 0:
            raise IndexError(f"position {pos}: completion positions count from 0")
        if pos < self._start:
            return self._source._at(kind, pos)
        if self._own is not None:
            return self._own[kind][pos - self._start]
        if not 0 <= pos - self._start < self._n:
            raise IndexError(pos)
        return self._arena.columns[kind][self._offset + pos - self._start]

    def _values(self, kind: int, n: int) -> list:
        """The first n values of one column, the shared prefix read from the parent."""
        head_n = min(n, self._start)
        if self._source is None or head_n == 0:
            head = []
        else:
            head = [INHERITED] * head_n if kind == ENTROPIES else self._source._values(kind, head_n)
        k = max(0, n - self._start)
        if self._own is not None:
            return head + self._own[kind][:k].tolist()
        return head + self._arena.columns[kind][self._offset:self._offset + k].tolist()


@dataclass(frozen=True, slots=True)
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


@dataclass(slots=True)
class PromptTree:
    """Every sequence generated for one prompt, and how they branched. `prompt_ids` is stored as an int32 array;
    `arena` holds its finished sequences' values (a batch's trees share one)."""

    prompt_index: int
    prompt_ids: array
    budget: int  # M: sequences this prompt may hold in its first pass (leaves, finished included); 0 if skipped
    threshold: float  # the base entropy threshold used for its first pass
    sequences: list[Sequence] = field(default_factory=list)
    branches: list[BranchEvent] = field(default_factory=list)
    retries: int = 0  # extra passes started for this prompt (eager / eager_adapt)
    stopped: bool = False  # the allocation gives it no more budget: solved (passes' stop rule) or decided (screen)
    arena: Arena = field(default_factory=Arena, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_ids, array):
            self.prompt_ids = array("i", self.prompt_ids)

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
