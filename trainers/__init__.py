"""A thin TRL adapter: EAGer as a rollout generator for GRPO on TRL's vLLM engine (colocated or a server).

    EagerGRPOConfig   GRPOConfig + `rollout_generator` (parallel | eager_init | eager_adapt | eager)
                      and the EAGer settings (`eager_*`, experiment ones in `eager_advanced`),
                      validated on construction.
    EagerGRPOTrainer  GRPOTrainer with the rollout hook, variable group sizes and `eager/` metrics.
"""

import warnings

# TRL 1.16 declares vLLM 0.22-0.31 and warns at every check that the pinned 0.32 is outside it. 0.32 is
# kept on purpose: tests/trainers/test_trl_contract.py and test_server_mode.py hold every part of TRL's
# vLLM use against it (the colocated engine's surface, the server routes, the weight-transfer payloads).
# Only this exact message is silenced; a TRL that moves its range fails test_vllm_range_warning_is_ours.
VLLM_RANGE_WARNING = r"TRL currently supports vLLM versions from 0\.22\.0 to 0\.31\.0\. You have version 0\.32\.0 "
warnings.filterwarnings("ignore", message=VLLM_RANGE_WARNING, category=UserWarning)

from trainers.config import EagerGRPOConfig  # noqa: E402 - after the filter: importing TRL warns
from trainers.trainer import EagerGRPOTrainer  # noqa: E402

__all__ = ["EagerGRPOConfig", "EagerGRPOTrainer"]
