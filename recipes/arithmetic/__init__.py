"""The CPU recipe's own model and task: column-by-column addition, a tiny Qwen2 trained from scratch.

- `task`: problems, worked solutions, gold answers, train/held-out splits, JSONL datasets.
- `tokenizer`: the character tokenizer, built in code and saved with the model.
- `pretrain`: supervised training of the model, cached by config hash (`ensure_model`).
- `evaluate`: held-out accuracy with vLLM (`recipes.heldout`).

Only `task` and `tokenizer` are imported here: `pretrain` and `evaluate` pull in torch and vLLM.
"""

from recipes.arithmetic.task import (
    HELDOUT_DIGITS,
    Problem,
    extract_boxed,
    heldout_problems,
    is_correct,
    make_problems,
    write_splits,
)
from recipes.arithmetic.tokenizer import build_tokenizer

__all__ = [
    "HELDOUT_DIGITS",
    "Problem",
    "build_tokenizer",
    "extract_boxed",
    "heldout_problems",
    "is_correct",
    "make_problems",
    "write_splits",
]
