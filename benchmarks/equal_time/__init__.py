"""The parts of the equal-seconds benchmarks: a task, saving at shared seconds, the runs, the scores, the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Task:
    """What a comparison trains and scores: a recipe on a model, its training rows, and its held-out problems."""

    name: str
    recipe: Path  # a GRPO recipe (YAML of EagerGRPOConfig fields)
    model: str
    rows: list[dict]  # training rows (prompt, answer, ...)
    prompts: list[Any]  # held-out prompts as the model reads them (text or token ids)
    golds: list[str]
    is_correct: Callable[[str, str], bool]
    max_tokens: int  # held-out sampling cap
    max_model_len: int = 256


def training_args(task: Task, fields: dict, seed: int, out: str, steps: int, seconds: float | None):
    """The recipe's EagerGRPOConfig with `fields` over it, training for `steps` (or `seconds`)."""
    import yaml

    from trainers import EagerGRPOConfig
    from trainers.advanced import overlay

    skip = ("model_name_or_path", "dtype", "dataset_name", "reward_funcs")
    recipe = {k: v for k, v in yaml.safe_load(task.recipe.read_text()).items() if k not in skip}
    recipe.update(max_steps=steps, output_dir=out, report_to="none", seed=seed, save_strategy="no",
                  max_train_seconds=seconds)
    return EagerGRPOConfig(**overlay(recipe, fields))


def train(task: Task, fields: dict, seed: int, out: Path, steps: int, marks: list[float] | None, every: int,
          seconds: float | None) -> tuple[list[dict], list[tuple[int, Path]]]:
    """One run; its per-step logs and (step, model directory) of every save, the final model included."""
    from datasets import Dataset

    from benchmarks.grpo_run import train_and_log
    from rewards import boxed_accuracy
    from trainers import EagerGRPOTrainer

    dataset = Dataset.from_list(task.rows).shuffle(seed=seed)
    trainer = EagerGRPOTrainer(model=task.model, reward_funcs=[boxed_accuracy], train_dataset=dataset,
                               args=training_args(task, fields, seed, str(out), steps, seconds))
    saver = SaveAt(trainer, out, marks=marks, every=every)
    trainer.add_callback(saver)
    logs = train_and_log(trainer, save_to=out / "final")
    if not saver.saved or saver.saved[-1][0] != logs[-1]["step"]:
        saver.saved.append((logs[-1]["step"], out / "final"))
    return logs, saver.saved


def run_task(task: Task, generators: dict[str, dict], seeds: list[int], steps: int, every: int,
             out: Path) -> dict[str, list[dict]]:
    """Per seed, every generator for `steps` steps, saving every `every` steps (the isolation runs; a race at equal
    seconds is `race.race`). Returns per generator the runs (seed, logs, saved, train_s)."""
    runs: dict[str, list[dict]] = {g: [] for g in generators}
    for seed in seeds:
        for name, fields in generators.items():
            logs, saved = train(task, fields, seed, out / task.name / f"{name}-{seed}", steps, None, every, None)
            run = dict(seed=seed, logs=logs, saved=saved, train_s=logs[-1]["eager/train_wall_s"])
            runs[name].append(run)
            print(f"[{task.name}] {name} seed={seed}: {len(logs)} steps, {run['train_s']:.1f} s", flush=True)
    return runs
