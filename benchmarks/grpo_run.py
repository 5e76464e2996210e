"""One GRPO run as the benchmarks measure it: train quietly, keep the per-step logs, free the engine.

`train_and_log` and `summarise` are shared by the GRPO benchmarks, so
both split a run's training seconds the same way: generation and scoring as the trainer logs
them (`eager/time_generation_s`, `eager/time_scoring_s`), optimisation the rest of
`eager/train_wall_s`.
"""

from __future__ import annotations

import gc
from pathlib import Path


def train_and_log(trainer, save_to: Path | None = None) -> list[dict]:
    """Train without progress printing; the per-step logs (those with `eager/` metrics).

    Saves the final model to `save_to` if given, then frees the trainer's colocated engine so
    the next run can build its own.
    """
    from transformers import PrinterCallback, ProgressCallback

    for callback in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    trainer.train()
    if save_to is not None:
        trainer.save_model(str(save_to))
    logs = [h for h in trainer.state.log_history if "eager/rollout_tokens" in h]
    if getattr(trainer, "vllm_generation", None) is not None:
        del trainer.vllm_generation.llm  # free this engine before the next run builds its own
    gc.collect()
    return logs


def summarise(logs: list[dict]) -> dict[str, float]:
    """Training seconds and their split, rollout tokens, and per-step means of signal, rows used and reward."""
    total = lambda key: sum(h[key] for h in logs)  # noqa: E731
    mean = lambda key: sum(h.get(key, float("nan")) for h in logs) / len(logs)  # noqa: E731
    run = dict(train_s=logs[-1]["eager/train_wall_s"], generation_s=total("eager/time_generation_s"),
               scoring_s=total("eager/time_scoring_s"), tokens=total("eager/rollout_tokens"),
               signal=mean("eager/frac_with_signal"), rows_used=mean("eager/rows_used_frac"), reward=mean("reward"))
    run["optimisation_s"] = run["train_s"] - run["generation_s"] - run["scoring_s"]
    return run
