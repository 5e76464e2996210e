"""Scoring one prediction against one gold answer. Runs inside the verifier worker processes.

Nothing here has a time limit of its own: LaTeX parsing and sympy can take unbounded time
(exponent towers, deeply nested parentheses), so `rewards.pool` calls these functions only
in worker processes, under a per-item alarm with a hard kill behind it.

Where math-verify's defaults are too generous, this module is strict:
- math-verify's `parse` falls back to bare numbers in prose, and `verify` accepts any pair of
  the gold and prediction candidates. On `1-1/e` vs `1+1/e` both fall back to `1` and
  match. Here the answer is the boxed content only, parsed as LaTeX only, and exactly one
  gold expression is compared with exactly one predicted expression.
- A partial answer to a multi-part question (`3` for `3, 5`) compares a single element with
  a set and fails; it is never matched element by element.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from rewards.extract import extract_choice, strip_thousands

KINDS = ("math", "choice")

_SPACES = re.compile(r"\s+|\\[,;:! ]|\\left|\\right|\\displaystyle")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac")
_TEXT_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|textrm)\{([^{}]*)\}$")
_INTEGER = re.compile(r"-?\d{1,50}")
_FRACTION = re.compile(r"(-?)(?:\\[dt]?frac\{(-?\d{1,50})\}\{(-?\d{1,50})\}|(-?\d{1,50})/(-?\d{1,50}))")

# Spelled the way models and datasets write answers, so that the LaTeX parser's prediction
# cache (ANTLR's DFA, per process) is warm before the first real item: a cold worker spends
# 30-100 ms on its first tuple or interval, a warm one a few.
WARMUP_ANSWERS = (
    r"\frac{1}{2}", r"-\frac{3}{4}", r"\sqrt{2}", r"2\sqrt{3}+1", r"\frac{\sqrt{5}-1}{2}", r"3\pi",
    r"\frac{\pi}{6}", r"(1, 2)", r"\left( 3, \frac{\pi}{2} \right)", r"[-2, 7]",
    r"(-\infty, 0] \cup (1, \infty)", r"\{1, 2, 3\}", r"x \in [0, 1)", r"x^2 + 2x + 1", r"(a+1)(b-2)",
    r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}", r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"y = 2x + 3",
    r"\text{(A)}", r"10\%", r"\$5.50", r"45^\circ", r"1+2i", r"e^{-1}", r"\log_2 8", r"\sin x", r"2^{10}",
    r"101_2", r"0.25", r"3, 5", r"\pm 2", r"15\text{ cm}^2",
)


def canonical_string(answer: str) -> str:
    """A spelling-insensitive key for exact matching: spacing, `\\left`, `\\dfrac`, `$`, a final dot.

    Only rewrites that cannot change the meaning of an answer, so equal keys mean equal
    answers. Used as the fast path before parsing and as the fallback when the gold does
    not parse.
    """
    text = answer.strip().strip("$").strip()
    text = _SPACES.sub("", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = text.rstrip(".")
    match = _TEXT_WRAPPER.match(text)
    return match.group(1) if match else text


@lru_cache(maxsize=1)
def _latex_config() -> tuple[Any, ...]:
    # Imported lazily: the parent process imports this module's siblings but must never pay
    # for (or run) sympy; only the workers call into here.
    from math_verify import LatexExtractionConfig

    return (LatexExtractionConfig(boxed_match_priority=0),)


@lru_cache(maxsize=4096)
def parse_latex_answer(answer: str) -> Any | None:
    """The sympy value of a bare answer (the content of a box), or None if it does not parse.

    LaTeX extraction only: no bare-number fallback, no string fallback. Cached, because
    golds repeat across a group and identical predictions are common within one.
    """
    from math_verify import parse

    found = parse(
        "\\boxed{" + answer + "}",
        extraction_config=_latex_config(),
        fallback_mode="no_fallback",
        extraction_mode="first_match",
        parsing_timeout=None,  # the worker's alarm is the timeout; signals in here would clash
    )
    return found[0] if found else None


def _is_single_number(expr: Any) -> bool:
    from sympy import Number

    return isinstance(expr, Number)


def _numerically_distinct(gold: Any, answer: Any) -> bool:
    """True when two exact constants differ in value: math-verify would say False, slowly.

    math-verify ends a failed comparison with `simplify(gold - answer)`, often 10-100 ms,
    for pairs whose numeric values already differ. For exact constants (no symbols, no
    floats or percentages, which math-verify rounds or rescales, no sets, relations,
    matrices or complex values) a clearly nonzero difference settles it the same way.
    """
    from sympy import Expr, Float, MatrixBase, Number, UnevaluatedExpr
    from sympy.matrices.expressions import MatrixExpr

    for expr in (gold, answer):
        if not isinstance(expr, Expr) or isinstance(expr, (MatrixBase, MatrixExpr)):
            return False
        if expr.free_symbols or expr.has(Float) or expr.has(UnevaluatedExpr):
            return False
    diff, scale = (gold - answer).evalf(30), gold.evalf(30)
    if not (isinstance(diff, Number) and isinstance(scale, Number)) or not diff.is_finite:
        return False
    return bool(abs(diff) > 1e-12 * max(1, abs(scale)))


@lru_cache(maxsize=8192)
def _verify_pair(gold: str, answer: str) -> bool:
    """math-verify on one gold and one predicted expression, gold first (it is not symmetric)."""
    from math_verify import verify

    gold_expr = parse_latex_answer(gold)
    if gold_expr is None:
        return False
    if _is_single_number(gold_expr):
        answer = strip_thousands(answer)  # `2,125` means 2125 when the gold is one number
    answer_expr = parse_latex_answer(answer)
    if answer_expr is None or _numerically_distinct(gold_expr, answer_expr):
        return False
    return bool(verify(gold_expr, answer_expr, timeout_seconds=None))


def _simple_fraction(answer: str) -> Fraction | None:
    """An integer or a fraction of integers (`-7`, `\\frac{3}{4}`, `-3/4`) as an exact Fraction."""
    if _INTEGER.fullmatch(answer):
        return Fraction(int(answer))
    match = _FRACTION.fullmatch(answer)
    if not match:
        return None
    sign, num, den = match.group(1), match.group(2) or match.group(4), match.group(3) or match.group(5)
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return -value if sign else value


def warm_up() -> None:
    """Prepare a worker: two-stage parsing (`rewards._antlr`), then parse `WARMUP_ANSWERS` once.

    The parsed warm-up answers are forgotten again so that no cache is skewed.
    """
    from rewards._antlr import enable_two_stage_prediction

    enable_two_stage_prediction()
    for answer in WARMUP_ANSWERS:
        parse_latex_answer(answer)
    parse_latex_answer.cache_clear()


def grade_math(answer: str, gold: str, fast_path: bool = True) -> float:
    """1.0 if the extracted answer equals the gold answer, else 0.0.

    Args:
        answer: the prediction's final answer (`rewards.extract.extract_answer`).
        gold: the normalised gold answer (`rewards.extract.normalize_gold`).
        fast_path: settle canonical-string matches and plain rationals without parsing;
            tests turn it off to check that math-verify itself accepts a gold against itself.
    """
    if fast_path:
        if canonical_string(answer) == canonical_string(gold):
            return 1.0
        # Integers and fractions of integers (AIME, GSM8K, most of MATH) are settled without
        # the LaTeX parser, with the verdict math-verify gives them (exact rational equality);
        # `5.0`, `5\\%`, `0.75` and every other spelling still go through math-verify.
        gold_value = _simple_fraction(gold)
        answer_value = _simple_fraction(strip_thousands(answer)) if gold_value is not None else None
        if answer_value is not None:
            return 1.0 if answer_value == gold_value else 0.0
    if parse_latex_answer(gold) is None:
        # The gold does not parse: exact (canonical) string match is the only fair test.
        return 1.0 if canonical_string(answer) == canonical_string(gold) else 0.0
    return 1.0 if _verify_pair(gold, answer) else 0.0


def grade_choice(answer: str, gold: str) -> float:
    """1.0 if the answer's letter equals the gold letter (already upper-case)."""
    letter = extract_choice(answer)
    return 1.0 if letter is not None and letter == gold else 0.0


def grade(kind: str, answer: str, gold: str, fast_path: bool = True) -> float:
    """Dispatch on the answer kind; see `grade_math` and `grade_choice`."""
    if kind == "math":
        return grade_math(answer, gold, fast_path)
    if kind == "choice":
        return grade_choice(answer, gold)
    raise ValueError(f"unknown answer kind {kind!r}; expected one of {KINDS}")
