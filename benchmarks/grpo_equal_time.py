"""GRPO at equal training seconds, with the power to decide: parallel against EAGer and the user's first try.

Per task mix and seed: `parallel` (the recipe, P prompts x G rows) trains `--steps` steps and sets the
seconds; every other generator trains until it has used those training seconds (`max_train_seconds`:
generation, scoring and optimisation), saving its model at the seconds parallel saved its own, so the
curves share their time points. Generators:
  parallel        TRL's sampling, the recipe (8 prompts x 8 rows a step)
  parallel_half   16 prompts x 4 rows: the simple alternative a user would try first
  eager           rollout_generator=eager with the recipe's settings (the screen allocation)
Every checkpoint is scored after training, on one engine per mix, with `--heldout` problems x `--samples`
samples (standard error about 0.016 at 1,000); the same problems and seeds for every run, so their
differences carry less noise than their levels.

Mixes: `default`, the recipe's 4-6 digits (parallel finds a signal in most prompts); `mixed`, 1-8 digits
(the model was pretrained on 1-6: short sums are nearly always right, 7-8 digits nearly never, as in
real RLVR data where many groups carry no signal).

Per generator, mix and seed it prints the curve (accuracy +- standard error @ seconds), the step's
seconds split, engine steps, tokens and the share of prompts with a signal; it writes one plot
(`--out`/equal_time.png) with a band of +-1 standard error. Last lines: `equal_time_accuracy_delta=`
(eager's accuracy at parallel's final seconds minus parallel's final, mean over seeds, mixed),
`equal_time_accuracy_delta_default=` (the same on the recipe's mix), `time_to_parallel_accuracy_ratio=`
(eager's seconds to reach parallel's final accuracy on the seed-mean curves, interpolated, over
parallel's seconds; mixed; a run that never reaches it counts its seconds, at least 1.0) and
`standard_error=` (of equal_time_accuracy_delta: over seeds, each seed's delta holding its own
held-out noise).

    python -m benchmarks.grpo_equal_time [--seeds 0 1 2] [--steps 40] [--mixes default mixed] [--out outputs/equal_time]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

from benchmarks.equal_time import curves, plot, report  # noqa: E402  (after the engine's environment is set)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu_default.yaml"
NOT_TRAINING_ARGS = ("model_name_or_path", "dtype", "dataset_name", "reward_funcs")
MIXES = {"default": (4, 5, 6), "mixed": (1, 2, 3, 4, 5, 6, 7, 8)}
GENERATORS = {
    "parallel": dict(rollout_generator="parallel"),
    "parallel_half": dict(rollout_generator="parallel", num_generations=4),
    "eager": dict(rollout_generator="eager"),
}


def training_args(name: str, fields: dict, seed: int, out: str, steps: int, seconds: float | None):
    import yaml

    from trainers import EagerGRPOConfig

    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in NOT_TRAINING_ARGS}
    recipe.update(max_steps=steps, output_dir=out, report_to="none", seed=seed, save_strategy="no",
                  max_train_seconds=seconds, **fields)
    return EagerGRPOConfig(**recipe)


def train(name: str, model: str, dataset, seed: int, out: Path, steps: int, marks: list[float] | None,
          every: int, seconds: float | None) -> tuple[list[dict], list[tuple[int, Path]]]:
    """One run; its per-step logs and (step, model directory) of every save."""
    from benchmarks.equal_time import SaveAt
    from benchmarks.grpo_run import train_and_log
    from rewards import boxed_accuracy
    from trainers import EagerGRPOTrainer

    trainer = EagerGRPOTrainer(model=model, reward_funcs=[boxed_accuracy], train_dataset=dataset,
                               args=training_args(name, GENERATORS[name], seed, str(out), steps, seconds))
    saver = SaveAt(trainer, out, marks=marks, every=every)
    trainer.add_callback(saver)
    logs = train_and_log(trainer, save_to=out / "final")
    if not saver.saved or saver.saved[-1][0] != logs[-1]["step"]:
        saver.saved.append((logs[-1]["step"], out / "final"))
    return logs, saver.saved


def run_mix(mix: str, opts: argparse.Namespace, model: str, out: Path) -> dict:
    """Every generator and seed on one mix: their logs and checkpoints, then the scores on one engine."""
    from datasets import Dataset

    from recipes.arithmetic.task import TRAIN_SEED, make_problems, to_record

    dataset = Dataset.from_list([to_record(p) for p in make_problems(4000, TRAIN_SEED, MIXES[mix])])
    runs: dict[str, list[dict]] = {g: [] for g in opts.generators}
    for seed in opts.seeds:
        marks = None
        for name in opts.generators:
            parallel = name == "parallel"
            logs, saved = train(name, model, dataset.shuffle(seed=seed), seed, out / mix / f"{name}-{seed}",
                                opts.steps if parallel else opts.steps * 6, marks, opts.eval_every,
                                None if parallel else runs["parallel"][-1]["train_s"])
            run = dict(seed=seed, logs=logs, saved=saved, train_s=logs[-1]["eager/train_wall_s"])
            runs[name].append(run)
            if parallel:
                by_step = {h["step"]: h["eager/train_wall_s"] for h in logs}
                marks = [by_step[step] for step, _ in saved[:-1]]
            print(f"[{mix}] {name} seed={seed}: {len(logs)} steps, {run['train_s']:.1f} s", flush=True)
    curves.score(runs, model, mix, MIXES[mix], opts)
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the recipe's arithmetic model)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40, help="parallel's steps (the seconds every run gets)")
    ap.add_argument("--eval_every", type=int, default=10, help="parallel saves every this many steps")
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--samples", type=int, default=2, help="samples per held-out problem")
    ap.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    ap.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    ap.add_argument("--out", default="outputs/equal_time")
    ap.add_argument("--eager", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="EagerGRPOConfig fields for the eager run over the recipe's (e.g. eager_oversample=3)")
    opts = ap.parse_args(argv)
    import yaml

    GENERATORS["eager"] = {**GENERATORS["eager"], **{k: yaml.safe_load(v) for k, v in
                                                      (item.split("=", 1) for item in opts.eager)}}
    if opts.generators[0] != "parallel":
        ap.error("--generators must start with parallel: it sets the seconds every other run gets.")

    from recipes.arithmetic.pretrain import ensure_model

    model = opts.model or str(ensure_model())
    out_dir = Path(opts.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mix in opts.mixes:
            results[mix] = run_mix(mix, opts, model, Path(tmp))
    summary = report.summarise(results, opts)
    (out_dir / "equal_time.json").write_text(json.dumps({"summary": summary, "runs": {
        mix: {g: [{k: v for k, v in r.items() if k not in ("logs", "saved")} for r in rs] for g, rs in runs.items()}
        for mix, runs in results.items()}}, indent=1, default=str))
    plot.draw(results, out_dir / "equal_time.png")
    report.print_headline(summary, opts)


if __name__ == "__main__":
    main()
