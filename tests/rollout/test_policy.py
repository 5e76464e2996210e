"""Pure pieces: entropy, P99 floor, fork rules, retry schedules, budget ledger."""

import math

import numpy as np
import pytest

from rollout.schedule import Ledger, retry_threshold, split_saved_budget
from rollout.config import EagerConfig
from rollout.entropy import full_vocab_entropy, topk_entropy
from rollout.policy import EntropyHistory, PromptBranching, fork_tokens


def test_uniform_top20_entropy_is_ln20():
    assert topk_entropy(np.full((1, 20), -5.0))[0] == pytest.approx(math.log(20))


def test_absent_entries_are_ignored_and_21st_entry_counts():
    row = np.r_[np.full(20, -3.0), -np.inf]
    assert topk_entropy(row[None])[0] == pytest.approx(math.log(20))
    row[20] = -3.0
    assert topk_entropy(row[None])[0] == pytest.approx(math.log(21))


def test_entropy_is_on_t1_scale_whatever_the_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 50)) * 3
    top = np.sort(logits, axis=1)[:, ::-1][:, :20]
    raw = topk_entropy(top)  # T=1 logits up to a constant
    for t in (0.3, 0.6, 1.7):
        processed = top / t - 7.0  # what an engine reports after temperature (any per-row constant)
        assert topk_entropy(processed, t, after_temperature=True) == pytest.approx(raw)
        assert not np.allclose(topk_entropy(processed), raw)  # forgetting the scale would be wrong


def test_full_vocab_entropy():
    assert full_vocab_entropy(np.zeros((1, 100)))[0] == pytest.approx(math.log(100))


def test_history_percentile_matches_numpy():
    rng = np.random.default_rng(1)
    h = EntropyHistory()
    assert h.percentile() is None
    vals = rng.gamma(2.0, size=500)
    for k, v in enumerate(vals, 1):
        h.add(float(v))
        if k in (1, 2, 7, 100, 500):
            assert h.percentile(99) == pytest.approx(np.percentile(vals[:k], 99))


def test_p99_floor_raises_threshold():
    st = PromptBranching(threshold=1.0)
    assert st.effective_threshold() == 1.0  # empty history: theta
    for v in [2.0] * 50 + [3.0]:
        st.history.add(v)
    assert st.effective_threshold() == pytest.approx(np.percentile([2.0] * 50 + [3.0], 99))
    assert st.wants_fork(2.5, reasoning_closed=False) == (False, st.effective_threshold())
    assert st.wants_fork(3.5, reasoning_closed=False)[0]
    assert not PromptBranching(1.0, use_p99_floor=False).effective_threshold() > 1.0


def test_no_fork_after_reasoning_closed_or_patience():
    st = PromptBranching(threshold=1.0, patience=3)
    assert st.wants_fork(5.0, reasoning_closed=False)[0]
    assert not st.wants_fork(5.0, reasoning_closed=True)[0]
    for _ in range(3):
        st.end_step(forked=False)
    assert not st.open and not st.wants_fork(5.0, reasoning_closed=False)[0]


def test_fork_tokens_per_mode():
    ids = np.array([7, 3, 9, -1])
    lps = np.array([-0.5, -1.0, -2.0, -np.inf])
    assert fork_tokens("top2", 9, ids, lps) == ((7, -0.5), (3, -1.0))
    assert fork_tokens("alternative", 9, ids, lps) == ((9, -2.0), (7, -0.5))
    assert fork_tokens("alternative", 7, ids, lps) == ((7, -0.5), (3, -1.0))
    assert fork_tokens("resample", 3, ids, lps) == ((3, -1.0), None)


def test_retry_schedules():
    assert [round(retry_threshold(2.0, r, "eager"), 6) for r in (1, 2, 3, 4)] == [1.6, 1.28, 0.9216, 0.663552]
    assert [round(retry_threshold(2.0, r, "eager_adapt"), 6) for r in (1, 2, 3, 4)] == [2.0, 2.0, 1.8, 1.62]


def test_ledger_fixed_and_pooled():
    fixed = Ledger([2, 2])
    fixed.add(0), fixed.add(0)
    assert not fixed.can_add(0) and fixed.can_add(1)
    pool = Ledger([2, 2, 2], extra_caps=[2, 2, 2], pooled=True)
    pool.add(0), pool.add(0)
    assert not pool.can_add(0)  # the others still hold their reservations
    pool.add(1)
    pool.close(1)  # solved with 1 of 2: one slot freed
    assert pool.can_add(0)
    pool.add(0)
    assert not pool.can_add(0)
    pool.close(2)  # finished with nothing used: two more
    pool.add(0)
    assert not pool.can_add(0)  # cap M + extra = 4
    assert sum(pool.used) <= pool.total


def test_split_saved_budget_even_with_remainder_and_cap():
    assert split_saved_budget(7, [4, 1, 9], cap=10) == {4: 3, 1: 2, 9: 2}
    assert split_saved_budget(100, [0, 1], cap=8) == {0: 8, 1: 8}
    assert split_saved_budget(0, [0], cap=8) == {}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(max_sequences=0), "max_sequences"),
        (dict(entropy_threshold=-1.0), "entropy_threshold"),
        (dict(method="beam"), "method"),
        (dict(fork_mode="top3"), "fork_mode"),
        (dict(method="eager_init", online=True), "online"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"EagerConfig.{field}="):
        EagerConfig(**kwargs)


def test_decisive_position_is_the_highest_entropy_or_the_least_likely_draw_of_a_sample_s_own_tokens():
    from rollout.policy import decisive_position
    from rollout.types import INHERITED, Sequence

    seq = Sequence(0, [3, 4, 5, 6], logprobs=[-0.1, -0.2, -2.0, -2.0], entropies=[0.1, 0.9, 0.3, 0.9])
    assert decisive_position(seq) == 1 and decisive_position(seq, "entropy") == 1  # the first on a tie
    assert decisive_position(seq, "surprise") == 2
    child = Sequence(1, [3, 4, 7, 8], logprobs=[-0.1, -3.0, -0.5, -0.1], entropies=[INHERITED, INHERITED, 0.2, 0.05],
                     parent=0, n_inherited=2)
    assert decisive_position(child) == 2 and decisive_position(child, "surprise") == 2  # copied tokens never count
    assert decisive_position(Sequence(2, [3], logprobs=[-1.0], entropies=[INHERITED], parent=0, n_inherited=1)) is None
    assert decisive_position(Sequence(3)) is None


def test_refill_parent_spreads_forks_over_finished_uncut_samples():
    from rollout.policy import refill_parent
    from rollout.types import INHERITED, PromptTree, Sequence

    def seq(index, tokens, entropies, **kw):
        return Sequence(index, tokens, logprobs=[-0.5] * len(tokens), entropies=entropies, **kw)

    tree = PromptTree(0, [1], 8, 0.5)
    tree.sequences = [seq(0, [3, 4], [0.5, 0.1], finished=True),
                      seq(1, [3, 5], [0.2, 0.1], finished=True, finish_reason="abort"),
                      seq(2, [3, 4], [0.5, 0.1]),  # still running
                      seq(3, [3, 6], [INHERITED, 0.4], parent=0, n_inherited=1, finished=True)]
    assert refill_parent(tree) == 3  # sample 0 already has a child; 1 was cut, 2 still runs
    tree.sequences.append(seq(4, [3, 6], [INHERITED, 0.4], parent=3, n_inherited=1))
    assert refill_parent(tree) == 0  # both have one child now: the first in the tree
    assert refill_parent(PromptTree(1, [1], 8, 0.5)) is None
