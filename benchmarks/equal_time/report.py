"""The figures of the equal-seconds race: accuracy at the reference seconds per seed, paired per-seed deltas
with t intervals (`stats`), the best baseline, time to the reference's accuracy, and what each step did."""

from __future__ import annotations

import math
import statistics

from benchmarks.equal_time.curves import at
from benchmarks.equal_time.stats import crossing_time, interval, paired

GRID = [i / 8 for i in range(0, 9)]  # fractions of the reference's training seconds (per seed)
SPLIT = ("steps", "train_s", "generation_s", "scoring_s", "optimisation_s", "tokens", "engine_steps", "signal",
         "rows_used", "rows_trained", "fork_rows_frac", "moved_rows_frac")


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def mean_curve(rs: list[dict], reference: list[dict]) -> list[tuple[float, float, float]]:
    """(fraction of the reference's seconds, mean accuracy over seeds, its standard error) on GRID, up to each
    run's end (for the plot)."""
    out = []
    for x in GRID + [max(r["curve"][-1][0] / p["train_s"] for r, p in zip(rs, reference))]:
        values = [at(r["curve"], x * p["train_s"])[0] for r, p in zip(rs, reference)
                  if x * p["train_s"] <= r["curve"][-1][0] + 1e-9]
        if len(values) == len(rs):
            out.append((x, statistics.mean(values), _se(values)))
    return sorted(set(out))


def is_eager(name: str) -> bool:
    """EAGer's runs are named `eager` (the recipe's default) or `eager_<variant>`; every other run is a baseline."""
    return name == "eager" or name.startswith("eager_")


def summarise(runs: dict[str, list[dict]], eager: str = "eager", controls: dict[str, str] | None = None) -> dict:
    """One mix: `runs` per generator (the first is the reference that set the seconds), runs in seed order. The
    best baseline is the best non-EAGer run; every EAGer run is set against it, and `eager` is the headline.
    `controls` pairs a variant with the run it is measured against (`minus_control`), where both ran."""
    reference = next(iter(runs))
    ref = runs[reference]
    for name, rs in runs.items():  # every difference below pairs runs of one seed
        if [r["seed"] for r in rs] != [r["seed"] for r in ref]:
            raise ValueError(f"{name}'s seeds {[r['seed'] for r in rs]} are not {reference}'s "
                             f"{[r['seed'] for r in ref]}: runs pair by seed.")
    seconds = [r["train_s"] for r in ref]
    accuracy = {name: [at(r["curve"], t)[0] for r, t in zip(rs, seconds)] for name, rs in runs.items()}
    before = [r["curve"][0][1] for r in ref]
    out = {"seeds": [r["seed"] for r in ref], "reference": reference, "reference_seconds": seconds,
           "accuracy_before": before, "accuracy": accuracy,
           "parallel_gain": paired(accuracy[reference], before).as_dict(), "generators": {}}
    for name, rs in runs.items():
        g = {k: statistics.mean(r["split"][k] for r in rs) for k in SPLIT}
        g["minus_reference"] = paired(accuracy[name], accuracy[reference]).as_dict()
        out["generators"][name] = g
    baselines = [name for name in runs if not is_eager(name)]
    out["best_baseline"] = max(baselines, key=lambda name: statistics.mean(accuracy[name]))
    best_accuracy = accuracy[out["best_baseline"]]
    for name in filter(is_eager, runs):
        out["generators"][name]["minus_best_baseline"] = paired(accuracy[name], best_accuracy).as_dict()
    for name, control in (controls or {}).items():
        if name in runs and control in runs:
            out["generators"][name]["minus_control"] = {"control": control,
                                                        **paired(accuracy[name], accuracy[control]).as_dict()}
    if eager in runs:
        best = paired(accuracy[eager], accuracy[out["best_baseline"]])
        out.update(eager_vs_best_baseline=best.as_dict(), ci95_low=best.low, ci95_high=best.high,
                   eager_vs_parallel=paired(accuracy[eager], accuracy[reference]).as_dict(),
                   eager_fork_rows_frac=out["generators"][eager]["fork_rows_frac"],
                   eager_moved_rows_frac=out["generators"][eager]["moved_rows_frac"])
        crossings = [crossing_time([(t, a) for t, a, _ in r["curve"]], p["curve"][-1][1])
                     for r, p in zip(runs[eager], ref)]
        ratios = [c / p["train_s"] for c, p in zip(crossings, ref) if c is not None]
        out["time_to_parallel_accuracy"] = {"reached": len(ratios), "of": len(ref),
                                            **(interval(ratios).as_dict() if len(ratios) == len(ref) else {})}
    return out


def _shown(d: dict) -> bool:
    """An interval that excludes 0 (see stats.Interval.shown)."""
    return d["low"] > 0 or d["high"] < 0


def _delta(d: dict) -> str:
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" + ("" if _shown(d) else " not shown")


def print_mix(mix: str, s: dict) -> None:
    """The table of one mix (markdown, as RESULTS shows it), every seed's accuracies, then its name=value lines."""
    print(f"\n{mix} mix, seeds {s['seeds']}: accuracy at {s['reference']}'s training seconds (mean "
          f"{statistics.mean(s['reference_seconds']):.1f} s), before {statistics.mean(s['accuracy_before']):.3f}; "
          "means over seeds; minus reference: mean of the per-seed differences [95% t interval]\n")
    print("| generator | steps | train s (generation, scoring, optimisation) | tokens | prompts with a signal | rows "
          "trained a step | from forks | placed by a verdict | accuracy | minus parallel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, g in s["generators"].items():
        delta = "" if name == s["reference"] else _delta(g["minus_reference"])
        if "minus_best_baseline" in g:
            delta += f"; minus {s['best_baseline']}: {_delta(g['minus_best_baseline'])}"
        print(f"| {name} | {g['steps']:.1f} | {g['train_s']:.1f} ({g['generation_s']:.1f}, {g['scoring_s']:.1f}, "
              f"{g['optimisation_s']:.1f}) | {g['tokens']:,.0f} | {g['signal']:.3f} | {g['rows_trained']:.1f} | "
              f"{g['fork_rows_frac']:.3f} | {g['moved_rows_frac']:.3f} | {statistics.mean(s['accuracy'][name]):.3f} | "
              f"{delta} |")
    print()
    for name in s["generators"]:
        print(f"{mix} {name} per seed: " + ", ".join(f"{a:.3f}" for a in s["accuracy"][name]))
    gain = s["parallel_gain"]
    print(f"mix={mix}")
    print(f"seeds={len(s['seeds'])}")
    print(f"parallel_gain={gain['mean']:+.4f} parallel_gain_ci95=[{gain['low']:+.4f}, {gain['high']:+.4f}]")
    print(f"best_baseline={s['best_baseline']}")
    if "eager_vs_best_baseline" in s:
        best, par = s["eager_vs_best_baseline"], s["eager_vs_parallel"]
        print(f"eager_vs_best_baseline_delta={best['mean']:+.4f}"
              + ("" if _shown(best) else " (not shown: the interval holds 0)"))
        print(f"ci95_low={best['low']:+.4f}")
        print(f"ci95_high={best['high']:+.4f}")
        print(f"eager_vs_parallel_delta={par['mean']:+.4f} eager_vs_parallel_ci95=[{par['low']:+.4f}, "
              f"{par['high']:+.4f}]")
        print(f"fork_rows_frac={s['eager_fork_rows_frac']:.3f}")
        print(f"moved_rows_frac={s['eager_moved_rows_frac']:.3f}")
        t = s["time_to_parallel_accuracy"]
        if "mean" in t:
            print(f"time_to_parallel_accuracy_ratio={t['mean']:.3f} ci95=[{t['low']:.3f}, {t['high']:.3f}]")
        else:
            print(f"time_to_parallel_accuracy_ratio=nan (eager stays at or above parallel's final accuracy on "
                  f"{t['reached']} of {t['of']} seeds)")
    for name, g in s["generators"].items():
        if is_eager(name) and name != "eager":
            d = g["minus_best_baseline"]
            print(f"{name}_vs_best_baseline_delta={d['mean']:+.4f} {name}_ci95=[{d['low']:+.4f}, {d['high']:+.4f}]"
                  f"{'' if _shown(d) else ' (not shown)'} {name}_fork_rows_frac={g['fork_rows_frac']:.3f} "
                  f"{name}_moved_rows_frac={g['moved_rows_frac']:.3f}")
        if "minus_control" in g:
            c = g["minus_control"]
            print(f"{name}_vs_{c['control']}_delta={c['mean']:+.4f} ci95=[{c['low']:+.4f}, {c['high']:+.4f}]"
                  f"{'' if _shown(c) else ' (not shown)'}")
