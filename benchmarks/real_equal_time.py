"""GRPO on a real subword model at equal training seconds, and why EAGer's earlier allocation harmed it.

The model: SmolLM2-135M-Instruct fine-tuned on the word problems of `benchmarks.wordmath` (held-out
accuracy about 0.21 at T=1; `python -m benchmarks.wordmath.model` builds and caches it). The recipe:
`benchmarks/wordmath/grpo.yaml` (4 prompts x 8 rows a step, lr 2e-5, dapo).

Default (`--mode equal_seconds`), the race of `benchmarks.grpo_equal_time` on this model: per seed,
`parallel` (TRL's own sampling, 4 prompts x 8, nothing dropped) trains `--steps` steps and sets the seconds;
`parallel_dynamic_8x4` (every trick of the recipe that is not EAGer's: twice the prompts, 4 samples each, the
same 32 rows, groups whose answers agree dropped) and `eager` (the recipe's training allocation) train for
those seconds. Every model of a seed is scored on the same `--heldout` problems x `--samples` samples. Each
finished run is stored under `--out` and a rerun resumes (benchmarks/equal_time/race.py). Prints the race's
table and `best_baseline=`, `eager_vs_best_baseline_delta=`, `ci95_low=`, `ci95_high=` (eager at parallel's
seconds minus the best baseline's, a t interval over seeds), and writes them to `--json`.

`--mode isolate`: the earlier result (eager's 8 steps took held-out accuracy from 0.240 to 0.135
while parallel's stayed at 0.235) comes from the estimator, the normaliser, or noise. The runs, all
`--steps` steps from the same model and seed: `eager_passes` (the earlier allocation: the paper's
online passes, the solved rule, group baseline), `parallel_small` (TRL's sampling with as many
rows a step as eager_passes used: 4 prompts x 4), and `parallel` (the recipe's 32 rows). If a step of
few rows harms the model whoever chooses them, the cause is noise at this learning rate. Three more runs
change eager_passes: `eager_passes_verdicts` the baseline alone (the verdict baseline),
`eager_passes_segments` the estimator too (segment credit, every token of a tree once, with the verdict
baseline it needs), and `eager_passes_budget` the normaliser (the constant row budget instead of dapo's
token count).

    python -m benchmarks.real_equal_time [--seeds 0 1 2] [--steps 4] [--eval_every 4] [--heldout 400]
    python -m benchmarks.real_equal_time --mode isolate --seeds 0 --steps 8
    python -m benchmarks.real_equal_time --mode isolate --steps 4 --generators eager_passes parallel_small
    python -m benchmarks.real_equal_time --mode isolate --seeds 0 --steps 8 --eval_every 4 --generators \
        eager_passes eager_passes_verdicts eager_passes_segments eager_passes_budget
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=2)

from benchmarks.equal_time import Task, curves, race, report, run_task  # noqa: E402  (after the engine's env is set)
from benchmarks.equal_time.stats import paired  # noqa: E402

RECIPE = Path(__file__).resolve().parent / "wordmath" / "grpo.yaml"
GENERATORS = {
    "parallel": dict(rollout_generator="parallel", dynamic_sampling=False, oversample=1.0),  # TRL's own
    "eager": dict(rollout_generator="eager"),
    "eager_passes": dict(rollout_generator="eager", oversample=1.0, eager_entropy_threshold=1.5,
                         eager_advanced={"allocation": "passes"}),
    # The recipe's tricks that are not EAGer's: twice the prompts (eager screens 8 with 4 roots), flat groups dropped.
    "parallel_dynamic_8x4": dict(rollout_generator="parallel", num_generations=4, dynamic_sampling=True,
                                 oversample=1.0),
    "parallel_small": dict(rollout_generator="parallel", num_generations=4, per_device_train_batch_size=16,
                           dynamic_sampling=False, oversample=1.0),
}
# The verdict baseline gives a flat group non-zero advantages: no dynamic sampling with it.
VERDICTS = {"allocation": "passes", "baseline": "verdicts"}
GENERATORS["eager_passes_segments"] = {**GENERATORS["eager_passes"], "dynamic_sampling": False,
                                       "eager_advanced": {**VERDICTS, "credit": "segments"}}
GENERATORS["eager_passes_budget"] = {**GENERATORS["eager_passes"], "loss_normalizer": "budget"}
GENERATORS["eager_passes_verdicts"] = {**GENERATORS["eager_passes"], "eager_advanced": VERDICTS,
                                       "dynamic_sampling": False}
MODES = {"equal_seconds": ("parallel", "parallel_dynamic_8x4", "eager"), "isolate": ("parallel", "eager_passes", "parallel_small")}


def wordmath_task(model: Path, heldout: int) -> Task:
    from transformers import AutoTokenizer

    from benchmarks.wordmath.model import MAX_NEW_TOKENS
    from benchmarks.wordmath.task import TRAIN_SEED, heldout_problems, is_correct, make_problems, render_prompt
    from benchmarks.wordmath.task import to_record

    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = heldout_problems(heldout)
    return Task("wordmath", RECIPE, str(model), [to_record(tokenizer, p) for p in make_problems(2000, TRAIN_SEED)],
                [render_prompt(tokenizer, p) for p in problems], [p.answer for p in problems], is_correct,
                MAX_NEW_TOKENS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="equal_seconds", choices=list(MODES))
    ap.add_argument("--generators", nargs="+", default=None, choices=list(GENERATORS),
                    help="a subset of the mode's runs (isolate: e.g. without parallel, when its run at these steps "
                         "and seed is known); equal_seconds needs parallel first")
    ap.add_argument("--model", default=None, help="model directory (default: the cached fine-tuned SmolLM2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=4, help="parallel's steps (equal_seconds) or every run's (isolate)")
    ap.add_argument("--eval_every", type=int, default=4)
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="equal_seconds: the stored runs (a rerun resumes; default "
                    "docs/results/real_equal_time_runs); isolate: where the figures go (default outputs/real_equal_time)")
    ap.add_argument("--json", type=Path, default=Path("docs/results/real_equal_time.json"),
                    help="equal_seconds: the race's figures")
    opts = ap.parse_args(argv)

    from benchmarks.wordmath.model import ensure_model

    model = Path(opts.model) if opts.model else ensure_model()
    task = wordmath_task(model, opts.heldout)
    names = opts.generators or MODES[opts.mode]
    if opts.mode == "equal_seconds" and names[0] != "parallel":
        ap.error("--generators: at equal seconds parallel runs first and sets the seconds")
    generators = {name: GENERATORS[name] for name in names}
    if opts.mode == "equal_seconds":
        equal_seconds(task, generators, opts)
    else:
        isolate(task, generators, opts)


def equal_seconds(task: Task, generators: dict[str, dict], opts: argparse.Namespace) -> None:
    """The race, seed after seed (each stored as it finishes), its figures written after every seed."""
    out = opts.out or Path("docs/results/real_equal_time_runs")
    settings = dict(steps=opts.steps, every=opts.eval_every, heldout=opts.heldout, samples=opts.samples)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, len(opts.seeds) + 1):
        runs = race.race(task, generators, opts.seeds[:n], settings, out)
        figures = {**report.summarise(runs), "settings": settings, "model": task.model.rsplit("/", 1)[-1]}
        opts.json.write_text(json.dumps({"wordmath": figures}, indent=1))
    report.print_mix("wordmath", figures)
    print(f"json={opts.json}")


def isolate(task: Task, generators: dict[str, dict], opts: argparse.Namespace) -> None:
    """Every run trains the same steps from the same model and seed; each is read at its own end."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_task(task, generators, opts.seeds, opts.steps, opts.eval_every, Path(tmp))
        curves.score(runs, task, opts.samples)
    for name, rs in runs.items():
        for r in rs:
            s = r["split"]
            print(f"{name} seed={r['seed']}: steps={s['steps']} train_s={s['train_s']:.1f} (generation "
                  f"{s['generation_s']:.1f}, scoring {s['scoring_s']:.1f}, optimisation {s['optimisation_s']:.1f}) "
                  f"tokens={s['tokens']:.0f} engine_steps/step={s['engine_steps']:.1f} signal={s['signal']:.3f} "
                  f"rows_used={s['rows_used']:.3f} accuracy {r['curve'][0][1]:.3f} -> {r['curve'][-1][1]:.3f} "
                  f"+- {r['curve'][-1][2]:.3f}", flush=True)
    out = opts.out or Path("outputs/real_equal_time")
    out.mkdir(parents=True, exist_ok=True)
    (out / "isolate.json").write_text(json.dumps({name: [
        {k: v for k, v in r.items() if k not in ("logs", "saved")} for r in rs] for name, rs in runs.items()},
        default=str))
    if "parallel" not in runs:
        return
    baseline = runs["parallel"]
    for name in [n for n in generators if n != "parallel"]:
        delta = paired([r["curve"][-1][1] for r in runs[name]], [p["curve"][-1][1] for p in baseline])
        print(f"{name}_minus_parallel={delta.mean:+.4f} ci95_low={delta.low:+.4f} ci95_high={delta.high:+.4f} "
              f"({delta})")


if __name__ == "__main__":
    main()
