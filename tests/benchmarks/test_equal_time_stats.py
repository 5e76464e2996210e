"""The equal-seconds race's statistics against answers computed by hand: t intervals over seeds, pairing by
seed, the crossing time with the stay-above rule, and a race's summary."""

from __future__ import annotations

import math

import pytest

from benchmarks.equal_time.report import summarise
from benchmarks.equal_time.stats import crossing_time, interval, paired, t_quantile


def test_t_quantiles():
    assert t_quantile(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile(4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(10**6) == pytest.approx(1.9600, abs=1e-4)


def test_interval_is_a_t_interval_on_n_minus_1_degrees_of_freedom():
    # mean 0.02, standard deviation 0.01, t(2) = 4.3027: half-width 4.3027 * 0.01 / sqrt(3) = 0.024841
    i = interval([0.01, 0.03, 0.02])
    assert (i.mean, i.low, i.high, i.n) == pytest.approx((0.02, -0.004841, 0.044841, 3), abs=1e-6)
    assert not i.shown  # the interval holds 0: not shown
    assert interval([0.02, 0.03, 0.025, 0.021, 0.029]).shown
    one = interval([0.05])
    assert one.mean == 0.05 and math.isnan(one.low) and not one.shown


def test_pairing_is_by_seed():
    # per seed +0.1 and +0.05: mean 0.075, sd 0.035355, t(1) 12.7062: half-width 0.317655
    d = paired([0.5, 0.6], [0.4, 0.55])
    assert d.values == pytest.approx((0.1, 0.05))
    assert (d.low, d.high) == pytest.approx((0.075 - 0.317655, 0.075 + 0.317655), abs=1e-5)
    # the same values unpaired would differ: pairing keeps each seed's own noise inside its difference
    assert paired([0.5, 0.6], [0.55, 0.4]).values == pytest.approx((-0.05, 0.2))
    with pytest.raises(ValueError, match="one value per seed"):
        paired([0.5], [0.4, 0.3])


def test_crossing_time_must_stay_above():
    curve = [(0.0, 0.40), (10.0, 0.50), (20.0, 0.45), (30.0, 0.60)]
    assert crossing_time(curve, 0.48) == pytest.approx(22.0)  # 10 s crosses but dips again: 20 + 0.03/0.15 x 10
    assert crossing_time(curve, 0.44) == pytest.approx(4.0)
    assert crossing_time(curve, 0.40) == 0.0
    assert crossing_time(curve[:3], 0.48) is None  # ends below


def _run(seed, curve, train_s, **split):
    base = dict(steps=10, train_s=train_s, generation_s=1.0, scoring_s=0.0, optimisation_s=1.0, tokens=100.0,
                engine_steps=5.0, signal=0.5, rows_used=1.0, rows_trained=8.0, fork_rows_frac=0.0,
                moved_rows_frac=0.0)
    return {"seed": seed, "curve": curve, "train_s": train_s, "split": {**base, **split}}


def test_summary_takes_every_generator_at_the_reference_seconds_and_names_the_best_baseline():
    runs = {
        "parallel": [_run(0, [(0, 0.40, 0), (100, 0.50, 0)], 100), _run(1, [(0, 0.40, 0), (90, 0.46, 0)], 90)],
        # stops past parallel's seconds: read at 100 s and 90 s, between its saved models
        "parallel_dynamic": [_run(0, [(0, 0.40, 0), (50, 0.50, 0), (110, 0.56, 0)], 110),
                             _run(1, [(0, 0.40, 0), (45, 0.44, 0), (95, 0.50, 0)], 95)],
        "eager": [_run(0, [(0, 0.40, 0), (50, 0.52, 0), (101, 0.58, 0)], 101, fork_rows_frac=0.25),
                  _run(1, [(0, 0.40, 0), (45, 0.46, 0), (91, 0.51, 0)], 91, fork_rows_frac=0.35)],
    }
    s = summarise(runs)
    assert s["seeds"] == [0, 1] and s["reference_seconds"] == [100, 90]
    assert s["accuracy"]["parallel"] == pytest.approx([0.50, 0.46])
    assert s["accuracy"]["parallel_dynamic"] == pytest.approx([0.55, 0.494])  # 0.50 + 50/60 x 0.06; 0.44 + 45/50 x 0.06
    assert s["best_baseline"] == "parallel_dynamic"
    eager = [0.52 + 50 / 51 * 0.06, 0.46 + 45 / 46 * 0.05]
    assert s["accuracy"]["eager"] == pytest.approx(eager)
    assert s["eager_vs_best_baseline"]["values"] == pytest.approx((eager[0] - 0.55, eager[1] - 0.494))
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx(
        (s["eager_vs_best_baseline"]["low"], s["eager_vs_best_baseline"]["high"]))
    assert s["parallel_gain"]["values"] == pytest.approx((0.10, 0.06))
    assert s["eager_fork_rows_frac"] == pytest.approx(0.30)
    # eager reaches parallel's final accuracy (0.50, 0.46) at 0.10/0.12 x 50 s and at 45 s (and stays above)
    assert s["time_to_parallel_accuracy"]["values"] == pytest.approx((50 / 1.2 / 100, 45 / 90))


def test_every_eager_variant_is_set_against_the_best_baseline_and_never_counts_as_one():
    runs = {
        "parallel": [_run(0, [(0, 0.40, 0), (100, 0.50, 0)], 100), _run(1, [(0, 0.40, 0), (90, 0.46, 0)], 90)],
        "eager": [_run(0, [(0, 0.40, 0), (100, 0.52, 0)], 100), _run(1, [(0, 0.40, 0), (90, 0.47, 0)], 90)],
        "eager_forks": [_run(0, [(0, 0.40, 0), (100, 0.60, 0)], 100), _run(1, [(0, 0.40, 0), (90, 0.58, 0)], 90)],
    }
    s = summarise(runs, controls={"eager_forks": "eager", "eager_absent": "eager"})
    assert s["best_baseline"] == "parallel"  # the better eager_forks is not a baseline
    assert s["generators"]["eager_forks"]["minus_control"]["control"] == "eager"
    assert s["generators"]["eager_forks"]["minus_control"]["values"] == pytest.approx((0.08, 0.11))
    assert s["generators"]["eager_forks"]["minus_best_baseline"]["values"] == pytest.approx((0.10, 0.12))
    assert s["eager_vs_best_baseline"]["values"] == pytest.approx((0.02, 0.01))
    assert "minus_best_baseline" not in s["generators"]["parallel"]


def test_summary_refuses_runs_that_do_not_pair_by_seed():
    runs = {"parallel": [_run(0, [(0, 0.4, 0), (10, 0.5, 0)], 10), _run(1, [(0, 0.4, 0), (10, 0.5, 0)], 10)],
            "eager": [_run(1, [(0, 0.4, 0), (10, 0.5, 0)], 10), _run(0, [(0, 0.4, 0), (10, 0.5, 0)], 10)]}
    with pytest.raises(ValueError, match="eager's seeds \\[1, 0\\] are not parallel's \\[0, 1\\]"):
        summarise(runs)


def test_a_race_resumes_what_it_stored_and_refuses_to_mix_two(tmp_path, monkeypatch):
    """A stored run is not trained again; other generator settings, another model or recipe stop the resume."""
    from benchmarks.equal_time import Task, race

    trained = []

    def fake_train(task, fields, seed, out, steps, marks, every, seconds):
        trained.append((fields["rollout_generator"], seed, seconds))
        logs = [{"step": s, "eager/train_wall_s": 10.0 * s, "eager/rollout_tokens": 1.0} for s in (1, 2)]
        return logs, [(2, out / "final")]

    monkeypatch.setattr(race, "train", fake_train)
    monkeypatch.setattr(race, "score_seed", lambda *args: None)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 1.0e-4\n")
    task = Task("mix", recipe, str(tmp_path / "model"), [], [], [], lambda a, b: a == b, 8)
    generators = {"parallel": {"rollout_generator": "parallel"}, "eager": {"rollout_generator": "eager"}}
    settings = dict(steps=2, every=1, heldout=10, samples=1)
    runs = race.race(task, generators, [0], settings, tmp_path / "out")
    assert trained == [("parallel", 0, None), ("eager", 0, 20.0)]  # eager gets parallel's seconds
    assert runs["eager"][0]["seconds"] == 20.0
    race.race(task, generators, [0, 1], settings, tmp_path / "out")
    assert trained[2:] == [("parallel", 1, None), ("eager", 1, 20.0)]  # seed 0 resumed, not trained again
    with pytest.raises(SystemExit, match="was trained with"):
        race.race(task, {**generators, "eager": {"rollout_generator": "eager", "oversample": 3}}, [0], settings,
                  tmp_path / "out")
    recipe.write_text("learning_rate: 2.0e-4\n")
    with pytest.raises(SystemExit, match="holds a race run with"):
        race.race(task, generators, [0], settings, tmp_path / "out")
