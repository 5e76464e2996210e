"""Rows a GRPO step cannot train on, found when the trainer is built rather than halfway through a step.

A row is bad when its prompt is empty, when its prompt fills the engine's window (no room for one
generated token), or when the gold-answer column holds nothing a verifier can grade
(`rewards.extract.normalize_gold` finds no answer: missing, empty, NaN, a solution without a box or
`####`). `bad_rows: stop` (the default) refuses the dataset with every bad row named by index and
column and the fix; `bad_rows: skip` drops them and logs how many left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

BAD_ROWS = ("stop", "skip")
SHOWN = 20  # bad rows an error lists in full


@dataclass(frozen=True)
class BadRow:
    index: int
    column: str
    why: str


def _empty(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return not prompt.strip()
    if isinstance(prompt, list):  # conversational: every message's content empty
        return all(not str(m.get("content") or "").strip() for m in prompt if isinstance(m, dict))
    return prompt is None


def prompt_lengths(dataset: Any, tokenizer: Any) -> list[int]:
    """Token count of every row's prompt as TRL renders it (the chat template for conversational prompts)."""
    from trl.data_utils import maybe_apply_chat_template

    texts = [maybe_apply_chat_template({"prompt": p}, tokenizer)["prompt"] for p in dataset["prompt"]]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def find_bad_rows(dataset: Any, tokenizer: Any, *, window: int | None, gold_column: str | None,
                  answer_kind: str = "math") -> list[BadRow]:
    """Every row of `dataset` (a `datasets.Dataset` with a `prompt` column) that no step can train on.

    `window`: the engine's max model length (None: no length check); `gold_column`: the column the verifier
    reads (None, or a column the dataset lacks: no gold check)."""
    from rewards.extract import normalize_gold

    bad: list[BadRow] = []
    prompts = dataset["prompt"]
    for i, prompt in enumerate(prompts):
        if _empty(prompt):
            bad.append(BadRow(i, "prompt", "is empty"))
    if window is not None:
        empty = {b.index for b in bad}
        for i, n in enumerate(prompt_lengths(dataset, tokenizer)):
            if n >= window and i not in empty:
                bad.append(BadRow(i, "prompt", f"is {n} tokens, not shorter than the engine's window of {window}"))
    if gold_column and gold_column in dataset.column_names:
        for i, gold in enumerate(dataset[gold_column]):
            if normalize_gold(gold, answer_kind) is None:
                bad.append(BadRow(i, gold_column, f"holds no gradable {answer_kind} answer ({str(gold)[:60]!r})"))
    return sorted(bad, key=lambda b: (b.index, b.column))


def explain(bad: list[BadRow], name: str, window: int | None) -> str:
    """The error of `bad_rows: stop`: the rows, then what to change."""
    lines = [f"{name}: row {b.index}, column {b.column!r}, {b.why}" for b in bad[:SHOWN]]
    if len(bad) > SHOWN:
        lines.append(f"... and {len(bad) - SHOWN} more")
    fix = ("Fix or remove these rows, or set bad_rows: skip to train without them (their count is logged)"
           + (f"; for long prompts, raise vllm_max_model_length above {window}" if window else "") + ".")
    return f"{len({b.index for b in bad})} row(s) of {name} cannot be trained on:\n" + "\n".join(lines) + "\n" + fix


def checked(dataset: Any, tokenizer: Any, *, policy: str, window: int | None, gold_column: str | None,
            answer_kind: str, name: str = "train_dataset") -> Any:
    """`dataset` without its bad rows (`policy="skip"`), or unchanged when it has none; `policy="stop"` raises a
    ValueError naming them. Datasets that cannot be indexed (streaming) are left to fail at their step."""
    if dataset is None or not hasattr(dataset, "column_names") or "prompt" not in (dataset.column_names or ()):
        return dataset
    bad = find_bad_rows(dataset, tokenizer, window=window, gold_column=gold_column, answer_kind=answer_kind)
    if not bad:
        return dataset
    if policy == "stop":
        raise ValueError(explain(bad, name, window))
    drop = {b.index for b in bad}
    logger.warning("bad_rows=skip: %d of %d rows of %s left (first: row %d, column %r, %s)", len(drop),
                   len(dataset), name, bad[0].index, bad[0].column, bad[0].why)
    return dataset.select([i for i in range(len(dataset)) if i not in drop])


def check_trainer_rows(model: Any, args: Any, train_dataset: Any, kwargs: dict) -> Any:
    """What `EagerGRPOTrainer` hands TRL as its training set, per `args.bad_rows`: checked before TRL builds the
    engine, with the tokenizer the trainer will use (`processing_class`, else the model's own)."""
    if train_dataset is None or not hasattr(train_dataset, "column_names"):
        return train_dataset
    tokenizer = kwargs.get("processing_class")
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model if isinstance(model, str) else model.config._name_or_path)
    window = args.vllm_max_model_length if args.use_vllm else None  # None: the engine takes the model's own
    gold = args.eager_gold_column if args.rollout_generator == "eager" else None  # the column the verifier reads
    return checked(train_dataset, tokenizer, policy=args.bad_rows, window=window, gold_column=gold,
                   answer_kind=args.eager_answer_kind)
