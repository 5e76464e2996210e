"""The one small supervised training loop of the models this project builds (the arithmetic model, and the
word-problem fine-tune of SmolLM2 in `benchmarks/`): AdamW steps on next-token loss over labelled positions,
until the model is as good as RL wants it.

Training stops on quality, not after a fixed step count: every `eval_every` steps after warm-up,
`validate()` measures, teacher-forced, the probability that a T=1 sample reproduces each validation
problem's worked solution (`solution_probabilities`), and the loop stops once its mean reaches
`target_accuracy`. `steps` and `max_seconds` only cap the cost.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)
IGNORE = -100  # label of positions without loss (prompt, padding)
Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # (input_ids, labels, attention_mask or None)


class LoopSettings(Protocol):
    """The fields of a model's config that the loop reads."""

    steps: int
    lr: float
    warmup_steps: int
    grad_clip: float
    target_accuracy: float
    eval_every: int
    max_seconds: float
    log_every: int


@dataclass
class LoopResult:
    steps_trained: int
    stop_reason: str  # "target_accuracy", "steps" or "max_seconds"
    validation: dict[str, float] | None  # the last validate() (None if it never ran)
    train_seconds: float
    train_cpu_seconds: float  # beside wall time: on a shared machine the wall clock overstates the cost
    final_loss: float | None


def lr_at(step: int, cfg: LoopSettings) -> float:
    """Linear warm-up to `lr`, then cosine decay to lr/10 at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_step(model, opt, ids: torch.Tensor, labels: torch.Tensor, lr: float, clip: float,
               attention_mask: torch.Tensor | None = None) -> float:
    """One AdamW step on next-token loss over the labelled positions; returns the loss."""
    masked = {} if attention_mask is None else {"attention_mask": attention_mask}
    logits = model(input_ids=ids, **masked).logits  # (B, T, V); right padding needs no mask
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


@torch.no_grad()
def solution_probabilities(model, problems: list, batch: Callable[[list], Batch],
                           batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced, per problem: P(a T=1 sample is exactly the solution + EOS), and whether greedy is.

    Exact for deterministic worked solutions (a sample that strays from the worked solution and
    still boxes the right answer is possible but rare), at the cost of one forward pass instead of
    a generation. `batch(problems)` makes the rows. Returns two (N,) tensors: probabilities, 0/1.
    """
    was_training = model.training
    model.eval()
    probs, greedy = [], []
    for i in range(0, len(problems), batch_size):
        ids, labels, mask = batch(problems[i : i + batch_size])
        masked = {} if mask is None else {"attention_mask": mask}
        logprobs = model(input_ids=ids, **masked).logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V)
        target, mask = labels[:, 1:], labels[:, 1:] != IGNORE
        gold = logprobs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        probs.append((gold * mask).sum(-1).exp())
        greedy.append(((logprobs.argmax(-1) == target) | ~mask).all(-1).float())
    model.train(was_training)
    return torch.cat(probs), torch.cat(greedy)


def train_until(model, opt, next_batch: Callable[[], Batch], cfg: LoopSettings,
                validate: Callable[[], dict[str, float]], smoothing: float = 0.05) -> LoopResult:
    """Train until `validate()["sampled_t1"]` reaches `cfg.target_accuracy` (0 or above 1: all `cfg.steps`),
    or `cfg.max_seconds` pass. `smoothing` is the weight of a new loss in the logged running loss."""
    start, cpu_start = time.perf_counter(), time.process_time()
    running: float | None = None
    stop, validation, step = "steps", None, 0
    for step in range(1, cfg.steps + 1):
        ids, labels, mask = next_batch()
        loss = train_step(model, opt, ids, labels, lr_at(step - 1, cfg), cfg.grad_clip, attention_mask=mask)
        running = loss if running is None else (1 - smoothing) * running + smoothing * loss
        elapsed = time.perf_counter() - start
        if step % cfg.log_every == 0:
            logger.info("step %d loss %.4f (%.0f s wall, %.0f s cpu)", step, running, elapsed,
                        time.process_time() - cpu_start)
        if step > cfg.warmup_steps and step % cfg.eval_every == 0 and 0 < cfg.target_accuracy <= 1:
            validation = validate()
            logger.info("step %d validation: %s", step, " ".join(f"{k} {v:.3f}" for k, v in validation.items()))
            if validation["sampled_t1"] >= cfg.target_accuracy:
                stop = "target_accuracy"
                break
        if elapsed > cfg.max_seconds:
            stop = "max_seconds"
            logger.warning("stopping at step %d: %.0f s is over max_seconds", step, elapsed)
            break
    logger.info("stopped after %d steps (%s), %.0f s", step, stop, time.perf_counter() - start)
    return LoopResult(step, stop, validation, round(time.perf_counter() - start, 1),
                      round(time.process_time() - cpu_start, 1), running)


def run_record(kind: str, key: str, config: dict[str, Any], n_params: int, result: LoopResult) -> dict[str, Any]:
    """What a trained model's directory records about how it was made."""
    return {"kind": kind, "key": key, "config": config, "n_params": n_params, "steps_trained": result.steps_trained,
            "stop_reason": result.stop_reason, "validation_accuracy": result.validation,
            "train_seconds": result.train_seconds, "train_cpu_seconds": result.train_cpu_seconds,
            "final_loss": result.final_loss}
