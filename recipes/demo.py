"""`eager-demo`: the CPU default end to end: a model learns, and EAGer spends fewer rollout tokens.

1) builds (or reuses) the arithmetic model the project trains itself, and its data splits;
2) measures held-out accuracy (sampling at the recipe's temperature);
3) runs the CPU recipe twice with `accelerate launch`, rollout_generator parallel and eager,
   same steps and seed, both logged to W&B in one group (offline unless W&B is set up);
4) measures held-out accuracy at every checkpoint, prints the comparison and the training time
   split (generation, scoring, optimisation) and writes `accuracy_vs_rollout_tokens.png`: accuracy
   against cumulative rollout tokens and against cumulative training seconds (evaluation excluded).

    eager-demo [--max_steps 40] [--heldout 200] [--output_dir outputs/demo]
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from recipes.engine_env import cpu_engine_env
from recipes.heldout import CheckpointScorer

logger = logging.getLogger(__name__)
RECIPES = Path(__file__).resolve().parent


@dataclass
class DemoConfig:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where runs, table and plot go."})
    max_steps: int = field(default=40, metadata={"help": "GRPO steps per generator."})
    save_steps: int = field(default=10, metadata={"help": "Checkpoint (and held-out evaluation) every this many."})
    generators: list[str] = field(default_factory=lambda: ["parallel", "eager"], metadata={"help": "Runs to compare."})
    heldout: int = field(default=200, metadata={"help": "Held-out problems per accuracy measurement."})
    recipe: str = field(default=str(RECIPES / "cpu_default.yaml"), metadata={"help": "GRPO recipe (YAML)."})
    accelerate_config: str = field(default=str(RECIPES / "accelerate" / "cpu.yaml"), metadata={"help": "Launcher."})
    wandb_project: str = field(default="eager-rl", metadata={"help": "W&B project of the runs."})
    seed: int = field(default=0, metadata={"help": "Seed of training and evaluation."})


def prepare(cfg: DemoConfig) -> tuple[Path, Path, Path]:
    """The trained arithmetic model (built once, cached) and the train / held-out files."""
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
    env.update(extra)
    return env


def train(cfg: DemoConfig, generator: str, model: Path, data: Path, group: str) -> tuple[Path, float]:
    """One GRPO run of the recipe with `generator`; returns its output directory and wall time."""
    out = Path(cfg.output_dir) / generator
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", cfg.accelerate_config,
           "-m", "recipes.grpo", "--config", cfg.recipe,
           "--model_name_or_path", str(model), "--dataset_name", str(data), "--rollout_generator", generator,
           "--output_dir", str(out), "--max_steps", str(cfg.max_steps), "--save_strategy", "steps",
           "--save_steps", str(cfg.save_steps), "--seed", str(cfg.seed), "--run_name", f"{group}-{generator}"]
    logger.info("training with %s: %s", generator, " ".join(cmd))
    t0 = time.perf_counter()
    env = _env(WANDB_PROJECT=cfg.wandb_project, WANDB_RUN_GROUP=group, WANDB_DIR=str(Path(cfg.output_dir).resolve()))
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"GRPO with rollout_generator={generator} failed (exit {done.returncode}); see above.")
    return out, time.perf_counter() - t0


def step_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """Logged metrics by step, from the trainer_state.json the run saved."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {row["step"]: row for row in state["log_history"] if "eager/rollout_tokens" in row}


def curve(scorer: CheckpointScorer, run_dir: Path, before: float) -> list[tuple[float, float, float]]:
    """(cumulative rollout tokens, cumulative training seconds, held-out accuracy) at step 0 and every checkpoint."""
    metrics = step_metrics(run_dir)
    points = [(0.0, 0.0, before)]
    for ckpt in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(ckpt.name.split("-")[1])
        row = metrics[step]
        points.append((row["eager/rollout_tokens_cumulative"], row["eager/train_wall_s"], scorer.score(ckpt).mean))
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
        "train_s": train_s,  # generation + scoring + optimisation, from the first step on
        "generation_s": total("eager/time_generation_s"),
        "scoring_s": total("eager/time_scoring_s"),
        "optimisation_s": train_s - total("eager/time_generation_s") - total("eager/time_scoring_s"),
        "wall_time_s": wall,  # the whole launch: set-up and checkpoints included
        "steps": len(rows),
    }


def report(summaries: list[dict], curves: dict[str, list[tuple[float, float, float]]], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["generator", "steps", "accuracy_before", "accuracy_after", "rollout_tokens", "frac_with_signal",
            "sequences_per_prompt", "train_s", "generation_s", "scoring_s", "optimisation_s", "wall_time_s"]
    print(" | ".join(cols))
    for s in summaries:
        print(" | ".join(f"{s[c]:.3f}" if isinstance(s[c], float) else str(s[c]) for c in cols))
    base, eager = (summaries[0], summaries[-1]) if len(summaries) > 1 else (None, None)
    if base and eager and base["rollout_tokens"]:
        print(f"eager_rollout_token_ratio={eager['rollout_tokens'] / base['rollout_tokens']:.3f}")
        print(f"eager_train_time_ratio={eager['train_s'] / base['train_s']:.3f}")
    (out_dir / "comparison.json").write_text(json.dumps({"runs": summaries, "curves": curves}, indent=2))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (ax, label) in enumerate(zip(axes, ["cumulative rollout tokens", "cumulative training seconds"])):
        for name, pts in curves.items():
            ax.plot([p[k] for p in pts], [p[2] for p in pts], marker="o", label=name)
        ax.set_xlabel(label)
    axes[0].set_ylabel("held-out accuracy (one sample, T=1)")
    fig.suptitle("GRPO on the arithmetic model: parallel vs EAGer")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_rollout_tokens.png", dpi=120)
    print(f"plot={out_dir / 'accuracy_vs_rollout_tokens.png'}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    (cfg,) = HfArgumentParser(DemoConfig).parse_args_into_dataclasses(args=argv)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, train_file, _ = prepare(cfg)
    scorer = heldout_scorer(model, cfg)
    before = scorer.score().mean
    logger.info("held-out accuracy before RL: %.3f", before)
    group = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    summaries, curves = [], {}
    for generator in cfg.generators:
        run_dir, wall = train(cfg, generator, model, train_file, group)
        curves[generator] = curve(scorer, run_dir, before)
        summaries.append(summarize(generator, run_dir, wall, curves[generator]))
    report(summaries, curves, out_dir)


if __name__ == "__main__":
    main()
