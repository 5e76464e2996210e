"""Benchmark rows: load a dataset (hub id or local file), find its columns, build the prompts.

The seed's datasets are known by hub id (split and subsets included); any other hub id or a
local `.jsonl` / `.json` / `.parquet` file works too, with the question and answer columns
found from the layouts those datasets use, or named by the user. Rows become `Problem`s:
the text shown to the model, the gold answer, and what kind of verifier scores it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
TASKS = ("auto", "math", "choice", "code")

# Column names in the order they are tried; the seed's layouts (AIME 2024 uses capitals).
QUESTION_COLUMNS = ("Problem", "problem", "question", "Question", "prompt", "input")
ANSWER_COLUMNS = ("Answer", "answer", "target", "solution_answer", "label", "output")
CODE_COLUMNS = ("test", "entry_point")  # a HumanEval(+) row: tests run against the completion

# hub id -> (subsets to concatenate, split). The seed loads these exact splits.
KNOWN_HUB_DATASETS: dict[str, tuple[tuple[str | None, ...], str]] = {
    "maxwell-jia/aime_2024": ((None,), "train"),
    "opencompass/aime2025": (("AIME2025-I", "AIME2025-II"), "test"),
    "matharena/hmmt_feb_2025": ((None,), "train"),
    "fingertap/gpqa-diamond": ((None,), "test"),
    "evalplus/humanevalplus": ((None,), "test"),
    "huggingfaceh4/math-500": ((None,), "test"),
    "openai/gsm8k": (("main",), "test"),
}

INSTRUCTIONS = {
    "math": "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "choice": (
        "Answer the following question using the \\boxed{} environment to indicate the letter of the "
        "correct solution (example: \\boxed{A}).\n\n{question}"
    ),
    "code": (
        "Complete the following Python function. Reason step by step, then write the complete function "
        "(signature included) in a single ```python code block at the end of your answer.\n\n"
        "```python\n{question}```"
    ),
}


class DataError(ValueError):
    """A dataset that cannot be used as asked: the message says what to change."""


@dataclass
class Problem:
    """One benchmark row as the evaluation sees it."""

    index: int  # row number in the dataset (after the optional limit: 0..N-1)
    question: str
    target: Any  # the gold as stored in the dataset (int, str, letter, GSM8K '#### N', ...)
    task: str  # "math", "choice" or "code"
    extra: dict[str, Any] = field(default_factory=dict)  # code rows: test, entry_point, task_id


def is_local_path(data_name: str) -> bool:
    """True when `data_name` names a file rather than a hub id."""
    return data_name.lower().endswith(LOCAL_SUFFIXES) or os.path.exists(data_name)


def load_rows(data_name: str, split: str | None = None, subset: str | None = None) -> list[dict[str, Any]]:
    """Every row of the dataset as a dict, in dataset order."""
    if is_local_path(data_name):
        return _load_local(Path(data_name).expanduser())
    return _load_hub(data_name, split, subset)


def _load_local(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist (give a .jsonl/.json/.parquet file or a hub dataset id).")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and pyarrow's errors are ValueErrors
        raise DataError(f"cannot read data file {path}: {exc}") from exc
    if isinstance(data, dict):  # {"train": [...]} or {"data": [...]} or a columnar dict
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and lists[0] and isinstance(lists[0][0], dict):
            data = lists[0]
        elif lists and all(isinstance(v, list) and len(v) == len(lists[0]) for v in data.values()):
            data = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"data file {path}: expected a list of row objects (or JSON Lines).")
    return data


def _load_hub(data_name: str, split: str | None, subset: str | None) -> list[dict[str, Any]]:
    from datasets import load_dataset

    subsets, known_split = KNOWN_HUB_DATASETS.get(data_name.lower(), ((None,), None))
    if subset is not None:
        subsets = (subset,)
    rows: list[dict[str, Any]] = []
    for name in subsets:
        try:
            ds = load_dataset(data_name, name, split=split or known_split)
        except Exception as exc:  # datasets raises many types (offline, missing split, unknown id)
            raise DataError(f"cannot load dataset {data_name!r} from the hub: {exc}") from exc
        if not hasattr(ds, "to_list"):  # no split given and none known: a DatasetDict
            first = next(iter(ds))
            logger.info("dataset %s: no split given, using %r of %s", data_name, first, list(ds))
            ds = ds[first]
        rows.extend(ds.to_list())
    return rows


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], role: str, flag: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"unknown {role} column {wanted!r}; the dataset has columns {columns}.")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise DataError(f"cannot find the {role} column; the dataset has columns {columns}: name it with {flag}.")


def detect_task(data_name: str, columns: list[str]) -> str:
    """The verifier a dataset needs, from its name and columns."""
    name = data_name.lower()
    if all(c in columns for c in CODE_COLUMNS) or "humaneval" in name or "mbpp" in name:
        return "code"
    if "gpqa" in name:
        return "choice"
    return "math"


def build_problems(
    rows: list[dict[str, Any]],
    data_name: str,
    question_column: str | None = None,
    answer_column: str | None = None,
    task: str = "auto",
    limit: int | None = None,
) -> tuple[list[Problem], dict[str, Any]]:
    """Turn dataset rows into `Problem`s, checking the columns first (errors list those that exist).

    Also returns what was resolved (columns, task), which the results files record.
    """
    if not rows:
        raise DataError(f"dataset {data_name!r} has no rows.")
    columns = list(rows[0].keys())
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose one of {TASKS}.")
    if task == "auto":
        task = detect_task(data_name, columns)
    q_col = _pick_column(columns, question_column, QUESTION_COLUMNS, "question", "--question_column")
    if task == "code":
        # HumanEval rows have no answer column: the tests are the target.
        missing = [c for c in CODE_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"code task needs columns {list(CODE_COLUMNS)}; missing {missing}, have {columns}.")
        a_col = None
    else:
        a_col = _pick_column(columns, answer_column, ANSWER_COLUMNS, "answer", "--answer_column")
    if limit is not None:
        rows = rows[:limit]
    problems = []
    for i, row in enumerate(rows):
        extra = {k: row[k] for k in ("test", "entry_point", "task_id") if k in row} if task == "code" else {}
        target = row.get("task_id", i) if a_col is None else row[a_col]
        problems.append(Problem(index=i, question=str(row[q_col]), target=target, task=task, extra=extra))
    logger.info("dataset %s: %d prompts, question=%r answer=%r task=%s", data_name, len(problems), q_col, a_col, task)
    return problems, {"question_column": q_col, "answer_column": a_col, "task": task}


def prompt_text(problem: Problem, template: str | None = None) -> str:
    """The user message: the question wrapped in the task's instruction (asks for \\boxed{})."""
    template = template or INSTRUCTIONS[problem.task]
    if "{question}" not in template:
        raise DataError(f"prompt template {template!r} has no {{question}} placeholder.")
    # str.replace, not str.format: templates are full of LaTeX braces such as \\boxed{}.
    return template.replace("{question}", problem.question)


def encode_prompt(
    tokenizer: Any, text: str, use_chat_template: bool = True, enable_thinking: bool | None = None
) -> list[int]:
    """Token ids of a prompt, through the chat template when the tokenizer has one."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False, **kwargs
        )
        # The template already holds any BOS; adding special tokens again would double it.
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])
