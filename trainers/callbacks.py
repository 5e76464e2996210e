"""Training for a number of seconds: what runs that compare generators at equal cost need.

A generator that makes steps cheaper earns its place only if the model learns faster per second,
so a comparison gives every generator the same training seconds (generation, scoring and
optimisation since the first step: `eager/train_wall_s`), not the same steps.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import TrainerCallback


class TrainSecondsLimit(TrainerCallback):
    """Stops training after the step at which `args.max_train_seconds` have passed since the first step began.

    Every process reaches the decision together (the slowest process's clock: the maximum over
    processes), so no process waits in a collective that another has left. The last step is saved
    (unless save_strategy is "no"). The seconds count from the run's first step: a run resumed from a
    checkpoint goes on counting from the seconds its checkpoint logged (`EagerGRPOTrainer._resumed_counters`).
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        limit, t0 = args.max_train_seconds, self.trainer.eager_t0
        if limit is None or t0 is None:
            return control
        over = torch.tensor([float(time.perf_counter() - t0 >= limit)], device=self.trainer.accelerator.device)
        if self.trainer.accelerator.reduce(over, reduction="max").item() > 0:
            control.should_training_stop = True
            control.should_log = True  # the last step's seconds are in the logs
            control.should_save = args.save_strategy != "no"  # stopping early loses no finished step
        return control
