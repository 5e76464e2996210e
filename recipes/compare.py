"""`eager-compare`: W&B runs side by side on the rollout-token and the training-seconds axes, a table and a PNG.

    eager-compare outputs/demo/wandb                    # every offline run in a wandb directory
    eager-compare RUN_DIR [RUN_DIR ...]                 # offline run directories
    eager-compare entity/project/run_id [...]           # online runs (needs W&B credentials)

Offline runs are read with `wandb leet inspect --json` (the history records of the .wandb
log); online runs with `wandb.Api()`. The x axis is cumulative rollout tokens
(`train/eager/rollout_tokens_cumulative`), so methods that spend different budgets per step
compare on what they spent; a second panel puts the same metric against training seconds
(`train/eager/train_wall_s`), which is what a GPU-hour costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

X_KEY = "train/eager/rollout_tokens_cumulative"
TIME_KEY = "train/eager/train_wall_s"


@dataclass
class Run:
    name: str
    group: str
    config: dict
    history: list[dict]  # one dict of logged values per step, in order


def _wandb_cli() -> str:
    exe = Path(sys.executable).with_name("wandb")
    return str(exe) if exe.exists() else (shutil.which("wandb") or "wandb")


def _inspect(path: Path, *flags: str) -> str:
    out = subprocess.run([_wandb_cli(), "leet", "inspect", "--json", *flags, str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"eager-compare: cannot read W&B run {path}: {out.stderr.strip()[-500:]}")
    return out.stdout


def load_offline(path: Path) -> Run:
    summary = json.loads(_inspect(path, "--summary"))
    history, group = [], ""
    for line in _inspect(path).splitlines():
        rec = json.loads(line)
        if rec.get("type") == "history":
            history.append(rec["history"]["item"])
        elif rec.get("type") == "run":
            group = rec["run"].get("run_group", group)
    return Run(summary.get("name") or path.name, group, summary.get("config", {}), history)


def load_online(run_path: str) -> Run:
    import wandb

    run = wandb.Api().run(run_path)
    return Run(run.name, run.group or "", dict(run.config), [dict(r) for r in run.scan_history()])


def expand(specs: list[str]) -> list[Run]:
    """Run directories, wandb directories (every offline run in them) or entity/project/run_id paths."""
    runs = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir() and list(p.glob("*.wandb")):
            runs.append(load_offline(p))
        elif p.is_dir():
            found = sorted(d for d in p.rglob("offline-run-*") if d.is_dir() and list(d.glob("*.wandb")))
            if not found:
                raise SystemExit(f"eager-compare: {spec} holds no W&B run (no offline-run-*/*.wandb)")
            runs.extend(load_offline(d) for d in found)
        elif spec.count("/") == 2 and not p.exists():
            runs.append(load_online(spec))
        else:
            raise SystemExit(f"eager-compare: {spec} is neither a run directory nor entity/project/run_id")
    return runs


def series(run: Run, key: str, x_key: str = X_KEY) -> list[tuple[float, float]]:
    """(x, value of `key`) for every step that logged both; x is cumulative rollout tokens by default."""
    return [(h[x_key], h[key]) for h in run.history if x_key in h and key in h]


def table(runs: list[Run], metric: str) -> list[dict]:
    rows = []
    for r in runs:
        pts = series(r, metric)
        sig = [v for _, v in series(r, "train/eager/frac_with_signal")]
        tail = [v for _, v in pts[-5:]]
        rows.append({
            "run": r.name, "group": r.group, "generator": r.config.get("rollout_generator", "?"),
            "steps": len(pts), "rollout_tokens": pts[-1][0] if pts else 0.0,
            "train_s": max((x for x, _ in series(r, metric, TIME_KEY)), default=float("nan")),
            "frac_with_signal": sum(sig) / len(sig) if sig else float("nan"),
            f"{metric} (last 5)": sum(tail) / len(tail) if tail else float("nan"),
        })
    return rows


def plot(runs: list[Run], metric: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x_key, label in ((axes[0], X_KEY, "cumulative rollout tokens"), (axes[1], TIME_KEY, "training seconds")):
        for r in runs:
            pts = series(r, metric, x_key)
            ax.plot([p[0] for p in pts], [p[1] for p in pts],
                    label=f"{r.config.get('rollout_generator', '?')}: {r.name}")
        ax.set_xlabel(label)
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run dirs, wandb dirs, or entity/project/run_id")
    ap.add_argument("--metric", default="train/reward", help="y axis and table column")
    ap.add_argument("--out", default="compare.png", help="PNG to write")
    args = ap.parse_args(argv)
    runs = expand(args.runs)
    rows = table(runs, args.metric)
    cols = list(rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    plot(runs, args.metric, Path(args.out))
    print(f"plot={args.out}")


if __name__ == "__main__":
    main()
