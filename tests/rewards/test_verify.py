"""Grading through the public batch API: right where math-verify's defaults are too generous."""

from __future__ import annotations

import logging
import pickle

import pytest

from rewards import GoldVerifier, Verifier, submit_batch, verify_batch
from rewards.pool import VerifierPool


def boxed(answer: str) -> str:
    return f"Some reasoning first.\nSo the final answer is $\\boxed{{{answer}}}$."


EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", r"\frac12"),
    (r"\frac{9 \sqrt{23}}{23}", r"\frac{9}{\sqrt{23}}"),
    (r"1-\frac{2}{\pi}", r"\frac{\pi-2}{\pi}"),
    (r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}", r"\frac{-1-\sqrt{17}}{2}, \frac{-1+\sqrt{17}}{2}"),
    (r"2^{25} \cdot 26!", r"26! \cdot 2^{25}"),
    ("2125", "2,125"),  # thousands separator, when the gold is one number
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi/2)"),
    (r"\text{Evelyn}", "Evelyn"),
    ("10", r"10\%"),  # math-verify's percentage rule, kept
    ("-3/4", r"-\frac{3}{4}"),
]

NOT_EQUIVALENT = [
    ("1-1/e", "1+1/e"),  # a sign flip that math-verify's bare-number fallback accepts as `1`
    (r"1-\frac{1}{e}", r"1+\frac{1}{e}"),
    ("3, 5", "3"),  # partial answers to a two-part question
    ("3, 5", "5"),
    ("x=3, y=5", "x=3"),
    (r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}", r"\frac{-1+\sqrt{17}}{2}"),
    ("3", "3, 5"),  # hedging with extra answers
    (r"\pm 2", "2"),
    ("-2", "2"),
    (r"\frac{3}{4}", r"\frac{4}{3}"),
    ("12", "1,2"),
    (r"\ln 2", r"\log 2"),  # math-verify reads \log as base 10
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
def test_equivalent_answers_score_one(pool: VerifierPool, gold: str, answer: str) -> None:
    assert verify_batch([boxed(answer)], [gold], pool=pool) == [1.0]


def test_strict_where_math_verify_defaults_are_generous(pool: VerifierPool) -> None:
    golds = [g for g, _ in NOT_EQUIVALENT]
    scores = verify_batch([boxed(a) for _, a in NOT_EQUIVALENT], golds, pool=pool)
    assert scores == [0.0] * len(NOT_EQUIVALENT), list(zip(NOT_EQUIVALENT, scores))


def test_the_generous_default_this_guards_against() -> None:
    """math-verify's defaults on prose: both sides fall back to the bare number 1 and match."""
    from math_verify import parse, verify

    assert verify(parse("The answer is 1-1/e"), parse("The answer is 1+1/e"))


def test_box_required_by_default(pool: VerifierPool) -> None:
    predictions = ["The answer is $\\frac{1}{2}$.", "The answer is 18."]
    assert verify_batch(predictions, ["0.5", "18"], pool=pool) == [0.0, 0.0]
    assert verify_batch(predictions, ["0.5", "18"], pool=pool, require_box=False) == [1.0, 1.0]


def test_choice_letters(pool: VerifierPool) -> None:
    predictions = [boxed("C"), boxed(r"\text{(C)}"), boxed("c"), boxed("B"), boxed("Cats"), "C"]
    assert verify_batch(predictions, ["C"] * 6, "choice", pool=pool) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_unusable_gold_is_none_with_one_warning_naming_the_row(
    pool: VerifierPool, caplog: pytest.LogCaptureFixture
) -> None:
    gold = "a reference solution that never states its final answer " * 40
    with caplog.at_level(logging.WARNING, logger="rewards.verifier"):
        first = verify_batch([boxed("1"), boxed("2")], ["1", gold], pool=pool, row_names=["r0", "r1"])
        again = verify_batch([boxed("2")], [gold], pool=pool)
    assert first == [1.0, None] and again == [None]
    warnings = [r for r in caplog.records if r.name == "rewards.verifier"]
    assert len(warnings) == 1 and "row r1" in warnings[0].getMessage()


def test_verifier_is_picklable_and_callable(pool: VerifierPool) -> None:
    verifier = pickle.loads(pickle.dumps(Verifier(kind="math", timeout_s=2.0)))
    assert verifier(boxed("7"), 7) == 1.0
    assert verifier(boxed("8"), 7) == 0.0
    assert verifier(boxed("8"), None) is None
    assert verifier.batch([boxed("1"), "no box"], ["1", "1"]) == [1.0, 0.0]
    assert verifier.submit([boxed("1")], ["1"]).result(timeout=30) == [1.0]


def test_submit_batch_returns_a_future(pool: VerifierPool) -> None:
    future = submit_batch([boxed(str(i)) for i in range(50)], list(range(50)), pool=pool)
    assert future.result(timeout=30) == [1.0] * 50
    assert submit_batch([], [], pool=pool).result(timeout=1) == []


def test_bad_arguments_raise_at_once() -> None:
    with pytest.raises(ValueError, match="kind"):
        verify_batch(["x"], ["1"], kind="essay")
    with pytest.raises(ValueError, match="golds"):
        verify_batch(["x", "y"], ["1"])
    with pytest.raises(ValueError, match="timeout"):
        Verifier(timeout_s=0)


def test_gold_verifier_decodes_and_grades_against_the_prompts_gold():
    seen = []
    verifier = GoldVerifier(lambda ids: " ".join(map(str, ids)), ["1 2", "3"],
                            lambda text, gold: seen.append((text, gold)) or float(text == gold))
    assert verifier(0, [1, 2]) is True and verifier(1, [1, 2]) is False
    assert seen == [("1 2", "1 2"), ("1 2", "3")]
    assert GoldVerifier(str, [None], lambda text, gold: None)(0, [1]) is None
