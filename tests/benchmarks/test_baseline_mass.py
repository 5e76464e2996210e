"""The replay's arithmetic (`benchmarks.baseline_mass.mass`) on rows worked out by hand."""

import pytest

from benchmarks.baseline_mass import mass


def test_the_verdict_baseline_puts_advantage_on_groups_that_agree_and_the_group_mean_does_not():
    rows = {"reward": [0.0, 0.0, 1.0, 0.0], "group": [0, 0, 1, 1],
            "verdicts": [(0, 0), (0, 1), (0, 0), (1, 0)]}  # group 0 all wrong; group 1 mixed
    out = mass(rows)
    assert out["flat_groups_frac"] == 0.5
    assert out["group_flat_mass_frac"] == 0.0
    # verdicts: b = 1/2, 1/3 in group 0 (advantages -1, -0.707); b = 1/2, 2/3 in group 1 (+1, -1.414)
    assert out["verdicts_flat_mass_frac"] == pytest.approx((1 + 0.7071) / (1 + 0.7071 + 1 + 1.4142), abs=1e-3)
    assert out["verdicts_mean_advantage"] == pytest.approx((-1 - 0.7071 + 1 - 1.4142) / 4, abs=1e-3)


def test_a_shrunk_baseline_keeps_the_share_of_the_verdicts_its_row_started_with():
    rows = {"reward": [0.0, 0.0, 1.0, 0.0], "group": [0, 0, 1, 1],
            "verdicts": [(0, 0), (0, 1), (0, 0), (1, 0)]}
    out = mass(rows)
    # a = 2: rows with k = 0 verdicts keep nothing, rows with k = 1 keep a third (-0.236 and -0.471)
    assert out["shrunk2_flat_mass_frac"] == pytest.approx(0.7071 / (0.7071 + 1.4142), abs=1e-3)
    assert out["shrunk2_abs_advantage"] == pytest.approx((0.7071 + 1.4142) / 3 / 4, abs=1e-3)
    assert out["shrunk2_mixed_abs_advantage"] == pytest.approx(1.4142 / 3 / 2, abs=1e-3)
    assert out["group_mixed_abs_advantage"] == pytest.approx(0.7071, abs=1e-3)  # +-0.5 over the std 0.707
