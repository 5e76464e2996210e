"""GRPO learning per second: parallel vs label-aware EAGer, held-out accuracy against training seconds (issue 10).

The CPU recipe (recipes/cpu_default.yaml: the arithmetic model, 8 prompts x 8 rows a step, the
colocated vLLM engine), the same number of steps for every generator and seed. Generators:
  parallel        TRL's own sampling
  eager           label-aware EAGer, stop at the first right answer (the recipe's rule)
  eager_signal    stop once the group holds a right and a wrong answer, or `--easy_k` right and
                  no wrong one; advantages from the verdict baseline (unbiased under the rule)
A checkpoint every `--eval_every` steps is scored afterwards on the recipe's held-out set (200
problems, one sample at T=1), so evaluation never counts as training time. Training time is
`eager/train_wall_s`: generation, scoring and optimisation from the first step on.

Per generator and seed: accuracy at every checkpoint against training seconds, the step time
split (generation, scoring, optimisation), mean `frac_with_signal` and rollout tokens. Last
lines: `signal_per_step_ratio` (the headline generator's mean frac_with_signal / parallel's)
and `time_to_accuracy_ratio` (median over seeds of: the headline generator's training seconds
to reach parallel's final accuracy / parallel's total training seconds; 2.0 if it never does).

    python -m recipes.benchmarks.grpo_time_to_accuracy [--seeds 0 1 2] [--steps 40] [--headline eager_signal]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

RECIPE = Path(__file__).resolve().parents[1] / "cpu_default.yaml"
NOT_TRAINING_ARGS = ("model_name_or_path", "dtype", "dataset_name", "reward_funcs")  # other dataclasses' fields
GENERATORS = {  # name -> EagerGRPOConfig fields over the recipe's
    "parallel": dict(rollout_generator="parallel"),
    "eager": dict(rollout_generator="eager"),
    "eager_signal": dict(rollout_generator="eager", eager_stop_rule="signal", eager_baseline="verdicts"),
}


def training_args(fields: dict, opts: argparse.Namespace, seed: int, output_dir: str):
    import yaml

    from trainers import EagerGRPOConfig

    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in NOT_TRAINING_ARGS}
    recipe.update(max_steps=opts.steps, output_dir=output_dir, report_to="none", seed=seed, save_strategy="steps",
                  save_steps=opts.eval_every, eager_signal_easy_k=opts.easy_k,
                  eager_pass_start_limit=opts.pass_start_limit, **fields)
    return EagerGRPOConfig(**recipe)


def train(name: str, model: str, dataset, opts: argparse.Namespace, seed: int, out: Path) -> list[dict]:
    """One GRPO run; the per-step logs (eager/ metrics, times). Checkpoints land in `out`."""
    from recipes.benchmarks.grpo_run import train_and_log
    from rewards import boxed_accuracy
    from trainers import EagerGRPOTrainer

    trainer = EagerGRPOTrainer(model=model, reward_funcs=[boxed_accuracy], train_dataset=dataset,
                               args=training_args(GENERATORS[name], opts, seed, str(out)))
    return train_and_log(trainer)


def accuracy_curve(out: Path, logs: list[dict], before: float, opts: argparse.Namespace) -> list[tuple[float, float]]:
    """(training seconds, held-out accuracy) at step 0 and at every checkpoint."""
    from recipes.demo import DemoConfig, heldout_accuracy

    cfg = DemoConfig(heldout=opts.heldout, seed=0)
    by_step = {h["step"]: h for h in logs}
    points = [(0.0, before)]
    for ckpt in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(ckpt.name.split("-")[1])
        points.append((by_step[step]["eager/train_wall_s"], heldout_accuracy(ckpt, cfg)))
    return points


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Training seconds at the first checkpoint whose accuracy reaches `target` (None: never)."""
    return next((t for t, acc in curve[1:] if acc >= target), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the arithmetic recipe's model)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval_every", type=int, default=10)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--easy_k", type=int, default=3, help="eager_signal_easy_k")
    ap.add_argument("--pass_start_limit", type=float, default=0.5, help="eager_pass_start_limit")
    ap.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    ap.add_argument("--headline", default="eager_signal", choices=[g for g in GENERATORS if g != "parallel"])
    opts = ap.parse_args(argv)

    from datasets import Dataset

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.benchmarks.grpo_run import summarise
    from recipes.arithmetic.task import write_splits
    from recipes.demo import DemoConfig, heldout_accuracy

    model = opts.model or str(ensure_model())
    runs: dict[str, list[dict]] = {g: [] for g in opts.generators}
    with tempfile.TemporaryDirectory() as tmp:
        train_file, _ = write_splits(Path(tmp) / "data")
        dataset = Dataset.from_json(str(train_file))
        before = heldout_accuracy(model, DemoConfig(heldout=opts.heldout, seed=0))
        for seed in opts.seeds:
            for name in opts.generators:
                out = Path(tmp) / f"{name}-{seed}"
                logs = train(name, model, dataset, opts, seed, out)
                curve = accuracy_curve(out, logs, before, opts)
                run = dict(seed=seed, curve=curve, **summarise(logs))
                train_s = run["train_s"]
                runs[name].append(run)
                print(f"{name} seed={seed}: train_s={train_s:.1f} generation_s={run['generation_s']:.1f} "
                      f"scoring_s={run['scoring_s']:.1f} optimisation_s={run['optimisation_s']:.1f} "
                      f"rollout_tokens={run['tokens']:.0f} frac_with_signal={run['signal']:.3f} accuracy="
                      + " ".join(f"{acc:.3f}@{t:.0f}s" for t, acc in curve), flush=True)
    print(f"model={model} steps={opts.steps} seeds={opts.seeds} eval_every={opts.eval_every} "
          f"heldout={opts.heldout} easy_k={opts.easy_k} pass_start_limit={opts.pass_start_limit}")
    mean = lambda name, key: statistics.mean(r[key] for r in runs[name])  # noqa: E731
    for name in opts.generators:
        print(f"{name}: train_s={mean(name, 'train_s'):.1f} generation_s={mean(name, 'generation_s'):.1f} "
              f"scoring_s={mean(name, 'scoring_s'):.1f} optimisation_s={mean(name, 'optimisation_s'):.1f} "
              f"rollout_tokens={mean(name, 'tokens'):.0f} frac_with_signal={mean(name, 'signal'):.3f} "
              f"final_accuracy={statistics.mean(r['curve'][-1][1] for r in runs[name]):.3f}")
    if "parallel" not in runs or opts.headline not in runs:
        return
    for name in opts.generators:
        if name == "parallel":
            continue
        ratios = []
        for par, run in zip(runs["parallel"], runs[name]):
            reached = time_to(run["curve"], par["curve"][-1][1])
            ratios.append(2.0 if reached is None else reached / par["train_s"])
        print(f"{name}: token_ratio={mean(name, 'tokens') / mean('parallel', 'tokens'):.3f} "
              f"signal_ratio={mean(name, 'signal') / mean('parallel', 'signal'):.3f} "
              f"time_to_accuracy_ratios={[round(r, 3) for r in ratios]}")
        if name == opts.headline:
            headline = (mean(name, "signal") / mean("parallel", "signal"), statistics.median(ratios))
    print(f"signal_per_step_ratio={headline[0]:.3f}")
    print(f"time_to_accuracy_ratio={headline[1]:.3f}")


if __name__ == "__main__":
    main()
