"""Where the verdict baseline puts a step's advantage: a replay of the real model's own samples, no training.

The verdict baseline (`eager_advanced: {baseline: verdicts}`) took the fine-tuned SmolLM2 from 0.207 to 0.095 in 8 GRPO
steps where the group mean kept it level (docs/RESULTS.md, the real model). Both baselines are unbiased for
fixed-size groups; they differ in what the rows of a group whose answers all agree carry. Under the group
mean those rows have advantage 0. Under the verdict baseline every such row has one (all wrong: negative,
-1 for the first root), whose expected gradient is zero but whose per-step gradient is not: noise. This
replay samples the model with the run's own allocation (`real_equal_time`'s `eager_passes`: label-aware
online passes, 4 prompts a call, M = 8) and prints, per baseline (`group`, `verdicts`, and `shrunk<a>`: the
verdict baseline's advantage times k / (k + a), k the verdicts known when the row started, so a row is pushed
less the less its prompt has shown; a = 1, 2, 4):

    flat_groups_frac               prompts whose answers all agree
    <baseline>_abs_advantage       mean |advantage| over the used rows
    <baseline>_flat_mass_frac      the share of the sum of |advantage| on rows of groups that agree
    <baseline>_mixed_abs_advantage mean |advantage| over the rows of groups that disagree (the contrast)
    <baseline>_mean_advantage      mean advantage over the used rows (a push on the model's own samples)

    python -m benchmarks.baseline_mass [--calls 32] [--seed 0]
"""

from __future__ import annotations

import argparse

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=2)

SHRINK = (1, 2, 4)  # a: a row's verdict-baseline advantage is kept in the share k / (k + a) of it


def replay(calls: int, seed: int) -> dict[str, list]:
    """Rows of `calls` rollout calls of 4 training prompts each: reward, verdicts at start, group id."""
    from transformers import AutoTokenizer

    from benchmarks.common import decoder
    from benchmarks.wordmath.model import MAX_NEW_TOKENS, ensure_model
    from benchmarks.wordmath.task import TRAIN_SEED, is_correct, make_problems, render_prompt
    from rewards import GoldVerifier
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model = str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = make_problems(4 * calls, TRAIN_SEED + 1 + seed)  # training-distribution problems, not the run's
    engine = VLLMEngine(build_llm(model, dtype="float32", max_model_len=256, seed=seed))
    rows: dict[str, list] = {"reward": [], "verdicts": [], "group": []}
    for c in range(calls):
        batch = problems[4 * c: 4 * c + 4]
        prompts = [tokenizer(render_prompt(tokenizer, p))["input_ids"] for p in batch]
        verifier = GoldVerifier(decoder(tokenizer), [p.answer for p in batch],
                                lambda text, gold: float(is_correct(text, gold)))
        config = EagerConfig(method="eager", online=True, allocation="passes", max_sequences=8,
                             entropy_threshold=1.5, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS,
                             stop_token_ids=[tokenizer.eos_token_id], seed=seed * 100_003 + c)
        result = generate(engine, prompts, config, verifier=verifier)
        for tree in result.trees:
            for s in tree.kept():
                rows["reward"].append(1.0 if s.score is not None and s.score >= 1.0 else 0.0)
                rows["verdicts"].append(s.verdicts_at_start)
                rows["group"].append(4 * c + tree.prompt_index)
    return rows


def mass(rows: dict[str, list]) -> dict[str, float]:
    """The figures above, from the replayed rows, with the trainer's own advantages (`group_advantages`)."""
    import torch

    from trainers.advantages import group_advantages, verdict_baseline

    rewards = torch.tensor(rows["reward"]).unsqueeze(1)
    groups = torch.tensor(rows["group"])
    agree = torch.zeros(len(groups), dtype=torch.bool)
    for g in groups.unique():
        members = groups == g
        agree[members] = bool(rewards[members].min() == rewards[members].max())
    out = {"rows": float(len(groups)), "flat_groups_frac": float(sum(bool(agree[groups == g][0])
                                                                        for g in groups.unique()) / len(groups.unique()))}
    verdicts = torch.tensor([verdict_baseline(*v) for v in rows["verdicts"]])
    advantages = {name: group_advantages(rewards, groups, torch.ones(1), "group", "sum_then_normalize", baseline)[0]
                  for name, baseline in (("group", None), ("verdicts", verdicts))}
    known = torch.tensor([float(sum(v)) for v in rows["verdicts"]])
    for a in SHRINK:
        advantages[f"shrunk{a}"] = advantages["verdicts"] * known / (known + a)
    for name, adv in advantages.items():
        total = adv.abs().sum().item()
        out[f"{name}_abs_advantage"] = adv.abs().mean().item()
        out[f"{name}_flat_mass_frac"] = adv[agree].abs().sum().item() / total if total else 0.0
        out[f"{name}_mixed_abs_advantage"] = adv[~agree].abs().mean().item() if bool((~agree).any()) else 0.0
        out[f"{name}_mean_advantage"] = adv.mean().item()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=32, help="rollout calls of 4 prompts (a training step's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, value in mass(replay(args.calls, args.seed)).items():
        print(f"{name}={value:.4f}")


if __name__ == "__main__":
    main()
