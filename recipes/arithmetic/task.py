"""Multi-digit addition (and subtraction) written out column by column: a verifiable task.

A problem is two operands with the same number of digits. The prompt is the sum itself,
`"4728+3956="`, and the worked solution goes through the columns from the right, one line
each: the column's sum (a carry shows up as a `+1` term of the next column), then, after a
space, the answer so far (this column's digit in front of the previous line's), and at the
end the answer:

    4728+3956=
    8+6=14 4
    2+5+1=8 84
    7+9=16 684
    4+3+1=8 8684
    \\boxed{8684}

(the solution starts with the newline after `=`; the model then emits EOS). The running
answer costs about n^2/2 tokens for n digits but keeps every step local: without it a 1M
model learnt the columns and then failed to read their digits back in reverse order into
the box (most of its errors on 4 digits). Subtraction (`a-b`, with a >= b) writes a borrow
as a leading 1 on the top digit and a `-1` term on the next column (`12-5=7`, then
`17-9-1=7`); its answer drops the running answer's leading zeros.

Difficulty is the digit count. Splits are fixed by a hash of the problem itself, not by a
seed, so the held-out problems never appear in training whatever the seeds (about one
problem in 16 is held out).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rewards import extract_boxed  # the project's one rule (brace-matched last box); re-exported here

OPS = ("+", "-")
SOLUTION_FORMAT = "columns-running-answer-1"  # change it with the solution text: trained models are cached by it
HELDOUT_ONE_IN = 16  # one problem in this many belongs to the held-out split
# The recipe's held-out set: a mixture of difficulties, so that sampled accuracy lands mid-range
# (easy problems mostly solved, hard ones mostly not) and RL sees both outcomes within a group.
HELDOUT_DIGITS = (4, 5, 6)
HELDOUT_SEED = 20251011
TRAIN_SEED = 20251012  # RL prompts; pretraining streams use their own seeds
CHARACTERS_USED = "0123456789+-= \n\\boxed{}"  # every character a prompt or solution can contain


@dataclass(frozen=True)
class Problem:
    a: int
    b: int
    op: str  # "+" or "-"
    digits: int  # digits of each operand: the difficulty

    @property
    def prompt(self) -> str:
        return f"{self.a}{self.op}{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b if self.op == "+" else self.a - self.b)

    @property
    def solution(self) -> str:
        """The completion the model is trained on (without the EOS token)."""
        lines = _addition_lines(self) if self.op == "+" else _subtraction_lines(self)
        return "\n" + "\n".join(lines) + "\n" + boxed(self.answer)

    @property
    def is_heldout(self) -> bool:
        # A stable hash (Python's hash() is salted per process) of the problem's text.
        h = hashlib.blake2b(self.prompt.encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") % HELDOUT_ONE_IN == 0


def boxed(answer: str) -> str:
    return "\\boxed{" + answer + "}"


def _columns(p: Problem) -> list[tuple[int, int]]:
    """(top digit, bottom digit) pairs, least significant first."""
    top, bottom = str(p.a).zfill(p.digits), str(p.b).zfill(p.digits)
    return [(int(x), int(y)) for x, y in zip(reversed(top), reversed(bottom))]


def _addition_lines(p: Problem) -> list[str]:
    lines, carry, so_far = [], 0, ""
    for i, (x, y) in enumerate(_columns(p)):
        s = x + y + carry
        # The last column puts its whole sum (carry digit included) in front of the answer.
        so_far = (str(s) if i == p.digits - 1 else str(s % 10)) + so_far
        lines.append(f"{x}+{y}" + ("+1" if carry else "") + f"={s} {so_far}")
        carry = s // 10
    return lines


def _subtraction_lines(p: Problem) -> list[str]:
    lines, borrow, so_far = [], 0, ""
    for x, y in _columns(p):
        d = x - y - borrow
        lend = d < 0  # borrow 10 from the next column
        so_far = str(d + 10 * lend) + so_far
        lines.append(("1" if lend else "") + f"{x}-{y}" + ("-1" if borrow else "") + f"={d + 10 * lend} {so_far}")
        borrow = int(lend)
    return lines


def max_solution_chars(digits: int) -> int:
    """An upper bound on the length of a `digits`-digit problem's solution (either operation)."""
    # Per column: at most 8 characters ("9+9+1=19", "17-9-1=7"), a space, the answer so far
    # (at most i + 2 digits), a newline; then the box with up to digits + 1 digits.
    columns = sum(8 + 1 + (i + 2) + 1 for i in range(digits))
    return 1 + columns + len(boxed("")) + digits + 1


def sample_problem(rng: random.Random, digits: int, op: str = "+") -> Problem:
    """Operands with exactly `digits` digits (0-9 for one digit); for "-", the larger one on top."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    low = 0 if digits == 1 else 10 ** (digits - 1)
    a, b = rng.randint(low, 10**digits - 1), rng.randint(low, 10**digits - 1)
    if op == "-" and a < b:
        a, b = b, a
    return Problem(a, b, op, digits)


def iter_problems(
    seed: int, digits: Sequence[int], ops: Sequence[str] = ("+",), split: str = "train"
) -> Iterator[Problem]:
    """An endless, seed-deterministic stream of problems of one split.

    Each problem draws its digit count uniformly from `digits` (repeat a count to weight it)
    and its operation from `ops`. Problems of the other split are skipped.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if not digits or min(digits) < 1:
        raise ValueError(f"digits must be a non-empty list of counts >= 1, got {list(digits)}")
    rng = random.Random(seed)
    want_heldout = split == "heldout"
    while True:
        p = sample_problem(rng, rng.choice(list(digits)), rng.choice(list(ops)))
        if p.is_heldout == want_heldout:
            yield p


def make_problems(
    n: int, seed: int, digits: Sequence[int], ops: Sequence[str] = ("+",), split: str = "train", unique: bool = True
) -> list[Problem]:
    """`n` problems from `iter_problems`; distinct ones when `unique` (ask for fewer than exist)."""
    out, seen = [], set()
    for p in iter_problems(seed, digits, ops, split):
        if unique and p in seen:
            continue
        seen.add(p)
        out.append(p)
        if len(out) == n:
            return out
    raise AssertionError("unreachable: iter_problems is endless")


def heldout_problems(
    n: int = 400, digits: Sequence[int] = HELDOUT_DIGITS, ops: Sequence[str] = ("+",)
) -> list[Problem]:
    """The recipe's held-out set: the first `n` distinct held-out problems of the fixed seed."""
    return make_problems(n, HELDOUT_SEED, digits, ops, split="heldout")


def to_record(p: Problem) -> dict:
    """A dataset row: TRL's `prompt` column and our rewards' `answer` column, plus the difficulty."""
    return {"prompt": p.prompt, "answer": p.answer, "digits": p.digits, "op": p.op}


def write_jsonl(problems: Sequence[Problem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for p in problems:
            f.write(json.dumps(to_record(p)) + "\n")
    return path


def write_splits(
    out_dir: str | Path,
    n_train: int = 2000,
    n_heldout: int = 400,
    train_digits: Sequence[int] = HELDOUT_DIGITS,
    heldout_digits: Sequence[int] = HELDOUT_DIGITS,
    ops: Sequence[str] = ("+",),
) -> tuple[Path, Path]:
    """Write `train.jsonl` (RL prompts, train split) and `heldout.jsonl` to `out_dir`."""
    out = Path(out_dir)
    train = make_problems(n_train, TRAIN_SEED, train_digits, ops, split="train")
    heldout = heldout_problems(n_heldout, heldout_digits, ops)
    return write_jsonl(train, out / "train.jsonl"), write_jsonl(heldout, out / "heldout.jsonl")


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def is_correct(completion: str, answer: str) -> bool:
    """Exact string match of the last boxed answer (`rewards.extract_boxed`); no math-verify needed for digits."""
    return extract_boxed(completion) == answer.strip()
