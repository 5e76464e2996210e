"""When a prompt gets more budget, and when it stops: the one place that decides.

Two allocations (`EagerConfig.allocation`), one interface to the step loop (`Schedule`; the
loop carries decisions out through `Runner`), chosen per call by `rollout.variants.make_schedule`:
- `passes`: the paper's, below, in this file (`PassSchedule`); online in training, two phases at
  test time.
- `screen`: the training allocation that spends a step's sequences on prompts whose verdicts
  promise a learning signal: `rollout/screening.py` (`ScreenSchedule`), its own diagram there.
Slot arithmetic (per-prompt budgets, the pool) is `rollout/ledger.py`.

Budget counts leaves (sequences), finished ones included. Under `passes`, each prompt's life in
one call:

    first pass ── a root (eager_init; M roots for parallel) at its threshold theta
        │          forks at high entropy while it has budget (rollout.policy decides *where*)
        ▼
    verdicts ──── eager: each finished sequence is verified; the stop rule (`stopped`) closes the
        │          prompt: no more forks or roots, running sequences finish (or are cut, on_solved=abort),
        │          unused budget goes to the pool. eager_adapt (label-free): a finished sequence of a
        │          prompt that used its whole budget asks for more.
        ▼
    need ──────── an unsolved verdict (or a full budget) is a need: one more pass, at a lowered threshold
        │          (`retry_threshold`: per need, not per pass, so several wrong verdicts lower it fast).
        ▼
    extra pass ── online (training): at once, while the first pass runs. Up to the deadline
        │          (pass_start_limit x max_new_tokens engine steps) and while the engine has room, it is
        │          pass_roots new roots. After it, the pass is the lowered threshold alone, given to the
        │          prompt's running sequences so they fork (their forks end with them: the call stays
        │          within deadline + one pass). Paper's two phases (test time): a prompt gets its next pass
        │          when it is idle (nothing running, no verdict pending), one pass after another.
        ▼
    closed ────── idle, and nothing more to ask for (stopped, no need, capped, or too late for a root);
                   the tree is final (on_tree_done).

Caps: a prompt holds at most its budget M, plus, with a pool (online, or eager_adapt), borrowed slots
up to `extra_cap` x M (eager; `adapt_extra_cap` for eager_adapt) while the pool has free slots; open
prompts keep their own budget reserved, so borrowing never starves a prompt still working on its
share. `max_retries` bounds passes. A new pass starts a fresh branching state for the whole prompt
(threshold, P99 history, patience), so its sequences already running fork at the lowered threshold too.

`stop_rule=solved` counts solved_min_correct right and solved_min_incorrect wrong answers;
`stop_rule=signal` ignores those and stops at one right and one wrong, or signal_easy_k right and no
wrong. A verdict of None (the verifier could not decide) counts as wrong everywhere.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from rollout.config import EagerConfig
from rollout.ledger import Ledger, split_saved_budget
from rollout.types import PromptTree


class Next(Enum):
    """What a verdict tells the step loop to do with its prompt."""

    CONTINUE = "continue"  # nothing changes
    STOP = "stop"  # no more forks or roots; running sequences finish
    ABORT = "abort"  # no more forks or roots, and running sequences are cut (on_solved=abort)


class StepCounts:
    """What the step loop counts per prompt and keeps up to date itself: sequences running in the engine (`live`)
    and finished ones whose verdict is not yet applied (`pending`). Schedules read them (`Runner.counts`)."""

    def __init__(self, n: int) -> None:
        self.live = [0] * n
        self.pending = [0] * n


class Schedule(Protocol):
    """When a prompt gets more budget and when it stops: what the step loop asks a schedule (`PassSchedule`,
    `rollout.screening.ScreenSchedule`), and the two events it reports (verdicts, and finishes without one)."""

    capacity: int | None  # sequences the engine runs at once (None: unbounded)

    def begin(self, active: list[int], runner: Runner) -> None:
        """Start each active prompt's first sequences."""
    def tick(self, step: int, runner: Runner) -> bool:
        """Start what is due, close what is done; True if a new root started."""
    def verdict(self, i: int, verdict: bool | float | None) -> Next:
        """Apply a verdict (the step loop has already counted it off `pending`)."""
    def sequence_finished(self, i: int) -> None:
        """A sequence ended and no verifier runs."""
    def may_fork(self, i: int) -> bool: ...
    def take_slot(self, i: int) -> None: ...
    def release_slot(self, i: int) -> None: ...
    def known_verdicts(self, i: int) -> tuple[int, int]:
        """(right, wrong) so far: what decided that a sequence starting now runs."""


class Runner(Protocol):
    """What the schedule asks of the step loop (`rollout.driver.Driver`)."""

    counts: StepCounts  # kept by the step loop

    def start_root(self, prompt: int, retry: int) -> None:
        """Submit a new root sequence of `prompt`; its slot is already taken."""

    def start_fork(self, prompt: int, retry: int) -> bool:
        """Submit a fork of one of `prompt`'s finished samples from the token `refill_at` names (the slot is already
        taken); False when it has none to fork."""

    def set_threshold(self, prompt: int, threshold: float) -> None:
        """A fresh branching state at `threshold` for the prompt's sequences, running and future."""

    def closed(self, prompt: int) -> None:
        """The prompt is done: nothing running, nothing pending, nothing more to come."""


def stopped(correct: int, wrong: int, config: EagerConfig) -> bool:
    """Label-aware EAGer's stop rule (`EagerConfig.stop_rule`): the prompt takes no more budget."""
    if config.stop_rule == "signal":
        return (correct >= 1 and wrong >= 1) or (correct >= config.signal_easy_k and wrong == 0)
    return correct >= config.solved_min_correct and wrong >= config.solved_min_incorrect


def is_right(verdict: bool | float | None) -> bool:
    """A verdict counts as right only when it is 1 (True); None (undecidable) counts as wrong."""
    return verdict is not None and float(verdict) >= 1.0


def retry_threshold(base: float, retry: int, method: str) -> float:
    """Threshold of the `retry`-th extra pass (retry >= 1), compounding as the paper does.

    eager: x0.8 per retry, with an extra x0.9 from the third retry on.
    eager_adapt: unchanged for the first two retries, x0.9 per retry from the third on.
    """
    theta = base
    for r in range(1, retry + 1):
        if method == "eager":
            theta *= 0.8 * (0.9 if r >= 3 else 1.0)
        else:
            theta *= 0.9 if r >= 3 else 1.0
    return theta


def pass_start_deadline(limit: float, max_new_tokens: int) -> int:
    """Last engine step (from the start of the call) at which an online run may start a new pass."""
    return int(limit * max_new_tokens)


def saved_budget_shares(trees: list[PromptTree], config: EagerConfig) -> dict[int, int]:
    """The paper's phase 2: who gets how much of B = sum of budgets - sequences used.

    eager: the prompts not stopped (verdicts must be on the sequences); eager_adapt: the prompts
    that used their whole budget. Split by `split_saved_budget`, each capped at `extra_cap`
    (eager) or `adapt_extra_cap` (eager_adapt) times M.
    """
    m = max((t.budget for t in trees), default=0)
    saved = sum(t.budget for t in trees) - sum(t.n_sequences for t in trees)
    if config.method == "eager":
        for t in trees:
            t.stopped = tree_stopped(t, config)
        targets = [t.prompt_index for t in trees if t.budget > 0 and not t.stopped]
        cap = config.extra_cap * m
    else:
        targets = [t.prompt_index for t in trees if t.budget > 0 and t.n_sequences >= t.budget]
        cap = config.adapt_extra_cap * m
    return split_saved_budget(saved, targets, cap)


def tree_stopped(tree: PromptTree, config: EagerConfig) -> bool:
    """The stop rule on the verdicts stored on a tree's kept sequences (None as wrong)."""
    kept = tree.kept()
    right = sum(1 for s in kept if is_right(s.score))
    return stopped(right, len(kept) - right, config)


class PromptCounts:
    """What every schedule reads per prompt: the step loop's counts (`StepCounts`, from `begin`'s runner) and the
    prompts it closed (`done`)."""

    def __init__(self, trees: list[PromptTree]) -> None:
        self.trees = trees
        self.counts = StepCounts(len(trees))  # replaced by the runner's own at `begin`
        self.done: set[int] = set()

    def _use_counts(self, runner: Runner) -> None:
        self.counts = runner.counts

    def _idle(self) -> list[int]:
        """Prompts not closed with nothing running and no verdict pending."""
        live, pending = self.counts.live, self.counts.pending
        return [i for i in range(len(self.trees)) if i not in self.done and live[i] == 0 and pending[i] == 0]


class PassSchedule(PromptCounts):
    """The budget state of one call over a batch of prompt trees, and the decisions it drives.

    `retry_method` None: no extra passes (parallel, eager_init); "eager" / "eager_adapt": the
    threshold decay of that method. `online`: extra passes overlap the first (see the module).
    """

    def __init__(self, trees: list[PromptTree], config: EagerConfig, ledger: Ledger, *, first_roots: int = 1,
                 retry_method: str | None = None, online: bool = False, label_aware: bool = False,
                 capacity: int | None = None) -> None:
        super().__init__(trees)
        self.cfg, self.ledger = config, ledger
        self.first_roots, self.retry_method, self.online = first_roots, retry_method, online
        self.capacity = capacity  # sequences the engine runs at once (None: unbounded)
        self.deadline = pass_start_deadline(config.pass_start_limit, config.max_new_tokens)
        n = len(trees)
        self.needs = [0] * n  # extra passes a prompt asked for and has not been given
        self.verdicts = [[0, 0] for _ in range(n)]  # [right, wrong]
        if label_aware:  # verdicts an earlier pass gave count toward the stop rule (None as wrong)
            for t in trees:
                for seq in t.kept():
                    if seq.finished:
                        self.verdicts[t.prompt_index][0 if is_right(seq.score) else 1] += 1

    # --- what the step loop tells the schedule ---------------------------------------------------------------
    def verdict(self, i: int, verdict: bool | float | None) -> Next:
        """Apply a verdict: STOP (or ABORT, with on_solved=abort) when the stop rule now holds."""
        counts = self.verdicts[i]
        counts[0 if is_right(verdict) else 1] += 1
        tree = self.trees[i]
        if tree.stopped:
            return Next.CONTINUE
        if not stopped(counts[0], counts[1], self.cfg):
            self._note_need(i)
            return Next.CONTINUE
        tree.stopped = True
        self.ledger.close(i)
        return Next.ABORT if self.cfg.on_solved == "abort" else Next.STOP

    def sequence_finished(self, i: int) -> None:
        """A sequence ended without a verifier. Label-free eager_adapt: a prompt that used its whole budget is
        "hard" and asks for more."""
        if self.retry_method == "eager_adapt" and self.ledger.used[i] >= self.ledger.limits[i]:
            self._note_need(i)

    # --- what the step loop asks -----------------------------------------------------------------------------
    def may_fork(self, i: int) -> bool:
        return self.ledger.can_add(i)

    def take_slot(self, i: int) -> None:
        self.ledger.add(i)

    def release_slot(self, i: int) -> None:
        self.ledger.release(i)

    def known_verdicts(self, i: int) -> tuple[int, int]:
        """(right, wrong) so far: what decided that a sequence starting now runs."""
        right, wrong = self.verdicts[i]
        return right, wrong

    # --- decisions -------------------------------------------------------------------------------------------
    def begin(self, active: list[int], runner: Runner) -> None:
        """Each active prompt's first pass (a tree that already had passes starts at its retry threshold)."""
        self._use_counts(runner)
        self.done = {t.prompt_index for t in self.trees} - set(active)
        for i in active:
            tree = self.trees[i]
            theta = tree.threshold
            if tree.retries:
                theta = retry_threshold(tree.threshold, tree.retries, self.retry_method or "eager")
            self._start_pass(i, theta, tree.retries, runner)

    def tick(self, step: int, runner: Runner) -> bool:
        """Start the extra passes that are due, close prompts that are done. True if a new root started."""
        if not self.online:  # the paper's second phase: one pass after the other
            started = False
            idle = self._idle()
            for i in idle:
                if self._may_retry(i):
                    self._retry(i, True, runner)
                    started = True
                elif not self._worth_waiting(i, idle, step):
                    self._close(i, runner)
            return started
        # 1) idle prompts that ask for nothing more close first: their unused budget joins the pool;
        # 2) prompts that asked for more get their passes;
        # 3) idle prompts still asking wait only while busy prompts may free budget before the deadline.
        for i in self._idle():
            if self.needs[i] == 0 or self.trees[i].stopped:
                self._close(i, runner)
        started = self._start_needed_passes(step, runner)
        idle = self._idle()
        for i in idle:
            if not self._worth_waiting(i, idle, step):
                self._close(i, runner)
        return started

    def _note_need(self, i: int) -> None:
        if self.online:
            self.needs[i] += 1

    def _close(self, i: int, runner: Runner) -> None:
        self.done.add(i)
        self.ledger.close(i)
        runner.closed(i)

    def _start_pass(self, i: int, threshold: float, retry: int, runner: Runner) -> None:
        runner.set_threshold(i, threshold)
        roots = self.first_roots if retry == 0 else (self.cfg.pass_roots if self.online else 1)
        for _ in range(roots):
            if not self.ledger.can_add(i):
                break
            self.ledger.add(i)
            runner.start_root(i, retry)

    def _retry(self, i: int, new_root: bool, runner: Runner) -> None:
        """The prompt's next pass: a lowered threshold and, if `new_root`, new root sequences."""
        tree = self.trees[i]
        tree.retries += 1
        threshold = retry_threshold(tree.threshold, tree.retries, self.retry_method or "eager")
        if new_root:
            self._start_pass(i, threshold, tree.retries, runner)
        else:
            runner.set_threshold(i, threshold)

    def _start_needed_passes(self, step: int, runner: Runner) -> bool:
        """Each prompt that asked for more gets its passes, in prompt order, while budget allows."""
        started = False
        for i in [k for k, n in enumerate(self.needs) if n > 0]:
            while self.needs[i] > 0 and self._may_retry(i):
                new_root = self._may_start_root(step)
                if not new_root and self.counts.live[i] == 0:
                    break  # nothing to fork and too late for a root: keep the need, the prompt will close
                self.needs[i] = self.needs[i] - 1 if new_root else 0  # forks only: one threshold step for all
                self._retry(i, new_root, runner)
                started |= new_root
        return started

    def _may_start_root(self, step: int) -> bool:
        """A new root may start: before the deadline, and without queueing behind a full engine."""
        if step > self.deadline:
            return False
        return self.capacity is None or sum(self.counts.live) < self.capacity

    def _may_retry(self, i: int) -> bool:
        tree = self.trees[i]
        if self.retry_method is None or tree.stopped or i in self.done or tree.retries >= self.cfg.max_retries:
            return False
        return self.ledger.can_add(i)

    def _worth_waiting(self, i: int, idle: list[int], step: int) -> bool:
        """An unsolved prompt may still borrow slots that busy prompts will free when they close."""
        if not self.ledger.pooled or self.retry_method is None or self.trees[i].stopped:
            return False
        if self.trees[i].retries >= self.cfg.max_retries:
            return False
        if self.ledger.used[i] >= self.ledger.limits[i] + self.ledger.extra_caps[i]:
            return False
        if self.online and step > self.deadline:
            return False  # too late for a new root: nothing more can start
        busy = set(range(len(self.trees))) - self.done - set(idle)
        return bool(busy)
