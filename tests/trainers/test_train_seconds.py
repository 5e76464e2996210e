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
