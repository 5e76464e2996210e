"""How much learning signal per second can a rollout allocation buy at all? A bound by replay.

The arithmetic model is sampled `--samples` times on each of `--prompts` training prompts of a mix
(T=1, one engine). Allocation rules are then replayed on those samples, in random order (`--draws`
Monte Carlo draws of which prompts a step sees and which of their samples it gets), with no rule
knowing anything it could not know. For each rule, per step: the samples in groups that hold both a
right and a wrong answer (the only ones with a GRPO advantage), and the step's seconds from a cost
model measured on this machine (`--gen_step_s` per engine step of the critical path, `--gen_token_s`
per generated token, `--opt_row_s` per row the loss step trains on; defaults fitted to the
equal-seconds runs: docs/RESULTS.md). Rules (P = 8 prompts, G = 8, a step's budget P x G sequences):

  parallel        P prompts x G; the loss trains on every row (TRL)
  parallel_half   2P x G/2; every row
  screen r f      f P prompts x r roots, one pass; only groups with a signal are trained on
  screen+fill     f P x 2 roots, then mixed prompts filled to G in a second pass (budget allowing)
  oracle          knows every prompt's pass rate: the step's P x G samples go to the P prompts of
                  f P with the highest p (1 - p); a bound for any rule that screens f P prompts

Prints signal samples per step, seconds per step and their ratio to parallel's; last lines:
`best_screen_signal_per_second_ratio=` (the best label-aware rule) and
`oracle_signal_per_second_ratio=`. If learning per second followed signal per second, an
allocation would need its ratio at 1/0.6 = 1.67 to reach parallel's accuracy in 0.6 of its seconds.

    python -m benchmarks.allocation_bound [--mix mixed] [--prompts 128] [--samples 16]
"""

from __future__ import annotations

import argparse
import random
import statistics

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

MIXES = {"default": (4, 5, 6), "mixed": (1, 2, 3, 4, 5, 6, 7, 8)}
P, G = 8, 8


def sample(mix: str, n: int, k: int, seed: int) -> list[list[tuple[bool, int]]]:
    """Per prompt, k samples as (right, tokens)."""
    from transformers import AutoTokenizer

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import TRAIN_SEED, is_correct, make_problems
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model = str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = make_problems(n, TRAIN_SEED + 17 + seed, MIXES[mix])
    engine = VLLMEngine(build_llm(model, dtype="float32", max_model_len=256))
    result = generate(engine, [tokenizer(p.prompt)["input_ids"] for p in problems],
                      EagerConfig(method="parallel", max_sequences=k, temperature=1.0, max_new_tokens=128, seed=seed))
    return [[(is_correct(tokenizer.decode(s.tokens, skip_special_tokens=True), p.answer), len(s.tokens))
             for s in tree.sequences] for p, tree in zip(problems, result.trees)]


def mixed(group: list[tuple[bool, int]]) -> bool:
    return any(r for r, _ in group) and not all(r for r, _ in group)


DEFAULT_COST = (0.0088, 0.000255, 0.027)  # s per critical-path engine step, per token, per row (fitted here)


class Cost:
    def __init__(self, step_s: float, token_s: float, row_s: float) -> None:
        self.step_s, self.token_s, self.row_s = step_s, token_s, row_s

    def seconds(self, passes: list[list[tuple[bool, int]]], rows: int) -> float:
        """Generation (each pass's critical path, every token) and optimisation of `rows` rows."""
        steps = sum(max(n for _, n in p) for p in passes if p)
        tokens = sum(n for p in passes for _, n in p)
        return steps * self.step_s + tokens * self.token_s + rows * self.row_s


def step(rule: str, prompts: list[list[tuple[bool, int]]], rng: random.Random, cost: Cost, f: int, r: int
         ) -> tuple[int, float]:
    """(signal samples, seconds) of one step of `rule` on `prompts` (f P of them, shuffled samples each)."""
    draws = [rng.sample(s, len(s)) for s in prompts]
    if rule == "parallel":
        groups = [d[:G] for d in draws[:P]]
        return sum(len(g) for g in groups if mixed(g)), cost.seconds([[x for g in groups for x in g]], P * G)
    if rule == "parallel_half":
        groups = [d[: G // 2] for d in draws[: 2 * P]]
        return sum(len(g) for g in groups if mixed(g)), cost.seconds([[x for g in groups for x in g]], P * G)
    if rule == "screen":
        groups = [d[:r] for d in draws[: f * P]]
        signal = sum(len(g) for g in groups if mixed(g))
        return signal, cost.seconds([[x for g in groups for x in g]], signal)
    if rule == "screen+fill":
        first = [d[:2] for d in draws[: f * P]]
        budget, second, signal = P * G - 2 * f * P, [], 0
        for d, g in zip(draws, first):  # fills in batch order
            if mixed(g):
                extra = d[2: 2 + min(G - 2, max(0, budget))]
                budget -= len(extra)
                second += extra
                signal += len(g) + len(extra)
        return signal, cost.seconds([[x for g in first for x in g], second], signal)
    if rule == "oracle":
        def var(s):
            p = sum(x for x, _ in s) / len(s)
            return p * (1 - p)
        chosen = sorted(range(f * P), key=lambda i: -var(prompts[i]))[:P]
        groups = [draws[i][:G] for i in chosen]
        signal = sum(len(g) for g in groups if mixed(g))
        return signal, cost.seconds([[x for g in groups for x in g]], signal)
    raise ValueError(rule)


RULES = [("parallel", 1, 0), ("parallel_half", 2, 0), ("screen", 2, 4), ("screen", 4, 2), ("screen", 1, 8),
         ("screen+fill", 2, 2), ("screen+fill", 3, 2), ("oracle", 2, 0), ("oracle", 4, 0)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mix", default="mixed", choices=list(MIXES))
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--gen_step_s", type=float, default=DEFAULT_COST[0],
                    help="seconds per engine step of the critical path")
    ap.add_argument("--gen_token_s", type=float, default=DEFAULT_COST[1], help="seconds per generated token")
    ap.add_argument("--opt_row_s", type=float, default=DEFAULT_COST[2], help="seconds per row of the loss step")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)

    samples = sample(opts.mix, opts.prompts, opts.samples, opts.seed)
    cost, rng = Cost(opts.gen_step_s, opts.gen_token_s, opts.opt_row_s), random.Random(opts.seed)
    results = {}
    for rule, f, r in RULES:
        seen = f * P  # prompts a step sees (parallel: P, parallel_half: 2P)
        steps = [step(rule, rng.sample(samples, seen), rng, cost, f, r) for _ in range(opts.draws)]
        signal, seconds = statistics.mean(s for s, _ in steps), statistics.mean(t for _, t in steps)
        results[(rule, f, r)] = (signal, seconds)
    par_signal, par_seconds = results[("parallel", 1, 0)]
    for (rule, f, r), (signal, seconds) in results.items():
        ratio = (signal / seconds) / (par_signal / par_seconds)
        print(f"{rule} f={f} r={r}: signal_samples_per_step={signal:.1f} seconds_per_step={seconds:.2f} "
              f"signal_per_second_ratio={ratio:.3f}")
    ratio = lambda key: (results[key][0] / results[key][1]) / (par_signal / par_seconds)  # noqa: E731
    screens = [k for k in results if k[0].startswith("screen")]
    best = max(screens, key=ratio)
    print(f"mix={opts.mix} prompts={opts.prompts} samples={opts.samples} draws={opts.draws} best={best}")
    print(f"best_screen_signal_per_second_ratio={ratio(best):.3f}")
    print(f"oracle_signal_per_second_ratio={max(ratio(k) for k in results if k[0] == 'oracle'):.3f}")


if __name__ == "__main__":
    main()
