"""The step loop: every prompt in flight at once, forks added mid-loop, verdicts as sequences end.

One `Driver.run()` is one pass of the engine over a set of prompt trees. Each engine step
gives one new token per running request; the driver appends it to its sequence, asks the
prompt's `PromptBranching` whether to fork and the `Ledger` whether the prompt may hold
another sequence, and adds the child as a new request that shares the parent's prefix
(the engine's prefix cache makes that prefix nearly free). A sequence ends exactly where
the engine ends it (its stop token or its cap), on token ids throughout.

With a verifier, finished sequences are scored on a background thread while generation
goes on; a prompt that meets the solved criterion stops branching at once, and its unused
budget becomes available to the others (`Ledger` with a pool).

Extra passes (retries, at a lowered threshold) follow one of two schedules:
- online (`concurrent=True`, training): a prompt gets an extra pass the moment it shows it
  needs one (`_note_need`), while its first pass still runs; a pass starts as a new root only
  before the deadline of `rollout.budget.pass_start_deadline` and while the engine has room,
  and otherwise lowers the threshold of the prompt's running sequences so they fork. The
  critical path stays about one pass long.
- the paper's second phase (`concurrent=False`): a prompt left idle (no running sequence)
  while unsolved is started again, one pass after the other.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rollout.budget import Ledger, pass_start_deadline, solved
from rollout.config import EagerConfig
from rollout.engine import Engine, Request, TokenOutput
from rollout.entropy import topk_entropy
from rollout.policy import PromptBranching, fork_tokens, retry_threshold
from rollout.recursion import Recursion
from rollout.schedule import PassScheduler
from rollout.types import INHERITED, BranchEvent, PromptTree, Sequence

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


class Driver(PassScheduler):
    def __init__(
        self,
        engine: Engine,
        trees: list[PromptTree],
        config: EagerConfig,
        ledger: Ledger,
        *,
        branching: bool,
        roots_per_prompt: int = 1,
        retry_method: str | None = None,
        verifier: Verifier | None = None,
        on_tree_done: Callable[[PromptTree], None] | None = None,
        concurrent: bool = False,
    ) -> None:
        self.engine, self.trees, self.cfg, self.ledger = engine, trees, config, ledger
        self.branching = branching
        self.roots_per_prompt = roots_per_prompt
        self.retry_method = retry_method  # None: no retries; "eager" / "eager_adapt": threshold schedule
        self.verifier = verifier
        self.on_tree_done = on_tree_done
        self.concurrent = concurrent
        self.deadline = pass_start_deadline(config.pass_start_limit, config.max_new_tokens)
        self.capacity: int | None = getattr(engine, "max_running", None)  # sequences the engine runs at once
        self.needs: dict[int, int] = defaultdict(int)  # prompt -> extra passes it has asked for, not yet given
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
        self.live_count: dict[int, int] = defaultdict(int)
        self.attempts: dict[tuple[int, int], int] = defaultdict(int)
        # Verdicts in submission order, each applied VERDICT_LAG engine steps after its sequence ended
        # (waiting if it is late): verification overlaps generation, and the trees stay a function of
        # the seed and the inputs, not of how fast the verifier threads ran.
        self.pending: deque[tuple[Future, int, int, int]] = deque()  # (future, prompt, sequence, step)
        self.pending_count: dict[int, int] = defaultdict(int)
        self.steps = 0
        self.verdicts: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # prompt -> [correct, wrong]
        self.reasoning_closed: set[tuple[int, int]] = set()
        self.done: set[int] = set()
        for t in trees:  # verdicts a previous pass already gave count toward the solved criterion
            for seq in t.kept():
                if seq.score is not None:
                    self.verdicts[t.prompt_index][0 if seq.score >= 1.0 else 1] += 1
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eager-verify") if verifier else None

    # --- the loop -------------------------------------------------------------------------
    def run(self, active: list[int]) -> None:
        """Generate for the prompts in `active` until each is done (others are left as they are)."""
        self.done = {t.prompt_index for t in self.trees} - set(active)
        try:
            for i in active:  # a tree that already had passes (phase 2) starts at its retry threshold
                tree = self.trees[i]
                theta = tree.threshold
                if tree.retries:
                    theta = retry_threshold(tree.threshold, tree.retries, self.retry_method or "eager")
                self._start_pass(i, theta, retry=tree.retries)
            while True:
                self._apply_verdicts(everything=False)
                self._schedule()
                if self.engine.has_unfinished():
                    running = len(self.live) if self.capacity is None else min(len(self.live), self.capacity)
                    self.peak_running = max(self.peak_running, running)
                    self._on_step(self.engine.step())
                    self.steps += 1
                elif self.pending:
                    self._apply_verdicts(everything=True)
                elif not self._schedule():
                    break
        finally:
            if self._pool:
                self._pool.shutdown(wait=True)

    def _start_pass(self, i: int, threshold: float, retry: int) -> None:
        self.states[i] = PromptBranching(threshold, self.cfg.p99_floor, self.cfg.branch_patience)
        roots = self.roots_per_prompt if retry == 0 else (self.cfg.pass_roots if self.concurrent else 1)
        for _ in range(roots):
            if not self.ledger.can_add(i):
                break
            self.ledger.add(i)
            tree = self.trees[i]
            seq = Sequence(index=len(tree.sequences), retry=retry, verdicts_at_start=self._known(i))
            tree.sequences.append(seq)
            self._continue(i, seq.index)

    def _known(self, i: int) -> tuple[int, int]:
        correct, wrong = self.verdicts[i]
        return correct, wrong

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
        pos = len(seq.tokens)
        seq.tokens.append(out.token_id)
        seq.logprobs.append(out.logprob)
        seq.entropies.append(entropy)
        forked = restarted = False
        if self.branching and live.skip_decision_at != pos:
            state = self.states[i]
            want, theta_eff = state.wants_fork(entropy, (i, s) in self.reasoning_closed)
            if want and out.finish_reason != "length" and self.ledger.can_add(i):
                forked, restarted = self._fork(i, s, out, entropy, theta_eff, pos, state.step)
            state.history.add(entropy)
        if self.cfg.think_end_token_id is not None and seq.tokens[pos] == self.cfg.think_end_token_id:
            self.reasoning_closed.add((i, s))
        if restarted:
            return forked
        if out.finished:
            del self.live[out.request_id]
            self.live_count[i] -= 1
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
        self.ledger.add(i)
        new = Sequence(
            index=len(tree.sequences),
            tokens=parent.tokens[:pos],
            logprobs=parent.logprobs[:pos],
            entropies=[INHERITED] * pos,
            parent=s,
            n_inherited=pos,
            forced=[f for f in parent.forced if f < pos],
            retry=parent.retry,
            verdicts_at_start=self._known(i),
        )
        if child is not None:
            new.tokens.append(child[0])
            new.logprobs.append(child[1])
            new.entropies.append(entropy)
            new.forced.append(pos)
        tree.sequences.append(new)
        if (i, s) in self.reasoning_closed or (child is not None and child[0] == self.cfg.think_end_token_id):
            self.reasoning_closed.add((i, new.index))
        tree.branches.append(
            BranchEvent(s, step, pos, entropy, theta, ptok, child[0] if child else None, new.index,
                        self.recursion.span if self.recursion else None)
        )
        restarted = False
        if ptok != out.token_id:  # top2 forces the parent onto rank 1: restart it from the new token
            parent.tokens[pos], parent.logprobs[pos] = ptok, plp
            parent.forced.append(pos)
            if not out.finished:
                self.engine.abort([out.request_id])
            del self.live[out.request_id]
            self.live_count[i] -= 1
            self._continue(i, s)
            restarted = True
        self._continue(i, new.index, skip_decision_at=pos if child is None else None)
        return True, restarted

    def _continue(self, i: int, s: int, skip_decision_at: int | None = None) -> None:
        """Submit sequence `s` to the engine from where its tokens end, or finish it if it cannot go on."""
        tree = self.trees[i]
        seq = tree.sequences[s]
        if seq.tokens and skip_decision_at is None and seq.tokens[-1] in self.stop_ids:
            self._finish(i, s, "stop")
            return
        room = min(self.cfg.max_new_tokens - len(seq.tokens),
                   self.engine.max_model_len - len(tree.prompt_ids) - len(seq.tokens))
        if room <= 0:
            self._finish(i, s, "length")
            return
        attempt = self.attempts[(i, s)]
        self.attempts[(i, s)] += 1
        rid = f"{i}.{s}.{attempt}.{seq.retry}"
        seed = request_seed(self.cfg.seed, i, s, attempt + 31 * seq.retry)
        self.engine.add(Request(rid, tree.prompt_ids + seq.tokens, room, seed))
        self.live[rid] = _Live(i, s, skip_decision_at)
        self.live_count[i] += 1

    # --- finishing and verdicts (extra passes: rollout.schedule) ----------------------------------------------------------
    def _finish(self, i: int, s: int, reason: str) -> None:
        seq = self.trees[i].sequences[s]
        seq.finished, seq.finish_reason = True, reason
        if self._pool is not None and not self.trees[i].solved:
            fut = self._pool.submit(self.verifier, i, list(seq.tokens))
            self.pending.append((fut, i, s, self.steps))
            self.pending_count[i] += 1
        elif self._pool is None and self.retry_method == "eager_adapt" and self.ledger.used[i] >= self.ledger.limits[i]:
            self._note_need(i)  # label-free: a prompt that used its whole budget is "hard"

    def _apply_verdicts(self, everything: bool) -> None:
        """Apply due verdicts in submission order: those VERDICT_LAG steps old, or all when the engine is idle."""
        while self.pending and (everything or self.pending[0][3] <= self.steps - VERDICT_LAG):
            fut, i, s, _ = self.pending.popleft()
            self.pending_count[i] -= 1
            try:
                verdict = fut.result()
            except Exception as exc:  # a broken verifier must not lose the batch: count it as wrong
                logger.warning("verifier failed on prompt %d sequence %d: %r", i, s, exc)
                verdict = None
            self._record_verdict(i, s, verdict)

    def _record_verdict(self, i: int, s: int, verdict: bool | float | None) -> None:
        tree = self.trees[i]
        tree.sequences[s].score = None if verdict is None else float(verdict)
        counts = self.verdicts[i]
        counts[0 if verdict is not None and float(verdict) >= 1.0 else 1] += 1
        if tree.solved:
            return
        if not solved(counts[0], counts[1], self.cfg):
            self._note_need(i)
            return
        tree.solved = True
        self.ledger.close(i)
        if i in self.states:
            self.states[i].open = False
        if self.cfg.on_solved == "abort":
            self._abort_prompt(i)

    def _abort_prompt(self, i: int) -> None:
        ids = [rid for rid, lv in self.live.items() if lv.prompt == i]
        if ids:
            self.engine.abort(ids)
        for rid in ids:
            lv = self.live.pop(rid)
            self.live_count[i] -= 1
            seq = self.trees[i].sequences[lv.seq]
            seq.finished, seq.finish_reason = True, "abort"
            self.ledger.release(i)
