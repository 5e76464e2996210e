"""The figures of the equal-seconds benchmark: deltas at parallel's seconds, seed-mean curves, time to accuracy."""

from __future__ import annotations

import math
import statistics
from typing import Any

from benchmarks.equal_time.curves import at, first_reaching, per_problem_at

GRID = [i / 8 for i in range(0, 9)]  # fractions of parallel's training seconds (per seed)


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def paired(run: dict, other: dict, t_run: float, t_other: float) -> tuple[float, float]:
    """(mean, standard error over problems) of run's accuracy at t_run minus other's at t_other, problem by problem:
    the same problems and seeds, so the noise both share cancels."""
    diff = [a - b for a, b in zip(per_problem_at(run["per_problem"], t_run), per_problem_at(other["per_problem"], t_other))]
    return statistics.mean(diff), _se(diff)


def mean_curve(rs: list[dict], parallel: list[dict]) -> list[tuple[float, float, float]]:
    """(fraction of parallel's seconds, mean accuracy over seeds, its standard error) on GRID, up to each run's end."""
    out = []
    for x in GRID + [max(r["curve"][-1][0] / p["train_s"] for r, p in zip(rs, parallel))]:
        values = [at(r["curve"], x * p["train_s"])[0] for r, p in zip(rs, parallel)
                  if x * p["train_s"] <= r["curve"][-1][0] + 1e-9]
        if len(values) == len(rs):
            out.append((x, statistics.mean(values), _se(values)))
    return sorted(set(out))


def _combined_se(estimates: list[tuple[float, float]]) -> float:
    """Standard error of the mean of per-seed estimates: over seeds when there are several (it holds their held-out
    noise too), and never below what the held-out sampling alone gives."""
    held_out = math.sqrt(sum(se * se for _, se in estimates)) / len(estimates)
    seeds = _se([m for m, _ in estimates]) if len(estimates) > 2 else 0.0
    return max(held_out, seeds)


def summarise(results: dict[str, dict[str, list[dict]]], opts: Any) -> dict:
    summary = {}
    for mix, runs in results.items():
        parallel = runs["parallel"]
        finals = [p["curve"][-1][1] for p in parallel]
        gains = [paired(p, p, p["train_s"], 0.0) for p in parallel]  # final minus before, problem by problem
        mix_summary = {"parallel_final": statistics.mean(finals), "parallel_gain": statistics.mean(g for g, _ in gains),
                       "parallel_gain_se": _combined_se(gains),
                       "parallel_seconds": statistics.mean(p["train_s"] for p in parallel),
                       "point_se": statistics.mean(p["curve"][-1][2] for p in parallel) / math.sqrt(len(parallel)),
                       "generators": {}}
        target = mix_summary["parallel_final"]
        for name, rs in runs.items():
            deltas = [paired(r, p, p["train_s"], p["train_s"]) for r, p in zip(rs, parallel)]
            curve = mean_curve(rs, parallel)
            reached = first_reaching([(x, a) for x, a, _ in curve], target)
            g = {"delta": statistics.mean(d for d, _ in deltas), "delta_se": _combined_se(deltas),
                 "delta_seed_se": _se([d for d, _ in deltas]), "deltas": deltas, "curve": curve,
                 "time_to_parallel": reached if reached is not None else max(curve[-1][0], 1.0),
                 "reached": reached is not None}
            g.update({k: statistics.mean(r["split"][k] for r in rs) for k in rs[0]["split"]})
            mix_summary["generators"][name] = g
        summary[mix] = mix_summary
    return summary


def print_headline(summary: dict, opts: Any) -> None:
    for mix, s in summary.items():
        print(f"[{mix}] parallel: final {s['parallel_final']:.3f} in {s['parallel_seconds']:.1f} s, gain "
              f"{s['parallel_gain']:+.3f} +- {s['parallel_gain_se']:.3f} = {s['parallel_gain'] / s['parallel_gain_se']:.1f} "
              f"standard errors (paired over problems; one point's own standard error: {s['point_se']:.3f})")
        for name, g in s["generators"].items():
            curve = " ".join(f"{a:.3f}+-{e:.3f}@{x:.2f}" for x, a, e in g["curve"])
            print(f"[{mix}] {name}: delta_at_parallel_seconds={g['delta']:+.3f} +- {g['delta_se']:.3f} (per seed: "
                  + ", ".join(f"{d:+.3f}+-{e:.3f}" for d, e in g["deltas"]) + ") "
                  f"time_to_parallel={g['time_to_parallel']:.3f}{'' if g['reached'] else ' (never)'} "
                  f"steps={g['steps']:.1f} train_s={g['train_s']:.1f} (generation {g['generation_s']:.1f}, scoring "
                  f"{g['scoring_s']:.1f}, optimisation {g['optimisation_s']:.1f}) tokens={g['tokens']:.0f} "
                  f"engine_steps/step={g['engine_steps']:.1f} signal={g['signal']:.3f} rows_used={g['rows_used']:.3f}")
            print(f"[{mix}] {name} curve (fraction of parallel's seconds): {curve}")
    print(f"seeds={opts.seeds} steps={opts.steps} heldout={opts.heldout}x{opts.samples} eager={opts.eager}")
    headline = "eager"
    if "mixed" in summary and headline in summary["mixed"]["generators"]:
        g = summary["mixed"]["generators"][headline]
        print(f"equal_time_accuracy_delta={g['delta']:+.4f}")
    if "default" in summary and headline in summary["default"]["generators"]:
        print(f"equal_time_accuracy_delta_default={summary['default']['generators'][headline]['delta']:+.4f}")
    if "mixed" in summary and headline in summary["mixed"]["generators"]:
        g = summary["mixed"]["generators"][headline]
        print(f"time_to_parallel_accuracy_ratio={g['time_to_parallel']:.3f}")
        print(f"standard_error={g['delta_se']:.4f}")
