"""Test-time trade-off on the arithmetic model's held-out set: Full Parallel vs label-aware EAGer.

Same model, prompts, budget M, temperature and seed, one run. For each method it prints
Pass@k, Cons@k, PassRate, tokens per prompt (#T) and sequences per prompt (#S), then
`eager_token_ratio` (eager tokens / parallel tokens) and, last, `eager_passk_delta`
(eager Pass@k - parallel Pass@k). Answers are checked with `rewards` (math-verify).

    python -m benchmarks.tradeoff [--n 200] [--max_sequences 16] [--threshold 1.0] [--fork_mode top2]

Defaults: the paper's fork mode (top2) at test time; a threshold of 1.0 nats, because a
character-level arithmetic model is far more certain per token than the LLMs the paper's
~2.0 was tuned on; M = 16 (the paper uses 32). The README reports M = 8, 16 and 32.
"""

from __future__ import annotations

import argparse

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=2)

from benchmarks.common import math_verifier, score  # noqa: E402  (after the engine's environment is set)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the recipe's arithmetic model)")
    ap.add_argument("--n", type=int, default=200, help="held-out problems")
    ap.add_argument("--max_sequences", type=int, default=16, help="budget M for both methods")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threshold", type=float, default=1.0, help="EAGer entropy threshold (nats, top-20)")
    ap.add_argument("--fork_mode", default="top2", choices=["top2", "alternative", "resample"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from recipes.arithmetic.evaluate import max_completion_tokens
    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import heldout_problems
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model_dir = args.model or str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = heldout_problems(args.n)
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    golds = [p.answer for p in problems]
    engine = VLLMEngine(build_llm(model_dir, dtype="float32", max_model_len=256, seed=args.seed))
    common = dict(max_sequences=args.max_sequences, temperature=args.temperature, seed=args.seed,
                  max_new_tokens=max_completion_tokens(max(p.digits for p in problems)))
    results = {
        "parallel": generate(engine, prompts, EagerConfig(method="parallel", **common)),
        "eager": generate(engine, prompts, EagerConfig(method="eager", entropy_threshold=args.threshold,
                                                       fork_mode=args.fork_mode, **common),
                          verifier=math_verifier(tokenizer, golds)),
    }
    print(f"model={model_dir} prompts={args.n} M={args.max_sequences} T={args.temperature} "
          f"threshold={args.threshold} fork_mode={args.fork_mode}")
    figures = {}
    for name, result in results.items():
        figures[name] = f = score(result, tokenizer, golds)
        print(f"{name}: pass_at_k={f['pass_at_k']:.3f} cons_at_k={f['cons_at_k']:.3f} pass_rate={f['pass_rate']:.3f} "
              f"tokens_per_prompt={f['tokens_per_prompt']:.1f} sequences_per_prompt={f['sequences_per_prompt']:.2f} "
              f"wall_time_s={f['wall_time_s']:.1f}")
    print(f"eager_token_ratio={figures['eager']['tokens_per_prompt'] / figures['parallel']['tokens_per_prompt']:.3f}")
    print(f"eager_passk_delta={figures['eager']['pass_at_k'] - figures['parallel']['pass_at_k']:+.3f}")


if __name__ == "__main__":
    main()
