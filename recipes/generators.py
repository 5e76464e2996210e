"""The generators a comparison races on the CPU recipe, by name: each is `EagerGRPOConfig` fields over the recipe.

One table for `eager-demo` and `benchmarks.grpo_equal_time`. Every baseline may use every trick that is not
EAGer's: DAPO's dynamic sampling at two shapes of the same 64 samples a step. The recipe sets dynamic sampling
and oversample for its own generator (eager); each entry sets them for itself.
"""

from __future__ import annotations

import json

PLAIN = dict(rollout_generator="parallel", dynamic_sampling=False, oversample=1.0)  # TRL's own, nothing dropped
GENERATORS: dict[str, dict] = {
    "parallel": PLAIN,  # 8 prompts x 8
    "parallel_dynamic_8x8": dict(PLAIN, dynamic_sampling=True),  # groups whose rewards agree leave the loss batch
    "parallel_dynamic_16x4": dict(PLAIN, dynamic_sampling=True, num_generations=4),  # twice the prompts, 4 each
    "eager": dict(rollout_generator="eager"),  # the recipe's: the training allocation, oversample, dynamic sampling
}
# EAGer at a shape where verdicts move budget: 24 prompts handed (oversample 3) screened with 2 roots each, the
# rest of the step's 64 rows filling mixed prompts to 4 and probing all-wrong ones with 2 more; the same with
# the fills and probes forked from finished samples at their most uncertain token, or at the token each drew
# with the lowest probability.
MOVED = dict(rollout_generator="eager", oversample=3.0, eager_screen_roots=2, eager_fill_size=4,
             eager_advanced={"probe_roots": 2})
FORKED = {"fill_with": "forks", "probe_with": "forks"}
GENERATORS.update({
    "eager_refill_roots": MOVED,
    "eager_refill_forks": dict(MOVED, eager_advanced={"probe_roots": 2, **FORKED}),
    "eager_refill_surprise": dict(MOVED, eager_advanced={"probe_roots": 2, **FORKED, "refill_at": "surprise"}),
    # The forked trees with segment credit (every token once) and the verdict baseline it needs; that baseline gives
    # a group whose answers agree advantages, so its groups cannot leave the loss batch (no dynamic sampling).
    "eager_refill_forks_segments": dict(MOVED, dynamic_sampling=False, eager_advanced={
        "probe_roots": 2, **FORKED, "baseline": "verdicts", "credit": "segments"}),
})
# Screening with forks: 16 prompts handed (oversample 2), 2 roots each, and up to 2 forks where the entropy is
# above the threshold, so an uncertain prompt is screened wider than a confident one; mixed prompts filled to 4.
GENERATORS["eager_screen_forks"] = dict(rollout_generator="eager", eager_screen_roots=2, eager_fill_size=4,
                                        eager_advanced={"screen_forks": 2})
# Each fork variant's control: the same allocation with new roots instead of forks (the race pairs them by seed).
CONTROLS = {"eager_refill_forks": "eager_refill_roots", "eager_refill_surprise": "eager_refill_roots",
            "eager_refill_forks_segments": "eager_refill_forks",  # row credit and the group mean on the same trees
            "eager_screen_forks": "eager"}  # (the default screens every prompt with 4 roots)


def cli_flags(fields: dict) -> list[str]:
    """The fields as `recipes.grpo` command-line flags."""
    return [arg for name, value in fields.items() for arg in (f"--{name}", _flag_value(value))]


def _flag_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict) else str(value)
