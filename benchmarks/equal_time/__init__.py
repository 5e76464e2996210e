"""The parts of `benchmarks.grpo_equal_time`: saving at shared seconds, scoring curves, the report, the plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class SaveAt(TrainerCallback):
    """Saves the model (weights only) every `every` steps, or at the first step past each of `marks` seconds."""

    def __init__(self, trainer: Any, out: Path, marks: list[float] | None = None, every: int = 0) -> None:
        self.trainer, self.out, self.marks, self.every = trainer, out, list(marks or []), every
        self.by_time = marks is not None
        self.saved: list[tuple[int, Path]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        due = False
        if self.by_time:
            elapsed = time.perf_counter() - self.trainer.eager_t0
            while self.marks and elapsed >= self.marks[0]:  # one save, however many marks it passed
                self.marks.pop(0)
                due = True
        elif self.every and state.global_step % self.every == 0:
            due = True
        if due:
            path = self.out / f"step-{state.global_step}"
            self.trainer.save_model(str(path))
            self.saved.append((state.global_step, path))
        return control
