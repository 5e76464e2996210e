"""The trade-off and the RL payoff on a real pretrained language model.

The model: SmolLM2-135M-Instruct (subword tokens, a 49k vocabulary) fine-tuned here on the
word problems of `benchmarks.wordmath` until its sampled accuracy is mid-band
(`python -m benchmarks.wordmath.model` builds and caches it). Three parts, one engine at a time:

1. Calibration, once for this model, on train-split problems (never the held-out set): the
   share of generated tokens whose top-20 entropy (T = 1 scale) exceeds each candidate
   threshold, from parallel samples. The threshold is the smallest candidate with at most
   `--target_share` of tokens above it (the paper's ~2.0 sits in the same upper tail of its
   models' entropies).
2. Test-time trade-off on `--n` held-out problems at M = 8: parallel, eager_init and
   label-aware eager (the paper's two phases and `top2` forks), one engine, same seed.
   Pass@k, Cons@k, PassRate, tokens and sequences per prompt, wall seconds.
3. GRPO (`benchmarks/wordmath/grpo.yaml`): parallel and label-aware eager (the recipe's allocation, the
   calibrated threshold), `--grpo_steps` steps each from the same model and seed; held-out
   accuracy (one T = 1 sample per problem, in a fresh process) before and after, rollout
   tokens, training seconds (`eager/train_wall_s`) with their split, signal per step.

Last lines: `real_token_ratio` (eager / parallel tokens at test time), `real_passk_delta`
(eager - parallel Pass@k) and `real_grpo_time_ratio` (eager / parallel training seconds for
the same steps). `--out DIR` also writes `real_model.json` and `real_model.png`.

    python -m benchmarks.real_model [--n 100] [--grpo_steps 8] [--out outputs/real_model]
    python -m benchmarks.real_model --skip_tradeoff --threshold 1.5 --grpo_generators eager --baseline verdicts
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=2)

RECIPE = Path(__file__).resolve().parent / "wordmath" / "grpo.yaml"
CANDIDATES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def calibrate(engine, tokenizer, args) -> tuple[float, dict[float, float]]:
    """(chosen threshold, candidate -> share of generated tokens above it) from parallel samples."""
    from benchmarks.wordmath.task import TRAIN_SEED, make_problems, render_prompt
    from rollout import EagerConfig, generate
    from rollout.types import INHERITED

    problems = make_problems(args.calibration_prompts, TRAIN_SEED + 1)
    prompts = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in problems]
    result = generate(engine, prompts, EagerConfig(method="parallel", max_sequences=args.max_sequences,
                                                   temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                                   seed=args.seed + 1))
    entropies = [h for tree in result.trees for s in tree.sequences for h in s.entropies if h != INHERITED]
    return choose_threshold(entropies, args.candidates, args.target_share)


def choose_threshold(entropies: list[float], candidates, target_share: float) -> tuple[float, dict[float, float]]:
    """(the smallest candidate with at most `target_share` of `entropies` above it, else the largest;
    candidate -> share of entropies above it)."""
    if not entropies:
        raise ValueError("no generated tokens to calibrate on: raise --calibration_prompts or --max_new_tokens")
    shares = {c: sum(h > c for h in entropies) / len(entropies) for c in sorted(candidates)}
    return next((c for c, share in shares.items() if share <= target_share), max(shares)), shares


def tradeoff(engine, tokenizer, threshold: float, args) -> dict[str, dict[str, float]]:
    from benchmarks.common import math_verifier, score
    from benchmarks.wordmath.task import heldout_problems, render_prompt
    from rollout import EagerConfig, generate

    problems = heldout_problems(args.n)
    prompts = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in problems]
    golds = [p.answer for p in problems]
    common = dict(max_sequences=args.max_sequences, temperature=args.temperature, seed=args.seed,
                  max_new_tokens=args.max_new_tokens)
    configs = {
        "parallel": EagerConfig(method="parallel", **common),
        "eager_init": EagerConfig(method="eager_init", entropy_threshold=threshold, fork_mode="top2", **common),
        "eager": EagerConfig(method="eager", entropy_threshold=threshold, fork_mode="top2", **common),
    }
    figures = {}
    for name, cfg in configs.items():
        verifier = math_verifier(tokenizer, golds) if name == "eager" else None
        figures[name] = score(generate(engine, prompts, cfg, verifier=verifier), tokenizer, golds)
    return figures


def heldout_accuracy(model_dir: str | Path, n: int) -> float:
    """One T=1 sample per held-out problem, in a fresh process (its engine's memory goes with it)."""
    code = ("import sys; from benchmarks.wordmath.model import heldout_accuracy; "
            "print('ACC', heldout_accuracy(sys.argv[1], n=int(sys.argv[2])))")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir), str(n)], capture_output=True, text=True,
                         env=cpu_engine_env(kv_cache_gib=1, env=dict(os.environ)))
    for line in out.stdout.splitlines():
        if line.startswith("ACC "):
            return float(line.split()[1])
    raise RuntimeError(f"held-out evaluation of {model_dir} failed:\n{out.stderr[-3000:]}")


def grpo(generator: str, model: Path, threshold: float, args, out: Path) -> dict[str, float]:
    """One GRPO run from `model`; its training seconds, split, tokens, signal and held-out accuracy after."""
    import yaml
    from datasets import Dataset
    from transformers import AutoTokenizer

    from benchmarks.grpo_run import summarise, train_and_log
    from benchmarks.wordmath.task import TRAIN_SEED, make_problems, to_record
    from rewards import boxed_accuracy
    from trainers import EagerGRPOConfig, EagerGRPOTrainer
    from trainers.advanced import overlay

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [to_record(tokenizer, p) for p in make_problems(4 * args.grpo_steps * 2, TRAIN_SEED)]
    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in ("dtype", "reward_funcs")}
    recipe.update(output_dir=str(out), max_steps=args.grpo_steps, seed=args.seed, rollout_generator=generator,
                  eager_entropy_threshold=threshold)
    if generator == "eager":
        recipe = overlay(recipe, {"eager_advanced": {"stop_rule": args.stop_rule, "baseline": args.baseline}})
    trainer = EagerGRPOTrainer(model=str(model), reward_funcs=[boxed_accuracy], train_dataset=Dataset.from_list(rows),
                               args=EagerGRPOConfig(**recipe))
    run = summarise(train_and_log(trainer, save_to=out / "final"))
    run["accuracy_after"] = heldout_accuracy(out / "final", args.heldout)
    return run


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, f in report["tradeoff"].items():
        left.scatter(f["tokens_per_prompt"], f["pass_at_k"], s=60, label=name)
        left.annotate(f"cons {f['cons_at_k']:.2f}", (f["tokens_per_prompt"], f["pass_at_k"]), fontsize=8,
                      xytext=(4, -10), textcoords="offset points")
    left.set(xlabel="tokens per prompt", ylabel=f"Pass@{report['max_sequences']}",
             title=f"test time, {report['n']} held-out problems, M={report['max_sequences']}")
    left.legend()
    before = report["accuracy_before"]
    for name, run in report.get("grpo", {}).items():
        right.plot([0, run["train_s"]], [before, run["accuracy_after"]], marker="o", label=name)
    right.set(xlabel="training seconds (generation + scoring + optimisation)", ylabel="held-out accuracy (T=1)",
              title=f"GRPO, {report['grpo_steps']} steps each")
    right.legend()
    fig.suptitle(f"{report['model_name']}: real subword model, threshold {report['threshold']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the cached fine-tuned SmolLM2)")
    ap.add_argument("--n", type=int, default=100, help="held-out problems for the trade-off (at least 100)")
    ap.add_argument("--heldout", type=int, default=200, help="held-out problems for accuracy before/after GRPO")
    ap.add_argument("--max_sequences", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max_new_tokens", type=int, default=96)
    ap.add_argument("--candidates", type=float, nargs="+", default=list(CANDIDATES))
    ap.add_argument("--target_share", type=float, default=0.02, help="calibration: most tokens above the threshold")
    ap.add_argument("--calibration_prompts", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=None, help="skip the calibration and use this threshold")
    ap.add_argument("--grpo_steps", type=int, default=8, help="GRPO steps per generator (0: skip GRPO)")
    ap.add_argument("--grpo_generators", nargs="+", default=["parallel", "eager"], choices=["parallel", "eager"])
    ap.add_argument("--stop_rule", default="solved", choices=["solved", "signal"], help="stop_rule of eager (eager_advanced)")
    ap.add_argument("--baseline", default="group", choices=["group", "verdicts"], help="baseline of eager (eager_advanced)")
    ap.add_argument("--skip_tradeoff", action="store_true", help="GRPO only (no calibration: give --threshold)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write real_model.json and real_model.png here")
    args = ap.parse_args(argv)
    if args.n < 1 or args.grpo_steps < 0:
        ap.error("--n must be >= 1 and --grpo_steps >= 0")
    if args.skip_tradeoff and args.threshold is None:
        ap.error("--skip_tradeoff needs --threshold (the calibration runs with the trade-off)")

    from transformers import AutoTokenizer

    from benchmarks.wordmath.model import ensure_model

    model = Path(args.model) if args.model else ensure_model()
    tokenizer = AutoTokenizer.from_pretrained(model)
    spec = json.loads((model / "eager_rl_model.json").read_text())
    name = f"{spec.get('kind', 'model')} ({spec.get('n_params', 0) / 1e6:.0f}M)"
    report: dict = dict(model=str(model), model_name=name,
                        n=args.n, max_sequences=args.max_sequences, temperature=args.temperature,
                        grpo_steps=args.grpo_steps)
    report["accuracy_before"] = heldout_accuracy(model, args.heldout)
    print(f"model={model} accuracy_before={report['accuracy_before']:.3f} (T=1, {args.heldout} held-out problems)",
          flush=True)

    figures = report["tradeoff"] = {}
    threshold = report["threshold"] = args.threshold
    if not args.skip_tradeoff:
        threshold = run_tradeoff(model, tokenizer, args, report)
    if args.grpo_steps:
        report["grpo"] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for generator in args.grpo_generators:
                run = grpo(generator, model, threshold, args, Path(tmp) / generator)
                report["grpo"][generator] = run
                print(f"grpo {generator}: steps={args.grpo_steps} train_s={run['train_s']:.1f} "
                      f"generation_s={run['generation_s']:.1f} scoring_s={run['scoring_s']:.1f} "
                      f"optimisation_s={run['optimisation_s']:.1f} rollout_tokens={run['tokens']:.0f} "
                      f"rows_used={run['rows_used']:.2f} frac_with_signal={run['signal']:.3f} "
                      f"reward={run['reward']:.3f} accuracy {report['accuracy_before']:.3f} -> "
                      f"{run['accuracy_after']:.3f}", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "real_model.json").write_text(json.dumps(report, indent=2))
        plot(report, args.out / "real_model.png")
        print(f"wrote {args.out / 'real_model.json'} and {args.out / 'real_model.png'}")
    if figures:
        par, eag = figures["parallel"], figures["eager"]
        print(f"real_token_ratio={eag['tokens_per_prompt'] / par['tokens_per_prompt']:.3f}")
        print(f"real_passk_delta={eag['pass_at_k'] - par['pass_at_k']:+.3f}")
    grpo_runs = report.get("grpo", {})
    if "parallel" in grpo_runs and "eager" in grpo_runs:
        print(f"real_grpo_time_ratio={grpo_runs['eager']['train_s'] / grpo_runs['parallel']['train_s']:.3f}")


def run_tradeoff(model: Path, tokenizer, args, report: dict) -> float:
    """Calibrate (unless --threshold) and run the test-time trade-off on one engine; the threshold used."""
    from rollout.vllm_engine import VLLMEngine, build_llm

    llm = build_llm(str(model), dtype="float32", max_model_len=256, seed=args.seed)
    engine = VLLMEngine(llm)
    if args.threshold is None:
        threshold, shares = calibrate(engine, tokenizer, args)
        report["calibration"] = {str(c): s for c, s in shares.items()}
        print("calibration (share of generated tokens above each threshold): "
              + " ".join(f"{c:g}:{s:.4f}" for c, s in shares.items()) + f" -> threshold={threshold:g}")
    else:
        threshold = args.threshold
    report["threshold"] = threshold
    report["tradeoff"].update(tradeoff(engine, tokenizer, threshold, args))
    for name, f in report["tradeoff"].items():
        print(f"{name}: pass_at_k={f['pass_at_k']:.3f} cons_at_k={f['cons_at_k']:.3f} pass_rate={f['pass_rate']:.3f} "
              f"tokens_per_prompt={f['tokens_per_prompt']:.1f} sequences_per_prompt={f['sequences_per_prompt']:.2f} "
              f"wall_time_s={f['wall_time_s']:.1f}", flush=True)
    del engine, llm
    gc.collect()
    return threshold


if __name__ == "__main__":
    main()
