"""The paper's per-prompt metrics and their averages over a run.

Per prompt with k sequences (as the EAGer paper reports them): Pass@k = any sequence correct; Cons@k = the
majority-vote answer is correct (ties go to the answer seen first); PassRate = fraction of
sequences correct; #T = tokens generated (shared prefixes once); #S = sequences. A score
of None (no answer, or a gold that cannot be checked) counts as wrong.

The seed's JSON names are kept in `results` for its scripts: `avg_acc` is PassRate,
`pass_at_1` is Pass@k (any correct), `cons_at_max` is Cons@k.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\s+|\$")


def is_correct(score: float | None) -> bool:
    return score is not None and score >= 1.0


def vote_key(answer: str) -> str:
    """Answers that differ only in spacing or LaTeX sizing vote together."""
    key = _NOISE.sub("", answer)
    return key.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def majority_index(answers: list[str | None]) -> int | None:
    """Index of the first sequence holding the majority answer (ties: first seen); None if no answers."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is None or not a.strip():
            continue
        key = vote_key(a)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None
    best = max(counts.values())
    # dicts keep insertion order, so the first key with the top count is the first seen
    winner = next(k for k, c in counts.items() if c == best)
    return first[winner]


def pass_at_k(scores: list[float | None]) -> float:
    return float(any(is_correct(s) for s in scores))


def cons_at_k(answers: list[str | None], scores: list[float | None]) -> float:
    i = majority_index(answers)
    return float(i is not None and is_correct(scores[i]))


def pass_rate(scores: list[float | None]) -> float:
    return sum(is_correct(s) for s in scores) / len(scores) if scores else 0.0


def selected_correct(index: int | None, scores: list[float | None]) -> float:
    """Accuracy of one chosen sequence (e.g. Lowest-Centroid); no choice counts as wrong."""
    return float(index is not None and is_correct(scores[index]))


def prompt_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The metrics of one prompt's record."""
    scores, answers = record["scores"], record["extracted_answers"]
    return {
        "pass_at_k": pass_at_k(scores),
        "cons_at_k": cons_at_k(answers, scores),
        "pass_rate": pass_rate(scores),
        "tokens": float(record["tokens_generated"]),
        "sequences": float(len(scores)),
        "lowest_centroid_acc": selected_correct(record.get("lowest_centroid"), scores),
    }


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Means over prompts, under this project's names and the seed's."""
    rows = [prompt_metrics(r) for r in records]
    n = len(rows)

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / n if n else 0.0

    out = {
        "prompts": float(n),
        "pass_at_k": mean("pass_at_k"),
        "cons_at_k": mean("cons_at_k"),
        "pass_rate": mean("pass_rate"),
        "tokens_per_prompt": mean("tokens"),
        "sequences_per_prompt": mean("sequences"),
        "lowest_centroid_acc": mean("lowest_centroid_acc"),
        "tokens_total": sum(r["tokens"] for r in rows),
    }
    out.update(avg_acc=out["pass_rate"], pass_at_1=out["pass_at_k"], cons_at_max=out["cons_at_k"])
    return out


EGLR_POOLS = ("temperature", "layer", "joint")


def eglr_oracles(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The eglr experiment's pools, each an oracle (any rollout right) averaged over prompts, with tokens.

    A record's `eglr` list labels each sequence: {"span": L (0: the plain model), "sample": s (None:
    greedy), "tokens": n, "pools": the pools it belongs to}. temperature: plain samples, as many as
    the joint pool holds; layer: the greedy rollout of each span, the plain model's included;
    joint: T samples of each span, plain included. Also the accuracy of single samples per span
    (`pass_rate_L<span>`), to see what the recursion does on its own.
    """
    records = list(records)
    n = max(len(records), 1)
    out: dict[str, float] = {}
    per_span: dict[int, list[float]] = {}
    for pool in EGLR_POOLS:
        oracle = tokens = size = 0.0
        for r in records:
            ks = [k for k, lab in enumerate(r["eglr"]) if pool in lab["pools"]]
            oracle += pass_at_k([r["scores"][k] for k in ks])
            tokens += sum(r["eglr"][k]["tokens"] for k in ks)
            size += len(ks)
        out[f"{pool}_oracle"], out[f"{pool}_tokens_per_prompt"], out[f"{pool}_rollouts"] = oracle / n, tokens / n, size / n
    for r in records:
        for lab, score in zip(r["eglr"], r["scores"], strict=True):
            if lab["sample"] is not None:
                per_span.setdefault(lab["span"], []).append(float(is_correct(score)))
    out["joint_oracle_gain"] = out["joint_oracle"] - out["temperature_oracle"]
    for span in sorted(per_span):
        out[f"pass_rate_L{span}"] = sum(per_span[span]) / len(per_span[span])
    return out
