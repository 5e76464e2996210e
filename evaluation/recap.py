"""`eager-recap OUTPUT_DIR`: one table of every experiment in a run directory, and its plots.

Columns: Pass@k, Cons@k, PassRate, tokens per prompt (#T, and its change against
parallel when the directory has it), sequences per prompt (#S), and the accuracy of the
Lowest-Centroid answer (a label-free pick). Files written by the seed repository (entropies
and answers stored as strings, no scores) are read too and scored here.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import metrics, plots
from evaluation.store import EXPERIMENTS, ResultsError, read_results

logger = logging.getLogger(__name__)

_SEED_NAMES = (  # most specific first: the seed's file name -> experiment
    ("_aware_easy_more_budget_results", "eager_adapt"),
    ("_aware_more_budget_results", "eager"),
    ("_aware_results", "eager_init"),
    ("_default_results", "parallel"),
)


@dataclass
class RecapConfig:
    """Summarise a results directory written by eager-eval."""

    output_dir: str = field(metadata={"help": "The directory eager-eval wrote (its --output_dir)."})
    plots_dir: str | None = field(default=None, metadata={"help": "Where the PNGs go (default: OUTPUT_DIR/plots)."})
    plots: bool = field(default=True, metadata={"help": "Write the PNG plots."})
    trace_prompt: int | None = field(
        default=None,
        metadata={"help": "Dataset index of the prompt whose entropy trace is drawn (default: most branches)."},
    )


def _experiment_of(path: Path, data: dict[str, Any]) -> str:
    if data.get("experiment") in EXPERIMENTS:
        return data["experiment"]
    return next((exp for marker, exp in _SEED_NAMES if marker in path.name), "unknown")


def _seed_record(rec: dict[str, Any], index: int, scorer: Any, task: str) -> dict[str, Any]:
    """A record of the seed's own files, in this project's shape (strings parsed, answers scored)."""
    from evaluation.data import Problem

    out = dict(rec)
    out.setdefault("index", index)
    for key in ("entropies", "recorded_branches"):
        out[key] = [ast.literal_eval(x) if isinstance(x, str) else x for x in rec.get(key, [])]
    answers = rec.get("extracted_answers", [])
    out["extracted_answers"] = ast.literal_eval(answers) if isinstance(answers, str) else answers
    if "scores" not in out:
        problem = Problem(index=index, question=rec.get("prompt", ""), target=rec.get("target"), task=task)
        out["scores"] = [scorer.score_answer(problem, a) for a in out["extracted_answers"]]
    if "lowest_centroid" not in out:
        from evaluation.records import full_entropies
        from evaluation.scoring import lowest_centroid

        entropies = [full_entropies(out, i) for i in range(len(out["entropies"]))]
        out["lowest_centroid"] = lowest_centroid(entropies, out["extracted_answers"])
    return out


def load_experiment(path: Path) -> dict[str, Any]:
    """One results file as a summary row plus its records (for the plots)."""
    data = _read_any(path)
    experiment = _experiment_of(path, data)
    key = "default-generations" if experiment == "parallel" else "entropy-aware-generations"
    records = data.get(key, [])
    if "experiment" not in data:  # the seed's layout
        from evaluation.scoring import AnswerScorer

        task = "choice" if "gpqa" in str(data.get("data", {}).get("data_name", "")).lower() else "math"
        scorer = AnswerScorer()
        records = [_seed_record(r, i, scorer, task) for i, r in enumerate(records)]
    for r in records:
        r.setdefault("tokens_generated", _seed_tokens(r))
    params = data.get("params", {})
    threshold = None if experiment == "parallel" else params.get("entropy_threshold")
    label = experiment if threshold is None else f"{experiment} th={threshold}"
    status = data.get("status", {})
    total = status.get("total", status.get("total_sequences", len(records)))
    row = {"file": path.name, "experiment": experiment, "label": label, "threshold": threshold,
           "state": status.get("state", "?"), "done": len(records), "total": total, **metrics.summarize(records)}
    if experiment == "eglr":
        row.update(metrics.eglr_oracles(records))
    return {"row": row, "records": records, "params": params}


def _seed_tokens(record: dict[str, Any]) -> int:
    from evaluation.records import record_tokens

    return record_tokens(record)


def _read_any(path: Path) -> dict[str, Any]:
    try:
        return read_results(path)
    except ResultsError:
        try:  # the seed's files: same idea, no `experiment` key, strings inside
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"results file {path} is unreadable or truncated ({exc}).") from exc
        keys = ("default-generations", "entropy-aware-generations")
        if not isinstance(data, dict) or not any(k in data for k in keys):
            raise ResultsError(f"{path} is not a results file of eager-eval or of the seed repository.") from None
        return data


def _order(item: dict[str, Any]) -> tuple[int, float, str]:
    row = item["row"]
    rank = EXPERIMENTS.index(row["experiment"]) if row["experiment"] in EXPERIMENTS else len(EXPERIMENTS)
    return rank, row["threshold"] or 0.0, row["file"]


def collect(out_dir: Path) -> list[dict[str, Any]]:
    """Every results file of the directory (`*.json`), in the paper's order."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ResultsError(f"{out_dir} is not a directory.")
    items = [load_experiment(p) for p in sorted(out_dir.glob("*.json")) if not p.name.startswith("recap")]
    if not items:
        raise ResultsError(f"{out_dir} holds no results files (*.json): run eager-eval with --output_dir {out_dir}.")
    return sorted(items, key=_order)


def format_tables(items: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per experiment file."""
    base = next((it["row"]["tokens_per_prompt"] for it in items if it["row"]["experiment"] == "parallel"), None)
    head = ["experiment", "prompts", "Pass@k", "Cons@k", "PassRate", "#T", "vs parallel", "#S", "LowestCentroid",
            "state"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for it in items:
        r = it["row"]
        if r["experiment"] == "eglr":  # its pools are not one method's: its own table below
            continue
        delta = "" if not base else f"{100 * (r['tokens_per_prompt'] / base - 1):+.0f}%"
        cells = [r["label"], f"{r['done']}/{r['total']}", f"{r['pass_at_k']:.3f}", f"{r['cons_at_k']:.3f}",
                 f"{r['pass_rate']:.3f}", f"{r['tokens_per_prompt']:.1f}", delta, f"{r['sequences_per_prompt']:.2f}",
                 f"{r['lowest_centroid_acc']:.3f}", r["state"]]
        lines.append("| " + " | ".join(cells) + " |")
    eglr = [it["row"] for it in items if it["row"]["experiment"] == "eglr"]
    if eglr:
        lines += ["", format_eglr(eglr)]
    return "\n".join(lines)


def format_eglr(rows: list[dict[str, Any]]) -> str:
    """The eglr pools: each oracle with its rollouts and tokens per prompt, and the joint pool's gain."""
    head = ["eglr", "prompts", "temperature-only oracle", "layer-only oracle", "joint oracle", "joint - temperature",
            "single-sample accuracy by span"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        def pool(name: str) -> str:
            return (f"{r[name + '_oracle']:.3f} ({r[name + '_rollouts']:.0f} rollouts, "
                    f"{r[name + '_tokens_per_prompt']:.0f} tok)")

        spans = ", ".join(f"L={k[len('pass_rate_L'):]}: {v:.3f}" for k, v in r.items() if k.startswith("pass_rate_L"))
        lines.append("| " + " | ".join([r["label"], f"{r['done']}/{r['total']}", pool("temperature"), pool("layer"),
                                        pool("joint"), f"{r['joint_oracle_gain']:+.3f}", spans]) + " |")
    return "\n".join(lines)


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


def write_plots(items: list[dict[str, Any]], plots_dir: Path, trace_prompt: int | None = None) -> list[Path]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    items = [it for it in items if it["row"]["experiment"] != "eglr"] or items  # eglr pools are not one method's
    written = [plots.plot_pass_vs_tokens([it["row"] for it in items], plots_dir / "pass_at_k_vs_tokens.png")]
    branched = [it for it in items if it["row"]["experiment"] != "parallel" and it["records"]] or items
    source = branched[0]
    records = source["records"]
    record = next((r for r in records if r["index"] == trace_prompt), None) if trace_prompt is not None else None
    record = record or plots.pick_branchy_record(records)
    if record is not None:
        name = f"entropy_trace_{_safe(source['row']['label'])}_prompt{record['index']}.png"
        title = f"{source['row']['label']}, prompt {record['index']}: {len(record['entropies'])} sequences"
        written.append(plots.plot_entropy_trace(record, source["row"]["threshold"], plots_dir / name, title))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eager-recap", description=RecapConfig.__doc__)
    parser.add_argument("output_dir", help="The directory eager-eval wrote (its --output_dir).")
    parser.add_argument("--plots_dir", default=None, help="Where the PNGs go (default: OUTPUT_DIR/plots).")
    parser.add_argument("--no_plots", dest="plots", action="store_false", help="Print the table only.")
    trace_help = RecapConfig.__dataclass_fields__["trace_prompt"].metadata["help"]
    parser.add_argument("--trace_prompt", type=int, default=None, help=trace_help)
    cfg = RecapConfig(**vars(parser.parse_args(argv)))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        items = collect(Path(cfg.output_dir))
    except ResultsError as exc:
        print(f"eager-recap: error: {exc}", file=sys.stderr)
        return 2
    print(format_tables(items))
    if cfg.plots:
        plots_dir = Path(cfg.plots_dir) if cfg.plots_dir else Path(cfg.output_dir) / "plots"
        for path in write_plots(items, plots_dir, cfg.trace_prompt):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
