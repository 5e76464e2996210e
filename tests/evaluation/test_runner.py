"""The experiment runner on a scripted engine whose answers are known: scores and metrics are right.

Each request writes one of two short solutions, chosen by its seed: one ends in the right
`\\boxed{}` answer, the other in a wrong one. The first position is uncertain (EAGer forks
there), the rest confident. Everything else is real: tokenizer, chat template, verifier.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.config import EvalConfig
from evaluation.context import build_context
from evaluation.runner import run_experiments
from rollout.engine import TokenOutput

RIGHT = " So the sum is \\boxed{70}."
WRONG = " I think it is \\boxed{12}."


class ScriptedEngine:
    logprobs_after_temperature = True
    max_model_len = 4096

    def __init__(self, tokenizer, prompts: list[list[int]]) -> None:
        self.prompts = {tuple(p) for p in prompts}  # a request starting at a bare prompt is a root
        self.scripts = [tokenizer(RIGHT, add_special_tokens=False)["input_ids"],
                        tokenizer(WRONG, add_special_tokens=False)["input_ids"]]
        self.eos_token_ids = {tokenizer.eos_token_id}
        self.eos = tokenizer.eos_token_id
        self.running: dict[str, list] = {}

    def configure(self, temperature, top_logprobs, stop_token_ids, full_vocab) -> None:
        pass

    def add(self, request) -> None:
        root = tuple(request.token_ids) in self.prompts
        self.running[request.request_id] = [request, self.scripts[request.seed % 2] + [self.eos], 0, root]

    def abort(self, request_ids) -> None:
        for rid in request_ids:
            self.running.pop(rid, None)

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def step(self) -> list[TokenOutput]:
        outs = []
        for rid, state in list(self.running.items()):
            req, script, pos, root = state
            token = script[pos]
            # a root's first position is uncertain (20 equal choices), everything else nearly certain
            lps = np.log(np.full(20, 1 / 20)) if pos == 0 and root else np.array([-1e-4] + [-12.0] * 19)
            ids = np.array([token] + [1000 + j for j in range(19)], dtype=np.int64)
            state[2] += 1
            done = token == self.eos or state[2] >= req.max_tokens
            reason = ("stop" if token == self.eos else "length") if done else None
            outs.append(TokenOutput(rid, int(token), float(lps[0]), ids, lps, done, reason))
            if done:
                del self.running[rid]
        return outs


def _context(tmp_path, shared_data, tokenizer_dir, **kw):
    # The tokenizer's folder stands in for a model: the scripted engine is injected, none is built.
    cfg = EvalConfig(model_name=str(tokenizer_dir), data_name=str(shared_data / "aime_2025.jsonl"), limit=3,
                     max_sequences=4, max_new_tokens=32, max_model_len=4096, entropy_threshold=2.0,
                     output_dir=str(tmp_path / "run"), log_level="WARNING", **kw)
    ctx = build_context(cfg)
    ctx.out_dir.mkdir(parents=True)
    ctx._engine = ScriptedEngine(ctx.tokenizer, ctx.prompt_ids)
    return ctx


def _load(ctx, name):
    return json.loads((ctx.out_dir / name).read_text())


def test_scores_and_metrics_follow_the_answers(tmp_path, shared_data, tokenizer_dir):
    ctx = _context(tmp_path, shared_data, tokenizer_dir, experiments="all")
    run_experiments(ctx)
    parallel = _load(ctx, "run_default_results.json")
    for r in parallel["default-generations"]:
        right = [RIGHT.strip() in g for g in r["generations"]]
        wrong_or_right = [answer in ("70", "12") for answer in r["extracted_answers"]]
        assert all(wrong_or_right)
        if r["index"] == 0:  # AIME 2025 problem 1: the answer is 70
            assert r["scores"] == [1.0 if x else 0.0 for x in right]
        else:
            assert r["scores"] == [0.0] * len(right)
    res = parallel["results"]
    first = parallel["default-generations"][0]
    assert 0 < sum(first["scores"]) < len(first["scores"])  # the seeds give both scripts: a meaningful check
    assert res["pass_at_k"] == pytest.approx((1.0 if any(first["scores"]) else 0.0) / 3)
    assert res["pass_rate"] == pytest.approx(sum(first["scores"]) / len(first["scores"]) / 3)

    init = _load(ctx, "run_aware_results__th2.0.json")
    for r in init["entropy-aware-generations"]:
        assert r["generated_sequences"] == 2  # one fork at the uncertain first position, then certainty
        assert r["recorded_branches"][0]["position"] == 0
    first = init["entropy-aware-generations"][0]
    assert first["extracted_answers"] == ["70", "12"]
    assert init["results"]["cons_at_k"] == pytest.approx(1 / 3)  # prompt 0's 1-1 tie goes to "70", seen first
    eager = _load(ctx, "run_aware_more_budget_results__th2.0.json")
    # label-aware: prompts 1 and 2 can never be solved (the script never says their answers), prompt 0 maybe
    plan = eager["extra"]["budget_plan"]
    assert plan["saved_budget"] == 3 * 4 - 3 * 2
    assert {1, 2} <= set(plan["targets"])
    for r in eager["entropy-aware-generations"]:
        extra = r["generated_sequences"] - 2
        assert extra == plan["shares"].get(str(r["index"]), 0)


def test_label_verifier_agrees_with_the_records(tmp_path, shared_data, tokenizer_dir, qwen_tokenizer):
    from evaluation.scoring import label_verifier

    ctx = _context(tmp_path, shared_data, tokenizer_dir)
    verifier = label_verifier(ctx.problems, ctx.tokenizer, ctx.scorer)
    right = qwen_tokenizer(RIGHT, add_special_tokens=False)["input_ids"]
    wrong = qwen_tokenizer(WRONG, add_special_tokens=False)["input_ids"]
    assert verifier(0, right) is True and verifier(0, wrong) is False
    assert verifier(1, right) is False
