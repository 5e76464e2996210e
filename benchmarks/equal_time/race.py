"""A race at equal training seconds, one seed at a time, resumable: what `benchmarks.grpo_equal_time` runs.

Per seed, the reference generator (the first: TRL's plain parallel) trains `steps` steps and sets the
seconds; every other generator trains until it has used them (`max_train_seconds`), saving its model at
the seconds the reference saved its own. Then one engine scores every model of the seed on the same
held-out problems and samples. Each finished piece is written at once under `out/<mix>/`:
`<generator>-<seed>.json` after training (logs, saved models) and again after scoring (the curve); the
models are deleted once scored. A rerun with the same `out` skips what is there, so a run killed at any
point loses at most the run it was in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.equal_time import Task, train
from benchmarks.equal_time.curves import split
from trainers.advanced import canonical

SETTINGS = ("steps", "every", "heldout", "samples")  # what a resumed run must share with the stored one, with
# the model and the recipe (`_stamp`)


def _write(path: Path, run: dict) -> None:
    """Atomically: a kill mid-write leaves the old file or none, never half of one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run))
    tmp.replace(path)


def _path(out: Path, task: Task, name: str, seed: int) -> Path:
    return out / task.name / f"{name}-{seed}.json"


def _check_settings(out: Path, task: Task, settings: dict) -> None:
    """A directory holds one race: resuming it with other settings would mix two."""
    stamp = out / task.name / "settings.json"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    if stamp.exists():
        stored = json.loads(stamp.read_text())
        if {k: settings.get(k) for k in stored} != stored:  # (an older stamp without the model and recipe: the rest)
            raise SystemExit(f"{stamp.parent} holds a race run with {stored}, not {settings}: pass another --out, or "
                             "the same settings to resume it.")
    stamp.write_text(json.dumps(settings))


def stored(task: Task, generators: dict[str, dict], seed: int, out: Path) -> bool:
    """Whether `out` holds every generator's run of this seed, scored."""
    paths = [_path(out, task, name, seed) for name in generators]
    return all(p.exists() and "curve" in json.loads(p.read_text()) for p in paths)


def train_seed(task: Task, generators: dict[str, dict], seed: int, steps: int, every: int, out: Path) -> dict:
    """Train every generator of one seed (the first sets the seconds), skipping runs already stored."""
    runs: dict[str, dict] = {}
    marks = seconds = None
    for k, (name, fields) in enumerate(generators.items()):
        path = _path(out, task, name, seed)
        if path.exists():
            run = json.loads(path.read_text())
            # (fields compare as they resolve, whatever their spelling; older runs did not keep the seconds)
            if canonical(run["fields"]) != canonical(fields) or run.get("seconds", seconds) != seconds:
                raise SystemExit(f"{path} was trained with {run['fields']} for {run.get('seconds')} s, not {fields} for "
                                 f"{seconds} s: pass another --out, or the same settings to resume it.")
        else:
            model_dir = path.with_suffix("")
            shutil.rmtree(model_dir, ignore_errors=True)  # a run killed mid-training starts again
            logs, saved = train(task, fields, seed, model_dir, steps if k == 0 else steps * 6, marks, every, seconds)
            run = {"seed": seed, "generator": name, "fields": fields, "seconds": seconds, "logs": logs,
                   "saved": [(step, str(p)) for step, p in saved], "split": split(logs),
                   "train_s": logs[-1]["eager/train_wall_s"]}
            _write(path, run)
            print(f"[{task.name}] {name} seed={seed}: {run['split']['steps']} steps, {run['train_s']:.1f} s",
                  flush=True)
        runs[name] = run
        if k == 0:
            by_step = {h["step"]: h["eager/train_wall_s"] for h in run["logs"]}
            marks, seconds = [by_step[step] for step, _ in run["saved"][:-1]], run["train_s"]
    return runs


def score_seed(task: Task, runs: dict[str, dict], out: Path, samples: int) -> None:
    """Score the seed's saved models on one engine (the base model too), store each curve, delete the models."""
    todo = {name: run for name, run in runs.items() if "curve" not in run}
    if not todo:
        return
    from recipes.heldout import CheckpointScorer

    scorer = CheckpointScorer(task.model, task.prompts, task.golds, task.is_correct, max_tokens=task.max_tokens,
                              samples=samples, seed=0, max_model_len=task.max_model_len)
    try:
        before = scorer.score()
        for name, run in todo.items():
            by_step = {h["step"]: h["eager/train_wall_s"] for h in run["logs"]}
            run["curve"] = [(0.0, before.mean, before.stderr)]
            for step, model_dir in run["saved"]:
                acc = scorer.score(model_dir)
                run["curve"].append((by_step[step], acc.mean, acc.stderr))
            path = _path(out, task, name, run["seed"])
            _write(path, run)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
            print(f"[{task.name}] {name} seed={run['seed']}: " + ", ".join(
                f"{a:.3f}+-{e:.3f}@{t:.0f}s" for t, a, e in run["curve"]), flush=True)
    finally:
        scorer.close()


def _stamp(task: Task, settings: dict[str, Any]) -> dict:
    """What a stored race was run with: its settings, the model (by directory name, so that another checkout resumes
    it) and the recipe (by a hash of its settings as they resolve: `trainers.advanced.canonical`, so respelling a
    recipe keeps its stamp, and changing a value does not)."""
    import yaml

    resolved = canonical(yaml.safe_load(task.recipe.read_text()))
    recipe = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]
    return {**{k: settings[k] for k in SETTINGS}, "model": Path(task.model).name, "recipe": recipe}


def race(task: Task, generators: dict[str, dict], seeds: list[int], settings: dict[str, Any],
         out: Path) -> dict[str, list[dict]]:
    """Every seed trained and scored (resuming what `out` holds); per generator its runs in the order of `seeds`."""
    _check_settings(out, task, _stamp(task, settings))
    results: dict[str, list[dict]] = {name: [] for name in generators}
    for seed in seeds:
        runs = train_seed(task, generators, seed, settings["steps"], settings["every"], out)
        score_seed(task, runs, out, settings["samples"])
        for name, run in runs.items():
            results[name].append(run)
    return results
