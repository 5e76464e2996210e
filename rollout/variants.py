"""The paper's four methods over a batch (or pool) of prompts.

parallel     M independent samples per prompt, recorded like the others (entropies, counts).
eager_init   one root per prompt, forks at high entropy while the prompt has budget.
eager_adapt  eager_init, then the saved budget goes to "hard" prompts (those that used all of M).
eager        eager_init, then the saved budget goes to prompts with no correct answer (labels).
With `config.online` (training), eager and eager_adapt run in one call: verdicts (eager) arrive
while the batch generates, a prompt that needs more gets its extra pass while its first pass
still runs, and budget moves from closed prompts to open ones inside the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rollout.ledger import Ledger, call_ledger
from rollout.schedule import PassSchedule, Schedule, saved_budget_shares, tree_stopped
from rollout.screening import ScreenSchedule
from rollout.config import EagerConfig
from rollout.driver import Driver, Verifier
from rollout.engine import Engine
from rollout.types import Arena, PromptTree, RolloutResult

logger = logging.getLogger(__name__)

__all__ = ["Verifier", "generate", "is_solved", "plan_saved_budget", "spend_saved_budget"]


def _check_prompts(engine: Engine, prompts: list[list[int]], trees: list[PromptTree], wanted) -> dict[int, str]:
    errors: dict[int, str] = {}
    for i in wanted:
        ids = prompts[i]
        if len(ids) == 0:
            errors[i] = f"prompt {i} is empty: give at least one token."
        elif len(ids) >= engine.max_model_len:
            errors[i] = (f"prompt {i} has {len(ids)} tokens, not shorter than the engine's max_model_len="
                         f"{engine.max_model_len}: shorten it or raise max_model_len.")
        if i in errors:
            trees[i].budget = 0
            logger.warning("skipping %s", errors[i])
    return errors


def make_schedule(trees: list[PromptTree], config: EagerConfig, ledger: Ledger | None = None, *,
                  first_roots: int = 1, retry_method: str | None = None, label_aware: bool = False,
                  capacity: int | None = None) -> Schedule:
    """The schedule of one call: the screen allocation, or the paper's passes over `ledger`."""
    if config.allocation == "screen" and config.method == "eager":
        return ScreenSchedule(trees, config, capacity=capacity)
    return PassSchedule(trees, config, ledger, first_roots=first_roots, retry_method=retry_method,
                        online=config.online, label_aware=label_aware, capacity=capacity)


def generate(
    engine: Engine,
    prompts: list[list[int]],
    config: EagerConfig,
    verifier: Verifier | None = None,
    on_tree_done: Callable[[PromptTree], None] | None = None,
    active: list[int] | None = None,
) -> RolloutResult:
    """Generate rollouts for `prompts` (token ids) with `config.method`.

    `verifier(prompt_index, completion_ids) -> bool | None` is required for method="eager";
    it is called from a background thread. Bad prompts (empty, too long) are reported in
    `result.errors` and get an empty tree; the others complete. `active` restricts the run
    to some prompt indices (the others get empty trees); request seeds depend on the prompt
    index, so a resumed run that passes the same prompt list draws the same samples.
    """
    config.validate()
    if config.method == "eager" and verifier is None:
        raise ValueError("method='eager' is label-aware: pass verifier(prompt_index, completion_ids) -> bool.")
    t0 = time.perf_counter()
    m = config.max_sequences
    arena = Arena()  # the batch's finished sequences, end to end
    trees = [PromptTree(i, p, m, config.entropy_threshold, arena=arena) for i, p in enumerate(prompts)]
    wanted = range(len(prompts)) if active is None else sorted(set(active))
    errors = _check_prompts(engine, prompts, trees, wanted)
    active = [i for i in wanted if i not in errors]
    engine.configure(config.temperature, config.top_logprobs, config.stop_token_ids,
                     config.entropy_source == "full_vocab")
    two_phase = config.method in ("eager_adapt", "eager") and not config.online
    capacity = getattr(engine, "max_running", None)  # sequences the engine runs at once
    label_aware = verifier is not None and config.method == "eager"
    if config.online:
        schedule = make_schedule(trees, config, call_ledger(trees, config), retry_method=config.method,
                                 label_aware=label_aware, capacity=capacity)
    else:
        schedule = make_schedule(trees, config, call_ledger(trees, config), capacity=capacity,
                                 first_roots=m if config.method == "parallel" else 1)
    driver = Driver(engine, trees, config, schedule, branching=config.method != "parallel",
                    verifier=verifier if config.online and config.method == "eager" else None,
                    on_tree_done=None if two_phase else on_tree_done)
    driver.run(active)
    result = RolloutResult(config.method, trees, errors, engine_steps=driver.steps, peak_running=driver.peak_running)
    if two_phase:
        phase2 = spend_saved_budget(engine, trees, config, verifier, on_tree_done, errors=errors, active=active)
        result.engine_steps += phase2.engine_steps  # the second phase runs after the first: steps add up
        result.peak_running = max(result.peak_running, phase2.peak_running)
    result.wall_time_s = time.perf_counter() - t0
    return result


def is_solved(tree: PromptTree, config: EagerConfig) -> bool:
    """The stop rule of label-aware EAGer, from the verdicts stored on the sequences."""
    return tree_stopped(tree, config)


def plan_saved_budget(
    trees: list[PromptTree], config: EagerConfig, verifier: Verifier | None = None
) -> dict[int, int]:
    """Who gets how much of B = sum of budgets - sequences used (the pool's saved budget).

    eager: the prompts not solved (finished sequences without a verdict are verified first,
    so `verifier` is needed unless every sequence already carries a score); eager_adapt:
    the prompts that used their whole budget. B is split evenly, the remainder one by one in
    prompt order, each capped at `extra_cap` (eager) or `adapt_extra_cap` (eager_adapt)
    times M. The plan depends on the whole pool, so a caller that resumes phase 2 stores it.
    """
    method = config.method
    if method not in ("eager", "eager_adapt"):
        raise ValueError(f"the saved budget is spent by method 'eager' or 'eager_adapt', not {method!r}.")
    for k, tree in enumerate(trees):
        if tree.prompt_index != k:
            raise ValueError(f"trees[{k}].prompt_index is {tree.prompt_index}: pass the whole pool in prompt order.")
    if method == "eager":
        _score_missing(trees, verifier)
    return saved_budget_shares(trees, config)


def spend_saved_budget(
    engine: Engine,
    trees: list[PromptTree],
    config: EagerConfig,
    verifier: Verifier | None = None,
    on_tree_done: Callable[[PromptTree], None] | None = None,
    errors: dict[int, str] | None = None,
    shares: dict[int, int] | None = None,
    active: list[int] | None = None,
) -> RolloutResult:
    """Second phase of eager / eager_adapt over finished eager_init trees (extended in place).

    Each prompt with a share (`shares`, else `plan_saved_budget`) is sampled again with
    EAGer-init at a lowered threshold until it has received its share (eager: or until it
    is solved). `active` limits the pass to some prompts (a resumed run gives the ones still
    missing); the trees must be the whole pool, in prompt order, so seeds stay the same.
    """
    config.validate()
    if config.method == "eager" and verifier is None:
        raise ValueError("method='eager' is label-aware: pass verifier(prompt_index, completion_ids) -> bool.")
    t0 = time.perf_counter()
    if shares is None:
        shares = plan_saved_budget(trees, config, verifier)
    run = [i for i, share in shares.items() if share > 0 and (active is None or i in active)]
    engine.configure(config.temperature, config.top_logprobs, config.stop_token_ids,
                     config.entropy_source == "full_vocab")
    ledger = Ledger([shares.get(t.prompt_index, 0) if t.prompt_index in run else 0 for t in trees])
    for i in run:
        trees[i].retries += 1  # the first extra pass is already a retry: it runs at a lowered threshold
    if on_tree_done is not None:
        for t in trees:
            if t.prompt_index not in run and (active is None or t.prompt_index in active):
                on_tree_done(t)
    schedule = make_schedule(trees, config, ledger, retry_method=config.method,
                             label_aware=config.method == "eager", capacity=getattr(engine, "max_running", None))
    driver = Driver(engine, trees, config, schedule, branching=True,
                    verifier=verifier if config.method == "eager" else None, on_tree_done=on_tree_done)
    driver.run(run)
    result = RolloutResult(config.method, trees, dict(errors or {}), engine_steps=driver.steps,
                           peak_running=driver.peak_running)
    result.wall_time_s = time.perf_counter() - t0
    return result


def _score_missing(trees: list[PromptTree], verifier: Verifier | None) -> None:
    """Verify finished sequences that carry no verdict yet (in parallel threads)."""
    todo = [(t.prompt_index, s) for t in trees for s in t.kept() if s.score is None]
    if not todo:
        return
    if verifier is None:
        raise ValueError("some sequences carry no verdict: pass verifier(prompt_index, completion_ids) -> bool.")
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="eager-verify") as pool:
        verdicts = list(pool.map(lambda item: verifier(item[0], list(item[1].tokens)), todo))
    for (_, seq), v in zip(todo, verdicts):
        seq.score = None if v is None else float(v)
