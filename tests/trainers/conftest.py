"""Fixtures for the trainer tests: a tiny random model, a toy dataset, and CPU GRPO configs."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.trainers.helpers import build_tiny_model

CPU_DEFAULTS = dict(
    use_cpu=True, bf16=False, use_vllm=True, vllm_mode="colocate", vllm_max_model_length=128,
    num_generations=4, per_device_train_batch_size=16, max_completion_length=8, max_steps=2,
    learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", shuffle_dataset=False,
    seed=0, temperature=1.0,
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")


def make_args(output_dir: Path, **overrides):
    from trainers import EagerGRPOConfig

    return EagerGRPOConfig(output_dir=str(output_dir), **{**CPU_DEFAULTS, **overrides})


def release(trainer) -> None:
    """Free a trainer's colocated engine before the next one is built (1 GiB of KV cache each)."""
    llm = getattr(getattr(trainer, "vllm_generation", None), "llm", None)
    if llm is not None:
        del trainer.vllm_generation.llm
    trainer._eager_engine = None
    gc.collect()
