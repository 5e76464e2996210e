"""A thin TRL adapter: EAGer as a rollout generator for GRPO on the trainer's colocated vLLM engine.

    EagerGRPOConfig   GRPOConfig + `rollout_generator` (parallel | eager_init | eager_adapt | eager)
                      and the EAGer parameters (`eager_*`), validated on construction.
    EagerGRPOTrainer  GRPOTrainer with the rollout hook, variable group sizes and `eager/` metrics.
"""

from trainers.config import EagerGRPOConfig
from trainers.trainer import EagerGRPOTrainer

__all__ = ["EagerGRPOConfig", "EagerGRPOTrainer"]
