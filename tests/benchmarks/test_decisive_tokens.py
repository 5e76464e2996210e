"""The decisive-token profile's arithmetic on samples written by hand (no engine): rates, tokens, replays.

The engine half (`sample`) runs in `python -m benchmarks.decisive_tokens`; here two prompts of two roots
each, with continuations whose verdicts and lengths are chosen so every figure has a known value.
"""

from __future__ import annotations

import pytest

from benchmarks.decisive_tokens import Task, continuation_requests, figures


def task() -> Task:
    return Task("model", None, [[1], [2]], ["a", "b"], None, threshold=1.0, max_new_tokens=10)


def samples():
    # prompt 0: both roots wrong (hard); prompt 1: one right, one wrong (mixed). Roots are 10 tokens long.
    ents = [0.1] * 10
    lps = [-0.1] * 10
    roots = {(0, 0): ([5] * 10, ents[:4] + [2.0] + ents[5:], False, lps[:7] + [-3.0] + lps[8:]),
             (0, 1): ([5] * 10, ents, False, lps), (1, 0): ([5] * 10, ents, True, lps),
             (1, 1): ([5] * 10, ents[:8] + [3.0, 0.1], False, lps)}
    conts = {}
    for key in roots:
        hard = key[0] == 0
        # forks generate 4 new tokens after a 6-token prefix and come back right on the hard prompt; roots
        # generate 10 and stay wrong there; random forks are always wrong.
        conts[f"{key}.fork"] = (key, "fork", 6, 4, hard)
        conts[f"{key}.random"] = (key, "random", 3, 7, False)
        conts[f"{key}.surprise"] = (key, "surprise", 7, 3, True)
        conts[f"{key}.root"] = (key, "root", 0, 10, not hard)
    return roots, conts


def test_rates_tokens_and_the_paired_interval():
    roots, conts = samples()
    out = figures(task(), roots, conts, draws=1)
    assert out["tokens_above_threshold_frac"] == pytest.approx(2 / 40)
    assert out["wrong_roots"] == 3 and out["prompts_with_a_wrong_root"] == 2
    assert out["decisive_fork_rate"] == pytest.approx(2 / 3)  # the hard prompt's two forks are right
    assert out["random_fork_rate"] == 0.0 and out["surprise_fork_rate"] == 1.0
    assert out["surprise_minus_root_rate"] == pytest.approx((1 + (1 - 1)) / 2)  # per prompt: 1 - 0, 1 - 1
    assert out["new_root_rate"] == pytest.approx(1 / 3)  # prompt 1's new root is right
    # per prompt: hard 1 - 0, mixed 0 - 1 -> mean 0, and an interval on 1 df around it
    assert out["fork_minus_root_rate"] == pytest.approx(0.0)
    assert out["fork_minus_root_ci95_low"] < 0 < out["fork_minus_root_ci95_high"]
    assert out["fork_group_token_ratio"] == pytest.approx((40 + 16) / (40 + 40))
    assert out["fork_right_per_token_ratio"] == pytest.approx((2 / 12) / (1 / 30))
    assert out["fork_row_tokens_ratio"] == pytest.approx(10 / 10)  # a fork's row is as long as a root's
    assert out["hard_prompts"] == 1 and out["mixed_prompts"] == 1


def test_replays_count_signal_only_where_a_probe_found_a_right_answer():
    from benchmarks.allocation_bound import DEFAULT_COST as COST, Cost

    roots, conts = samples()
    out = figures(task(), roots, conts, draws=1)
    assert out["probe_fork_signal_frac"] == 1.0  # the forks made the hard prompt mixed: its 4 rows train
    assert out["probe_root_signal_frac"] == 0.0  # the new roots stayed wrong: nothing trains
    assert out["probe_signal_per_second_ratio"] != out["probe_signal_per_second_ratio"]  # undefined, not infinite
    cost = Cost(*COST)
    mixed_roots = [(True, 10), (False, 10)]
    fill_fork = cost.seconds([mixed_roots, [(False, 4), (False, 4)]], 4)
    fill_root = cost.seconds([mixed_roots, [(True, 10), (True, 10)]], 4)
    assert out["fill_seconds_ratio"] == pytest.approx(fill_fork / fill_root) and fill_fork < fill_root


def test_requests_fork_at_the_highest_entropy_token_and_keep_its_prefix():
    roots, _ = samples()
    requests, plan = continuation_requests(task(), {k: (v[0], v[1], v[3]) for k, v in roots.items()}, draws=2, seed=0)
    assert len(requests) == 4 * 2 * 4
    by_id = {r.request_id: r for r in requests}
    fork = by_id["0.0.fork.1"]
    assert plan["0.0.fork.1"] == ((0, 0), "fork", 4)  # entropy 2.0 sits at position 4
    assert fork.token_ids == [1] + [5] * 4 and fork.max_tokens == 10 - 4
    assert by_id["1.1.fork.0"].token_ids == [2] + [5] * 8
    assert plan["0.0.surprise.0"] == ((0, 0), "surprise", 7)  # its least likely token sits at position 7
    assert by_id["0.1.root.0"].token_ids == [1] and by_id["0.1.root.0"].max_tokens == 10
    assert len({r.seed for r in requests}) == len(requests)  # every continuation draws its own tokens
