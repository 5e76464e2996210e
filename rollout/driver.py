"""The step loop: every prompt in flight at once, forks added mid-loop, verdicts as sequences end.

One `Driver.run()` is one call of the engine over a set of prompt trees. Each engine step
gives one new token per running request; the driver appends it to its sequence, asks the
prompt's `PromptBranching` (rollout.policy) whether to fork there and the `Schedule`
(rollout.schedule) whether the prompt may hold another sequence, and adds the child as a new
request that shares the parent's prefix (the engine's prefix cache makes that prefix nearly
free). A sequence ends exactly where the engine ends it (its stop token or its cap), on token
ids throughout.

With a verifier, finished sequences are scored on a background thread while generation goes
on; each verdict goes to the schedule, which decides when a prompt stops, when it gets another
pass and when it is done. The driver carries those decisions out (`Runner`: start a root,
set a prompt's threshold, hand over a finished tree).
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rollout.config import EagerConfig
from rollout.engine import Engine, Request, TokenOutput
from rollout.entropy import topk_entropy
from rollout.policy import PromptBranching, decisive_position, fork_tokens, refill_parent
from rollout.recursion import Recursion
from rollout.schedule import Next, Schedule, StepCounts
from rollout.types import BranchEvent, PromptTree, Sequence

logger = logging.getLogger(__name__)

Verifier = Callable[[int, list[int]], "bool | None"]
VERDICT_LAG = 2  # engine steps a verdict has to arrive in before the loop waits for it


@dataclass
class _Live:
    prompt: int
    seq: int
    skip_decision_at: int | None = None  # a resampling child draws the fork position again: no second fork there


def request_seed(base: int, prompt: int, seq: int, attempt: int) -> int:
    """A distinct, reproducible seed per request (identical seeds would draw identical tokens)."""
    return (base * 1_000_003 + prompt * 100_003 + seq * 1_009 + attempt * 7 + 1) % (2**31 - 1)


class Driver:
    def __init__(
        self,
        engine: Engine,
        trees: list[PromptTree],
        config: EagerConfig,
        schedule: Schedule,
        *,
        branching: bool,
        verifier: Verifier | None = None,
        on_tree_done: Callable[[PromptTree], None] | None = None,
    ) -> None:
        self.engine, self.trees, self.cfg, self.schedule = engine, trees, config, schedule
        self.branching = branching
        self.verifier = verifier
        self.on_tree_done = on_tree_done
        self.peak_running = 0
        self.stop_ids = set(config.stop_token_ids) | set(getattr(engine, "eos_token_ids", ()))
        self.states: dict[int, PromptBranching] = {}
        self.recursion: Recursion | None = None
        if config.fork_mode == "recursion":
            if not getattr(engine, "can_recurse", False):
                why = getattr(engine, "why_no_recursion", None) or f"{type(engine).__name__} cannot re-apply layers"
                raise ValueError(
                    "EagerConfig.fork_mode='recursion' needs an engine that can re-apply the model's layers: "
                    f"rollout.hf_engine.HFEngine (transformers) on a model EGLR supports; here {why} (README: EGLR)."
                )
            engine.enable_recursion()
            self.recursion = Recursion(config.recursion_span, config.recursion_k_max, tol=config.recursion_tol)
        self.live: dict[str, _Live] = {}
        self.counts = StepCounts(len(trees))  # per prompt: running and awaiting a verdict (the schedule reads them)
        self.attempts: dict[tuple[int, int], int] = defaultdict(int)
        # Verdicts in submission order, each applied VERDICT_LAG engine steps after its sequence ended
        # (waiting if it is late): verification overlaps generation, and the trees stay a function of
        # the seed and the inputs, not of how fast the verifier threads ran.
        self.pending: deque[tuple[Future, int, int, int]] = deque()  # (future, prompt, sequence, step)
        self.steps = 0
        self.reasoning_closed: set[tuple[int, int]] = set()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eager-verify") if verifier else None

    # --- the loop -------------------------------------------------------------------------
    def run(self, active: list[int]) -> None:
        """Generate for the prompts in `active` until each is done (others are left as they are)."""
        try:
            self.schedule.begin(active, self)
            while True:
                self._apply_verdicts(everything=False)
                self.schedule.tick(self.steps, self)
                if self.engine.has_unfinished():
                    capacity = self.schedule.capacity
                    running = len(self.live) if capacity is None else min(len(self.live), capacity)
                    self.peak_running = max(self.peak_running, running)
                    self._on_step(self.engine.step())
                    self.steps += 1
                elif self.pending:
                    self._apply_verdicts(everything=True)
                elif not self.schedule.tick(self.steps, self):
                    break
        finally:
            if self._pool:
                self._pool.shutdown(wait=True)

    # --- Runner: what the schedule asks for ---------------------------------------------------------
    def start_root(self, prompt: int, retry: int) -> None:
        tree = self.trees[prompt]
        seq = Sequence(index=len(tree.sequences), retry=retry, verdicts_at_start=self.schedule.known_verdicts(prompt))
        tree.sequences.append(seq)
        self._continue(prompt, seq.index)

    def start_fork(self, prompt: int, retry: int) -> bool:
        """Submit a fork of one of `prompt`'s finished samples (`rollout.policy.refill_parent`) from the token
        `refill_at` names, that token drawn again by the engine; its slot is already taken. False when none can be
        forked."""
        s = refill_parent(self.trees[prompt], self.cfg.refill_at)
        if s is None:
            return False
        parent = self.trees[prompt].sequences[s]
        pos = decisive_position(parent, self.cfg.refill_at)
        state = self.states.get(prompt)
        event = BranchEvent(s, state.step if state else 0, pos, parent.entropy_at(pos),
                            state.effective_threshold() if state else self.trees[prompt].threshold,
                            parent.token_at(pos), None, len(self.trees[prompt].sequences))
        new = self._child(prompt, s, pos, event)
        new.retry = retry
        self._continue(prompt, new.index, skip_decision_at=pos)
        return True

    def set_threshold(self, prompt: int, threshold: float) -> None:
        self.states[prompt] = PromptBranching(threshold, self.cfg.p99_floor, self.cfg.branch_patience)

    def closed(self, prompt: int) -> None:
        if self.on_tree_done is not None:
            self.on_tree_done(self.trees[prompt])

    def _on_step(self, outs: list[TokenOutput]) -> None:
        outs = [o for o in outs if o.request_id in self.live]
        if not outs:
            return
        if self.cfg.entropy_source == "full_vocab":
            ent = np.array([o.full_entropy for o in outs], dtype=np.float64)
        else:
            lps = np.stack([o.topk_logprobs for o in outs])
            ent = topk_entropy(lps, self.cfg.temperature, self.engine.logprobs_after_temperature)
        by_prompt: dict[int, list[tuple[int, TokenOutput, float]]] = defaultdict(list)
        for o, h in zip(outs, ent.tolist()):
            live = self.live[o.request_id]
            by_prompt[live.prompt].append((live.seq, o, h))
        for i in sorted(by_prompt):
            forked = False
            for _, o, h in sorted(by_prompt[i], key=lambda x: x[0]):  # forks in sequence order
                forked |= self._on_token(o, h)
            self.states[i].end_step(forked)

    def _on_token(self, out: TokenOutput, entropy: float) -> bool:
        live = self.live[out.request_id]
        i, s = live.prompt, live.seq
        seq = self.trees[i].sequences[s]
        pos = seq.n_tokens
        seq.append(out.token_id, out.logprob, entropy)
        forked = restarted = False
        if self.branching and live.skip_decision_at != pos:
            state = self.states[i]
            want, theta_eff = state.wants_fork(entropy, (i, s) in self.reasoning_closed)
            if want and out.finish_reason != "length" and self.schedule.may_fork(i):
                forked, restarted = self._fork(i, s, out, entropy, theta_eff, pos, state.step)
            state.history.add(entropy)
        if self.cfg.think_end_token_id is not None and seq.token_at(pos) == self.cfg.think_end_token_id:
            self.reasoning_closed.add((i, s))
        if restarted:
            return forked
        if out.finished:
            del self.live[out.request_id]
            self.counts.live[i] -= 1
            self._finish(i, s, out.finish_reason or "stop")
        return forked

    # --- forks ------------------------------------------------------------------------------
    def _fork(
        self, i: int, s: int, out: TokenOutput, entropy: float, theta: float, pos: int, step: int
    ) -> tuple[bool, bool]:
        """Spawn a child at `pos`. Returns (forked, parent request restarted)."""
        if self.recursion is not None:  # EGLR: the child takes the recursed distribution's best other token
            (ptok, plp), child = (out.token_id, out.logprob), self.engine.recursed_token(
                out.request_id, out.token_id, self.recursion)
        else:
            (ptok, plp), child = fork_tokens(self.cfg.fork_mode, out.token_id, out.topk_ids, out.topk_logprobs)
        if self.cfg.fork_mode != "resample" and child is None:
            return False, False  # fewer than two candidate tokens: nothing to branch to
        tree = self.trees[i]
        parent = tree.sequences[s]
        self.schedule.take_slot(i)
        new = self._child(i, s, pos, BranchEvent(s, step, pos, entropy, theta, ptok, child[0] if child else None,
                                                 len(tree.sequences), self.recursion.span if self.recursion else None))
        if child is not None:
            new.append(child[0], child[1], entropy)
            new.mark_forced(pos)
            if child[0] == self.cfg.think_end_token_id:
                self.reasoning_closed.add((i, new.index))
        restarted = False
        if ptok != out.token_id:  # top2 forces the parent onto rank 1: restart it from the new token
            parent.set_token(pos, ptok, plp)
            parent.mark_forced(pos)
            if not out.finished:
                self.engine.abort([out.request_id])
            del self.live[out.request_id]
            self.counts.live[i] -= 1
            self._continue(i, s)
            restarted = True
        self._continue(i, new.index, skip_decision_at=pos if child is None else None)
        return True, restarted

    def _child(self, i: int, s: int, pos: int, event: BranchEvent) -> Sequence:
        """A new sequence of prompt `i` holding sequence `s`'s first `pos` tokens, recorded as the fork `event`."""
        tree = self.trees[i]
        parent = tree.sequences[s]
        new = Sequence(index=len(tree.sequences), parent=s, n_inherited=pos, shares=parent,  # the prefix stays in
                       forced=[f for f in parent.forced if f < pos], retry=parent.retry,  # the parent, stored once
                       verdicts_at_start=self.schedule.known_verdicts(i))
        tree.sequences.append(new)
        think_end = self.cfg.think_end_token_id
        if think_end is not None and think_end in new.tokens:  # the shared prefix already closed its reasoning
            self.reasoning_closed.add((i, new.index))
        tree.branches.append(event)
        return new

    def _continue(self, i: int, s: int, skip_decision_at: int | None = None) -> None:
        """Submit sequence `s` to the engine from where its tokens end, or finish it if it cannot go on."""
        tree = self.trees[i]
        seq = tree.sequences[s]
        if seq.n_tokens and skip_decision_at is None and seq.last_token in self.stop_ids:
            self._finish(i, s, "stop")
            return
        room = min(self.cfg.max_new_tokens - seq.n_tokens,
                   self.engine.max_model_len - len(tree.prompt_ids) - seq.n_tokens)
        if room <= 0:
            self._finish(i, s, "length")
            return
        attempt = self.attempts[(i, s)]
        self.attempts[(i, s)] += 1
        rid = f"{i}.{s}.{attempt}.{seq.retry}"
        seed = request_seed(self.cfg.seed, i, s, attempt + 31 * seq.retry)
        self.engine.add(Request(rid, tree.prompt_ids.tolist() + seq.tokens, room, seed))
        self.live[rid] = _Live(i, s, skip_decision_at)
        self.counts.live[i] += 1

    # --- finishing and verdicts ----------------------------------------------------------------
    def _finish(self, i: int, s: int, reason: str) -> None:
        seq = self.trees[i].sequences[s]
        seq.finished, seq.finish_reason = True, reason
        seq.seal(self.trees[i].arena)
        if self._pool is None:
            self.schedule.sequence_finished(i)
        elif not self.trees[i].stopped:  # a decided prompt needs no more verdicts (TRL's rewards score every row)
            fut = self._pool.submit(self.verifier, i, seq.tokens)
            self.pending.append((fut, i, s, self.steps))
            self.counts.pending[i] += 1

    def _apply_verdicts(self, everything: bool) -> None:
        """Apply due verdicts in submission order: those VERDICT_LAG steps old, or all when the engine is idle."""
        while self.pending and (everything or self.pending[0][3] <= self.steps - VERDICT_LAG):
            fut, i, s, _ = self.pending.popleft()
            try:
                verdict = fut.result()
            except Exception as exc:  # a broken verifier must not lose the batch: count it as wrong
                logger.warning("verifier failed on prompt %d sequence %d: %r", i, s, exc)
                verdict = None
            self.trees[i].sequences[s].score = None if verdict is None else float(verdict)
            self.counts.pending[i] -= 1
            then = self.schedule.verdict(i, verdict)
            if then is not Next.CONTINUE:  # the prompt stopped: no more forks
                if i in self.states:
                    self.states[i].open = False
                if then is Next.ABORT:
                    self._abort_prompt(i)

    def _abort_prompt(self, i: int) -> None:
        ids = [rid for rid, lv in self.live.items() if lv.prompt == i]
        if ids:
            self.engine.abort(ids)
        for rid in ids:
            lv = self.live.pop(rid)
            self.counts.live[i] -= 1
            seq = self.trees[i].sequences[lv.seq]
            seq.finished, seq.finish_reason = True, "abort"
            seq.seal(self.trees[i].arena)
            self.schedule.release_slot(i)
