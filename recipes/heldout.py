"""Held-out accuracy with its standard error, for a model or for every checkpoint of a run, on one engine.

`sample_accuracy` draws `samples` completions per held-out problem at a temperature and grades
each; `CheckpointScorer` keeps one vLLM engine and loads each checkpoint's weights into it in
place, so scoring a training curve does not build an engine per point. Every request has its
own seed, derived from the problem's index only, so two models are scored on the same random
numbers: their difference carries less sampling noise than either figure alone.

The standard error is over problems: the standard deviation of the per-problem accuracy (the
share of its samples that are right) over the square root of the number of problems. It covers
the held-out sampling and the generation noise together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.engine_env import cpu_engine_env


@dataclass(frozen=True)
class Accuracy:
    mean: float
    stderr: float
    samples: int  # problem-samples scored
    per_problem: tuple[float, ...] = ()  # each problem's share of right samples, in order

    def __str__(self) -> str:
        return f"{self.mean:.3f} +- {self.stderr:.3f} (n={self.samples})"


def accuracy_of(per_problem: Sequence[float], samples: int) -> Accuracy:
    """Mean and standard error over problems of each problem's share of right samples."""
    n = len(per_problem)
    mean = sum(per_problem) / n
    var = sum((x - mean) ** 2 for x in per_problem) / (n - 1) if n > 1 else 0.0
    return Accuracy(mean, math.sqrt(var / n), samples, tuple(per_problem))


def sample_accuracy(llm: Any, prompts: Sequence[str | list[int]], golds: Sequence[Any],
                    is_correct: Callable[[str, Any], bool], *, max_tokens: int, temperature: float = 1.0,
                    samples: int = 1, seed: int = 0) -> tuple[Accuracy, list[list[str]]]:
    """Score `samples` completions per prompt; returns the accuracy and every completion's text."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    inputs = [TokensPrompt(prompt_token_ids=p) if isinstance(p, list) else p for p in prompts]
    params = [SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens,
                             seed=seed * 1_000_003 + k * 1_009)  # n > 1: vLLM seeds sample j with seed + j
              for k in range(len(prompts))]
    outputs = llm.generate(inputs, params, use_tqdm=False)
    texts = [[c.text for c in out.outputs] for out in outputs]
    per_problem = [sum(bool(is_correct(t, gold)) for t in ts) / len(ts) for ts, gold in zip(texts, golds)]
    return accuracy_of(per_problem, samples * len(prompts)), texts


def build_engine(model_dir: str | Path, max_model_len: int = 256, seed: int = 0, kv_cache_gib: int = 1,
                 **kwargs: Any) -> Any:
    """A vLLM engine for scoring (float32, the CPU settings of `rollout.vllm_engine.build_llm`)."""
    import torch

    if not torch.cuda.is_available():
        cpu_engine_env(kv_cache_gib=kv_cache_gib)  # defaults only: a caller's settings win
    from rollout.vllm_engine import build_llm

    return build_llm(str(model_dir), dtype="float32", max_model_len=max_model_len, seed=seed, **kwargs)


class CheckpointScorer:
    """Held-out accuracy of many checkpoints of one architecture on one engine (weights reloaded in place)."""

    def __init__(self, model_dir: str | Path, prompts: Sequence[str | list[int]], golds: Sequence[Any],
                 is_correct: Callable[[str, Any], bool], *, max_tokens: int, temperature: float = 1.0,
                 samples: int = 1, seed: int = 0, max_model_len: int = 256) -> None:
        self.prompts, self.golds, self.is_correct = list(prompts), list(golds), is_correct
        self.opts = dict(max_tokens=max_tokens, temperature=temperature, samples=samples, seed=seed)
        self.llm = build_engine(model_dir, max_model_len=max_model_len, seed=seed)
        self.loaded = Path(model_dir)

    def score(self, checkpoint: str | Path | None = None) -> Accuracy:
        """Accuracy of `checkpoint` (a directory of safetensors weights; None: the model loaded now)."""
        if checkpoint is not None and Path(checkpoint) != self.loaded:
            from rollout.vllm_engine import load_checkpoint

            load_checkpoint(self.llm, Path(checkpoint))
            self.loaded = Path(checkpoint)
        accuracy, _ = sample_accuracy(self.llm, self.prompts, self.golds, self.is_correct, **self.opts)
        return accuracy

    def close(self) -> None:
        """Free the engine (its KV cache) before another one is built."""
        import gc

        del self.llm
        gc.collect()
