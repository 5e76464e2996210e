"""Advantages over variable groups, checked against TRL's fixed-stride formula where they must agree."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.utils import nanstd

from trainers.advantages import group_advantages

NAN = float("nan")


def trl_advantages(rewards_per_func, weights, g, scale="group"):
    """TRL 1.16's sum_then_normalize for fixed groups of g consecutive rows (grpo_trainer.py ~2761)."""
    rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = NAN
    mean = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g)
    std = nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g) if scale != "batch" else nanstd(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_equal_groups_match_trl(scale):
    torch.manual_seed(0)
    rpf = torch.randint(0, 2, (12, 2)).float()
    rpf[3, :] = NAN  # an unscorable row
    weights = torch.tensor([1.0, 0.5])
    groups = torch.arange(12) // 4
    ours, _ = group_advantages(rpf, groups, weights, scale)
    assert torch.allclose(ours, trl_advantages(rpf, weights, 4, scale))


def test_variable_groups_use_only_their_own_rows():
    # group 0 holds rows 0, 1, 6 (it took row 6 from group 1); group 1 holds rows 4, 5; rows 2, 3, 7 unused.
    rewards = torch.tensor([[1.0], [0.0], [NAN], [NAN], [1.0], [1.0], [1.0], [NAN]])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 0, 1])
    adv, std = group_advantages(rewards, groups, torch.ones(1))
    g0 = torch.tensor([1.0, 0.0, 1.0])
    expected0 = (g0 - g0.mean()) / (g0.std() + 1e-4)
    assert torch.allclose(adv[[0, 1, 6]], expected0)
    assert (adv[[2, 3, 7]] == 0).all()  # unused rows
    assert (adv[[4, 5]] == 0).all()  # group 1: all equal, no signal
    assert torch.isclose(std[4], torch.tensor(0.0))


def test_singleton_group_has_no_baseline():
    adv, _ = group_advantages(torch.tensor([[1.0], [NAN], [0.0], [1.0]]), torch.tensor([0, 0, 1, 1]), torch.ones(1))
    assert adv[0] == 0 and adv[1] == 0 and adv[2] < 0 < adv[3]


def test_normalize_then_sum_matches_trl_on_equal_groups():
    torch.manual_seed(1)
    rpf = torch.rand(8, 2)
    weights = torch.tensor([1.0, 2.0])
    ours, _ = group_advantages(rpf, torch.arange(8) // 4, weights, aggregation="normalize_then_sum")
    grouped = rpf.view(-1, 4, 2)
    k = ((grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + 1e-4))
    rewards = (k.view(-1, 2) * weights).nansum(dim=1)
    expected = (rewards - rewards.nanmean()) / (nanstd(rewards) + 1e-4)
    assert torch.allclose(ours, expected)


def test_group_ids_need_not_be_contiguous():
    rpf = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    a, _ = group_advantages(rpf, torch.tensor([7, 3, 7, 3]), torch.ones(1))
    b, _ = group_advantages(rpf[[0, 2, 1, 3]], torch.tensor([0, 0, 1, 1]), torch.ones(1))
    assert torch.allclose(a[[0, 2, 1, 3]], b)


def test_verdict_baselines_replace_the_group_mean_and_never_divide_by_a_zero_std():
    from trainers.advantages import verdict_baseline

    rewards = torch.tensor([[1.0], [1.0], [0.0], [1.0]])  # group 0: all right (std 0); group 1: a mix
    groups = torch.tensor([0, 0, 1, 1])
    b = torch.tensor([verdict_baseline(0, 0), verdict_baseline(1, 0), verdict_baseline(0, 0), verdict_baseline(0, 1)])
    assert b.tolist() == pytest.approx([0.5, 2 / 3, 0.5, 1 / 3])
    adv, _ = group_advantages(rewards, groups, torch.ones(1), "none", baselines=b)
    assert adv.tolist() == pytest.approx([0.5, 1 / 3, -0.5, 2 / 3])  # the all-right group still teaches
    adv, std = group_advantages(rewards, groups, torch.ones(1), "group", baselines=b)
    assert torch.isfinite(adv).all() and adv.abs().max() < 2.0
    assert adv[0].item() == pytest.approx(0.5 / (0.5 + 1e-4))  # scaled by sqrt(b (1 - b)) = 0.5 at b = 0.5
    with pytest.raises(ValueError, match="sum_then_normalize"):
        group_advantages(rewards, groups, torch.ones(1), "group", "normalize_then_sum", baselines=b)
