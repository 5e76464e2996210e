"""Per-prompt records in the seed's JSON layout, and their round trip to `PromptTree`s.

A record keeps the seed's human-readable fields (prompt, generated_sequences, target,
extracted_answers, generations, entropies with -1 for inherited tokens, recorded_branches)
and adds what this project needs to be exact: the prompt's index, the tokens it generated
(shared prefixes counted once), per-sequence scores, and a `tree` with token ids and
parent links, from which eager / eager_adapt rebuild eager_init's trees. Log-probs are not
stored (nothing downstream of a test-time run uses them): a rebuilt sequence carries NaN.
"""

from __future__ import annotations

import math
from typing import Any

from rollout.types import INHERITED, BranchEvent, PromptTree, Sequence

ENTROPY_DECIMALS = 4  # the seed's rounding: readable, and far below any threshold's precision
LAST_CHARS = 50  # characters of context shown with each branch


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True) if tokenizer is not None else ""


def branch_to_dict(tree: PromptTree, event: BranchEvent, tokenizer: Any) -> dict[str, Any]:
    """A branch in the seed's keys (token texts), plus the ids and position needed to rebuild it."""
    child = tree.sequences[event.new_seq]
    context = _decode(tokenizer, child.tokens[max(0, event.position - 32) : event.position])
    original = _decode(tokenizer, [event.original_token])
    branch = None if event.branch_token is None else _decode(tokenizer, [event.branch_token])
    return {
        "seq_idx": event.seq,
        "gen_step": event.step,
        "position": event.position,
        "auto_selected_token": original,
        "entropy": round(event.entropy, ENTROPY_DECIMALS),
        "entropy_threshold": round(event.threshold, ENTROPY_DECIMALS),
        "man_token_original": original,
        "man_token_branch": branch,
        "original_token_id": event.original_token,
        "branch_token_id": event.branch_token,
        "new_seq_idx": event.new_seq,
        "last_generated_chars": context[-LAST_CHARS:],
        **({} if event.recursion_span is None else {"recursion_span": event.recursion_span}),
    }


def branch_from_dict(d: dict[str, Any]) -> BranchEvent:
    return BranchEvent(
        seq=d["seq_idx"],
        step=d["gen_step"],
        position=d["position"],
        entropy=float(d["entropy"]),
        threshold=float(d["entropy_threshold"]),
        original_token=d["original_token_id"],
        branch_token=d["branch_token_id"],
        new_seq=d["new_seq_idx"],
        recursion_span=d.get("recursion_span"),
    )


def _round_entropies(values: list[float]) -> list[float]:
    return [INHERITED if v == INHERITED else round(v, ENTROPY_DECIMALS) for v in values]


def tree_to_record(
    tree: PromptTree,
    index: int,
    prompt: str,
    target: Any,
    tokenizer: Any,
    generations: list[str],
    answers: list[str | None],
    scores: list[float | None],
    lowest_centroid: int | None = None,
) -> dict[str, Any]:
    """The JSON record of one prompt (dataset row `index`), scored; `generations` are the decoded sequences."""
    seqs = tree.sequences
    return {
        "index": index,
        "prompt": prompt,
        "generated_sequences": len(seqs),
        "target": target,
        "extracted_answers": answers,
        "scores": scores,
        "tokens_generated": tree.tokens_generated,
        "lowest_centroid": lowest_centroid,
        "generations": generations,
        "entropies": [_round_entropies(s.entropies) for s in seqs],
        "recorded_branches": [branch_to_dict(tree, b, tokenizer) for b in tree.branches],
        "tree": {
            "prompt_token_ids": list(tree.prompt_ids),
            "budget": tree.budget,
            "threshold": tree.threshold,
            "retries": tree.retries,
            "stopped": tree.stopped,
            "sequences": [
                {
                    "token_ids": list(s.tokens),
                    "parent": s.parent,
                    "n_inherited": s.n_inherited,
                    "forced": list(s.forced),
                    "retry": s.retry,
                    "finished": s.finished,
                    "finish_reason": s.finish_reason,
                    "score": s.score,
                }
                for s in seqs
            ],
        },
    }


def record_to_tree(record: dict[str, Any], prompt_index: int) -> PromptTree:
    """Rebuild a finished tree from its record; `prompt_index` is its place in the batch handed to rollout."""
    t = record["tree"]
    sequences = []
    for i, (s, ent) in enumerate(zip(t["sequences"], record["entropies"], strict=True)):
        n = len(s["token_ids"])
        if len(ent) != n:
            raise ValueError(f"record {record['index']}: sequence {i} has {n} tokens but {len(ent)} entropies")
        sequences.append(
            Sequence(
                index=i,
                tokens=list(s["token_ids"]),
                logprobs=[math.nan] * n,  # not stored; see the module docstring
                entropies=[float(e) for e in ent],
                parent=s["parent"],
                n_inherited=s["n_inherited"],
                forced=list(s.get("forced", [])),
                retry=s.get("retry", 0),
                finished=s.get("finished", True),
                finish_reason=s.get("finish_reason"),
                score=s.get("score"),
            )
        )
    return PromptTree(
        prompt_index=prompt_index,
        prompt_ids=list(t["prompt_token_ids"]),
        budget=t["budget"],
        threshold=t["threshold"],
        sequences=sequences,
        branches=[branch_from_dict(b) for b in record["recorded_branches"]],
        retries=t.get("retries", 0),
        stopped=t.get("stopped", t.get("solved", False)),  # "solved": results written before the rename
    )


def full_entropies(record: dict[str, Any], i: int) -> list[float]:
    """Entropies of sequence i with inherited (-1) positions filled from its ancestors.

    Records without a `tree` (the seed's own files) have no parent links: inherited
    positions are then dropped, which keeps the sequence's own tokens.
    """
    ent = record["entropies"][i]
    tree = record.get("tree")
    if tree is None:
        return [e for e in ent if e != INHERITED]
    seq = tree["sequences"][i]
    out = list(ent)
    if seq["parent"] is not None and seq["n_inherited"]:
        out[: seq["n_inherited"]] = full_entropies(record, seq["parent"])[: seq["n_inherited"]]
    return out


def record_tokens(record: dict[str, Any]) -> int:
    """Tokens the prompt generated; for the seed's files, the non-inherited entropies (its own count)."""
    if "tokens_generated" in record:
        return int(record["tokens_generated"])
    return sum(1 for seq in record["entropies"] for e in seq if e != INHERITED)
