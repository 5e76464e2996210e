"""When a prompt gets another pass: the driver's scheduling of extra passes and of closing prompts.

Mixed into `rollout.driver.Driver`, whose state it reads (`trees`, `ledger`, `live_count`,
`pending_count`, `needs`, `steps`, `deadline`, `capacity`, `done`). Two schedules:
- online (`concurrent`): a prompt that showed it needs more (`_note_need`) gets its pass at once,
  as a new root before the deadline and with room in the engine, else as a lowered threshold
  for its running sequences;
- the paper's second phase: an idle, unsolved prompt starts again, one pass after the other.
"""

from __future__ import annotations

from rollout.policy import PromptBranching, retry_threshold


class PassScheduler:
    def _schedule(self) -> bool:
        """Start the extra passes that are due, close prompts that are done. True if a pass started."""
        if not self.concurrent:  # the paper's second phase: one pass after the other
            started = False
            idle = self._idle()
            for i in idle:
                if self._may_retry(i):
                    self._retry(i, new_root=True)
                    started = True
                elif not self._worth_waiting(i, idle):
                    self._close(i)
            return started
        # 1) idle prompts that ask for nothing more close first: their unused budget joins the pool;
        # 2) prompts that asked for more get their passes;
        # 3) idle prompts still asking wait only while busy prompts may free budget before the deadline.
        for i in self._idle():
            if self.needs[i] == 0 or self.trees[i].solved:
                self._close(i)
        started = self._start_needed_passes()
        idle = self._idle()
        for i in idle:
            if not self._worth_waiting(i, idle):
                self._close(i)
        return started

    def _idle(self) -> list[int]:
        """Prompts not closed with nothing running and no verdict pending."""
        return [i for i in range(len(self.trees))
                if i not in self.done and self.live_count[i] == 0 and self.pending_count[i] == 0]

    def _close(self, i: int) -> None:
        self.done.add(i)
        self.ledger.close(i)
        if self.on_tree_done is not None:
            self.on_tree_done(self.trees[i])

    # --- online: extra passes while the first one runs -----------------------------------------
    def _note_need(self, i: int) -> None:
        """Prompt `i` showed it needs more (an unsolved verdict; label-free: its whole budget used)."""
        if self.concurrent:
            self.needs[i] += 1

    def _start_needed_passes(self) -> bool:
        """Give each prompt that asked for more an extra pass, in prompt order, while budget allows.

        Before the deadline, and with room in the engine, a pass is a new root at the lowered
        threshold; after it, the lowered threshold applies to the prompt's running sequences
        only (their forks end when they do, so the critical path does not grow).
        """
        started = False
        for i in sorted(k for k, n in self.needs.items() if n > 0):
            while self.needs[i] > 0 and self._may_retry(i):
                new_root = self._may_start_root()
                if not new_root and self.live_count[i] == 0:
                    break  # nothing to fork and too late for a root: keep the need, the prompt will close
                self.needs[i] = self.needs[i] - 1 if new_root else 0  # forks only: one threshold step for all
                self._retry(i, new_root)
                started |= new_root
        return started

    def _may_start_root(self) -> bool:
        """A new root may start: before the deadline, and without queueing behind a full engine."""
        if self.steps > self.deadline:
            return False
        return self.capacity is None or len(self.live) < self.capacity

    def _retry(self, i: int, new_root: bool) -> None:
        """The prompt's next pass: a lowered threshold and, if `new_root`, a new root sequence."""
        tree = self.trees[i]
        tree.retries += 1
        threshold = retry_threshold(tree.threshold, tree.retries, self.retry_method or "eager")
        if new_root:
            self._start_pass(i, threshold, retry=tree.retries)
        else:
            self.states[i] = PromptBranching(threshold, self.cfg.p99_floor, self.cfg.branch_patience)

    def _may_retry(self, i: int) -> bool:
        tree = self.trees[i]
        if self.retry_method is None or tree.solved or i in self.done or tree.retries >= self.cfg.max_retries:
            return False
        return self.ledger.can_add(i)

    def _worth_waiting(self, i: int, idle: list[int]) -> bool:
        """An unsolved prompt may still borrow slots that busy prompts will free when they close."""
        if not self.ledger.pooled or self.retry_method is None or self.trees[i].solved:
            return False
        if self.trees[i].retries >= self.cfg.max_retries:
            return False
        if self.ledger.used[i] >= self.ledger.limits[i] + self.ledger.extra_caps[i]:
            return False
        if self.concurrent and self.steps > self.deadline:
            return False  # too late for a new root: nothing more can start
        busy = set(range(len(self.trees))) - self.done - set(idle)
        return bool(busy)
