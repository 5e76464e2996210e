"""One figure: held-out accuracy against training seconds per mix, seed means with a +-1 standard error band."""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.equal_time.report import mean_curve


def draw(results: dict[str, dict[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (mix, runs) in zip(axes[0], results.items()):
        seconds = statistics.mean(p["train_s"] for p in runs["parallel"])
        for name, rs in runs.items():
            curve = mean_curve(rs, runs["parallel"])
            x = [c[0] * seconds for c in curve]
            mean, se = [c[1] for c in curve], [c[2] for c in curve]
            ax.plot(x, mean, marker="o", label=name)
            ax.fill_between(x, [m - e for m, e in zip(mean, se)], [m + e for m, e in zip(mean, se)], alpha=0.2)
        ax.set_title(f"{mix} mix ({len(runs['parallel'])} seeds)")
        ax.set_xlabel("training seconds (generation, scoring, optimisation)")
        ax.set_ylabel("held-out accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot={path}")
