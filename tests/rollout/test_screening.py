"""The screen allocation on a scripted engine: screening roots, fills for mixed prompts, probes for hard ones,
the pool, and groups that depend on the verdicts alone, never on which sequences finished first."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rollout import EagerConfig, generate
from rollout.config import pool_size
from rollout.schedule import StepCounts
from rollout.screening import ScreenSchedule
from rollout.types import INHERITED, PromptTree
from tests.rollout.scripted import EOS, ScriptedEngine

V = 30


def script(length_of=lambda prompt_len: 6):
    """A near-flat first token (2..21: each root's is fixed by its seed), then a calm run to EOS after
    `length_of(prompt length)` tokens."""

    def logits(completion: list[int], prompt_len: int = 0) -> np.ndarray:
        z = np.zeros(V)
        z[1] = z[22:] = -50.0
        z[EOS] = -50.0
        pos = len(completion)
        if pos >= length_of(prompt_len):
            z[EOS] = 40.0
        elif pos > 0:
            z[2 + pos % 20] = 12.0
        return z

    return logits


def even_first(i: int, ids: list[int]) -> bool:
    return ids[0] % 2 == 0


def cfg(**kw) -> EagerConfig:
    base = dict(method="eager", online=True, allocation="screen", max_sequences=6, screen_roots=2, temperature=1.0,
                max_new_tokens=40, fill_start_limit=2.0, entropy_threshold=0.1, seed=3)
    return EagerConfig(**{**base, **kw})


def prompts(n: int) -> list[list[int]]:
    return [[1] * (3 + i) for i in range(n)]


def screening(tree) -> list[float]:
    return [s.score for s in tree.sequences[:2]]


def test_easy_stops_mixed_fills_hard_probes():
    verdicts = {0: lambda ids: True, 1: lambda ids: False}  # prompt 0 easy, 1 hard, the rest by first token
    r = generate(ScriptedEngine(script()), prompts(8), cfg(probe_roots=1),
                 verifier=lambda i, ids: verdicts.get(i, lambda x: even_first(i, x))(ids))
    easy, hard = r.trees[0], r.trees[1]
    assert easy.n_sequences == 2 and easy.stopped  # all right: too easy, stops after its screening
    assert hard.n_sequences == 3 and not hard.stopped  # all wrong: one probe, still wrong
    mixed = [t for t in r.trees[2:] if set(screening(t)) == {0.0, 1.0}]
    assert mixed, "some screening should come out mixed"
    for t in mixed:
        assert t.n_sequences == 6 and t.stopped  # filled to fill_size = M
    for t in r.trees:
        assert all(s.parent is None for s in t.sequences)  # roots only: independent samples
    assert r.tokens_generated > 0 and sum(t.n_sequences for t in r.trees) <= 8 * 6


def test_a_right_probe_makes_a_hard_prompt_mixed_and_fills_it():
    calls, lock = [], threading.Lock()

    def verdict(i, ids):  # the two screening answers wrong, anything later right (a probe starts only after both)
        with lock:
            calls.append(i)
            return len(calls) > 2

    r = generate(ScriptedEngine(script()), prompts(1), cfg(probe_roots=1), verifier=verdict)
    (tree,) = r.trees
    assert [s.score for s in tree.sequences[:3]] == [0.0, 0.0, 1.0]
    assert tree.n_sequences == 6 and tree.stopped  # the probe's right answer made it mixed: filled


@pytest.mark.parametrize("oversample", [1.0, 2.0, 3.0])
def test_the_pool_holds_max_sequences_x_prompts_over_oversample(oversample):
    r = generate(ScriptedEngine(script()), prompts(9), cfg(oversample=oversample), verifier=even_first)
    assert sum(t.n_sequences for t in r.trees) <= int(9 * 6 / oversample)
    assert all(t.n_sequences >= 2 for t in r.trees)  # every prompt screened


def test_the_pool_is_the_rows_the_trainer_trains_on_even_where_the_float_quotient_falls_short():
    """The trainer hands 30 rows x 1.1 = 33; 33 / 1.1 is 29.999... in floating point, and the pool must still be 30
    (the same count the budget normaliser divides by)."""
    assert 33 / 1.1 < 30 and pool_size(33, 1.1) == 30 and pool_size(40, 1.5) == 26 and pool_size(54, 1.0) == 54
    c = cfg(oversample=1.1)  # 11 prompts x 6 = 66 handed, 60 rows
    trees = [PromptTree(i, [1] * 3, 6, c.entropy_threshold) for i in range(11)]
    assert ScreenSchedule(trees, c).total == 60


def test_groups_depend_on_the_verdicts_not_on_which_prompt_finished_first():
    """Lengths reversed between two runs (the same seeds, so the same first tokens and verdicts): with a pool
    too small to fill every mixed prompt, the same prompts get the same groups, earlier prompts first."""
    c = cfg(oversample=2.0)  # 8 prompts x 6 / 2 = 24 slots: 16 screening, 8 to fill
    fast_first = generate(ScriptedEngine(script(lambda n: 3 + n)), prompts(8), c, verifier=even_first)
    slow_first = generate(ScriptedEngine(script(lambda n: 30 - n)), prompts(8), c, verifier=even_first)
    sizes = [t.n_sequences for t in fast_first.trees]
    assert sizes == [t.n_sequences for t in slow_first.trees]
    assert [screening(t) for t in fast_first.trees] == [screening(t) for t in slow_first.trees]
    mixed = [k for k, t in enumerate(fast_first.trees) if set(screening(t)) == {0.0, 1.0}]
    filled = [k for k in mixed if sizes[k] > 2]
    assert filled == mixed[: len(filled)], "the pool goes to mixed prompts in batch order"
    assert sum(sizes) == 24 or len(filled) == len(mixed)


def arrive(sched, runner, i, verdict):
    """A verdict as the step loop applies it: counted off `pending`, then given to the schedule."""
    runner.counts.pending[i] -= 1
    return sched.verdict(i, verdict)


class Recorder:
    """The step loop's side of the schedule, recording the roots it is asked to start."""

    def __init__(self, n: int = 3):
        self.roots: list[int] = []
        self.counts = StepCounts(n)  # what the step loop counts; the test moves them as the loop would

    def start_root(self, prompt, retry):
        self.roots.append(prompt)

    def set_threshold(self, prompt, threshold):
        pass

    def closed(self, prompt):
        pass


def test_the_schedule_reserves_fills_for_earlier_prompts_still_screening():
    c = cfg(max_sequences=4, oversample=2.0)  # 3 prompts x 4 / 2 = 6 slots: 6 screening, nothing to fill
    trees = [PromptTree(i, [1] * 3, 4, c.entropy_threshold) for i in range(3)]
    sched, runner = ScreenSchedule(trees, c), Recorder()
    sched.begin([0, 1, 2], runner)
    assert runner.roots == [0, 0, 1, 1, 2, 2] and sched.total == 6
    c = cfg(max_sequences=4, oversample=1.5)  # 8 slots: 6 screening, 2 to fill
    trees = [PromptTree(i, [1] * 3, 4, c.entropy_threshold) for i in range(3)]
    sched, runner = ScreenSchedule(trees, c), Recorder()
    sched.begin([0, 1, 2], runner)
    runner.counts.pending[:] = [2, 2, 2]  # every screening root has finished; its verdict is awaited
    arrive(sched, runner, 2, True), arrive(sched, runner, 2, False)  # prompt 2 is mixed first
    runner.roots.clear()
    sched.tick(5, runner)
    assert runner.roots == []  # prompts 0 and 1 still screening: their possible fills come first
    for verdict in (True, True):  # prompt 0: easy
        arrive(sched, runner, 0, verdict)
    sched.tick(6, runner)
    assert runner.roots == []  # prompt 1 (before 2) may still need both free slots
    arrive(sched, runner, 1, False), arrive(sched, runner, 1, False)  # prompt 1: hard (no probes)
    sched.tick(7, runner)
    assert runner.roots == [2, 2]  # now prompt 2 gets the two free slots


def test_fills_leave_room_for_the_forks_of_later_prompts_still_screening():
    """2 prompts x 8 / 2 = 8 slots. Prompt 0 is mixed after its 2 roots while prompt 1's roots still run and may
    fork twice: prompt 0 is filled only to what leaves prompt 1 its forks, so the pool is never overspent."""
    c = cfg(max_sequences=8, oversample=2.0, screen_roots=2, screen_forks=2, fill_size=8)
    trees = [PromptTree(i, [1] * 3, 8, c.entropy_threshold) for i in range(2)]
    sched, runner = ScreenSchedule(trees, c), Recorder()
    sched.begin([0, 1], runner)
    runner.counts.live[1] = 2  # prompt 1's roots still run; prompt 0's have finished, their verdicts awaited
    runner.counts.pending[0] = 2
    arrive(sched, runner, 0, True), arrive(sched, runner, 0, False)
    runner.roots.clear()
    sched.tick(5, runner)
    assert runner.roots == [0, 0]
    while sched.may_fork(1):
        sched.take_slot(1)
    assert sum(sched.used) == sched.total == 8


def test_screen_needs_online_label_aware_eager_and_a_pool_that_screens_everyone():
    with pytest.raises(ValueError, match="allocation"):
        EagerConfig(method="eager", allocation="screen")  # test-time eager: two phases, not one call
    assert EagerConfig(method="eager_init", allocation="screen").allocation == "screen"  # ignored by other methods
    with pytest.raises(ValueError, match="oversample"):
        cfg(oversample=4.0)  # 6 / 4 < 2 screening roots
    with pytest.raises(ValueError, match="oversample"):
        EagerConfig(method="eager", online=True, oversample=2.0)  # the passes allocation spends whole budgets
    with pytest.raises(ValueError, match="fill_size"):
        cfg(fill_size=7)


def test_screening_forks_where_the_entropy_is_high_within_its_own_budget():
    """One root and up to one fork: the near-flat first token forks every root once; fills are roots."""
    r = generate(ScriptedEngine(script()), prompts(6), cfg(screen_roots=1, screen_forks=1), verifier=even_first)
    for t in r.trees:
        screening = t.sequences[:2]
        assert screening[0].parent is None and screening[1].parent == 0 and screening[1].n_inherited == 0
        assert all(s.parent is None for s in t.sequences[2:])  # fills are independent roots
        assert t.n_sequences in (2, 6)
    mixed = [t for t in r.trees if {s.score for s in t.sequences[:2]} == {0.0, 1.0}]
    assert all(t.n_sequences == 6 for t in mixed) and mixed
    with pytest.raises(ValueError, match="screen_forks"):
        cfg(screen_roots=4, screen_forks=3)


def decided_at_two(completion: list[int], prompt_len: int = 0) -> np.ndarray:
    """Calm tokens except position 2, where the token is near-flat over 2..21: the answer (its parity) is decided
    there, and the sample's highest entropy sits there."""
    z = np.full(V, -50.0)
    pos = len(completion)
    if pos >= 6:
        z[EOS] = 40.0
    elif pos == 2:
        z[2:22] = 0.0
    else:
        z[22 + pos] = 12.0
    return z


def answer_at_two(i: int, ids: list[int]) -> bool:
    return ids[2] % 2 == 0


@pytest.mark.parametrize("refill,refill_at", [("fill_with", "entropy"), ("probe_with", "entropy"),
                                               ("probe_with", "surprise")])
def test_refill_forks_continue_a_finished_sample_from_its_most_uncertain_token(refill, refill_at):
    # no fork while generating (threshold 50): refills only; position 2 is both the most uncertain token and the
    # least likely draw
    c = cfg(probe_roots=2, entropy_threshold=50.0, refill_at=refill_at, **{refill: "forks"})
    r = generate(ScriptedEngine(decided_at_two), prompts(12), c, verifier=answer_at_two)
    refilled = 0
    for t in r.trees:
        right = [s.score for s in t.sequences[:2]].count(1.0)
        forks = [s for s in t.sequences if s.parent is not None]
        forked_state = {"fill_with": 0 < right < 2, "probe_with": right == 0}[refill]
        if not forked_state:
            assert not forks  # the other refill starts new roots
            continue
        for s in forks:
            parent = t.sequences[s.parent]
            assert parent.finished and s.n_inherited == 2 and s.tokens[:2] == parent.tokens[:2]
            assert s.entropies[:2] == [INHERITED, INHERITED] and s.entropies[2] > 2.5  # the token at 2 drawn again
            assert sum(s.verdicts_at_start) >= 2  # started by verdicts: budget a verdict placed
            if refill == "probe_with":
                assert parent.score == 0.0  # a probe continues a wrong sample
        assert [b.position for b in t.branches] == [2] * len(forks)
        assert [b.new_seq for b in t.branches] == [s.index for s in forks]
        # the forks spread over the finished samples: a fill of 4 takes each screening sample twice, 2 probes once
        assert [s.parent for s in forks] == {"fill_with": [0, 1, 0, 1], "probe_with": [0, 1]}[refill]
        refilled += 1
    assert refilled > 0, "some prompt should have been refilled"
