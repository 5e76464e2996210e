"""Phase 2 (eager / eager_adapt) as eager-eval runs it: rollout's plan, and resumable exactly."""

from __future__ import annotations

import copy

import pytest

import rollout
from evaluation.phase2 import plan_shares, spend_shares

PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10, 11], [12, 13, 14], [15], [16, 17], [18, 19, 1]]


def _config(method: str, **kw) -> rollout.EagerConfig:
    base = dict(max_sequences=4, entropy_threshold=1.0, temperature=0.6, max_new_tokens=12, fork_mode="top2", seed=3)
    return rollout.EagerConfig(method=method, **{**base, **kw})


def _verifier(prompt_index: int, ids: list[int]) -> bool:
    return sum(ids) % 4 == 0  # deterministic, true for some sequences


def _init_trees(engine) -> list[rollout.PromptTree]:
    return rollout.generate(engine, PROMPTS, _config("eager_init")).trees


def _shape(trees: list[rollout.PromptTree]) -> list[list[tuple[int, ...]]]:
    return [[tuple(s.tokens) for s in t.sequences] for t in trees]


def _score(trees: list[rollout.PromptTree]) -> None:
    """What eager-eval does for label-aware phase 2: verdicts of eager_init's answers go on the sequences."""
    for t in trees:
        for s in t.sequences:
            s.score = float(_verifier(t.prompt_index, s.tokens))


def _plan(trees, cfg) -> dict[int, int]:
    return {int(k): v for k, v in plan_shares(trees, cfg)["shares"].items() if v > 0}


@pytest.mark.parametrize("method", ["eager_adapt", "eager"])
def test_planned_spending_equals_spend_saved_budget(make_fake_engine, method):
    init = _init_trees(make_fake_engine())
    cfg = _config(method)
    theirs = copy.deepcopy(init)
    rollout.spend_saved_budget(make_fake_engine(), theirs, cfg, verifier=_verifier)
    ours = copy.deepcopy(init)
    if method == "eager":
        _score(ours)
    shares = _plan(ours, cfg)
    assert shares, "the fixture should leave some budget to spend"
    spend_shares(make_fake_engine(), ours, cfg, shares, sorted(shares), verifier=_verifier)
    assert _shape(ours) == _shape(theirs)
    assert [t.retries for t in ours] == [t.retries for t in theirs]


@pytest.mark.parametrize("method", ["eager_adapt", "eager"])
def test_interrupted_phase2_resumes_to_the_same_trees(make_fake_engine, method):
    """Spending in two runs (the second on freshly rebuilt trees) gives what one run gives."""
    init = _init_trees(make_fake_engine())
    cfg = _config(method)
    whole = copy.deepcopy(init)
    if method == "eager":
        _score(whole)
    shares = _plan(whole, cfg)
    done: list[int] = []
    on_done = lambda t: done.append(t.prompt_index)  # noqa: E731
    spend_shares(make_fake_engine(), whole, cfg, shares, sorted(shares), _verifier, on_done)
    assert sorted(done) == sorted(shares)

    first, rest = sorted(shares)[:1], sorted(shares)[1:]
    part1 = copy.deepcopy(init)
    if method == "eager":
        _score(part1)
    spend_shares(make_fake_engine(), part1, cfg, shares, first, _verifier)
    part2 = copy.deepcopy(init)  # the restart rebuilds eager_init's trees from its file
    if method == "eager":
        _score(part2)
    spend_shares(make_fake_engine(), part2, cfg, shares, rest, _verifier)
    resumed = [part1[i] if i in first else part2[i] for i in range(len(init))]
    assert _shape(resumed) == _shape(whole)


def test_plan_follows_the_spec_split(fake_engine):
    trees = _init_trees(fake_engine)
    cfg = _config("eager_adapt")
    plan = plan_shares(trees, cfg)
    assert plan["saved_budget"] == 4 * len(PROMPTS) - sum(t.n_sequences for t in trees)
    assert plan["targets"] == [t.prompt_index for t in trees if t.n_sequences >= 4]
    shares = list(plan["shares"].values())
    assert sum(shares) == min(plan["saved_budget"], len(plan["targets"]) * plan["cap_per_prompt"])
    assert max(shares) - min(shares) <= 1  # even split, the remainder one by one


def test_eager_targets_only_unsolved_prompts(fake_engine):
    trees = _init_trees(fake_engine)
    _score(trees)
    plan = plan_shares(trees, _config("eager"))
    solved = {t.prompt_index for t in trees if any(s.score == 1.0 for s in t.sequences)}
    assert set(plan["targets"]) == {t.prompt_index for t in trees} - solved


def test_spend_shares_refuses_a_partial_pool(fake_engine):
    trees = _init_trees(fake_engine)[1:]
    with pytest.raises(ValueError, match="whole pool"):
        spend_shares(fake_engine, trees, _config("eager_adapt"), {}, [])
