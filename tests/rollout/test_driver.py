"""The step loop on a scripted engine: where forks happen, what each fork mode does, budgets."""

import numpy as np
import pytest

from rollout import INHERITED, EagerConfig, generate, spend_saved_budget
from rollout.schedule import PassSchedule
from tests.rollout.scripted import EOS, ScriptedEngine

V = 30


def script(high: set[int], length: int, forced: dict[int, int] | None = None, calm_prompt_len: int = -1):
    """Flat logits over tokens 2..21 (entropy ln 20) at positions in `high`, peaked elsewhere, EOS at `length`."""
    forced = forced or {}

    def logits(completion: list[int], prompt_len: int = 0) -> np.ndarray:
        pos = len(completion)
        calm = prompt_len == calm_prompt_len  # this prompt never has a high-entropy position
        z = np.zeros(V)
        z[1] = -50.0  # token 1 marks prompts; completions never use it
        z[EOS] = -50.0
        z[22:] = -50.0  # "flat" means exactly 20 live tokens (2..21), so the sampled one is always in the top 20
        if pos >= length:
            z[EOS] = 40.0
        elif pos in forced:
            z[forced[pos]] = 40.0
        elif calm or pos not in high:
            z[2 + pos % 20] = 10.0
        return z

    return logits


def cfg(**kw) -> EagerConfig:
    base = dict(method="eager_init", max_sequences=8, entropy_threshold=1.0, temperature=1.0,
                max_new_tokens=64, fork_mode="resample", p99_floor=False)
    base.update(kw)
    return EagerConfig(**base)


def prompts(n: int = 1) -> list[list[int]]:
    return [[1] * (3 + i) for i in range(n)]


def check_tree_invariants(tree, max_new: int) -> None:
    for s in tree.sequences:
        assert len(s.tokens) == len(s.logprobs) == len(s.entropies) <= max_new
        assert all(e == INHERITED for e in s.entropies[: s.n_inherited])
        assert all(e >= 0 for e in s.entropies[s.n_inherited :])
        if s.parent is not None:
            parent = tree.sequences[s.parent]
            assert s.tokens[: s.n_inherited] == parent.tokens[: s.n_inherited]
            assert s.logprobs[: s.n_inherited] == parent.logprobs[: s.n_inherited]
        assert s.finished
        if s.finish_reason == "stop":
            assert s.tokens[-1] == EOS and EOS not in s.tokens[:-1]


def test_forks_exactly_at_high_entropy_positions():
    r = generate(ScriptedEngine(script({3, 7}, 10)), prompts(), cfg())
    tree = r.trees[0]
    assert [(b.seq, b.position) for b in tree.branches] == [(0, 3), (0, 7), (1, 7)]
    assert tree.n_sequences == 4
    assert all(len(s.tokens) == 11 and s.finish_reason == "stop" for s in tree.sequences)
    check_tree_invariants(tree, 64)
    # the resampling child drew position 3 itself: it is not inherited, and it did not fork there again
    child = tree.sequences[1]
    assert child.n_inherited == 3 and child.entropies[3] != INHERITED
    # accounting: a shared prefix is counted once
    assert tree.tokens_generated == 11 + (11 - 3) + (11 - 7) + (11 - 7)


def test_p99_floor_stops_forking_on_uniformly_high_entropy():
    everywhere = set(range(20))
    with_floor = generate(ScriptedEngine(script(everywhere, 20)), prompts(), cfg(p99_floor=True))
    without = generate(ScriptedEngine(script(everywhere, 20)), prompts(), cfg(p99_floor=False))
    assert with_floor.trees[0].n_sequences == 2  # only the first token (empty history) beats the floor
    assert without.trees[0].n_sequences == 8  # forks until the budget M


def test_no_fork_after_end_of_thinking():
    think = 25
    s = script({6}, 10, forced={2: think})
    assert generate(ScriptedEngine(s), prompts(), cfg(think_end_token_id=think)).trees[0].n_sequences == 1
    assert generate(ScriptedEngine(s), prompts(), cfg()).trees[0].n_sequences == 2


def test_branching_stops_after_patience_steps_without_fork():
    tree = generate(ScriptedEngine(script({2, 9}, 12)), prompts(), cfg(branch_patience=4)).trees[0]
    assert [b.position for b in tree.branches] == [2]


def test_budget_counts_leaves_including_finished():
    tree = generate(ScriptedEngine(script(set(range(30)), 30)), prompts(), cfg(max_sequences=3)).trees[0]
    assert tree.n_sequences == 3


def test_top2_forces_parent_to_rank1_and_child_to_rank2():
    engine = ScriptedEngine(script({3}, 8))
    tree = generate(engine, prompts(), cfg(fork_mode="top2")).trees[0]
    parent, child = tree.sequences
    # flat logits over tokens 2..29: rank 1 is token 2, rank 2 is token 3 (stable order)
    assert parent.tokens[3] == 2 and child.tokens[3] == 3
    assert 3 in parent.forced and 3 in child.forced
    assert tree.branches[0].original_token == 2 and tree.branches[0].branch_token == 3
    check_tree_invariants(tree, 64)


def test_alternative_keeps_parent_sample_and_gives_child_best_other():
    tree = generate(ScriptedEngine(script({3}, 8)), prompts(), cfg(fork_mode="alternative", seed=5)).trees[0]
    parent, child = tree.sequences
    assert child.tokens[3] == (2 if parent.tokens[3] != 2 else 3)
    assert parent.forced == [] and child.forced == [3]


def test_parallel_is_m_independent_samples_recorded_alike():
    r = generate(ScriptedEngine(script({3, 7}, 10)), prompts(2), cfg(method="parallel", max_sequences=5))
    for tree in r.trees:
        assert tree.n_sequences == 5 and not tree.branches
        assert all(s.parent is None and s.n_inherited == 0 for s in tree.sequences)
        assert tree.tokens_generated == 5 * 11


def test_same_seed_same_trees_and_other_seed_differs():
    def run(seed):
        r = generate(ScriptedEngine(script({1, 4, 6}, 12)), prompts(3), cfg(seed=seed))
        return [[s.tokens for s in t.sequences] for t in r.trees], [t.branches for t in r.trees]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_bad_prompts_are_reported_and_the_others_complete():
    engine = ScriptedEngine(script({3}, 6), prompt_len_cap=100)
    r = generate(engine, [[], [1] * 100, [1, 1, 1]], cfg())
    assert set(r.errors) == {0, 1}
    assert "empty" in r.errors[0] and "max_model_len" in r.errors[1]
    assert r.trees[0].n_sequences == r.trees[1].n_sequences == 0
    assert r.trees[2].n_sequences == 2


def test_eager_requires_a_verifier():
    with pytest.raises(ValueError, match="verifier"):
        generate(ScriptedEngine(script({3}, 6)), prompts(), cfg(method="eager"))


def test_two_phase_eager_gives_saved_budget_to_unsolved_prompts_only():
    m = 4
    r0 = generate(ScriptedEngine(script({3}, 8)), prompts(4), cfg(max_sequences=m))
    used = [t.n_sequences for t in r0.trees]
    assert used == [2, 2, 2, 2]
    solved = {0, 2}
    r = spend_saved_budget(ScriptedEngine(script({3}, 8)), r0.trees, cfg(method="eager", max_sequences=m),
                           verifier=lambda i, ids: i in solved)
    after = [t.n_sequences for t in r.trees]
    assert after[0] == 2 and after[2] == 2  # solved: nothing more
    saved = 4 * m - sum(used)
    assert after[1] + after[3] - 4 == saved  # 8 saved slots split evenly: 4 each (cap M)
    assert all(s.retry >= 1 for t in (r.trees[1], r.trees[3]) for s in t.sequences[2:])


def test_eager_adapt_feeds_prompts_that_used_their_whole_budget():
    m = 2
    eng = ScriptedEngine(lambda c, n: script(set(range(30)) if n % 2 else {3}, 10)(c, n))
    r = generate(eng, prompts(6), cfg(method="eager_adapt", max_sequences=m, seed=3))
    for t in r.trees:
        assert t.n_sequences <= m + 3 * m
        if t.retries:
            assert t.sequences[0].index == 0 and any(s.retry for s in t.sequences)


def test_online_eager_stops_solved_prompts_and_moves_their_budget(monkeypatch):
    m = 4
    engine = ScriptedEngine(script({2, 5, 8}, 12, calm_prompt_len=3))  # prompt 0: one sequence, solved early
    solved_at: dict[int, int] = {}
    original = PassSchedule.verdict

    def spy(self, i, verdict):
        stopped = original(self, i, verdict)
        if self.trees[i].stopped and i not in solved_at:
            solved_at[i] = len(engine.added)
        return stopped

    monkeypatch.setattr(PassSchedule, "verdict", spy)
    r = generate(engine, prompts(3), cfg(method="eager", online=True, max_sequences=m, entropy_threshold=1.0),
                 verifier=lambda i, ids: i == 0)
    assert set(solved_at) == {0} and r.trees[0].stopped
    late = [q for q in engine.added[solved_at[0]:] if q.request_id.startswith("0.")]
    assert late == []  # no new sequence for a prompt once it is solved
    assert sum(t.n_sequences for t in r.trees) <= 3 * m
    assert max(r.trees[1].n_sequences, r.trees[2].n_sequences) > m  # freed budget went to unsolved prompts
    for t in r.trees:
        assert t.n_sequences <= 2 * m
        check_tree_invariants(t, 64)


def test_online_abort_drops_running_sequences_of_a_solved_prompt():
    engine = ScriptedEngine(script({1, 2}, 30))
    r = generate(engine, prompts(1), cfg(method="eager", online=True, max_sequences=4, on_solved="abort",
                                         fork_mode="alternative"), verifier=lambda i, ids: True)
    tree = r.trees[0]
    assert tree.stopped
    # alternative children of an all-high prefix finish at the same time as parents; at least the tree is valid
    assert all(s.finished for s in tree.sequences)


def test_online_eager_is_reproducible_whatever_the_verifier_timing():
    """Verdicts are applied at fixed steps in submission order, so slow or jittery verifiers change nothing."""
    import random
    import time

    def logits(completion, prompt_len=0):  # branches early; each sequence's length depends on its first token
        z = script({0, 6, 9, 12}, 99)(completion, prompt_len)
        if completion and len(completion) >= 4 + completion[0] % 12:
            z[:] = 0.0
            z[EOS] = 40.0
        return z

    class SlowEngine(ScriptedEngine):  # a step takes real time, so verdicts land in the middle of generation
        def step(self):
            time.sleep(0.002)
            return super().step()

    def run(jitter_seed):
        rng = random.Random(jitter_seed)

        def jittery_verifier(i, ids):
            time.sleep(rng.random() * 0.02)
            return sum(ids) % 3 == 0

        r = generate(SlowEngine(logits), prompts(4), cfg(method="eager", online=True, max_sequences=4, seed=7),
                     verifier=jittery_verifier)
        return [[s.tokens for s in t.sequences] for t in r.trees], [t.stopped for t in r.trees]

    assert run(1) == run(2) == run(3) == run(4)
