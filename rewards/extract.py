"""Answer extraction: the last boxed answer of a completion, and gold answers in every seed layout.

Everything here is plain string work in linear time on inputs capped in length first, so it
is safe to run in the caller's process. Anything that can explode (LaTeX parsing, sympy)
lives in the worker processes of `rewards.pool`.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

MAX_COMPLETION_CHARS = 16_384  # only the tail can hold the final answer; caps every scan
MAX_ANSWER_CHARS = 1_000  # real answers are short; longer boxes are garbage or attacks
MAX_GOLD_CHARS = 200_000  # a full reference solution may be long, but not unbounded

# One pass over the tokens that matter for brace matching. Order matters: `\\` (a LaTeX
# line break) must be eaten before `\{`, and escaped braces are literal characters, not
# groups (`\left\{ ... \right.` would otherwise unbalance a piecewise answer).
_BRACE_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|\\\\|\\[{}]|[{}]")
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]*)")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # never part of an answer
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_CHOICE_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textrm)\s*\{([^{}]*)\}")
# Bounded spans keep these linear: each `$` scans at most to the next one.
_DOLLAR_SPAN = re.compile(r"\$([^$]{1,%d})\$" % MAX_ANSWER_CHARS)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
# Upper case only: "the answer is a ..." must not read as choice A.
_UNBOXED_CHOICE = re.compile(r"(?i:answer)(?:\s+is)?[\s:*(\[]{0,20}([A-J])\b")
_CHOICE = re.compile(r"\(?\s*([A-Za-z])\s*(?:\)|\.|:|$)")


def extract_boxed(text: str, max_chars: int = MAX_COMPLETION_CHARS) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` in `text`, stripped.

    "Last" is the box that closes last, so `\\boxed{\\boxed{3}}` gives the outer content.
    An unclosed box (a truncated completion) is ignored and an earlier complete one wins.
    Only the last `max_chars` characters are scanned: one pass, linear in that length.

    Returns:
        The content ("" for an empty box), or None when there is no complete box.
    """
    if not isinstance(text, str) or not text:
        return None
    if len(text) > max_chars:
        text = text[-max_chars:]
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    stack: list[int] = []  # per open brace: content start if it opened a box, else -1
    best: tuple[int, int] | None = None
    for match in _BRACE_TOKENS.finditer(text):
        token = match.group()
        if token == "}":
            if stack:
                start = stack.pop()
                if start >= 0:
                    best = (start, match.start())
        elif token == "{":
            stack.append(-1)
        elif token[1] in "bf":  # a box opener, `{` included
            stack.append(match.end())
        # `\\`, `\{`, `\}` are literal text and change nothing
    if best is None:
        return None
    return text[best[0] : best[1]].strip()


def extract_answer(text: str, kind: str = "math", require_box: bool = True) -> str | None:
    """The answer to grade in a completion: its last box, stripped of `$`.

    With `require_box=False` (evaluation only) a completion without a box falls back to its
    last `$...$` span or last number (math), or to "answer ... (C)" (choice).
    Returns None when there is nothing to grade, including an answer too long to be real.
    """
    if not isinstance(text, str):
        return None
    text = text[-MAX_COMPLETION_CHARS:]
    answer = extract_boxed(text)
    if answer is None and not require_box:
        answer = _unboxed_answer(text, kind)
    if answer is None:
        return None
    answer = _CONTROL_CHARS.sub("", answer).strip().strip("$").strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer


def _unboxed_answer(text: str, kind: str) -> str | None:
    if kind == "choice":
        found = _UNBOXED_CHOICE.findall(text)
        return found[-1] if found else None
    found = _DOLLAR_SPAN.findall(text) or _NUMBER.findall(text)
    return found[-1] if found else None


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a plain string, or a conversational message list.

    Conversational completions are `[{"role": "assistant", "content": ...}]`; the content may
    also be a list of parts (`{"type": "text", "text": ...}`). Assistant messages are joined,
    so an answer split across messages is still found at the end.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, Sequence):
        return ""
    texts = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, Sequence):
            texts.extend(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(texts)


def strip_thousands(answer: str) -> str:
    """`1,450,000` -> `1450000`; anything else unchanged (so `1,2` stays a pair)."""
    return answer.replace(",", "") if _THOUSANDS.fullmatch(answer) else answer


def normalize_gold(gold: Any, kind: str = "math") -> str | None:
    """The gold answer string of a dataset row, whatever layout the dataset stores.

    Handles an integer (AIME 2024), a LaTeX string (HMMT, MATH-500 `answer`), a full solution
    containing `\\boxed{}` (its last box), GSM8K reasoning ending in `#### N` (N, thousands
    separators removed) and, for `kind="choice"`, a multiple-choice letter.

    Returns:
        The answer, or None when the row holds no usable answer (missing, empty, NaN, a
        solution with neither box nor `####`, or a non-scalar value).
    """
    if isinstance(gold, (list, tuple)) and len(gold) == 1:
        gold = gold[0]
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, numbers.Integral):  # numpy and pandas integers too
        gold = str(int(gold))
    elif isinstance(gold, numbers.Real):
        value = float(gold)
        if not math.isfinite(value):
            return None
        gold = str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(gold, str):
        return None
    text = gold.strip()
    if not text or len(text) > MAX_GOLD_CHARS:
        return None
    if kind == "choice":
        return extract_choice(text)
    boxed = extract_boxed(text, max_chars=MAX_GOLD_CHARS)
    if boxed is not None:
        return boxed if 0 < len(boxed) <= MAX_ANSWER_CHARS else None
    if "####" in text:
        found = _GSM8K_ANSWER.findall(text)
        answer = found[-1].strip().rstrip(".").strip() if found else ""
        return strip_thousands(answer) or None
    if len(text) > MAX_ANSWER_CHARS:
        return None  # a reference solution with no marked final answer
    return text


def extract_choice(answer: str) -> str | None:
    """The multiple-choice letter in an answer: `C`, `(C)`, `\\text{(C)}`, `C) 42`, `c.`.

    Returns the upper-case letter, or None when the answer does not start with one. Only a
    letter standing alone counts: `Cats` is not `C`.
    """
    if not isinstance(answer, str):
        return None
    text = answer[:MAX_ANSWER_CHARS].strip().strip("$").strip()
    for _ in range(3):  # unwrap `\textbf{\text{(C)}}`; a fixed bound keeps this linear
        unwrapped = _CHOICE_WRAPPERS.sub(r"\1", text)
        if unwrapped == text:
            break
        text = unwrapped.strip()
    match = _CHOICE.match(text)
    return match.group(1).upper() if match else None
