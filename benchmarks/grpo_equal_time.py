"""GRPO at equal training seconds, a fair race: EAGer against the strongest baseline any generator could use.

Per task mix and seed, `parallel` (TRL's own sampling, the recipe's 8 prompts x 8 rows, nothing dropped)
trains `--steps` steps and sets the seconds; every other generator trains until it has used those training
seconds (`max_train_seconds`: generation, scoring and optimisation) and saves its model at the seconds
parallel saved its own. Generators (every one on the recipe's learning rate, loss and normaliser):
  parallel                TRL's sampling, 8 prompts x 8
  parallel_dynamic_8x8    the same with DAPO's dynamic sampling: groups whose rewards agree leave the loss batch
  parallel_dynamic_16x4   16 prompts x 4 (twice the prompts, the same 64 samples), dynamic sampling
  eager                   the recipe (rollout_generator eager: its training allocation, oversample and dynamic
                          sampling as recipes/cpu_default.yaml sets them)
The seed is the unit: each seed's models are scored on the same `--heldout` problems x `--samples` samples
(about 0.016 of standard error at 1,000), so a seed gives one paired difference per pair of generators, its
held-out noise inside it; a figure is the mean of those differences with a t interval on n-1 degrees of
freedom (benchmarks/equal_time/stats.py). The best baseline is the one with the highest mean accuracy at
parallel's seconds. Each finished run is stored under `--out` and a rerun resumes (benchmarks/equal_time/race.py).

Mixes: `default`, the recipe's 4-6 digits; `mixed`, 1-8 digits (the model was pretrained on 1-6: short sums are
nearly always right, 7-8 digits nearly never, as in RLVR data where many groups carry no signal).

Per mix it prints the table (steps, seconds split, tokens, signal, rows trained a step, the shares of trained
rows that forks started and of rows a verdict placed, accuracy, minus parallel) and `mix=`, `seeds=`,
`parallel_gain=`, `best_baseline=`, `eager_vs_best_baseline_delta=`, `ci95_low=`, `ci95_high=` (of that
delta), `eager_vs_parallel_delta=`, `fork_rows_frac=`, `moved_rows_frac=` and
`time_to_parallel_accuracy_ratio=` (per seed: when eager's curve reaches parallel's final accuracy and stays
there, over parallel's seconds; with its interval when every seed reaches it). It writes `--json`, one entry
per mix with every seed's accuracy per generator (recompute any interval from it), and a plot beside it.

    python -m benchmarks.grpo_equal_time [--seeds 0 1 2 3 4] [--steps 40] [--mixes default mixed]
    python -m benchmarks.grpo_equal_time --quick   # the inner loop: 2 seeds, 8 steps, 100 problems x 2, one mix
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

from benchmarks.equal_time import Task  # noqa: E402  (after the engine's env)
from benchmarks.equal_time import plot, race, report  # noqa: E402
from recipes.generators import CONTROLS, GENERATORS  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu_default.yaml"
MIXES = {"default": (4, 5, 6), "mixed": (1, 2, 3, 4, 5, 6, 7, 8)}
QUICK = dict(seeds=[0, 1], steps=8, eval_every=4, heldout=100, samples=2, mixes=["default"],
             out="outputs/equal_time_quick", json="outputs/equal_time_quick/equal_time.json")


def arithmetic_task(mix: str, model: str, heldout: int) -> Task:
    from recipes.arithmetic.evaluate import max_completion_tokens
    from recipes.arithmetic.task import TRAIN_SEED, heldout_problems, is_correct, make_problems, to_record

    digits = MIXES[mix]
    problems = heldout_problems(heldout, digits)
    return Task(mix, RECIPE, model, [to_record(p) for p in make_problems(4000, TRAIN_SEED, digits)],
                [p.prompt for p in problems], [p.answer for p in problems], is_correct,
                max_completion_tokens(max(digits)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the recipe's arithmetic model)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=40, help="parallel's steps (the seconds every run gets)")
    ap.add_argument("--eval_every", type=int, default=10, help="parallel saves every this many steps")
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--samples", type=int, default=2, help="samples per held-out problem")
    ap.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    ap.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    ap.add_argument("--out", default="outputs/equal_time", help="runs and models (a rerun resumes from here)")
    ap.add_argument("--json", default="docs/results/equal_time.json", help="the figures, one entry per mix")
    ap.add_argument("--quick", action="store_true", help=f"the inner loop: {QUICK}")
    ap.add_argument("--stored_only", action="store_true",
                    help="train and score nothing: report, per mix, the generators --out holds runs of, on the seeds "
                    "where every one of them is stored and scored")
    ap.add_argument("--eager", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="EagerGRPOConfig fields for the eager run over the recipe's (e.g. eager_screen_roots=2)")
    opts = ap.parse_args(argv)
    if opts.quick:
        for key, value in QUICK.items():
            setattr(opts, key, value)
    import yaml

    generators = {name: GENERATORS[name] for name in opts.generators}
    if "eager" in generators:
        generators["eager"] = {**generators["eager"], **{k: yaml.safe_load(v) for k, v in
                                                         (item.split("=", 1) for item in opts.eager)}}
    if opts.generators[0] != "parallel":
        ap.error("--generators must start with parallel: it sets the seconds every other run gets.")

    from recipes.arithmetic.pretrain import ensure_model

    model = opts.model or str(ensure_model())
    settings = dict(steps=opts.steps, every=opts.eval_every, heldout=opts.heldout, samples=opts.samples)
    json_path = Path(opts.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(json_path.read_text()) if json_path.exists() else {}
    results = {}
    for mix in opts.mixes:
        task = arithmetic_task(mix, model, opts.heldout)
        racing, seeds = generators, opts.seeds
        if opts.stored_only:  # the generators this mix ran, on the seeds every one of them holds
            racing = {name: f for name, f in generators.items()
                      if any(race.stored(task, {name: f}, seed, Path(opts.out)) for seed in opts.seeds)}
            seeds = [seed for seed in opts.seeds if race.stored(task, racing, seed, Path(opts.out))]
        for n in range(1, len(seeds) + 1):  # the figures so far after every seed (a later seed resumes)
            results[mix] = race.race(task, racing, seeds[:n], settings, Path(opts.out))
            figures[mix] = {**report.summarise(results[mix], controls=CONTROLS), "settings": settings,
                            "model": Path(model).name}
            json_path.write_text(json.dumps(figures, indent=1))
    plot.draw(results, json_path.with_suffix(".png"))
    for mix in opts.mixes:
        report.print_mix(mix, figures[mix])
    print(f"json={json_path}")


if __name__ == "__main__":
    main()
