"""One results JSON per experiment: atomic rewrites after every prompt, resume, and refusal of mixed runs.

The file is the checkpoint. It is rewritten whole (temp file + fsync + `os.replace`) after
each prompt completes, so at any instant, including after `kill -9`, it holds a consistent
set of finished prompts; a restart generates exactly the prompts it lacks. Records are
serialised once and cached, so a rewrite costs a string join, not a re-encode of the run.

A file made with other parameters is never extended: it is refused unless the user passes
`--overwrite`, and then moved aside (`*.stale`), never deleted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from evaluation import metrics

logger = logging.getLogger(__name__)

EXPERIMENTS = ("parallel", "eager_init", "eager_adapt", "eager", "eglr")
# Parameters that do not shape what an experiment generates (parallel never branches; eglr samples a fixed pool;
# only label-aware eager stops on verdicts).
_LABEL_AWARE = {"stop_rule", "solved_min_correct", "solved_min_incorrect", "signal_easy_k", "on_solved"}
_IGNORED_BY = {"parallel": {"entropy_threshold", "fork_mode", *_LABEL_AWARE}, "eager_init": _LABEL_AWARE,
               "eager_adapt": _LABEL_AWARE, "eglr": {"max_sequences", "fork_mode", *_LABEL_AWARE}}
# What may differ between files of one directory: the threshold is in the file name,
# each phase-2 file names the eager_init run it extends, and only the eglr file has eglr settings.
_PER_FILE = {"params.entropy_threshold", "data.eager_init_run", "params.eglr_spans", "params.eglr_samples",
             "params.eglr_k_max", "params.eglr_tol", "params.recursion_span", "params.recursion_k_max",
             "params.recursion_tol"}


def ignored_by_all(experiments: list[str]) -> set[str]:
    """Parameters none of `experiments` depends on: what a directory's other files may differ in for them."""
    sets = [_IGNORED_BY.get(e, set()) for e in experiments]
    return set.intersection(*map(set, sets)) if sets else set()
LOCK_NAME = ".eager-eval.lock"
# What the metrics need of a record; the rest (texts, tokens, entropies) lives only in its serialised text.
_SUMMARY_KEYS = ("index", "extracted_answers", "scores", "tokens_generated", "lowest_centroid", "eglr")


class ResultsError(RuntimeError):
    """A results file or directory that cannot be used; the message names the file and the fix."""


def results_filename(experiment_name: str, experiment: str, threshold: float) -> str:
    """The seed's file names, so its scripts find the files."""
    th = f"_th{float(threshold)}"
    return {
        "parallel": f"{experiment_name}_default_results.json",
        "eager_init": f"{experiment_name}_aware_results_{th}.json",
        "eager": f"{experiment_name}_aware_more_budget_results_{th}.json",
        "eager_adapt": f"{experiment_name}_aware_easy_more_budget_results_{th}.json",
        "eglr": f"{experiment_name}_eglr_results_{th}.json",
    }[experiment]


def generations_key(experiment: str) -> str:
    return "default-generations" if experiment == "parallel" else "entropy-aware-generations"


def read_results(path: Path) -> dict[str, Any]:
    """Load and sanity-check a results file; any damage is an error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(
            f"results file {path} is unreadable or truncated ({exc}). Nothing was overwritten: move it away, "
            "or pass --overwrite to set it aside and start that experiment afresh."
        ) from exc
    key = generations_key(data.get("experiment", "")) if isinstance(data, dict) else ""
    ok = isinstance(data, dict) and isinstance(data.get("params"), dict) and isinstance(data.get(key), list)
    if ok:
        ok = all(isinstance(r, dict) and isinstance(r.get("index"), int) for r in data[key])
    if not ok:
        raise ResultsError(
            f"results file {path} does not have the layout eager-eval writes (params, experiment, indexed records "
            f"under {key or 'the generations key'}). Nothing was overwritten: move it away or pass --overwrite."
        )
    return data


def _comparable(header: dict[str, Any], experiment: str, drop: set[str] = frozenset()) -> dict[str, Any]:
    ignored = {f"params.{k}" for k in _IGNORED_BY.get(experiment, set())} | set(drop) | {"data.targets"}
    flat = {f"params.{k}": v for k, v in header["params"].items()}
    flat.update({f"data.{k}": v for k, v in header.get("data", {}).items()})
    return {k: v for k, v in flat.items() if k not in ignored}


def param_diff(old: dict[str, Any], new: dict[str, Any], experiment: str, drop: set[str] = frozenset()) -> list[str]:
    """Human-readable differences between two headers' parameters ([] when they match)."""
    a, b = _comparable(old, experiment, drop), _comparable(new, experiment, drop)
    return [f"{k}: {a.get(k)!r} in the file, {b.get(k)!r} now" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def set_aside(path: Path) -> Path:
    stale = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.stale")
    os.replace(path, stale)
    logger.warning("moved %s aside to %s (--overwrite)", path, stale)
    return stale


def check_directory(out_dir: Path, header: dict[str, Any], overwrite: bool, ignore: set[str] = frozenset()) -> None:
    """Refuse a directory whose results were made with other parameters (or set them aside with overwrite).

    `ignore`: parameters the experiments about to run do not depend on (`ignored_by_all`).
    """
    for path in sorted(out_dir.glob("*.json")):
        try:
            old = read_results(path)
        except ResultsError:
            if overwrite:
                set_aside(path)
                continue
            raise
        diff = param_diff(old, header, old.get("experiment", ""), drop=_PER_FILE | {f"params.{k}" for k in ignore})
        if diff and overwrite:
            set_aside(path)
        elif diff:
            raise ResultsError(
                f"{out_dir} holds results made with other parameters ({path.name}: " + "; ".join(diff) + "). "
                "Results are never mixed: choose another --output_dir, or pass --overwrite to set those aside."
            )


class DirectoryLock:
    """An exclusive lock on the output directory: two runs writing one file would lose prompts."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self._fh: Any = None

    def __enter__(self) -> DirectoryLock:
        self._fh = open(self.path, "a")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._fh.close()
            raise ResultsError(f"another eager-eval is writing to {self.path.parent}; wait for it to finish.") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)  # the kernel also drops it when the process dies
        self._fh.close()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half


def _dump_record(record: dict[str, Any]) -> str:
    # One field per line, values compact: readable without one number per line.
    body = ",\n".join(f"      {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in record.items())
    return "    {\n" + body + "\n    }"


class ResultsFile:
    """The results of one experiment, loaded for resume and rewritten after every prompt."""

    def __init__(self, path: Path, header: dict[str, Any], total: int) -> None:
        self.path = path
        self.header = header  # experiment_name, experiment, params, data
        self.total = total
        self.records: dict[int, dict[str, Any]] = {}  # summaries (_SUMMARY_KEYS) of the prompts done
        self._text: dict[int, str] = {}
        self.elapsed_before = 0.0  # generation time of earlier (interrupted) runs
        # run_id names this file's contents: phase-2 files record the eager_init run they extend,
        # so results built on a replaced eager_init are refused instead of mixed.
        self.extra: dict[str, Any] = {"run_id": uuid.uuid4().hex[:12]}

    @property
    def experiment(self) -> str:
        return self.header["experiment"]

    @classmethod
    def open(cls, path: Path, header: dict[str, Any], total: int, overwrite: bool) -> ResultsFile:
        """Resume from `path` when it holds this run's results; start afresh when it does not exist."""
        store = cls(path, header, total)
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run; we hold the directory lock
            tmp.unlink()
        if path.exists() and overwrite:
            set_aside(path)
        elif path.exists():
            old = read_results(path)
            diff = param_diff(old, header, header["experiment"])
            if diff:
                raise ResultsError(
                    f"results file {path} was made with other parameters (" + "; ".join(diff) + "). Nothing was "
                    "overwritten: choose another --output_dir, or pass --overwrite to set it aside."
                )
            saved = old[generations_key(header["experiment"])]
            indices = [r["index"] for r in saved]
            if len(set(indices)) != len(indices) or not all(0 <= i < total for i in indices):
                raise ResultsError(
                    f"results file {path} holds repeated or out-of-range prompt indices (eager-eval never writes "
                    "that). Nothing was overwritten: move it away or pass --overwrite."
                )
            for record in saved:
                store.add(record)
            store.elapsed_before = float(old.get("extra", {}).get("generation_time_so_far (s)", 0.0))
            store.extra = {k: v for k, v in old.get("extra", {}).items() if k != "generation_time_so_far (s)"}
            store.extra.setdefault("run_id", uuid.uuid4().hex[:12])
            logger.info("%s: resuming with %d/%d prompts done", path.name, len(store.records), total)
        return store

    def add(self, record: dict[str, Any]) -> None:
        index = record["index"]
        if index in self.records:
            raise RuntimeError(f"prompt {index} is already in {self.path}: it would be counted twice")
        self._text[index] = _dump_record(record)
        self.records[index] = {k: record[k] for k in _SUMMARY_KEYS if k in record}

    @property
    def done(self) -> set[int]:
        return set(self.records)

    @property
    def complete(self) -> bool:
        return len(self.records) == self.total

    def ordered_records(self) -> list[dict[str, Any]]:
        return [self.records[i] for i in sorted(self.records)]

    def write(self, elapsed_s: float, notes: str = "", state: str | None = None) -> None:
        """Rewrite the whole file atomically with the records so far and their metrics."""
        n = len(self.records)
        state = state or ("COMPLETED" if self.complete else "IN_PROGRESS")
        results = metrics.summarize(self.ordered_records())
        if self.experiment == "eglr":
            results.update(metrics.eglr_oracles(self.ordered_records()))
        head = {
            **self.header,
            "status": {
                "state": state,
                "completed": n,
                "total": self.total,
                "completed_sequences": n,  # the seed's names (they count prompts)
                "total_sequences": self.total,
                "progress": f"{n}/{self.total}",
            },
            "extra": {**self.extra, "notes": notes, "generation_time_so_far (s)": self.elapsed_before + elapsed_s},
            "results": results,
        }
        parts = [
            f"  {json.dumps(k)}: " + json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            for k, v in head.items()
        ]
        records = ",\n".join(self._text[i] for i in sorted(self._text))
        key = json.dumps(generations_key(self.experiment))
        text = "{\n" + ",\n".join(parts) + f",\n  {key}: [\n" + records + ("\n" if records else "") + "  ]\n}\n"
        atomic_write_text(self.path, text)
