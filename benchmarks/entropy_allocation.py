"""Where does entropy put the budget, and where is the learning signal? Per difficulty, on the arithmetic model.

The mixed task (1-8 digits; the model was pretrained on 1-6) has easy prompts (1-3 digits, nearly always
right), mid ones (4-6, a learning signal) and hard ones (7-8, never right). For `--prompts` training
prompts, per class:
- label-free EAGer-init (M=8, resample forks, the P99 floor) at each `--thresholds`: sequences per
  prompt, and the share of prompts whose tree holds a right and a wrong answer;
- one root per prompt: its summed top-20 entropy, and how often 4 independent samples of the prompt
  are mixed (a group with a signal); then, for bands of the root's summed entropy, the share of
  prompts selected, the share of those that are mixed, and the share of all mixed prompts caught.

    python -m benchmarks.entropy_allocation [--prompts 400]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

CLASSES = ((1, 3, "easy"), (4, 6, "mid"), (7, 8, "hard"))


def label(digits: int) -> str:
    return next(name for lo, hi, name in CLASSES if lo <= digits <= hi)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.6])
    ap.add_argument("--seed", type=int, default=3)
    opts = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import TRAIN_SEED, is_correct, make_problems
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model = str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = make_problems(opts.prompts, TRAIN_SEED + 31, tuple(range(1, 9)))
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    engine = VLLMEngine(build_llm(model, dtype="float32", max_model_len=256))

    def verdicts(tree, p):
        return [is_correct(tokenizer.decode(s.tokens, skip_special_tokens=True), p.answer) for s in tree.sequences]

    for theta in opts.thresholds:
        config = EagerConfig(method="eager_init", max_sequences=8, entropy_threshold=theta, temperature=1.0,
                             max_new_tokens=128, seed=opts.seed)
        result = generate(engine, prompts, config)
        by = defaultdict(list)
        for p, tree in zip(problems, result.trees):
            v = verdicts(tree, p)
            by[label(p.digits)].append((tree.n_sequences, any(v) and not all(v)))
        print(f"eager_init theta={theta}: engine_steps={result.engine_steps} tokens={result.tokens_generated} " +
              " ".join(f"{c}: sequences {statistics.mean(n for n, _ in by[c]):.2f} mixed "
                       f"{statistics.mean(m for _, m in by[c]):.2f}" for _, _, c in CLASSES), flush=True)

    result = generate(engine, prompts, EagerConfig(method="parallel", max_sequences=4, temperature=1.0,
                                                   max_new_tokens=128, seed=opts.seed))
    rows = []  # (class, summed entropy of the first sample, 4 samples mixed)
    for p, tree in zip(problems, result.trees):
        v = verdicts(tree, p)
        rows.append((label(p.digits), sum(tree.sequences[0].entropies), any(v) and not all(v)))
    for _, _, c in CLASSES:
        mine = [r for r in rows if r[0] == c]
        print(f"one root, {c}: prompts {len(mine)} summed entropy {statistics.mean(r[1] for r in mine):.2f} "
              f"mixed in 4 samples {statistics.mean(r[2] for r in mine):.2f}")
    total_mixed = sum(r[2] for r in rows)
    for lo, hi in ((0.3, 3.0), (0.5, 3.0), (0.3, 4.0), (0.3, float("inf"))):
        chosen = [r for r in rows if lo < r[1] < hi]
        print(f"band {lo}-{hi}: selected {len(chosen) / len(rows):.2f} mixed among them "
              f"{statistics.mean(r[2] for r in chosen):.2f} of all mixed {sum(r[2] for r in chosen) / total_mixed:.2f}")


if __name__ == "__main__":
    main()
