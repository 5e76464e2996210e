"""How much GRPO learning signal can a stop rule buy per token on the arithmetic model?

A group teaches only when it holds a right and a wrong answer. This replays stop rules on
the model's own samples: `--samples` (32) samples per prompt at T = 1 from the CPU recipe's
model, then, per prompt, draws from them in random order (without replacement, exact
expectation over orders) until the rule stops:
  both      until the group holds a right and a wrong answer, or `cap` draws;
  both+easy the same, and also stop after `easy_k` right answers and no wrong one (the
            `stop_rule: signal` rule; caps above M need budget moved from other prompts).
Parallel is 8 draws, every prompt. Per rule: the share of prompts with a signal (against
parallel's) and the expected tokens (against parallel's). It needs no trainer and no
knowledge a rule could not have: it is a bound for this family of rules on this model's mix
of easy and hard prompts at the start of training, not a GRPO run.

Last line: `best_signal_ratio_at_0.7_tokens=` (the best signal ratio of a rule here within
0.7 of parallel's tokens; the target was >= 1.2).

    python -m benchmarks.signal_bound [--n 128] [--samples 32]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from recipes.engine_env import cpu_engine_env

cpu_engine_env()


def replay(right: int, total: int, cap: int, easy_k: int | None) -> tuple[float, float, float]:
    """(P(signal), E[right drawn], E[wrong drawn]) of a rule over a prompt's `total` samples, `right` of them right."""
    states = {(0, 0): 1.0}
    signal = drawn_right = drawn_wrong = 0.0
    while states:
        nxt: dict[tuple[int, int], float] = defaultdict(float)
        for (r, w), pr in states.items():
            left = total - r - w
            for dr, dw, q in ((1, 0, (right - r) / left), (0, 1, (total - right - w) / left)):
                if q <= 0:
                    continue
                r2, w2, m = r + dr, w + dw, pr * q
                stop = (r2 and w2) or (easy_k is not None and w2 == 0 and r2 >= easy_k) or r2 + w2 >= min(cap, total)
                if stop:
                    signal += m if (r2 and w2) else 0.0
                    drawn_right += m * r2
                    drawn_wrong += m * w2
                else:
                    nxt[(r2, w2)] += m
        states = nxt
    return signal, drawn_right, drawn_wrong


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="held-out prompts of the arithmetic task")
    ap.add_argument("--samples", type=int, default=32, help="samples per prompt the rules draw from")
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from benchmarks.common import arithmetic_batch
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model_dir, _, _, prompts, verifier = arithmetic_batch(args.n)
    engine = VLLMEngine(build_llm(model_dir, dtype="float32", max_model_len=256, seed=args.seed))
    result = generate(engine, prompts, EagerConfig(method="parallel", max_sequences=args.samples, temperature=1.0,
                                                   max_new_tokens=args.max_new_tokens, seed=args.seed))
    groups = []
    for tree in result.trees:
        verdicts = [(verifier(tree.prompt_index, s.tokens), len(s.tokens)) for s in tree.sequences]
        rights = [n for v, n in verdicts if v]
        wrongs = [n for v, n in verdicts if not v]
        mean = sum(n for _, n in verdicts) / len(verdicts)
        groups.append((len(rights), len(verdicts), sum(rights) / len(rights) if rights else mean,
                       sum(wrongs) / len(wrongs) if wrongs else mean))
    n = len(groups)

    def evaluate(cap: int, easy_k: int | None, parallel: bool = False) -> tuple[float, float]:
        signal = tokens = 0.0
        for right, total, len_right, len_wrong in groups:
            s, dr, dw = _fixed(right, total, cap) if parallel else replay(right, total, cap, easy_k)
            signal += s
            tokens += dr * len_right + dw * len_wrong
        return signal / n, tokens / n

    par_signal, par_tokens = evaluate(8, None, parallel=True)
    solved = sum(r > 0 for r, *_ in groups)
    print(f"{n} prompts x {args.samples} samples at T=1: {solved} with a right sample, "
          f"{sum(r == t for r, t, *_ in groups)} all right; parallel (8 draws): signal {par_signal:.3f}, "
          f"{par_tokens:.1f} tokens per prompt")
    best = 0.0
    for name, easy_k in (("both", None), ("both+easy(k=2)", 2), ("both+easy(k=3)", 3)):
        for cap in (4, 8, 12, 16, 24, 32):
            if cap > args.samples:
                continue
            signal, tokens = evaluate(cap, easy_k)
            ratio, token_ratio = signal / par_signal, tokens / par_tokens
            if token_ratio <= 0.7:
                best = max(best, ratio)
            print(f"rule={name} cap={cap}: signal={signal:.3f} signal_ratio={ratio:.2f} token_ratio={token_ratio:.2f}")
    print(f"best_signal_ratio_at_0.7_tokens={best:.2f}")


def _fixed(right: int, total: int, draws: int) -> tuple[float, float, float]:
    """(P(signal), E[right drawn], E[wrong drawn]) of `draws` draws without replacement, no stop."""
    from benchmarks.common import draw_extremes

    draws = min(draws, total)
    none_right, all_right = draw_extremes(right, total, draws)
    return 1.0 - none_right - all_right, draws * right / total, draws * (total - right) / total


if __name__ == "__main__":
    main()
