"""PNG figures of a run: the accuracy/compute trade-off, and how one prompt branched.

Figures are drawn with matplotlib's object API (`Figure` + the Agg canvas), so nothing
global (pyplot state, the interactive backend) is touched and no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.records import full_entropies

COLORS = {"parallel": "tab:gray", "eager_init": "tab:blue", "eager_adapt": "tab:orange", "eager": "tab:green"}


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)  # attaches the Agg canvas: PNGs without a display or pyplot
    return fig


def plot_pass_vs_tokens(rows: list[dict[str, Any]], path: Path) -> Path:
    """Pass@k (and Cons@k) against tokens per prompt, one point per experiment."""
    fig = _figure()
    ax = fig.add_subplot()
    for row in rows:
        color = COLORS.get(row["experiment"], "tab:purple")
        x = row["tokens_per_prompt"]
        ax.scatter([x], [row["pass_at_k"]], color=color, marker="o", s=50, label=f"{row['label']} Pass@k")
        ax.scatter([x], [row["cons_at_k"]], color=color, marker="x", s=40, label=f"{row['label']} Cons@k")
        ax.annotate(row["label"], (x, row["pass_at_k"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("tokens generated per prompt (#T)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Pass@k (o) and Cons@k (x) against compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def pick_branchy_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The prompt with the most branches (the most to see); the first one on ties."""
    if not records:
        return None
    return max(records, key=lambda r: (len(r.get("recorded_branches") or []), -r["index"]))


def plot_entropy_trace(record: dict[str, Any], threshold: float | None, path: Path, title: str = "") -> Path:
    """Every sequence's entropy per position (children drawn from their fork on), branch points marked."""
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    n = len(record["entropies"])
    parents = [s.get("parent") for s in record["tree"]["sequences"]] if record.get("tree") else [None] * n
    inherited = [s.get("n_inherited", 0) for s in record["tree"]["sequences"]] if record.get("tree") else [0] * n
    for i in range(n):
        ent = full_entropies(record, i)
        start = inherited[i]
        xs = list(range(start, len(ent)))
        ax.plot(xs, ent[start:], lw=1.2 if parents[i] is None else 0.7, alpha=0.9 if i == 0 else 0.5,
                label="root sequence" if i == 0 else None)
    branches = record.get("recorded_branches") or []
    if branches:
        xs = [b.get("position", b.get("gen_step", 0)) for b in branches]  # the seed's files have only the step
        ax.scatter(xs, [b["entropy"] for b in branches], color="red", zorder=5, s=25,
                   label=f"branch points ({len(branches)})")
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label=f"threshold {threshold}")
    ax.set_xlabel("completion position (tokens)")
    ax.set_ylabel("top-k entropy (nats)")
    ax.set_title(title or f"prompt {record['index']}: {n} sequences")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
