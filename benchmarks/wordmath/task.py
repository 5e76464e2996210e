"""Two-step word problems in English with a worked solution and a `\\boxed{}` answer.

A problem is a story template, a name, an item and three numbers. Its solution is two lines
of arithmetic and the box, for example:

    Mia has 23 marbles. She buys 17 more and then gives 9 to a friend. How many marbles
    does Mia have now?

    23 + 17 = 40.
    40 - 9 = 31.
    The answer is \\boxed{31}.

Difficulty comes from the numbers: a two-digit start, terms of 10-29 and 2-19 in the
additive stories, the times table in the multiplicative ones. That is easy for people and
hard enough for a 135M model sampled at T = 1 (harder numbers, two-digit by one-digit products
and terms up to 99, left it at 12% after the 15-minute fine-tune). The prompt is
rendered with the model's chat template (a short system line asks for the box), so the
dataset's `prompt` column is plain text that TRL, vLLM and `rollout` all read the same way.
Splits are fixed by a hash of the question, as in `recipes.arithmetic.task`: about one
problem in 16 is held out, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

from rewards import extract_boxed

SOLUTION_FORMAT = "two-steps-2"  # change it with the solution text: fine-tuned models are cached by it
SYSTEM = "Solve the problem step by step. Put the final answer in \\boxed{}."
HELDOUT_ONE_IN = 16
HELDOUT_SEED = 20261201
TRAIN_SEED = 20261202  # RL prompts; fine-tuning streams use their own seeds
NAMES = ("Mia", "Leo", "Ava", "Sam", "Zoe", "Ben", "Ivy", "Max", "Ana", "Tom", "Eva", "Raj")
ITEMS = ("marbles", "stickers", "apples", "coins", "cards", "shells", "pencils", "stamps")

# kind -> (question template, first step (x, op, y), second step with "r" for the first result)
STORIES: dict[str, tuple[str, tuple[str, str, str], tuple[str, str, str]]] = {
    "buy_give": ("{name} has {a} {item}. {name} buys {b} more and then gives {c} to a friend. "
                 "How many {item} does {name} have now?", ("a", "+", "b"), ("r", "-", "c")),
    "give_find": ("{name} had {a} {item}, lost {b} of them, and then found {c}. "
                  "How many {item} does {name} have now?", ("a", "-", "b"), ("r", "+", "c")),
    "boxes": ("Each box holds {a} {item}. {name} fills {b} boxes and has {c} {item} left over. "
              "How many {item} does {name} have in all?", ("a", "*", "b"), ("r", "+", "c")),
    "rows": ("A hall has {a} rows of {b} chairs, and {c} of the chairs are taken. "
             "How many chairs are free?", ("a", "*", "b"), ("r", "-", "c")),
    "spend": ("{name} has {a} dollars, spends {b} dollars on lunch and {c} dollars on a book. "
              "How many dollars does {name} have left?", ("a", "-", "b"), ("r", "-", "c")),
}
OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


@dataclass(frozen=True)
class WordProblem:
    kind: str  # a key of STORIES
    name: str
    item: str
    a: int
    b: int
    c: int

    @property
    def question(self) -> str:
        return STORIES[self.kind][0].format(name=self.name, item=self.item, a=self.a, b=self.b, c=self.c)

    def steps(self) -> list[tuple[int, str, int, int]]:
        """(x, op, y, result) of the two steps."""
        values, out = {"a": self.a, "b": self.b, "c": self.c}, []
        for x, op, y in STORIES[self.kind][1:]:
            result = OPS[op](values[x], values[y])
            out.append((values[x], op, values[y], result))
            values["r"] = result
        return out

    @property
    def answer(self) -> str:
        return str(self.steps()[-1][3])

    @property
    def solution(self) -> str:
        """The completion the model is fine-tuned on (without the end-of-turn token)."""
        lines = [f"{x} {op} {y} = {r}." for x, op, y, r in self.steps()]
        return "\n".join(lines) + "\nThe answer is \\boxed{" + self.answer + "}."

    @property
    def is_heldout(self) -> bool:
        h = hashlib.blake2b(self.question.encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") % HELDOUT_ONE_IN == 0


def sample_problem(rng: random.Random) -> WordProblem:
    """A random story with numbers that keep every step's result positive."""
    kind, name, item = rng.choice(sorted(STORIES)), rng.choice(NAMES), rng.choice(ITEMS)
    first_op = STORIES[kind][1][1]
    if first_op == "*":  # the times table, then a term below 20
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(1, min(19, a * b - 1))
    else:  # a two-digit start, terms of 10-29 and 2-19
        a = rng.randint(30, 69)
        b = rng.randint(10, min(29, a - 12))  # a - b >= 12 leaves room for c
        r = OPS[first_op](a, b)
        c = rng.randint(2, min(19, r - 1))
    return WordProblem(kind, name, item, a, b, c)


def iter_problems(seed: int, split: str = "train") -> Iterator[WordProblem]:
    """An endless, seed-deterministic stream of one split's problems."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    rng = random.Random(seed)
    while True:
        p = sample_problem(rng)
        if p.is_heldout == (split == "heldout"):
            yield p


def make_problems(n: int, seed: int, split: str = "train") -> list[WordProblem]:
    """The first `n` distinct problems of a split's stream."""
    out, seen = [], set()
    for p in iter_problems(seed, split):
        if p not in seen:
            seen.add(p)
            out.append(p)
            if len(out) == n:
                return out
    raise AssertionError("unreachable: iter_problems is endless")


def heldout_problems(n: int = 200) -> list[WordProblem]:
    """The held-out set: the first `n` distinct held-out problems of the fixed seed."""
    return make_problems(n, HELDOUT_SEED, split="heldout")


def render_prompt(tokenizer, p: WordProblem) -> str:
    """The question in the model's chat template, up to the assistant turn's start."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p.question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def to_record(tokenizer, p: WordProblem) -> dict:
    """A dataset row: TRL's `prompt` column (chat-rendered text) and our rewards' `answer` column."""
    return {"prompt": render_prompt(tokenizer, p), "answer": p.answer, "kind": p.kind}


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the last boxed answer (`rewards.extract_boxed`), as for the arithmetic task."""
    return extract_boxed(completion) == answer.strip()
