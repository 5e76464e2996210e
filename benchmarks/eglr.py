"""Entropy-gated latent recursion on the best model here: the pools' oracles and the cost per gated token.

The model: SmolLM2-135M-Instruct fine-tuned on `benchmarks.wordmath` (the real-model recipe;
`python -m benchmarks.wordmath.model` builds it, this script does too when it is missing).
Two parts, on the transformers engine (EGLR has no vLLM path; README):

1. `eager-eval --experiments eglr` on `--n` held-out word problems (written to a JSONL file
   whose prompts are the recipe's own chat-rendered text): T samples per span L, as many
   plain samples as the joint pool holds, a greedy rollout per span; `eager-recap`'s oracles.
2. Convergence: per span, the mean total-variation distance between successive iterations
   at gated tokens (greedy, tolerance 0), iteration by iteration.
3. The cost of a gated token: one greedy rollout per prompt with every token gated
   (gate 0) against the plain engine, wall seconds per token, best of `--repeats`.

Last line: `eglr_joint_oracle_gain=` (joint oracle minus temperature-only oracle, the same
number of rollouts per prompt).

    python -m benchmarks.eglr [--n 20] [--spans 2,4,8] [--samples 2] [--gate 1.0] [--out outputs/eglr]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def write_problems(path: Path, tokenizer, n: int) -> list[list[int]]:
    """The held-out problems as eager-eval rows (rendered prompt, answer); returns their token ids."""
    from benchmarks.wordmath.task import heldout_problems, render_prompt

    rows = [{"question": render_prompt(tokenizer, p), "answer": p.answer} for p in heldout_problems(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return [tokenizer(r["question"], add_special_tokens=False)["input_ids"] for r in rows]


def greedy_run(model, prompts: list[list[int]], recursion, args):
    """One greedy rollout per prompt on a fresh engine (`recursion` None: the plain model); (engine, seconds per token)."""
    from rollout import EagerConfig, generate
    from rollout.hf_engine import HFEngine

    engine = HFEngine(model, recursion=recursion, greedy=True)
    config = EagerConfig(method="parallel", max_sequences=1, temperature=1.0, max_new_tokens=args.max_new_tokens,
                         seed=args.seed)
    engine.recursion_trace = []
    t0 = time.perf_counter()
    result = generate(engine, prompts, config)
    return engine, (time.perf_counter() - t0) / max(result.tokens_generated, 1)


def gated_token_cost(model, prompts: list[list[int]], span: int, args) -> dict[str, float]:
    """Seconds per token, greedy, plain against every token recursed (best of `args.repeats`)."""
    from rollout.recursion import Recursion

    out: dict[str, float] = {}
    for name, recursion in (("plain", None), ("gated", Recursion(span, args.k_max, gate=0.0, tol=args.tol))):
        runs = [greedy_run(model, prompts, recursion, args) for _ in range(args.repeats)]
        out[f"{name}_s_per_token"] = min(seconds for _, seconds in runs)
        if recursion is not None:
            stats = runs[-1][0].recursion_stats
            out["iterations_per_gated_token"] = stats.iterations / max(stats.gated, 1)
    out["gated_token_cost"] = out["gated_s_per_token"] / out["plain_s_per_token"]
    return out


def convergence_profile(model, prompts: list[list[int]], spans: list[int], args) -> dict[int, list[float]]:
    """Per span: the mean total-variation distance between successive iterations, iteration by iteration
    (greedy rollouts, gate as configured, tolerance 0 so every gated token runs k_max iterations)."""
    from rollout.recursion import Recursion

    out = {}
    for span in spans:
        engine, _ = greedy_run(model, prompts, Recursion(span, args.k_max, gate=args.gate, tol=0.0), args)
        rows = engine.recursion_trace
        out[span] = [sum(r[k] for r in rows) / max(len(rows), 1) for k in range(args.k_max)]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="held-out problems")
    ap.add_argument("--spans", default="2,4,8", help="spans L (top layers re-applied), comma-separated")
    ap.add_argument("--samples", type=int, default=2, help="T: samples per span (pools of (spans + 1) x T rollouts)")
    ap.add_argument("--gate", type=float, default=1.0, help="entropy gate, nats (top-20, T = 1 scale)")
    ap.add_argument("--k_max", type=int, default=4)
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--temperature", type=float, default=1.0, help="the model's held-out accuracy is measured at 1.0")
    ap.add_argument("--max_new_tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="runs of the cost measurement (best kept)")
    ap.add_argument("--cost_prompts", type=int, default=4)
    ap.add_argument("--out", default="outputs/eglr", help="eager-eval's output directory (resumable)")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from evaluation import recap
    from evaluation.cli import main as eager_eval
    from benchmarks.wordmath.model import ensure_model

    model_dir = ensure_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out.parent / f"{out.name}_wordmath_heldout_{args.n}.jsonl"
    prompts = write_problems(data, tokenizer, args.n)

    t0 = time.perf_counter()
    status = eager_eval([
        "--model_name", str(model_dir), "--data_name", str(data), "--question_column", "question",
        "--answer_column", "answer", "--task", "math", "--prompt_template", "{question}", "--no_chat_template",
        "--backend", "hf", "--dtype", "float32", "--max_model_len", "512", "--experiments", "eglr",
        "--eglr_spans", args.spans, "--eglr_samples", str(args.samples), "--eglr_k_max", str(args.k_max),
        "--eglr_tol", str(args.tol), "--entropy_threshold", str(args.gate), "--temperature", str(args.temperature),
        "--max_new_tokens", str(args.max_new_tokens), "--seed", str(args.seed), "--output_dir", str(out),
        "--log_level", "WARNING",
    ])
    if status != 0:
        raise SystemExit(f"eager-eval failed with status {status}")
    (path,) = out.glob("*_eglr_results_*.json")
    data_json = json.loads(path.read_text())
    recorded = [r["tree"]["prompt_token_ids"] for r in data_json["entropy-aware-generations"]]
    if recorded != prompts:
        raise SystemExit("eager-eval's prompt ids differ from the recipe's chat-rendered prompts: check the flags")
    row = recap.load_experiment(path)["row"]
    stats = data_json["extra"].get("recursion", {}).get("last_run", {})
    print(f"eglr on {args.n} held-out word problems, spans {args.spans}, T={args.samples}, gate {args.gate}, "
          f"k_max {args.k_max}, tol {args.tol}, temperature {args.temperature}: {time.perf_counter() - t0:.0f} s")
    if stats.get("tokens"):
        print(f"gated share of recursed-run tokens={stats['gated'] / stats['tokens']:.3f} "
              f"iterations per gated token={stats['iterations'] / max(stats['gated'], 1):.2f} (last run only)")
    for pool in ("temperature", "layer", "joint"):
        print(f"{pool}_oracle={row[pool + '_oracle']:.3f} rollouts={row[pool + '_rollouts']:.0f} "
              f"tokens_per_prompt={row[pool + '_tokens_per_prompt']:.1f}")
    for key in sorted(k for k in row if k.startswith("pass_rate_L")):
        print(f"{key}={row[key]:.3f}")

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    spans = [int(s) for s in args.spans.split(",")]
    for span, distances in convergence_profile(model, prompts[: args.cost_prompts], spans, args).items():
        print(f"tv_by_iteration_L{span}=" + ",".join(f"{d:.3f}" for d in distances))
    cost = gated_token_cost(model, prompts[: args.cost_prompts], max(spans), args)
    print(f"plain_s_per_token={cost['plain_s_per_token']:.4f} gated_s_per_token(L={max(spans)})="
          f"{cost['gated_s_per_token']:.4f} iterations_per_gated_token={cost['iterations_per_gated_token']:.2f}")
    print(f"eglr_gated_token_cost={cost['gated_token_cost']:.2f}")
    print(f"eglr_joint_oracle_gain={row['joint_oracle_gain']:+.3f}")


if __name__ == "__main__":
    main()
