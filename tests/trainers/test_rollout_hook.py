"""Row layout, the hook's rows from hand-made trees, and the step metrics (no engine)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rollout import PromptTree, RolloutResult, Sequence
from trainers.metrics import step_metrics
from trainers.rollout_hook import _rows, layout_rows, rollout_config
from trainers.step_state import StepState


def test_layout_fills_own_rows_first_then_spills_into_free_ones():
    rows = layout_rows([1, 6, 4, 0], group_size=4)
    assert rows[0:4] == [(0, 0), (1, 4), (1, 5), None]  # prompt 0 used 1 row, lends 2 to prompt 1
    assert rows[4:8] == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert rows[8:12] == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert rows[12:16] == [None] * 4


def test_layout_refuses_an_overspent_budget():
    with pytest.raises(RuntimeError, match="overspent"):
        layout_rows([5, 4], group_size=4)


@given(st.integers(1, 6).flatmap(lambda g: st.tuples(st.just(g), st.lists(st.integers(0, 2 * g), min_size=1,
                                                                           max_size=6))))
def test_layout_places_every_sequence_once(case):
    g, counts = case
    if sum(counts) > len(counts) * g:
        counts = [min(c, g) for c in counts]
    rows = layout_rows(counts, g)
    placed = [slot for slot in rows if slot is not None]
    assert len(rows) == len(counts) * g
    assert sorted(placed) == [(k, j) for k, n in enumerate(counts) for j in range(n)]
    for k, n in enumerate(counts):  # a prompt's first min(n, G) sequences sit in its own rows
        assert rows[k * g : k * g + min(n, g)] == [(k, j) for j in range(min(n, g))]


def _tree(k: int, prompt: list[int], completions: list[list[int]], aborted: int = 0) -> PromptTree:
    tree = PromptTree(k, prompt, budget=4, threshold=2.0)
    for j, tokens in enumerate(completions):
        tree.sequences.append(Sequence(j, tokens=tokens, logprobs=[-0.5] * len(tokens), entropies=[1.0] * len(tokens),
                                       finished=True, finish_reason="stop"))
    for j in range(aborted):
        tree.sequences.append(Sequence(len(tree.sequences), tokens=[9], logprobs=[-1.0], finish_reason="abort"))
    return tree


def test_rows_carry_their_own_prompt_columns_and_masks():
    trees = [_tree(0, [10, 11], [[1, 2]], aborted=1), _tree(1, [20], [[3], [4, 5], [6], [7], [8]])]
    result = RolloutResult("eager", trees)
    trainer = SimpleNamespace(accelerator=SimpleNamespace(process_index=1), eager_pad_completion=[0],
                              args=SimpleNamespace(advanced=SimpleNamespace(credit="rows")), eager_step=StepState())
    sources = [{"prompt": "p0", "answer": "a0", "other": 0}, {"prompt": "p1", "answer": "a1", "other": 1}]
    out = _rows(result, sources, [[10, 11], [20]], 4, trainer)
    assert out["eager_used"] == [1, 1, 0, 0, 1, 1, 1, 1]
    assert out["eager_group"] == [2, 3, 2, 2, 3, 3, 3, 3]  # offset: process 1 holds prompts 2 and 3
    assert out["prompt_ids"][1] == [20] and out["answer"][1] == "a1" and out["prompt"][1] == "p1"  # moved row
    assert out["completion_ids"][1] == [8] and out["env_mask"][1] == [1]
    assert out["completion_ids"][2] == [0] and out["env_mask"][2] == [0] and out["logprobs"][2] == [0.0]
    assert all(len(c) == len(lp) == len(m) for c, lp, m in zip(out["completion_ids"], out["logprobs"],
                                                               out["env_mask"]))
    assert trainer.eager_step.rollout is result


def test_step_metrics():
    nan = float("nan")
    # 3 prompts x G=2 rows; prompt 0 took a row of prompt 2 (3 sequences), prompt 2 used none.
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, nan])
    groups = torch.tensor([0, 0, 1, 1, 0, 2])
    used = torch.tensor([True, True, True, True, True, False])
    m = step_metrics(rewards, groups, used, group_size=2, tokens=50, branches=3)
    assert m["eager/rollout_tokens"] == 50
    assert m["eager/rows_used_frac"] == pytest.approx(5 / 6)
    assert (m["eager/sequences_per_prompt_min"], m["eager/sequences_per_prompt_max"]) == (0, 3)
    assert m["eager/sequences_per_prompt_mean"] == pytest.approx(5 / 3)
    assert m["eager/branches_per_prompt"] == 1
    assert m["eager/frac_solved"] == pytest.approx(2 / 3)
    assert m["eager/frac_with_signal"] == pytest.approx(1 / 3)
    assert m["eager/rows_reallocated"] == 1


def test_rollout_config_follows_the_trainer_config(tmp_path):
    from tests.trainers.conftest import make_args

    args = make_args(tmp_path, rollout_generator="eager", eager_max_sequences=3, eager_entropy_threshold=2.5,
                     eager_advanced={"allocation": "passes", "solved_min_incorrect": 1, "on_solved": "abort"},
                     temperature=0.7)
    trainer = SimpleNamespace(args=args, accelerator=SimpleNamespace(process_index=1),
                              model=SimpleNamespace(training=True), state=SimpleNamespace(global_step=5),
                              eager_think_end_token_id=7, eos_token_ids=[2, 3])
    cfg = rollout_config(trainer, group_size=4)
    assert (cfg.method, cfg.max_sequences, cfg.entropy_threshold, cfg.temperature) == ("eager", 3, 2.5, 0.7)
    assert cfg.online and cfg.solved_min_incorrect == 1 and cfg.on_solved == "abort"
    assert (cfg.max_new_tokens, cfg.stop_token_ids, cfg.think_end_token_id) == (8, [2, 3], 7)
    assert rollout_config(trainer, group_size=2).max_sequences == 2  # eval groups may be smaller
    trainer.state.global_step = 6
    assert rollout_config(trainer, group_size=4).seed != cfg.seed  # fresh samples every step
