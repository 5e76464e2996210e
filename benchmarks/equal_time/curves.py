"""Scoring every run's saved models on one engine per mix: curves of (seconds, accuracy, standard error)."""

from __future__ import annotations

from typing import Any


def score(runs: dict[str, list[dict]], task: Any, samples: int) -> None:
    """Adds `curve` [(seconds, accuracy, stderr)], `per_problem` and `split` (the time split and per-step means) to
    every run: every saved model scored on one engine, the same problems and seeds for all."""
    from recipes.heldout import CheckpointScorer

    mix = task.name
    scorer = CheckpointScorer(task.model, task.prompts, task.golds, task.is_correct, max_tokens=task.max_tokens,
                              samples=samples, seed=0, max_model_len=task.max_model_len)
    try:
        before = scorer.score()
        for name, rs in runs.items():
            for run in rs:
                by_step = {h["step"]: h["eager/train_wall_s"] for h in run["logs"]}
                run["curve"] = [(0.0, before.mean, before.stderr)]
                run["per_problem"] = [(0.0, before.per_problem)]  # for paired differences
                for step, path in run["saved"]:
                    acc = scorer.score(path)
                    run["curve"].append((by_step[step], acc.mean, acc.stderr))
                    run["per_problem"].append((by_step[step], acc.per_problem))
                run["split"] = split(run["logs"])
                print(f"[{mix}] {name} seed={run['seed']}: " + ", ".join(
                    f"{a:.3f}+-{e:.3f}@{t:.0f}s" for t, a, e in run["curve"]), flush=True)
    finally:
        scorer.close()


def split(logs: list[dict]) -> dict[str, float]:
    """Training seconds and their split, and per-step means of what the steps held."""
    total = lambda key: sum(h.get(key, 0.0) for h in logs)  # noqa: E731
    mean = lambda key: total(key) / len(logs)  # noqa: E731
    train_s = logs[-1]["eager/train_wall_s"]
    out = dict(steps=len(logs), train_s=train_s, generation_s=total("eager/time_generation_s"),
               scoring_s=total("eager/time_scoring_s"), tokens=total("eager/rollout_tokens"),
               signal=mean("eager/frac_with_signal"), rows_used=mean("eager/rows_used_frac"),
               engine_steps=mean("eager/engine_steps"), rows_trained=mean("eager/rows_trained"),
               moved_rows_frac=mean("eager/moved_rows_frac"))
    trained = total("eager/rows_trained")  # the share of all trained rows that forks started
    out["fork_rows_frac"] = sum(h.get("eager/fork_rows_frac", 0.0) * h.get("eager/rows_trained", 0.0)
                                for h in logs) / trained if trained else 0.0
    out["optimisation_s"] = train_s - out["generation_s"] - out["scoring_s"]
    return out


def at(curve: list[tuple[float, float, float]], t: float) -> tuple[float, float]:
    """(accuracy, stderr) at `t` seconds, linearly interpolated; past the last point, the last point."""
    for (t0, a0, e0), (t1, a1, e1) in zip(curve, curve[1:]):
        if t0 <= t <= t1:
            w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
            return a0 + w * (a1 - a0), e0 + w * (e1 - e0)
    return curve[-1][1], curve[-1][2]
