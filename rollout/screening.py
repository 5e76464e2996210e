"""The training allocation (`allocation="screen"`): spend a step's sequences where the gradient is.

A GRPO group teaches only if it holds a right and a wrong answer. This schedule finds such
prompts cheaply and gives them the budget, in one call (label-aware, online):

    screen ── every prompt starts `screen_roots` independent roots at once (one engine pass); with
      │        `screen_forks`, its sequences may also fork where the entropy is high, up to that many
      │        more (an uncertain prompt gets more screening, a confident one stays at its roots).
      ▼ its verdicts say what the prompt is:
    easy ──── all screening answers right: it stops; its rows stay unused (no signal in them).
    mixed ─── a right and a wrong answer: a learning signal. It is filled with new roots up to
      │        `fill_size` sequences (default M), so its group estimates its pass rate well.
    hard ──── all screening answers wrong: `probe_roots` more roots, after every prompt's
               screening is decided (lowest priority); a right probe makes it mixed.

`fill_with` / `probe_with` = forks: a fill or probe continues one of the prompt's finished samples
from the token `refill_at` names (its most uncertain, or the one it drew with the lowest
probability), that token drawn again (`rollout.policy.refill_parent` and `decisive_position` choose
which and where), instead of starting a new root: the shared prefix costs no generation.

The pool holds `max_sequences x prompts / oversample` sequences: with oversample f the trainer
hands f times the prompts a step trains on, and EAGer spends at most the step's rows on them.
Slots go to prompts in batch order, never to whichever finished first: a prompt may start
its fill only when the pool covers it after a reservation for every prompt still screening
(the forks it may still take, and for an earlier prompt the fill it would need if it turns out
mixed). So the final groups are a function
of the verdicts alone, and short answers are not favoured. Fills and probes start only up to
`fill_start_limit` x `max_new_tokens` engine steps (they follow a whole screening pass, so a
step's generation lasts at most 1 + fill_start_limit passes) and only with room in the engine.
"""

from __future__ import annotations

from rollout.config import EagerConfig, pool_size
from rollout.schedule import Next, PromptCounts, Runner, is_right, pass_start_deadline
from rollout.types import PromptTree

SCREENING, FILL, EASY, HARD = "screening", "fill", "easy", "hard"


class ScreenSchedule(PromptCounts):
    """The budget state of one training call under the screen allocation (see the module)."""

    def __init__(self, trees: list[PromptTree], config: EagerConfig, capacity: int | None = None) -> None:
        super().__init__(trees)
        self.cfg, self.capacity = config, capacity
        n = len(trees)
        self.limits = [t.budget for t in trees]  # M per prompt (0 for a prompt that could not be generated)
        self.total = pool_size(sum(self.limits), config.oversample)
        self.fill_size = config.fill_size or config.max_sequences
        self.screen_size = config.screen_size
        self.deadline = pass_start_deadline(config.fill_start_limit, config.max_new_tokens)
        self.used = [0] * n
        self.verdicts = [[0, 0] for _ in range(n)]  # [right, wrong]
        self.state = [SCREENING] * n
        self.want = [0] * n  # sequences a prompt's state asks for, not yet started
        self.refill = {FILL: config.fill_with == "forks", HARD: config.probe_with == "forks"}  # fork or new root

    # --- what the step loop tells the schedule ---------------------------------------------------------------
    def verdict(self, i: int, verdict: bool | float | None) -> Next:
        """Apply a verdict. A right and a wrong answer make the prompt mixed at once (STOP: no more forks; it is
        filled); a screening that agrees is decided when the prompt goes idle (`tick`: its forks may still run)."""
        right, wrong = self.verdicts[i]
        right, wrong = (right + 1, wrong) if is_right(verdict) else (right, wrong + 1)
        self.verdicts[i] = [right, wrong]
        if self.state[i] in (SCREENING, HARD) and right and wrong:
            self.state[i], self.want[i] = FILL, max(0, self.fill_size - self.used[i])
            self.trees[i].stopped = True
            return Next.STOP
        return Next.CONTINUE

    def _decide_screening(self, i: int) -> None:
        """Every screening answer of an idle prompt agrees: all right is easy (it stops), all wrong is hard."""
        right, wrong = self.verdicts[i]
        if wrong == 0:
            self.state[i] = EASY
            self.trees[i].stopped = True
        else:
            self.state[i], self.want[i] = HARD, self.cfg.probe_roots

    def sequence_finished(self, i: int) -> None:
        """Without a verifier there is nothing to decide on (the screen allocation is label-aware)."""

    # --- what the step loop asks -----------------------------------------------------------------------------
    def may_fork(self, i: int) -> bool:
        """Forks only while screening, within the prompt's own screening budget (screen_roots + screen_forks)."""
        return self.state[i] == SCREENING and self.used[i] < min(self.limits[i], self.screen_size)

    def take_slot(self, i: int) -> None:
        self.used[i] += 1

    def release_slot(self, i: int) -> None:
        self.used[i] -= 1

    def known_verdicts(self, i: int) -> tuple[int, int]:
        right, wrong = self.verdicts[i]
        return right, wrong

    # --- decisions -------------------------------------------------------------------------------------------
    def begin(self, active: list[int], runner: Runner) -> None:
        self._use_counts(runner)
        self.done = {t.prompt_index for t in self.trees} - set(active)
        for i in active:
            runner.set_threshold(i, self.trees[i].threshold)
            for _ in range(min(self.cfg.screen_roots, self.limits[i])):  # at most its budget M
                self._start(i, runner)

    def tick(self, step: int, runner: Runner) -> bool:
        """Start the roots the pool can give, in batch order; close prompts that are done. True if a root started."""
        for i in self._idle():
            if self.state[i] == SCREENING:
                self._decide_screening(i)
        started = 0
        if step <= self.deadline:
            open_ = [i for i in range(len(self.trees)) if i not in self.done]
            forks = {i: self._forks_left(i) for i in open_ if self.state[i] == SCREENING}
            # Every prompt still screening keeps the forks it may take; an earlier one also what it may need
            # if it turns out mixed.
            free, screening = self.total - sum(self.used) - sum(forks.values()), bool(forks)
            for i in open_:
                if self.state[i] == SCREENING:
                    free -= max(0, self.fill_size - self.used[i] - forks[i])
                elif self.state[i] == FILL:
                    n = self._grant(i, free, runner)
                    free, started = free - n, started + n
            for i in open_ if not screening else ():  # probes last, once screening is decided
                if self.state[i] == HARD:
                    n = self._grant(i, free, runner)
                    free, started = free - n, started + n
        for i in self._idle():
            if self.want[i] == 0 or not self._can_grow(i, step):
                self.done.add(i)
                runner.closed(i)
        return started > 0

    def _grant(self, i: int, free: int, runner: Runner) -> int:
        """Start up to what prompt `i` wants, the pool's `free` slots and its own cap allow, while the engine has
        room. Returns the roots started."""
        n = 0
        while self.want[i] > 0 and n < free and self.used[i] < self.limits[i]:
            if self.capacity is not None and sum(self.counts.live) >= self.capacity:
                break
            self.want[i] -= 1
            self._start(i, runner, fork=self.refill[self.state[i]])
            n += 1
        return n

    def _forks_left(self, i: int) -> int:
        """Forks a screening prompt may still take (`may_fork`), which the pool keeps for it."""
        return max(0, min(self.limits[i], self.screen_size) - self.used[i])

    def _start(self, i: int, runner: Runner, fork: bool = False) -> None:
        """A new sequence of prompt `i`: a root, or with `fork` a fork of one of its finished samples (a root when it
        has none to fork)."""
        self.used[i] += 1
        if not (fork and runner.start_fork(i, 0)):
            runner.start_root(i, 0)

    def _can_grow(self, i: int, step: int) -> bool:
        """An idle prompt that still wants roots waits only while it could get them."""
        if step > self.deadline or self.used[i] >= self.limits[i]:
            return False
        live, pending = self.counts.live, self.counts.pending
        busy = any(j not in self.done and (live[j] or pending[j]) for j in range(len(self.trees)))
        return busy  # with nothing running anywhere, what the pool could not give now it never will
