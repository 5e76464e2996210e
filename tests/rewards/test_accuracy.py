"""The TRL reward functions: TRL's call signature, plain and conversational completions, gold columns."""

from __future__ import annotations

import inspect
import pickle
import threading

import pytest

from rewards import BoxedAccuracy, ChoiceAccuracy, boxed_accuracy, choice_accuracy, format_reward
from rewards.pool import VerifierPool


def trl_kwargs(n: int, **columns: list) -> dict:
    """Everything GRPOTrainer._calculate_rewards passes besides `completions`."""
    return {
        "prompts": [f"prompt {i}" for i in range(n)],
        "completion_ids": [[1, 2, 3]] * n,
        "trainer_state": object(),
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
        "subject": ["algebra"] * n,  # an unrelated dataset column
        **columns,
    }


def test_boxed_accuracy_with_trl_arguments(pool: VerifierPool) -> None:
    completions = [r"so \boxed{\frac{1}{2}}", r"\boxed{0.4}", "no box: 1/2", r"\boxed{3}"]
    scores = boxed_accuracy(completions, **trl_kwargs(4, answer=["0.5", "0.5", "0.5", None]))
    assert scores == [1.0, 0.0, 0.0, None]


def test_conversational_completions(pool: VerifierPool) -> None:
    completions = [[{"role": "assistant", "content": r"Thus \boxed{12}."}], [{"role": "assistant", "content": "12"}]]
    assert boxed_accuracy(completions, **trl_kwargs(2, answer=[12, 12])) == [1.0, 0.0]


def test_gold_column_fallbacks(pool: VerifierPool) -> None:
    solution = r"We find $x = 4$, so the answer is $\boxed{4}$."
    assert boxed_accuracy([r"\boxed{4}"], **trl_kwargs(1, solution=[solution])) == [1.0]
    assert boxed_accuracy([r"\boxed{204}"], **trl_kwargs(1, Answer=[204], Solution=["..."])) == [1.0]
    # per row: a missing `answer` falls back to that row's `solution`
    both = trl_kwargs(2, answer=["7", None], solution=[r"\boxed{0}", r"\boxed{8}"])
    assert boxed_accuracy([r"\boxed{7}", r"\boxed{8}"], **both) == [1.0, 1.0]
    gsm8k = "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"
    assert boxed_accuracy([r"\boxed{7}"], **trl_kwargs(1, answer=[gsm8k])) == [1.0]


def test_configurable_gold_column(pool: VerifierPool) -> None:
    reward = BoxedAccuracy(gold_column="final")
    # TRL names a reward by `getattr(f, "__name__", type(f).__name__)` and awaits it if its
    # `__call__` is a coroutine function (trl.trainer.utils; importing TRL here costs ~10 s).
    assert reward.__name__ == "boxed_accuracy_final"
    assert not inspect.iscoroutinefunction(type(reward).__call__)
    assert reward([r"\boxed{5}"], **trl_kwargs(1, final=["5"], answer=["6"])) == [1.0]
    with pytest.raises(ValueError, match="final"):
        reward([r"\boxed{5}"], **trl_kwargs(1, answer=["5"]))


def test_reward_instances_pickle(pool: VerifierPool) -> None:
    for reward in (BoxedAccuracy(gold_column="answer", name="acc"), ChoiceAccuracy()):
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == reward.__name__ and clone.gold_columns == reward.gold_columns
    assert pickle.loads(pickle.dumps(boxed_accuracy)) is boxed_accuracy


def test_choice_accuracy(pool: VerifierPool) -> None:
    completions = [r"\boxed{B}", r"\boxed{(B)}", r"\boxed{\text{C}}", "B"]
    assert choice_accuracy(completions, **trl_kwargs(4, answer=["B", "b", "B", "B"])) == [1.0, 1.0, 0.0, 0.0]


def test_format_reward() -> None:
    completions = [r"\boxed{1}", r"\boxed{}", "none", [{"role": "assistant", "content": r"\fbox{x}"}]]
    assert format_reward(completions, **trl_kwargs(4)) == [1.0, 0.0, 0.0, 1.0]


def test_rewards_from_a_background_thread(pool: VerifierPool) -> None:
    """TRL may score from any thread; math-verify's own signal timeouts would fail there."""
    result: dict = {}

    def score() -> None:
        result["scores"] = boxed_accuracy([r"\boxed{1-\frac{1}{e}}"] * 3, **trl_kwargs(3, answer=["1-1/e"] * 3))

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(timeout=60)
    assert result["scores"] == [1.0, 1.0, 1.0]
