"""Rewards and verifiers: hang-proof answer checking for every seed benchmark, plus entropy signals.

Public API:
    extract_boxed(text) -> str | None                       last \\boxed{} / \\fbox{} content
    normalize_gold(gold, kind="math") -> str | None          a dataset's gold, whatever its layout
    verify_batch(predictions, golds, kind="math") -> list[float | None]
    submit_batch(predictions, golds, kind="math") -> Future[list[float | None]]
    Verifier(kind="math", timeout_s=5.0, require_box=True)  picklable; (prediction, gold) -> score
    GoldVerifier(decode, golds, grade=Verifier())            (prompt_index, completion_ids) -> right? for EAGer
    boxed_accuracy, choice_accuracy, format_reward           TRL reward functions
    BoxedAccuracy(gold_column=...), ChoiceAccuracy(...)      configurable TRL reward functions
    VerifierPool, get_default_pool, set_default_pool, shutdown_default_pool
    rewards.code: run_tests, CodeResult, code_accuracy, CodeAccuracy   (sandboxed execution)
    rewards.centroid: high_entropy_phases, entropy_centroid, lowest_centroid_select,
        select_answer, entropy_centroid_reward, EntropyCentroidReward

Scores are 1.0 / 0.0, or None where the gold answer is unusable (TRL leaves such rows out
of the group baseline). Nothing here imports `rollout/` or `trainers/`; all LaTeX parsing
and sympy work runs in worker processes (`rewards.pool`), so importing this package is cheap.
"""

from rewards.accuracy import BoxedAccuracy, ChoiceAccuracy, boxed_accuracy, choice_accuracy, format_reward
from rewards.centroid import (
    EntropyCentroidReward,
    entropy_centroid,
    entropy_centroid_reward,
    high_entropy_phases,
    lowest_centroid_select,
    select_answer,
)
from rewards.code import CodeAccuracy, CodeResult, code_accuracy, run_tests
from rewards.extract import extract_boxed, normalize_gold
from rewards.pool import VerifierPool, get_default_pool, set_default_pool, shutdown_default_pool
from rewards.verifier import GoldVerifier, Verifier, submit_batch, verify_batch

__all__ = [
    "BoxedAccuracy",
    "ChoiceAccuracy",
    "CodeAccuracy",
    "CodeResult",
    "EntropyCentroidReward",
    "GoldVerifier",
    "Verifier",
    "VerifierPool",
    "boxed_accuracy",
    "choice_accuracy",
    "code_accuracy",
    "entropy_centroid",
    "entropy_centroid_reward",
    "extract_boxed",
    "format_reward",
    "get_default_pool",
    "high_entropy_phases",
    "lowest_centroid_select",
    "normalize_gold",
    "run_tests",
    "select_answer",
    "set_default_pool",
    "shutdown_default_pool",
    "submit_batch",
    "verify_batch",
]
