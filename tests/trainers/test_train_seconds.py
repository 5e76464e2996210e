"""Training for a number of seconds (max_train_seconds): a comparison at equal cost stops where it should."""

from __future__ import annotations

import pytest
from datasets import Dataset

from tests.trainers.conftest import make_args, release
from tests.trainers.helpers import label_reward, rows

pytestmark = pytest.mark.slow  # a real GRPO step


def test_max_train_seconds_stops_training_after_the_step_that_passes_it(tiny_model, tmp_path):
    """A limit every step passes stops after the first step; the step's seconds are logged."""
    from trainers import EagerGRPOTrainer

    args = make_args(tmp_path, max_steps=3, max_train_seconds=1e-9)
    trainer = EagerGRPOTrainer(model=str(tiny_model), reward_funcs=label_reward, args=args,
                               train_dataset=Dataset.from_list(rows(8)))
    try:
        trainer.train()
        assert trainer.state.global_step == 1
        assert "eager/train_wall_s" in [h for h in trainer.state.log_history if "loss" in h][-1]
    finally:
        release(trainer)


def test_a_resumed_run_counts_its_seconds_and_tokens_from_the_checkpoint(tiny_model, tmp_path):
    """Resumed with --resume_from_checkpoint, training seconds, cumulative tokens and the seconds limit go on from
    what the checkpoint logged, so runs compared on those axes stay right after a preemption."""
    from trainers import EagerGRPOTrainer

    def run(**overrides):
        args = make_args(tmp_path / "run", save_strategy="steps", save_steps=2, **overrides)
        trainer = EagerGRPOTrainer(model=str(tiny_model), reward_funcs=label_reward, args=args,
                                   train_dataset=Dataset.from_list(rows(8)))
        return trainer

    first = run(max_steps=2)
    try:
        first.train()
        before = [h for h in first.state.log_history if "loss" in h][-1]
    finally:
        release(first)
    # The limit is already spent at the checkpoint: the resumed run stops after its first step.
    resumed = run(max_steps=4, max_train_seconds=before["eager/train_wall_s"] / 2)
    try:
        resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
        after = [h for h in resumed.state.log_history if "loss" in h][-1]
        assert resumed.state.global_step == 3
        assert after["eager/train_wall_s"] > before["eager/train_wall_s"]
        assert after["eager/rollout_tokens_cumulative"] == pytest.approx(
            before["eager/rollout_tokens_cumulative"] + after["eager/rollout_tokens"])
    finally:
        release(resumed)
