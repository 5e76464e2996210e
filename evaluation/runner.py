"""Run the paper's experiments over a dataset, one resumable results file each.

parallel and eager_init generate every prompt the file still lacks with `rollout.generate`;
eager and eager_adapt rebuild eager_init's finished trees from its file and spend the
saved budget on them (`evaluation.phase2`). Each prompt's record is written the moment its
tree completes, so an interrupted run loses only the prompts that were in flight.

Prompts already done are handed to rollout as empty prompts (which it skips), so every
prompt keeps its dataset index as its rollout index: request seeds, derived from that
index, are the same whether a run went through at once or was resumed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

import rollout
from evaluation.context import EvalContext
from evaluation.phase2 import plan_shares, spend_shares
from evaluation.records import record_to_tree, tree_to_record
from evaluation.scoring import label_verifier, lowest_centroid
from evaluation.store import ResultsError, ResultsFile, param_diff, read_results, results_filename
from rollout.types import PromptTree

logger = logging.getLogger(__name__)

# TEST-ONLY hook, never set in real use: with EAGER_EVAL_TEST_STOP_AFTER=N the process stops
# itself (SIGSTOP) right after it has durably written the N-th prompt it generated, so a test
# can kill or interrupt it at a known point (then SIGCONT) instead of racing it with a timer.
TEST_STOP_AFTER_ENV = "EAGER_EVAL_TEST_STOP_AFTER"
_written_here = 0


def _test_stop_point() -> None:
    global _written_here
    _written_here += 1
    if os.environ.get(TEST_STOP_AFTER_ENV, "") == str(_written_here):
        os.kill(os.getpid(), signal.SIGSTOP)


class _Metered:
    """The engine, counting the tokens it produces so the progress bar can show tokens/s."""

    def __init__(self, engine: Any, bar: tqdm) -> None:
        self._engine, self._bar = engine, bar
        self._t0: float | None = None  # set after the first step: engines warm up on it
        self._last = 0.0
        self.tokens = 0

    def step(self) -> list[Any]:
        outs = self._engine.step()
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = self._last = now
            return outs
        self.tokens += len(outs)
        if now - self._last > 0.5:  # refreshing the bar every step would cost more than small models' steps
            self._last = now
            self._bar.set_postfix_str(f"{self.tokens / max(now - self._t0, 1e-9):.0f} tok/s", refresh=True)
        return outs

    def __getattr__(self, name: str) -> Any:  # everything else is the engine's
        return getattr(self._engine, name)


@contextlib.contextmanager
def _progress(desc: str, total: int, done: int) -> Iterator[tqdm]:
    bar = tqdm(total=total, initial=done, desc=desc, unit="prompt", dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def make_record(ctx: EvalContext, tree: PromptTree, index: int, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a finished tree and build its record; `known` reuses the answers of a record it extends."""
    problem = ctx.problems[index]
    texts = [ctx.tokenizer.decode(s.tokens, skip_special_tokens=True) for s in tree.sequences]
    n_known = len(known["scores"]) if known else 0
    answers, scores = (list(known["extracted_answers"]), list(known["scores"])) if known else ([], [])
    new_answers, new_scores = ctx.scorer.score_texts(problem, texts[n_known:])
    answers += new_answers
    scores += new_scores
    centroid = lowest_centroid([tree.full_entropies(k) for k in range(tree.n_sequences)], answers)
    return tree_to_record(
        tree, index, problem.question, problem.target, ctx.tokenizer, texts, answers, scores, centroid
    )


def _open(ctx: EvalContext, experiment: str, header: dict[str, Any] | None = None) -> ResultsFile:
    path = ctx.out_dir / results_filename(ctx.experiment_name, experiment, ctx.cfg.entropy_threshold)
    return ResultsFile.open(path, header or ctx.header(experiment), len(ctx.problems), ctx.cfg.overwrite)


def run_generation(ctx: EvalContext, experiment: str) -> ResultsFile:
    """parallel or eager_init over every prompt the results file lacks."""
    store = _open(ctx, experiment)
    n = len(ctx.problems)
    todo = [i for i in range(n) if i not in store.done]
    if not todo:
        logger.info("%s: all %d prompts already in %s", experiment, n, store.path)
        return store
    config = ctx.config_for(experiment)
    size = ctx.cfg.prompt_batch_size or len(todo)
    ctx.engine()  # built before the clock starts: generation time is what the file reports
    t0 = time.perf_counter()
    with _progress(experiment, n, n - len(todo)) as bar:
        engine = _Metered(ctx.engine(), bar)

        def on_done(tree: PromptTree) -> None:
            store.add(make_record(ctx, tree, tree.prompt_index))
            store.write(time.perf_counter() - t0, ctx.cfg.notes)
            bar.update(1)
            _test_stop_point()

        for start in range(0, len(todo), size):
            chunk = set(todo[start : start + size])
            # the whole prompt list with `active`: seeds follow the prompt index, so a resume draws the same samples
            result = rollout.generate(engine, ctx.prompt_ids, config, on_tree_done=on_done, active=sorted(chunk))
            failed = {i: why for i, why in result.errors.items() if i in chunk}
            if failed:
                raise RuntimeError(f"{experiment}: rollout could not generate prompts {failed}")
    store.write(time.perf_counter() - t0, ctx.cfg.notes)
    return store


def load_eager_init(ctx: EvalContext, experiment: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """eager_init's finished results for this run's parameters, or an error saying what to run first."""
    path = ctx.out_dir / results_filename(ctx.experiment_name, "eager_init", ctx.cfg.entropy_threshold)
    if not path.exists():
        raise ResultsError(
            f"{experiment} reuses eager_init's results, and {path} does not exist: run --experiments eager_init "
            "(or all) with the same parameters and --output_dir first."
        )
    init = read_results(path)
    diff = param_diff(init, ctx.header("eager_init"), "eager_init")
    if diff:
        raise ResultsError(f"eager_init results in {path} were made with other parameters: " + "; ".join(diff))
    records = sorted(init["entropy-aware-generations"], key=lambda r: r["index"])
    if [r["index"] for r in records] != list(range(len(ctx.problems))):
        raise ResultsError(
            f"eager_init results in {path} are incomplete ({len(records)}/{len(ctx.problems)} prompts): run "
            "--experiments eager_init with the same parameters to finish them first."
        )
    return init, records


def rebuild_pool(records: list[dict[str, Any]], label_aware: bool) -> list[PromptTree]:
    """eager_init's finished trees, in dataset order; label-aware runs get their answers' verdicts on them."""
    trees = [record_to_tree(r, r["index"]) for r in records]
    if label_aware:  # what spend_saved_budget's verifier pass would set, from the verdicts already in the file
        for tree, r in zip(trees, records, strict=True):
            for seq, score in zip(tree.sequences, r["scores"], strict=True):
                seq.score = score
    return trees


def run_phase2(ctx: EvalContext, experiment: str) -> ResultsFile:
    """eager or eager_adapt: eager_init's trees plus the saved budget, spent on the prompts that need it."""
    init, records = load_eager_init(ctx, experiment)
    header = ctx.header(experiment)
    header["data"]["eager_init_run"] = init.get("extra", {}).get("run_id")
    store = _open(ctx, experiment, header)
    if store.complete:
        logger.info("%s: all %d prompts already in %s", experiment, store.total, store.path)
        return store
    config = ctx.config_for(experiment)
    trees = rebuild_pool(records, label_aware=experiment == "eager")
    # A resumed run keeps the plan it started with: shares depend on the whole pool.
    plan = store.extra.get("budget_plan") or plan_shares(trees, config)
    store.extra["budget_plan"] = plan
    shares = {int(k): v for k, v in plan["shares"].items() if v > 0}
    logger.info("%s: saved budget %d over %d target prompts", experiment, plan["saved_budget"], len(plan["targets"]))
    t0 = time.perf_counter()
    for r in records:  # prompts that get nothing more keep eager_init's record
        if r["index"] not in store.done and r["index"] not in shares:
            store.add(r)
    active = [i for i in sorted(shares) if i not in store.done]
    store.write(time.perf_counter() - t0, ctx.cfg.notes)
    if not active:
        return store
    n = len(ctx.problems)
    ctx.engine()
    t0 = time.perf_counter()
    with _progress(experiment, n, n - len(active)) as bar:
        engine = _Metered(ctx.engine(), bar)

        def on_done(tree: PromptTree) -> None:
            i = tree.prompt_index
            store.add(make_record(ctx, tree, i, known=records[i]))
            store.write(time.perf_counter() - t0, ctx.cfg.notes)
            bar.update(1)
            _test_stop_point()

        verifier = label_verifier(ctx.problems, ctx.tokenizer, ctx.scorer) if experiment == "eager" else None
        spend_shares(engine, trees, config, shares, active, verifier, on_done)
    store.write(time.perf_counter() - t0, ctx.cfg.notes)
    return store


def run_eglr_experiment(ctx: EvalContext, experiment: str = "eglr") -> ResultsFile:
    """eglr: the span x sample pools of entropy-gated latent recursion (`evaluation.eglr`)."""
    from evaluation.eglr import run_eglr

    store = _open(ctx, experiment)
    n = len(ctx.problems)
    if store.complete:
        logger.info("%s: all %d prompts already in %s", experiment, n, store.path)
        return store
    with _progress(experiment, n, len(store.done)) as bar:

        def on_record(tree: PromptTree, labels: list[dict[str, Any]], elapsed: float) -> None:
            record = make_record(ctx, tree, tree.prompt_index)
            record["eglr"] = labels
            store.add(record)
            store.write(elapsed, ctx.cfg.notes)
            bar.update(1)
            _test_stop_point()

        ctx.engine()  # built (and its spans checked) before the clock starts, as for the other experiments
        t0 = time.perf_counter()
        run_eglr(ctx, store, on_record)
    store.write(time.perf_counter() - t0, ctx.cfg.notes)
    return store


def run_experiments(ctx: EvalContext) -> list[ResultsFile]:
    """Every requested experiment, in the paper's order; each resumes from its own file."""
    done = []
    for experiment in ctx.cfg.experiment_list():
        logger.info("experiment %s -> %s", experiment, ctx.out_dir)
        if experiment == "eglr":
            run = run_eglr_experiment
        else:
            run = run_generation if experiment in ("parallel", "eager_init") else run_phase2
        done.append(run(ctx, experiment))
    return done
