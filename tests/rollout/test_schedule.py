"""The online schedule on a scripted engine: extra passes start while the first pass runs, never after
the deadline, and the critical path stays within the deadline plus one pass."""

import numpy as np
import pytest

from rollout import EagerConfig, generate
from rollout.schedule import pass_start_deadline
from tests.rollout.scripted import EOS, ScriptedEngine

V = 30


class ClockedEngine(ScriptedEngine):
    """A scripted engine that records at which engine step each request was added and finished."""

    def __init__(self, script, max_running: int | None = None) -> None:
        super().__init__(script)
        self.clock = 0
        self.added_at: dict[str, int] = {}
        self.finished_at: dict[str, int] = {}
        if max_running is not None:
            self.max_running = max_running

    def add(self, request) -> None:
        self.added_at[request.request_id] = self.clock
        super().add(request)

    def step(self):
        outs = super().step()
        self.clock += 1
        for o in outs:
            if o.finished:
                self.finished_at[o.request_id] = self.clock
        return outs


def first_token_sets_length(short: int, long: int):
    """Flat logits at position 0 (a fork there); a sequence whose first token is 3 ends after `short`
    tokens, any other after `long`. With top2 forks the parent takes token 2 (long), the child 3 (short)."""

    def logits(completion: list[int], prompt_len: int = 0) -> np.ndarray:
        z = np.zeros(V)
        z[1] = z[22:] = -50.0
        z[EOS] = -50.0
        pos = len(completion)
        if pos == 0:
            z[2], z[3] = 0.2, 0.1  # still near-flat over 20 tokens: entropy ~3 nats; ranks 1 and 2 are tokens 2, 3
            return z
        if pos >= (short if completion[0] == 3 else long):
            z[EOS] = 40.0
        else:
            z[2 + pos % 20] = 12.0
        return z

    return logits


def varied_lengths(high=(0,), calm_even_prompts: bool = False):
    """High entropy at positions `high`; each sequence's length depends on its first token (4..23).
    With `calm_even_prompts`, prompts of even length never branch (they leave budget to the pool)."""

    def logits(completion: list[int], prompt_len: int = 0) -> np.ndarray:
        z = np.zeros(V)
        z[1] = z[22:] = -50.0
        z[EOS] = -50.0
        pos = len(completion)
        calm = calm_even_prompts and prompt_len % 2 == 0
        if completion and pos >= 4 + (completion[0] * 7) % 20:
            z[EOS] = 40.0
        elif calm or pos not in high:
            z[2 + pos % 20] = 12.0
        return z

    return logits


def cfg(**kw) -> EagerConfig:
    base = dict(method="eager", online=True, max_sequences=4, entropy_threshold=1.0, temperature=1.0,
                max_new_tokens=40, fork_mode="top2", p99_floor=False)
    base.update(kw)
    return EagerConfig(**base)


def prompts(n: int) -> list[list[int]]:
    return [[1] * (3 + i) for i in range(n)]


def retry_roots(engine: ClockedEngine, result) -> list[str]:
    """Request ids of roots started by an extra pass (first request of a sequence with retry >= 1 and no parent)."""
    out = []
    for rid in engine.added_at:
        i, s, attempt, _ = (int(x) for x in rid.split("."))
        seq = result.trees[i].sequences[s]
        if seq.retry >= 1 and seq.parent is None and attempt == 0:
            out.append(rid)
    return out


def test_unsolved_prompt_gets_its_extra_pass_while_its_first_pass_still_runs():
    engine = ClockedEngine(first_token_sets_length(short=3, long=30))
    r = generate(engine, prompts(1), cfg(), verifier=lambda i, ids: False)
    tree = r.trees[0]
    assert tree.sequences[0].tokens[0] == 2 and tree.sequences[1].tokens[0] == 3  # parent long, child short
    roots = retry_roots(engine, r)
    assert roots, "the prompt never got an extra pass"
    first_parent_done = max(at for rid, at in engine.finished_at.items() if rid.startswith("0.0."))  # top2 restarts it
    assert engine.added_at[roots[0]] < first_parent_done  # started while the first pass still ran
    assert r.engine_steps < 30 + 10  # the extra pass overlapped: not two passes end to end
    assert tree.n_sequences <= 4 + 4


def test_no_new_root_after_the_deadline_and_late_budget_goes_to_forks():
    c = cfg(pass_start_limit=0.25, max_sequences=8, fork_mode="resample", seed=1)
    deadline = pass_start_deadline(c.pass_start_limit, c.max_new_tokens)
    engine = ClockedEngine(varied_lengths(high=(0, 16)))
    r = generate(engine, prompts(6), c, verifier=lambda i, ids: False)
    roots = retry_roots(engine, r)
    assert roots, "some prompt should have retried before the deadline"
    assert max(engine.added_at[rid] for rid in roots) <= deadline
    assert any(t.retries > sum(1 for s in t.sequences if s.retry and s.parent is None) for t in r.trees), \
        "after the deadline a retry lowers the threshold of running sequences instead of starting a root"
    for t in r.trees:
        assert t.n_sequences <= 2 * c.max_sequences


@pytest.mark.parametrize("limit", [0.0, 0.25, 0.5, 1.0])
def test_critical_path_is_at_most_the_deadline_plus_one_pass_when_every_prompt_retries(limit):
    c = cfg(pass_start_limit=limit, fork_mode="alternative", max_sequences=4, max_new_tokens=24)  # lengths 4..23
    deadline = pass_start_deadline(limit, c.max_new_tokens)
    r = generate(ClockedEngine(varied_lengths(high=(0,))), prompts(6), c, verifier=lambda i, ids: False)
    assert all(not t.stopped for t in r.trees)
    if limit >= 0.5:
        assert any(s.retry for t in r.trees for s in t.sequences)  # extra passes ran
    assert r.engine_steps <= deadline + c.max_new_tokens


def test_extra_roots_wait_for_room_in_the_engine():
    """Three prompts: each parent runs 30 tokens, its top2 child 3. The children's wrong verdicts come
    while three parents still run: with room for two sequences no new root starts; unbounded, they do."""

    def run(max_running):
        engine = ClockedEngine(first_token_sets_length(short=3, long=30), max_running=max_running)
        return engine, generate(engine, prompts(3), cfg(), verifier=lambda i, ids: False)

    engine, r = run(None)
    assert retry_roots(engine, r), "without a bound the unsolved prompts get new roots"
    engine, r = run(2)
    for rid in retry_roots(engine, r):
        at = engine.added_at[rid]
        running = sum(1 for q, a in engine.added_at.items() if a <= at and engine.finished_at.get(q, 10**9) > at
                      and q not in engine.aborted and q != rid)
        assert running < 2, f"{rid} started at step {at} beside {running} running sequences"


def test_online_is_reproducible_and_budgets_hold():
    def run():
        r = generate(ClockedEngine(varied_lengths(high=(0, 5))), prompts(5), cfg(seed=3, fork_mode="resample"),
                     verifier=lambda i, ids: sum(ids) % 4 == 0)
        return r, [[s.tokens for s in t.sequences] for t in r.trees]

    (r1, a), (_, b) = run(), run()
    assert a == b
    assert sum(t.n_sequences for t in r1.trees) <= 5 * 4
    assert all(t.n_sequences <= 2 * 4 for t in r1.trees)


def test_online_eager_adapt_spends_freed_budget_on_prompts_that_used_theirs():
    c = cfg(method="eager_adapt", max_sequences=2, p99_floor=False, fork_mode="resample", seed=2)
    r = generate(ClockedEngine(varied_lengths(high=(0, 5), calm_even_prompts=True)), prompts(6), c)
    assert sum(t.n_sequences for t in r.trees) <= 6 * 2
    assert all(t.n_sequences <= 2 + 3 * 2 for t in r.trees)
    assert any(t.retries for t in r.trees)
    assert r.engine_steps <= pass_start_deadline(c.pass_start_limit, c.max_new_tokens) + c.max_new_tokens


def test_an_extra_pass_starts_pass_roots_roots_at_once():
    engine = ClockedEngine(first_token_sets_length(short=3, long=30))
    r = generate(engine, prompts(1), cfg(pass_roots=2, max_sequences=6), verifier=lambda i, ids: False)
    roots = retry_roots(engine, r)
    first = [rid for rid in roots if r.trees[0].sequences[int(rid.split(".")[1])].retry == 1]
    assert len(first) == 2 and len({engine.added_at[rid] for rid in first}) == 1


def test_signal_rule_stops_a_prompt_at_a_mix_or_at_k_right_answers():
    def verdict(i, ids):  # prompt 0: always right (too easy); prompt 1: right, wrong, ... (a mix); 2: never right
        return {0: True, 1: sum(ids) % 2 == 0, 2: False}[i]

    c = cfg(stop_rule="signal", signal_easy_k=2, fork_mode="resample", seed=4, max_sequences=6)
    r = generate(ClockedEngine(varied_lengths(high=(0, 5))), prompts(3), c, verifier=verdict)
    easy, mixed, hard = r.trees
    scores = [[s.score for s in t.sequences] for t in r.trees]
    assert easy.stopped and scores[0].count(1.0) >= 2 and 0.0 not in scores[0]  # k = 2 right: too easy, stop
    assert mixed.stopped and 1.0 in scores[1] and 0.0 in scores[1]  # a right and a wrong: signal secured
    assert not hard.stopped and set(scores[2]) == {0.0}  # all wrong: still open (no right answer to pair)
    assert easy.retries >= 1  # one right answer alone did not stop it: it asked for more


def test_pass_start_limit_is_checked():
    with pytest.raises(ValueError, match="pass_start_limit"):
        cfg(pass_start_limit=-1)
    with pytest.raises(ValueError, match="stop_rule"):
        cfg(stop_rule="first")
    with pytest.raises(ValueError, match="pass_roots"):
        cfg(pass_roots=0)
    with pytest.raises(ValueError, match="online"):
        EagerConfig(method="eager_init", online=True)


def test_a_none_verdict_counts_as_wrong_in_the_plan_and_in_the_pass_that_spends_it():
    """Phase 2 with the mix rule (one right and one wrong): the first pass left one unverifiable answer
    (verdict None). The plan counts it as wrong, so the prompt is unsolved and gets a share; the pass
    that spends it counts it as wrong too, so the first right answer stops the prompt."""
    from rollout import spend_saved_budget
    from rollout.types import PromptTree, Sequence

    c = cfg(method="eager", online=False, solved_min_incorrect=1, max_sequences=4, fork_mode="resample",
            p99_floor=False, entropy_threshold=100.0)  # no forks: each pass is one root
    first = Sequence(index=0, tokens=[5, EOS], logprobs=[0.0, 0.0], entropies=[0.0, 0.0], finished=True,
                     finish_reason="stop", score=None)
    trees = [PromptTree(0, [1, 1, 1], 4, c.entropy_threshold, sequences=[first])]
    verifier = lambda i, ids: None if ids == [5, EOS] else True  # noqa: E731  (the first answer stays undecidable)
    r = spend_saved_budget(ClockedEngine(varied_lengths(high=())), trees, c, verifier=verifier)
    tree = r.trees[0]
    assert tree.stopped
    assert tree.n_sequences == 2  # one right answer beside the unverifiable one: a mix, stop
    assert tree.sequences[1].verdicts_at_start == (0, 1)


class Recorder:
    """A `rollout.schedule.Runner` that records what the schedule asks for (no engine at all)."""

    def __init__(self, n: int = 2) -> None:
        from rollout.schedule import StepCounts

        self.log: list[tuple] = []
        self.counts = StepCounts(n)  # what the step loop counts; the test moves them as the loop would

    def start_root(self, prompt, retry):
        self.log.append(("root", prompt, retry))

    def set_threshold(self, prompt, threshold):
        self.log.append(("threshold", prompt, round(threshold, 6)))

    def closed(self, prompt):
        self.log.append(("closed", prompt))


def test_the_schedule_alone_decides_roots_thresholds_and_closing():
    from rollout.ledger import call_ledger
    from rollout.schedule import Next, PassSchedule
    from rollout.types import PromptTree

    c = cfg(max_sequences=2, entropy_threshold=1.0, max_new_tokens=40, pass_start_limit=0.5)  # deadline: step 20
    trees = [PromptTree(i, [1] * 3, 2, 1.0) for i in range(2)]
    sched, runner = PassSchedule(trees, c, call_ledger(trees, c), retry_method="eager", online=True,
                             label_aware=True), Recorder()
    sched.begin([0, 1], runner)
    assert runner.log == [("threshold", 0, 1.0), ("root", 0, 0), ("threshold", 1, 1.0), ("root", 1, 0)]
    live = runner.counts.live
    for i in (0, 1):
        live[i] += 1
    # Prompt 0's root ends right at step 3; prompt 1's root keeps running.
    live[0] -= 1
    assert sched.verdict(0, True) is Next.STOP and trees[0].stopped  # stopped at the first right answer
    runner.log.clear()
    sched.tick(3, runner)
    assert runner.log == [("closed", 0)]  # its unused slot joins the pool
    # Prompt 1: a wrong verdict of a forked child before the deadline: a new root at the lowered threshold.
    assert sched.verdict(1, None) is Next.CONTINUE  # None counts as wrong: a need
    runner.log.clear()
    sched.tick(10, runner)
    assert runner.log == [("threshold", 1, 0.8), ("root", 1, 1)]
    live[1] += 1
    # Another wrong verdict after the deadline: no root, the running sequences get the next threshold.
    sched.verdict(1, False)
    runner.log.clear()
    sched.tick(21, runner)
    assert runner.log == [("threshold", 1, 0.64)]
    assert sched.known_verdicts(1) == (0, 2)
