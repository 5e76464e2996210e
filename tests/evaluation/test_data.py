"""Datasets by local file or hub id, their columns, and the prompts built from them."""

from __future__ import annotations

import json

import pytest

from evaluation import data
from evaluation.data import DataError, build_problems, load_rows

LAYOUTS = [  # file, question column, answer column, first target
    ("aime_2024.jsonl", "Problem", "Answer", 204),
    ("aime_2025.jsonl", "question", "answer", "70"),
    ("hmmt_feb_2025.jsonl", "problem", "answer", "103"),
    ("math500.jsonl", "problem", "answer", None),
    ("gsm8k_test.jsonl", "question", "answer", None),
]


@pytest.mark.parametrize("name,q_col,a_col,first", LAYOUTS)
def test_columns_of_the_shared_files_are_found(shared_data, name, q_col, a_col, first):
    path = str(shared_data / name)
    problems, info = build_problems(load_rows(path), path, limit=3)
    assert (info["question_column"], info["answer_column"], info["task"]) == (q_col, a_col, "math")
    assert len(problems) == 3 and [p.index for p in problems] == [0, 1, 2]
    if first is not None:
        assert problems[0].target == first


def test_unknown_column_lists_the_columns(shared_data):
    path = str(shared_data / "aime_2024.jsonl")
    with pytest.raises(DataError, match="unknown question column 'nope'") as err:
        build_problems(load_rows(path), path, question_column="nope")
    for col in ("ID", "Problem", "Solution", "Answer"):
        assert col in str(err.value)


def test_unrecognised_layout_asks_for_the_flag(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"foo": "q", "bar": "a"}) + "\n")
    with pytest.raises(DataError, match="--question_column") as err:
        build_problems(load_rows(str(path)), str(path))
    assert "'foo'" in str(err.value) and "'bar'" in str(err.value)
    problems, _ = build_problems(load_rows(str(path)), str(path), question_column="foo", answer_column="bar")
    assert (problems[0].question, problems[0].target) == ("q", "a")


def test_json_and_parquet_files_load_like_jsonl(tmp_path, shared_data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = load_rows(str(shared_data / "aime_2025.jsonl"))[:4]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"train": rows}))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    for name in ("a.json", "b.json", "c.parquet"):
        assert load_rows(str(tmp_path / name)) == rows


def test_missing_or_broken_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"question": "x"\n')
    with pytest.raises(DataError, match="bad.jsonl"):
        load_rows(str(tmp_path / "bad.jsonl"))


def test_seed_hub_ids_use_the_seeds_splits(monkeypatch):
    import datasets

    calls = []

    class FakeSplit:
        def __init__(self, name):
            self.name = name

        def to_list(self):
            return [{"question": f"q-{self.name}", "answer": "1"}]

    def fake_load(name, subset=None, split=None):
        calls.append((name, subset, split))
        return FakeSplit(subset)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    rows = load_rows("opencompass/AIME2025")
    assert calls == [("opencompass/AIME2025", "AIME2025-I", "test"), ("opencompass/AIME2025", "AIME2025-II", "test")]
    assert [r["question"] for r in rows] == ["q-AIME2025-I", "q-AIME2025-II"]
    calls.clear()
    load_rows("Maxwell-Jia/AIME_2024")
    assert calls == [("Maxwell-Jia/AIME_2024", None, "train")]


def test_task_detection():
    code_rows = [{"task_id": "HumanEval/0", "prompt": "def f():\n", "test": "assert f() is None", "entry_point": "f"}]
    problems, info = build_problems(code_rows, "evalplus/humanevalplus")
    assert info["task"] == "code" and problems[0].target == "HumanEval/0"
    assert problems[0].extra["entry_point"] == "f"
    _, info = build_problems([{"question": "q", "answer": "B"}], "fingertap/GPQA-Diamond")
    assert info["task"] == "choice"


def test_prompts_ask_for_a_boxed_answer_in_the_chat_template(qwen_tokenizer):
    problem = data.Problem(0, "What is 2+3?", 5, "math")
    text = data.prompt_text(problem)
    assert "What is 2+3?" in text and "\\boxed{}" in text
    ids = data.encode_prompt(qwen_tokenizer, text)
    rendered = qwen_tokenizer.decode(ids)
    assert rendered.startswith("<|im_start|>user\n") and rendered.rstrip().endswith("<|im_start|>assistant")
    plain = qwen_tokenizer.decode(data.encode_prompt(qwen_tokenizer, text, use_chat_template=False))
    assert plain == text
    assert data.prompt_text(problem, "Q: {question} A: \\boxed{}") == "Q: What is 2+3? A: \\boxed{}"
    with pytest.raises(DataError, match="placeholder"):
        data.prompt_text(problem, "no placeholder")
