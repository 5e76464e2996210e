"""`eager-demo`: the CPU default end to end: GRPO with EAGer and the baselines a user has, at equal seconds.

1) takes the arithmetic model the project trained (shipped with the package) and writes its data splits;
2) measures held-out accuracy (one sample per problem at the recipe's temperature, one engine for every
   checkpoint);
3) runs the CPU recipe with `accelerate launch` for each generator (`recipes.generators`: TRL's plain
   parallel, the best baseline of the fair race (parallel at 16 prompts x 4 with DAPO's dynamic sampling),
   EAGer's default): the first for `max_steps`, every other one for
   the training seconds the first used (`max_train_seconds`: generation, scoring and optimisation), so a
   cheaper generator gets the steps its savings buy;
4) scores every checkpoint, prints the comparison (accuracy at the first run's seconds with its standard
   error, the step's time split, and what each step trained on: rows, forks, rows a verdict placed), and
   writes `accuracy_vs_seconds.png` (accuracy against training seconds and against rollout tokens).
One seed: the table shows how to read a run, not which generator wins; `benchmarks.grpo_equal_time`
races them over seeds with intervals (docs/RESULTS.md).

Each run's own output (TRL's, vLLM's, W&B's) goes to `<output_dir>/<generator>.log`; the console
shows one line per step.

    eager-demo [--max_steps 30] [--heldout 400] [--output_dir outputs/demo]
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from recipes.engine_env import cpu_engine_env
from recipes.generators import GENERATORS, cli_flags
from recipes.heldout import CheckpointScorer

RECIPES = Path(__file__).resolve().parent


@dataclass
class DemoConfig:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where runs, logs, table and plot go."})
    max_steps: int = field(default=30, metadata={"help": "GRPO steps of the first generator (the seconds it sets)."})
    save_steps: int = field(default=10, metadata={"help": "Checkpoint (and held-out evaluation) every this many."})
    generators: list[str] = field(default_factory=lambda: ["parallel", "parallel_dynamic_16x4", "eager"],
                                  metadata={"help": f"Runs to compare, the first setting the seconds: {list(GENERATORS)}."})
    heldout: int = field(default=400, metadata={"help": "Held-out problems per accuracy measurement."})
    recipe: str = field(default=str(RECIPES / "cpu_default.yaml"), metadata={"help": "GRPO recipe (YAML)."})
    accelerate_config: str = field(default=str(RECIPES / "accelerate" / "cpu.yaml"), metadata={"help": "Launcher."})
    wandb_project: str = field(default="eager-rl", metadata={"help": "W&B project of the runs."})
    seed: int = field(default=0, metadata={"help": "Seed of training and evaluation."})


def prepare(cfg: DemoConfig) -> tuple[Path, Path, Path]:
    """The arithmetic model (shipped; trained and cached only if its config changed) and the data files."""
    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import write_splits

    model = ensure_model()
    train, heldout = write_splits(Path(cfg.output_dir) / "data")
    return model, train, heldout


def heldout_scorer(model: Path, cfg: DemoConfig) -> CheckpointScorer:
    """One engine that scores the model and every checkpoint: one sample per held-out problem at T=1."""
    from recipes.arithmetic.evaluate import RECIPE_TEMPERATURE, max_completion_tokens
    from recipes.arithmetic.task import heldout_problems, is_correct

    problems = heldout_problems(cfg.heldout)
    return CheckpointScorer(model, [p.prompt for p in problems], [p.answer for p in problems], is_correct,
                            max_tokens=max_completion_tokens(max(p.digits for p in problems)),
                            temperature=RECIPE_TEMPERATURE, seed=cfg.seed)


def _env(**extra: str) -> dict[str, str]:
    env = cpu_engine_env(kv_cache_gib=1, env=dict(os.environ))
    if not env.get("WANDB_API_KEY"):
        env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    env["PYTHONUNBUFFERED"] = "1"  # the run's lines reach the console as they are printed
    env.update(extra)
    return env


def grpo_args(cfg: DemoConfig, generator: str, model: Path, data: Path, group: str, steps: int) -> list[str]:
    """`recipes.grpo`'s command line for one run of the recipe with `generator`."""
    return ["--config", cfg.recipe, "--disable_tqdm", "true", "--model_name_or_path", str(model),
            "--dataset_name", str(data), *cli_flags(GENERATORS[generator]),
            "--output_dir", str(Path(cfg.output_dir) / generator), "--max_steps", str(steps),
            "--save_strategy", "steps", "--save_steps", str(cfg.save_steps), "--seed", str(cfg.seed),
            "--run_name", f"{group}-{generator}"]


def check_runs(cfg: DemoConfig, model: Path, data: Path) -> None:
    """Every generator's settings, checked before the first run starts (a bad one fails now, not after it)."""
    from recipes.grpo import parse_args

    for generator in cfg.generators:
        if generator not in GENERATORS:
            raise SystemExit(f"eager-demo: --generators {generator}: choose among {list(GENERATORS)} "
                             "(recipes/generators.py).")
        try:
            parse_args(grpo_args(cfg, generator, model, data, "check", cfg.max_steps))
        except ValueError as err:
            raise SystemExit(f"eager-demo: --generators {generator} with {cfg.recipe}: {err}") from None


def train(cfg: DemoConfig, generator: str, model: Path, data: Path, group: str,
          seconds: float | None = None) -> tuple[Path, float]:
    """One GRPO run of the recipe with `generator` (for `seconds` of training if given); its directory and wall."""
    out = Path(cfg.output_dir) / generator
    steps = cfg.max_steps if seconds is None else cfg.max_steps * 5  # the seconds stop it first
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", cfg.accelerate_config,
           "-m", "recipes.grpo", *grpo_args(cfg, generator, model, data, group, steps)]
    if seconds is not None:
        cmd += ["--max_train_seconds", f"{seconds:.3f}"]
    env = _env(WANDB_PROJECT=cfg.wandb_project, WANDB_RUN_GROUP=group, WANDB_DIR=str(Path(cfg.output_dir).resolve()))
    log_path = Path(cfg.output_dir) / f"{generator}.log"
    limit = f"{seconds:.0f} training s" if seconds is not None else f"{steps} steps"
    print(f"[{generator}] training for {limit} (log: {log_path})", flush=True)
    t0 = time.perf_counter()
    with log_path.open("w") as log, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     text=True) as proc:
        for line in proc.stdout:
            log.write(line)
            _progress(generator, line)
    if proc.returncode != 0:
        raise RuntimeError(f"GRPO with rollout_generator={generator} failed (exit {proc.returncode}); see {log_path}.")
    return out, time.perf_counter() - t0


def _progress(generator: str, line: str) -> None:
    """One console line per logged step, from the dict the trainer prints (anything else stays in the log)."""
    if not line.startswith("{") or "eager/frac_with_signal" not in line:  # a step's log, not the run's summary
        return
    try:  # transformers prints the values as formatted strings
        row = {key: float(value) for key, value in ast.literal_eval(line.strip()).items()}
    except (ValueError, SyntaxError, TypeError):
        return
    print(f"[{generator}] {row['eager/train_wall_s']:6.1f} s  reward {row.get('reward', float('nan')):.3f}  "
          f"signal {row['eager/frac_with_signal']:.2f}  rows used {row['eager/rows_used_frac']:.2f}  "
          f"tokens {row['eager/rollout_tokens_cumulative']:,.0f}", flush=True)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors: vLLM's and torch's native logs too) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def step_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """Logged metrics by step, from the trainer_state.json the run saved."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {row["step"]: row for row in state["log_history"] if "eager/rollout_tokens" in row}


def curve(scorer: CheckpointScorer, run_dir: Path, before: float) -> list[tuple[float, float, float]]:
    """(cumulative rollout tokens, training seconds, held-out accuracy) at step 0, every checkpoint, and the end."""
    metrics = step_metrics(run_dir)
    models = {int(c.name.split("-")[1]): c for c in run_dir.glob("checkpoint-*")}
    models.setdefault(max(metrics), run_dir)  # the final model, which eager-grpo saves in the run's directory
    points = [(0.0, 0.0, before)]
    for step in sorted(models):
        row = metrics[step]
        points.append((row["eager/rollout_tokens_cumulative"], row["eager/train_wall_s"],
                       scorer.score(models[step]).mean))
    return points


def summarize(generator: str, run_dir: Path, wall: float, points: list[tuple[float, float, float]]) -> dict:
    rows = list(step_metrics(run_dir).values())
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    total = lambda key: sum(r[key] for r in rows)  # noqa: E731
    train_s = rows[-1]["eager/train_wall_s"]
    return {
        "generator": generator,
        "accuracy_before": points[0][2],
        "accuracy_after": points[-1][2],
        "rollout_tokens": rows[-1]["eager/rollout_tokens_cumulative"],
        "frac_with_signal": mean("eager/frac_with_signal"),
        "sequences_per_prompt": mean("eager/sequences_per_prompt_mean"),
        "rows_trained": mean("eager/rows_trained"),  # rows a step's loss batch held
        "fork_rows_frac": sum(r["eager/fork_rows_frac"] * r["eager/rows_trained"] for r in rows)
        / max(total("eager/rows_trained"), 1.0),  # the share of them that entropy forks started
        "moved_rows_frac": mean("eager/moved_rows_frac"),  # rows a verdict placed (fills, probes, extra passes)
        "train_s": train_s,  # generation + scoring + optimisation, from the first step on
        "generation_s": total("eager/time_generation_s"),
        "scoring_s": total("eager/time_scoring_s"),
        "optimisation_s": train_s - total("eager/time_generation_s") - total("eager/time_scoring_s"),
        "wall_time_s": wall,  # the whole launch: set-up and checkpoints included
        "steps": len(rows),
    }


def accuracy_at(points: list[tuple[float, float, float]], seconds: float) -> float:
    """Held-out accuracy at `seconds` of training, linearly interpolated between scored models (past the end: the
    end)."""
    for (_, t0, a0), (_, t1, a1) in zip(points, points[1:]):
        if t0 <= seconds <= t1:
            return a0 + (seconds - t0) / (t1 - t0) * (a1 - a0) if t1 > t0 else a1
    return points[-1][2]


def report(summaries: list[dict], curves: dict[str, list[tuple[float, float, float]]], out_dir: Path,
           problems: int) -> None:
    """The comparison at the first run's training seconds: accuracy with its held-out standard error (one sample of
    `problems` problems a point), the time split and what the steps trained on; a table, comparison.json, a plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = summaries[0]["train_s"]
    se = lambda p: math.sqrt(max(p * (1 - p), 0.0) / problems)  # noqa: E731
    for s in summaries:
        s["accuracy_at_equal_seconds"] = accuracy_at(curves[s["generator"]], seconds)
        s["accuracy_se"] = se(s["accuracy_at_equal_seconds"])
    cols = ["generator", "steps", "accuracy_before", "accuracy_at_equal_seconds", "accuracy_se", "rollout_tokens",
            "frac_with_signal", "rows_trained", "fork_rows_frac", "moved_rows_frac", "train_s", "generation_s",
            "scoring_s", "optimisation_s", "wall_time_s"]
    print(f"at {seconds:.1f} training seconds (the first run's), one seed, {problems} held-out problems a point:")
    print(" | ".join(cols))
    for s in summaries:
        print(" | ".join(f"{s[c]:.3f}" if isinstance(s[c], float) else str(s[c]) for c in cols))
    print("rows_trained: rows a step's loss batch held (groups whose rewards all agree leave it under dynamic "
          "sampling); fork_rows_frac: the share of them that an entropy fork started; moved_rows_frac: the share of "
          "a step's rows that a verdict placed (fills, probes, extra passes). A run with fewer tokens or seconds a "
          "step gets more steps in the same seconds.")
    first = summaries[0]
    for s in summaries[1:]:
        diff = s["accuracy_at_equal_seconds"] - first["accuracy_at_equal_seconds"]
        print(f"{s['generator']}_minus_{first['generator']}={diff:+.3f} +- "
              f"{math.hypot(s['accuracy_se'], first['accuracy_se']):.3f} (one seed: a difference inside about two of "
              "these is noise)")
    (out_dir / "comparison.json").write_text(json.dumps({"runs": summaries, "curves": curves}, indent=2))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, k, label in zip(axes, (1, 0), ["training seconds", "cumulative rollout tokens"]):
        for name, pts in curves.items():
            ax.errorbar([p[k] for p in pts], [p[2] for p in pts], yerr=[se(p[2]) for p in pts], marker="o",
                        capsize=3, label=name)
        ax.set_xlabel(label)
    axes[0].axvline(seconds, color="grey", linestyle=":", linewidth=1)
    axes[0].set_ylabel(f"held-out accuracy (one sample of {problems} problems, +-1 s.e.)")
    fig.suptitle("GRPO on the arithmetic model at equal training seconds (one seed)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_seconds.png", dpi=120)
    print(f"plot={out_dir / 'accuracy_vs_seconds.png'}")


def main(argv: list[str] | None = None) -> None:
    (cfg,) = HfArgumentParser(DemoConfig).parse_args_into_dataclasses(args=argv)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, train_file, _ = prepare(cfg)
    check_runs(cfg, model, train_file)
    scoring_log = out_dir / "scoring.log"  # the scoring engine's own output
    with output_to(scoring_log):
        scorer = heldout_scorer(model, cfg)
        before = scorer.score()
    print(f"held-out accuracy before RL: {before}", flush=True)
    group = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    summaries, curves, seconds = [], {}, None
    for generator in cfg.generators:
        run_dir, wall = train(cfg, generator, model, train_file, group, seconds)
        with output_to(scoring_log):
            curves[generator] = curve(scorer, run_dir, before.mean)
        print(f"[{generator}] held-out accuracy: " + ", ".join(f"{acc:.3f}@{t:.0f}s" for _, t, acc in
                                                              curves[generator]), flush=True)
        summaries.append(summarize(generator, run_dir, wall, curves[generator]))
        if seconds is None:
            seconds = summaries[0]["train_s"]
    report(summaries, curves, out_dir, cfg.heldout)


if __name__ == "__main__":
    main()
