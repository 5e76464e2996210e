"""What several benchmarks share: verifiers over a tokenizer, the paper's metrics over a result, draw odds."""

from __future__ import annotations

from math import comb
from typing import Any

from rewards import GoldVerifier, extract_boxed


def decoder(tokenizer: Any):
    """Completion ids to text, as the trainer's rewards see it."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def exact_verifier(tokenizer: Any, golds: list[str]) -> GoldVerifier:
    """Right when the last boxed answer equals the gold string (digit answers need no math-verify)."""
    return GoldVerifier(decoder(tokenizer), golds, lambda text, gold: float(extract_boxed(text) == gold))


def arithmetic_batch(n: int) -> tuple[str, Any, list, list[list[int]], GoldVerifier]:
    """The arithmetic model's first `n` held-out problems: (model dir, tokenizer, problems, prompt ids, verifier)."""
    from transformers import AutoTokenizer

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import heldout_problems

    model_dir = str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = heldout_problems(n)
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    return model_dir, tokenizer, problems, prompts, exact_verifier(tokenizer, [p.answer for p in problems])


def math_verifier(tokenizer: Any, golds: list[str]) -> GoldVerifier:
    """Right when math-verify accepts the last boxed answer (`rewards.Verifier`)."""
    return GoldVerifier(decoder(tokenizer), golds)


def score(result, tokenizer: Any, golds: list[str]) -> dict[str, float]:
    """Pass@k, Cons@k, PassRate, #T and #S over a `RolloutResult`'s trees, answers checked with math-verify."""
    from evaluation.metrics import cons_at_k, pass_at_k, pass_rate
    from rewards import verify_batch

    rows = {"pass_at_k": 0.0, "cons_at_k": 0.0, "pass_rate": 0.0}
    for tree in result.trees:
        texts = [tokenizer.decode(s.tokens, skip_special_tokens=True) for s in tree.kept()]
        scores = verify_batch(texts, [golds[tree.prompt_index]] * len(texts))
        answers = [extract_boxed(t) for t in texts]
        rows["pass_at_k"] += pass_at_k(scores)
        rows["cons_at_k"] += cons_at_k(answers, scores)
        rows["pass_rate"] += pass_rate(scores)
    n = len(result.trees)
    out = {k: v / n for k, v in rows.items()}
    out["tokens_per_prompt"] = result.tokens_generated / n
    out["sequences_per_prompt"] = result.n_sequences / n
    out["wall_time_s"] = result.wall_time_s
    return out


def draw_extremes(right: int, total: int, draws: int) -> tuple[float, float]:
    """(P(no right one), P(all right)) of `draws` samples drawn without replacement from `total`, `right` right."""
    draws = min(draws, total)
    return comb(total - right, draws) / comb(total, draws), comb(right, draws) / comb(total, draws)
