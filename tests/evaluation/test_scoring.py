"""Answers and verdicts through the verifiers of rewards/: math, letters, sandboxed code, Lowest-Centroid."""

from __future__ import annotations

from evaluation.data import Problem
from evaluation.scoring import AnswerScorer, extract_code, lowest_centroid


def test_math_answers_of_every_gold_layout():
    scorer = AnswerScorer()
    cases = [(204, "so \\boxed{204}."), ("\\frac{9 \\sqrt{23}}{23}", "\\boxed{\\frac{9\\sqrt{23}}{23}}"),
             ("Janet sells 9 eggs.\n#### 18", "The answer is \\boxed{18}")]
    for gold, right in cases:
        answers, scores = scorer.score_texts(Problem(0, "q", gold, "math"), [right, "\\boxed{7}", "no box at all"])
        assert scores == [1.0, 0.0, 0.0], gold
        assert answers[1:] == ["7", None]


def test_choice_letters():
    scorer = AnswerScorer()
    _, scores = scorer.score_texts(Problem(0, "q", "C", "choice"), ["\\boxed{C}", "\\boxed{(B)}"])
    assert scores == [1.0, 0.0]


def test_code_runs_in_the_sandbox():
    row = Problem(0, 'def add(a, b):\n    """Sum."""\n', "HumanEval/x", "code",
                  extra={"test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"})
    right = "Easy.\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    answers, scores = AnswerScorer(code_timeout_s=20).score_texts(row, [right, wrong, "no code"])
    assert scores == [1.0, 0.0, 0.0]
    assert answers[0] == "def add(a, b):\n    return a + b\n" and answers[2] is None
    assert extract_code("```python\ndef f():\n    pass") == "def f():\n    pass"  # cut by the length cap


def test_lowest_centroid_agrees_with_rewards_select_answer():
    import random

    from rewards.centroid import select_answer

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 6)
        entropies = [[rng.choice([0.05, 0.1, 0.2, 2.5, 3.0]) for _ in range(rng.randint(5, 40))] for _ in range(n)]
        answers = [rng.choice([None, "1", "2", "3"]) for _ in range(n)]
        texts = [f"\\boxed{{{a}}}" if a else "no answer" for a in answers]
        chosen = lowest_centroid(entropies, answers)
        assert (None if chosen is None else answers[chosen]) == select_answer(texts, entropies)
        if chosen is not None:
            assert answers[chosen] is not None
    assert lowest_centroid([[0.0] * 10], ["1"]) is None  # no high-entropy phase: nothing to pick
