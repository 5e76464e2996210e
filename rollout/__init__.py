"""EAGer rollouts on token ids: entropy branching, every variant of the paper, exact accounting.

Public API:
    generate(engine, prompts, config, verifier=None, on_tree_done=None, active=None) -> RolloutResult
    plan_saved_budget(trees, config, verifier=None) -> {prompt index: extra sequences}
    spend_saved_budget(engine, trees, config, verifier=None, on_tree_done=None, shares=None, active=None)
    is_solved(tree, config) -> bool
    EagerConfig, RolloutResult, PromptTree, Sequence, BranchEvent, INHERITED

`rollout` knows nothing of text, TRL or rewards: a label-aware run receives its verifier
as a callable `verifier(prompt_index, completion_ids) -> bool | None`.
"""

from rollout.config import EagerConfig
from rollout.types import INHERITED, BranchEvent, PromptTree, RolloutResult, Sequence
from rollout.variants import Verifier, generate, is_solved, plan_saved_budget, spend_saved_budget

__all__ = [
    "INHERITED",
    "BranchEvent",
    "EagerConfig",
    "PromptTree",
    "RolloutResult",
    "Sequence",
    "Verifier",
    "generate",
    "is_solved",
    "plan_saved_budget",
    "spend_saved_budget",
]
