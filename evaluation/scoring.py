"""Scoring completions against the dataset's gold, with the verifiers from `rewards/`.

Math and multiple-choice answers are the last `\\boxed{}` (brace-matched), checked by
`rewards.Verifier`; code completions (HumanEval+) run against the row's tests in the
sandbox of `rewards.code` (the recorded answer is the last ```python block).
`label_verifier` adapts this to the callable label-aware EAGer wants:
`verifier(prompt_index, completion_ids) -> bool | None`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import rewards
from evaluation.data import Problem

logger = logging.getLogger(__name__)

_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The last fenced code block; an unterminated last block counts (the cap may cut the fence)."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        return blocks[-1]
    start = text.rfind("```python")
    return text[start + len("```python") :].lstrip("\n") if start >= 0 else None


class AnswerScorer:
    """Extracts and scores answers for every task kind. Picklable: verifiers are built lazily."""

    def __init__(self, code_timeout_s: float = 10.0) -> None:
        self.code_timeout_s = code_timeout_s
        self._verifiers: dict[str, Any] = {}
        self._code: Any = None

    def _verifier(self, kind: str) -> Any:
        if kind not in self._verifiers:
            self._verifiers[kind] = rewards.Verifier(kind=kind)
        return self._verifiers[kind]

    def extract(self, problem: Problem, text: str) -> str | None:
        if problem.task == "code":
            return extract_code(text)
        return rewards.extract_boxed(text)

    def score_texts(self, problem: Problem, texts: list[str]) -> tuple[list[str | None], list[float | None]]:
        """Answers and verdicts of completions: 1.0 right, 0.0 wrong or no answer, None if the gold is unusable."""
        answers = [self.extract(problem, t) for t in texts]
        if not texts:
            return answers, []
        if problem.task == "code":
            return answers, self._run_code(problem, texts)
        # The verifier reads the completion itself (last box) and grades a batch in its worker pool.
        return answers, list(self._verifier(problem.task).batch(texts, [problem.target] * len(texts)))

    def grade(self, text: str, problem: Problem) -> float | None:
        """One completion's verdict (`rewards.GoldVerifier`'s grade)."""
        return self.score_texts(problem, [text])[1][0]

    def score_answer(self, problem: Problem, answer: str | None) -> float | None:
        """Verdict of an already extracted answer (files that kept answers, not completions)."""
        if answer is None:
            return 0.0
        text = f"```python\n{answer}```" if problem.task == "code" else f"\\boxed{{{answer}}}"
        return self.score_texts(problem, [text])[1][0]

    def _run_code(self, problem: Problem, texts: list[str]) -> list[float | None]:
        if self._code is None:
            self._code = rewards.CodeAccuracy(timeout_s=self.code_timeout_s)  # sandboxed, rows in parallel
        n = len(texts)
        scores = self._code(texts, test=[problem.extra["test"]] * n, entry_point=[problem.extra["entry_point"]] * n,
                            prompts=[problem.question] * n)
        return [float(x) for x in scores]


def label_verifier(problems: list[Problem], tokenizer: Any, scorer: AnswerScorer) -> rewards.GoldVerifier:
    """`verifier(prompt_index, completion_ids) -> bool | None` for label-aware EAGer.

    `problems[prompt_index]` must be the problem of the `prompt_index`-th prompt handed to
    rollout (the batch's order, not the dataset's).
    """
    return rewards.GoldVerifier(lambda ids: tokenizer.decode(ids, skip_special_tokens=True), problems, scorer.grade)


def lowest_centroid(entropy_lists: list[list[float]], answers: list[str | None], tau: float = 0.1) -> int | None:
    """Label-free pick of one sequence (Entropy Centroid, arXiv 2604.26173), among those with an answer.

    As `rewards.centroid.select_answer`, but returns the sequence's index so its verdict can be
    looked up. None when no answered sequence has a high-entropy phase.
    """
    candidates = [i for i, a in enumerate(answers) if a]
    chosen = rewards.lowest_centroid_select([entropy_lists[i] for i in candidates], tau=tau)
    return None if chosen is None else candidates[chosen]
