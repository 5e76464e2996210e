"""GRPO at equal training seconds, with the power to decide: parallel against EAGer and the user's first try.

Per task mix and seed: `parallel` (the recipe, P prompts x G rows) trains `--steps` steps and sets the
seconds; every other generator trains until it has used those training seconds (`max_train_seconds`:
generation, scoring and optimisation), saving its model at the seconds parallel saved its own, so the
curves share their time points. Generators:
  parallel        TRL's sampling, the recipe (8 prompts x 8 rows a step)
  parallel_half   16 prompts x 4 rows: the simple alternative a user would try first
  eager           rollout_generator=eager with the recipe's settings (the screen allocation)
  eager_budget    the same with eager_loss_normalizer=budget (a constant normaliser: a step with little signal
                  moves the weights less) instead of the recipe's dapo token count
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
import tempfile
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

from benchmarks.equal_time import Task, curves, plot, report, run_task  # noqa: E402  (after the engine's env)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu_default.yaml"
MIXES = {"default": (4, 5, 6), "mixed": (1, 2, 3, 4, 5, 6, 7, 8)}
GENERATORS = {
    "parallel": dict(rollout_generator="parallel"),
    "parallel_half": dict(rollout_generator="parallel", num_generations=4),
    "eager": dict(rollout_generator="eager"),
    "eager_budget": dict(rollout_generator="eager", eager_loss_normalizer="budget"),
}


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
    generators = {name: GENERATORS[name] for name in opts.generators}
    with tempfile.TemporaryDirectory() as tmp:
        for mix in opts.mixes:
            task = arithmetic_task(mix, model, opts.heldout)
            results[mix] = run_task(task, generators, opts.seeds, opts.steps, opts.eval_every, Path(tmp))
            curves.score(results[mix], task, opts.samples)
    summary = report.summarise(results, opts)
    (out_dir / "equal_time.json").write_text(json.dumps({"summary": summary, "runs": {
        mix: {g: [{k: v for k, v in r.items() if k not in ("logs", "saved")} for r in rs] for g, rs in runs.items()}
        for mix, runs in results.items()}}, indent=1, default=str))
    plot.draw(results, out_dir / "equal_time.png")
    report.print_headline(summary, opts)


if __name__ == "__main__":
    main()
