"""Rows no step can train on are found when the trainer is built: named by index and column with the fix
(`bad_rows: stop`), or dropped with their count logged (`bad_rows: skip`). The real tokenizer of the shipped
arithmetic model; the trainer refuses before TRL builds its engine, so no engine runs here."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset

from recipes.arithmetic.pretrain import SHIPPED
from trainers.dataset_check import checked, find_bad_rows


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SHIPPED)


def dataset() -> Dataset:
    return Dataset.from_list([
        {"prompt": "12+34=", "answer": "46"},
        {"prompt": "   ", "answer": "1"},  # empty prompt
        {"prompt": "1+1=" * 40, "answer": "2"},  # 160 tokens: fills a window of 64
        {"prompt": "5+5=", "answer": ""},  # no gold answer
        {"prompt": "7+1=", "answer": None},  # no gold answer
        {"prompt": "2+2=", "answer": "4"},
    ])


def test_every_bad_row_is_found_by_index_and_column(tokenizer):
    bad = find_bad_rows(dataset(), tokenizer, window=64, gold_column="answer")
    assert [(b.index, b.column) for b in bad] == [(1, "prompt"), (2, "prompt"), (3, "answer"), (4, "answer")]
    assert "not shorter than the engine's window of 64" in bad[1].why
    assert find_bad_rows(dataset(), tokenizer, window=None, gold_column=None) == bad[:1]  # no window, no gold


def test_stop_names_the_rows_and_the_fix(tokenizer):
    with pytest.raises(ValueError) as err:
        checked(dataset(), tokenizer, policy="stop", window=64, gold_column="answer", answer_kind="math")
    text = str(err.value)
    assert text.startswith("4 row(s) of train_dataset cannot be trained on")
    assert "row 1, column 'prompt', is empty" in text and "row 4, column 'answer'" in text
    assert "bad_rows: skip" in text and "raise vllm_max_model_length above 64" in text


def test_skip_drops_them_and_logs_how_many(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="trainers.dataset_check"):
        kept = checked(dataset(), tokenizer, policy="skip", window=64, gold_column="answer", answer_kind="math")
    assert kept["prompt"] == ["12+34=", "2+2="]
    assert "4 of 6 rows of train_dataset left" in caplog.text


def test_the_trainer_refuses_bad_rows_before_building_its_engine(tmp_path):
    from tests.trainers.conftest import make_args
    from trainers import EagerGRPOTrainer

    args = make_args(tmp_path, rollout_generator="eager", vllm_max_model_length=64)
    with pytest.raises(ValueError, match="row 2, column 'prompt', is 1[0-9]+ tokens"):
        EagerGRPOTrainer(model=str(SHIPPED), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                         args=args, train_dataset=dataset())


def test_bad_rows_takes_stop_or_skip(tmp_path):
    from tests.trainers.conftest import make_args

    with pytest.raises(ValueError, match="bad_rows='drop': choose one of \\('stop', 'skip'\\)"):
        make_args(tmp_path, bad_rows="drop")
