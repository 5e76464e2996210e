"""The paper's metrics on hand-made records, where the right numbers are known."""

from __future__ import annotations

import pytest

from evaluation import metrics


def _record(answers, scores, tokens=10, centroid=None):
    return {"extracted_answers": answers, "scores": scores, "tokens_generated": tokens, "lowest_centroid": centroid}


def test_pass_at_k_is_any_correct():
    assert metrics.pass_at_k([0.0, 0.0, 1.0]) == 1.0
    assert metrics.pass_at_k([0.0, None, 0.0]) == 0.0
    assert metrics.pass_at_k([]) == 0.0


def test_pass_rate_counts_none_as_wrong():
    assert metrics.pass_rate([1.0, 0.0, None, 1.0]) == pytest.approx(0.5)


def test_majority_vote_ties_go_to_the_first_answer_seen():
    assert metrics.majority_index(["3", "4", "4", "3"]) == 0
    assert metrics.majority_index(["4", "3", "3", "4"]) == 0
    assert metrics.majority_index(["1", "2", "2"]) == 1
    assert metrics.majority_index([None, None]) is None


def test_majority_vote_groups_spelling_variants():
    answers = ["7", "\\dfrac{1}{2}", "\\frac{1}{2}", " \\frac {1}{2} ", "7"]
    assert metrics.majority_index(answers) == 1


def test_cons_at_k_uses_the_majority_answers_verdict():
    # majority "5" is wrong although one sequence is right: Pass@k 1, Cons@k 0
    answers, scores = ["5", "12", "5"], [0.0, 1.0, 0.0]
    assert metrics.cons_at_k(answers, scores) == 0.0
    assert metrics.pass_at_k(scores) == 1.0
    assert metrics.cons_at_k(["12", "5", "12"], [1.0, 0.0, 1.0]) == 1.0
    assert metrics.cons_at_k([None, None], [0.0, 0.0]) == 0.0


def test_summarize_averages_prompts_and_keeps_the_seed_names():
    records = [
        _record(["1", "1", "2"], [1.0, 1.0, 0.0], tokens=30, centroid=2),
        _record(["3", "4"], [0.0, 1.0], tokens=10, centroid=1),
        _record([None], [0.0], tokens=5, centroid=None),
    ]
    s = metrics.summarize(records)
    assert s["prompts"] == 3
    assert s["pass_at_k"] == pytest.approx(2 / 3)
    assert s["cons_at_k"] == pytest.approx(1 / 3)  # prompt 2's tie goes to "3", which is wrong
    assert s["pass_rate"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert s["tokens_per_prompt"] == pytest.approx(15.0)
    assert s["tokens_total"] == 45
    assert s["sequences_per_prompt"] == pytest.approx(2.0)
    assert s["lowest_centroid_acc"] == pytest.approx(1 / 3)  # prompt 1 picks a wrong one, prompt 2 a right one
    assert (s["avg_acc"], s["pass_at_1"], s["cons_at_max"]) == (s["pass_rate"], s["pass_at_k"], s["cons_at_k"])


def test_summarize_of_nothing_is_zero():
    assert metrics.summarize([])["pass_at_k"] == 0.0
