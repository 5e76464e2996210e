"""`--experiments eglr`: the rollout pools of entropy-gated latent recursion, per prompt, resumably.

For spans S = --eglr_spans and T = --eglr_samples, each prompt gets
- T samples at each span L in S, and (|S| + 1) * T plain samples (span 0): the first T of
  those are the plain row of the joint pool, all of them the temperature-only pool, so both
  oracles compare the same number of rollouts;
- one greedy rollout per span, plain included: the layer-only pool.
Sample s of every span uses the same request seed (rollout's seeds follow prompt and
sequence index), so a recursed sample differs from the plain one only from its first gated
token on. The gate is --entropy_threshold (top-k entropy, T = 1 scale, like EAGer's).
Each prompt's record (all its rollouts, labelled in `eglr`) is written once all its pools
are done; a rerun generates only the prompts the file lacks.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import rollout
from evaluation.context import EvalContext, ModelError
from rollout.recursion import Recursion, RecursionStats, decoder_parts
from rollout.types import PromptTree, Sequence


@dataclasses.dataclass(frozen=True)
class PoolRun:
    """One generation over the active prompts: span L (0: plain), greedy or sampled, rollouts per prompt."""

    span: int
    greedy: bool
    rollouts: int


def plan(spans: list[int], samples: int) -> list[PoolRun]:
    runs = [PoolRun(0, False, (len(spans) + 1) * samples)]
    runs += [PoolRun(span, False, samples) for span in spans]
    runs += [PoolRun(span, True, 1) for span in [0, *spans]]
    return runs


def pools_of(run: PoolRun, sample: int, samples: int) -> list[str]:
    if run.greedy:
        return ["layer"]
    if run.span == 0:
        return ["temperature", "joint"] if sample < samples else ["temperature"]
    return ["joint"]


def merge(index: int, prompt_ids: list[int], parts: list[tuple[PoolRun, PromptTree]], samples: int,
          threshold: float) -> tuple[PromptTree, list[dict[str, Any]]]:
    """One tree holding every rollout of the prompt (all roots), and the label of each."""
    tree = PromptTree(prompt_index=index, prompt_ids=list(prompt_ids), budget=0, threshold=threshold)
    labels = []
    for run, part in parts:
        for s, seq in enumerate(part.sequences):
            tree.sequences.append(seq.copy(len(tree.sequences)))
            labels.append({"span": run.span, "sample": None if run.greedy else s, "tokens": seq.n_generated,
                           "pools": pools_of(run, s, samples)})
    tree.budget = len(tree.sequences)
    return tree, labels


def check_spans(engine: Any, spans: list[int]) -> None:
    """Before any generation: the engine can recurse, and the model has every span's layers."""
    model = getattr(engine, "model", None)
    if model is None or not hasattr(engine, "set_decoding"):
        raise ModelError("EGLR (--experiments eglr, --fork_mode recursion) needs the transformers engine: add "
                         "--backend hf.")
    if not engine.can_recurse:
        raise ModelError(f"EGLR cannot run on {model.__class__.__name__}: {engine.why_no_recursion}")
    n_layers = len(decoder_parts(model)[0])
    if max(spans) > n_layers:
        raise ModelError(f"--eglr_spans={','.join(map(str, spans))}: the model has {n_layers} decoder layers; "
                         f"use spans of 1..{n_layers}.")


def run_eglr(ctx: EvalContext, store: Any, on_record: Any) -> None:
    """Generate every pool for the prompts `store` lacks, one prompt batch at a time (see module doc)."""
    cfg = ctx.cfg
    spans, samples = cfg.eglr_span_list(), cfg.eglr_samples
    todo = [i for i in range(len(ctx.problems)) if i not in store.done]
    engine = ctx.engine()  # the spans were checked against the model when it was built
    base = ctx.config_for("parallel")
    size = cfg.prompt_batch_size or 1  # the transformers engine runs requests one by one: batching gains nothing
    stats_before = dataclasses.replace(engine.recursion_stats)
    t0 = time.perf_counter()
    try:
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            parts: dict[int, list[tuple[PoolRun, PromptTree]]] = {i: [] for i in chunk}
            for run in plan(spans, samples):
                recursion = Recursion(run.span, cfg.recursion_k_max, cfg.entropy_threshold, cfg.recursion_tol) if run.span else None
                engine.set_decoding(recursion, greedy=run.greedy)
                config = dataclasses.replace(base, max_sequences=run.rollouts)
                result = rollout.generate(engine, ctx.prompt_ids, config, active=chunk)
                if result.errors:
                    raise RuntimeError(f"eglr: rollout could not generate prompts {result.errors}")
                for tree in result.trees:
                    if tree.prompt_index in parts:
                        parts[tree.prompt_index].append((run, tree))
            for i in chunk:
                tree, labels = merge(i, ctx.prompt_ids[i], parts[i], samples, cfg.entropy_threshold)
                on_record(tree, labels, time.perf_counter() - t0)
    finally:
        engine.set_decoding(None, greedy=False)
        now = engine.recursion_stats
        spent = RecursionStats(*(getattr(now, f.name) - getattr(stats_before, f.name)
                                 for f in dataclasses.fields(RecursionStats)))
        store.extra["recursion"] = {**store.extra.get("recursion", {}), "last_run": dataclasses.asdict(spent)}
