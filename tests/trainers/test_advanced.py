"""The settings a user sees, the experiment settings in `eager_advanced`, and the old keys that moved
(`trainers/advanced.py`)."""

from __future__ import annotations

import re

import pytest

from tests.trainers.conftest import make_args


@pytest.mark.parametrize("old, value, where", [
    ("eager_oversample", 2.0, "oversample: 2.0"), ("eager_drop_flat_rows", True, "dynamic_sampling: true"),
    ("eager_loss_normalizer", "budget", 'loss_normalizer: "budget"'),
    ("eager_drop_unused_rows", False, "eager_advanced: {drop_unused_rows: false}"),
    ("drop_unused_rows", False, "eager_advanced: {drop_unused_rows: false}"),
    ("eager_fill_with", "forks", 'eager_advanced: {fill_with: "forks"}'),
    ("eager_baseline", "verdicts", 'eager_advanced: {baseline: "verdicts"}'),
])
def test_old_keys_still_load_and_say_where_they_went(tmp_path, old, value, where):
    with pytest.warns(FutureWarning, match=f"^{old} is deprecated: write {re.escape(where)}"):
        args = make_args(tmp_path, rollout_generator="eager", eager_screen_roots=2, **{old: value})
    new = where.partition(":")[0]
    if new == "eager_advanced":
        assert args.eager_advanced == {old.removeprefix("eager_"): value} and not hasattr(args, old)
    else:
        assert getattr(args, new) == value


def test_an_old_key_that_contradicts_the_new_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="eager_oversample=2.0 and oversample=3.0: eager_oversample is the old name"):
        make_args(tmp_path, rollout_generator="eager", eager_oversample=2.0, oversample=3.0)
    with pytest.raises(ValueError, match="eager_fill_with='forks' and eager_advanced.fill_with='roots'"):
        make_args(tmp_path, rollout_generator="eager", eager_fill_with="forks", eager_advanced={"fill_with": "roots"})


def test_the_user_sees_at_most_fifteen_settings_besides_trls():
    """The settings a user needs are fields; experiment settings are keys of one mapping (trainers/advanced.py)."""
    from dataclasses import fields

    from trl import GRPOConfig

    from trainers import EagerGRPOConfig
    from trainers.advanced import KEYS, describe

    own = {f.name for f in fields(EagerGRPOConfig)} - {f.name for f in fields(GRPOConfig)}
    assert len(own) <= 15, sorted(own)
    assert {"rollout_generator", "eager_max_sequences", "eager_entropy_threshold", "eager_think_end_token",
            "eager_gold_column", "eager_answer_kind", "oversample", "eager_screen_roots", "eager_fill_size",
            "dynamic_sampling", "eager_advanced"} <= own
    assert all(line.split(" ")[0] in KEYS for line in describe().splitlines()) and len(describe().splitlines()) == len(
        KEYS)


def test_a_command_line_updates_the_recipes_advanced_settings_and_reads_old_flags():
    from recipes.grpo import parse_args

    argv = ["--config", "recipes/cpu_default.yaml", "--output_dir", "unused", "--eager_screen_roots", "2",
            "--eager_advanced", '{"fill_with": "forks"}', "--eager_probe_roots", "2", "--no_eager_p99_floor"]
    with pytest.warns(FutureWarning) as record:
        _, args, _ = parse_args(argv)
    assert [str(w.message) for w in record] == [
        "eager_probe_roots is deprecated: write eager_advanced: {probe_roots: 2} (an experiment setting).",
        "eager_p99_floor is deprecated: write eager_advanced: {p99_floor: false} (an experiment setting)."]
    assert args.eager_advanced == {"fill_with": "forks", "probe_roots": 2, "p99_floor": False}
    assert args.rollout_settings().probe_roots == 2 and args.oversample == 2  # the recipe's own settings stay


def test_advanced_text_from_a_command_line_is_a_mapping_or_refused():
    from trainers.advanced import parse

    assert parse("{allocation: passes}") == parse('{"allocation": "passes"}') == {"allocation": "passes"}
    assert parse(None) == parse("") == {}
    with pytest.raises(ValueError, match="eager_advanced='passes': give a mapping"):
        parse("passes")


def test_experiment_settings_are_typed_and_checked_under_any_generator(tmp_path):
    from trainers.advanced import resolve

    # YAML reads 1e-3 as text and a flag gives 0 for false: both arrive typed
    typed = resolve({"pass_start_limit": "1e-3", "p99_floor": "false", "probe_roots": "2", "drop_unused_rows": 0})
    assert typed.given == {"pass_start_limit": 0.001, "p99_floor": False, "probe_roots": 2, "drop_unused_rows": False}
    assert typed.drop_unused_rows is False and typed.rollout == {"pass_start_limit": 0.001, "p99_floor": False,
                                                                 "probe_roots": 2}
    for bad, message in (({"p99_floor": "maybe"}, "p99_floor='maybe': give true or false"),
                         ({"probe_roots": 2.5}, "probe_roots=2.5: give a whole number"),
                         ({"online": True}, "the trainer sets online"),
                         ({"oversample": 2}, "oversample is a setting of its own; write oversample: 2")):
        with pytest.raises(ValueError, match=re.escape(message)):
            resolve(bad)
    with pytest.raises(ValueError, match=re.escape("eager_advanced.fork_mode='bogus': choose one of")):
        make_args(tmp_path, rollout_generator="parallel", eager_advanced={"fork_mode": "bogus"})


def test_an_old_key_left_unset_is_dropped_without_a_message():
    import warnings

    from trainers.advanced import upgrade

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full dump from before: the old keys there are None
        assert upgrade({"eager_drop_unused_rows": None, "eager_oversample": None, "oversample": 2.0}) == {
            "oversample": 2.0}


def test_hyphenated_and_repeated_flags_are_read_as_trl_reads_them():
    from recipes.grpo import _moved_flags

    taken, rest = _moved_flags(["--eager-fill-with", "forks", "--no-eager-p99-floor", "--eager_advanced",
                                '{"probe_roots": 2}', "--eager-advanced={refill_at: surprise}", "--seed", "-3"])
    assert taken == {"eager_fill_with": "forks", "eager_p99_floor": False,
                     "eager_advanced": {"probe_roots": 2, "refill_at": "surprise"}}
    assert rest == ["--seed", "-3"]


def test_overlay_merges_experiment_settings_key_by_key():
    from trainers.advanced import overlay

    base = {"oversample": 2, "eager_advanced": {"fill_with": "forks", "probe_roots": 2}}
    assert overlay(base, {"oversample": 1, "eager_advanced": "{probe_roots: 3}"}) == {
        "oversample": 1, "eager_advanced": {"fill_with": "forks", "probe_roots": 3}}
    assert overlay({"seed": 0}, {}) == {"seed": 0, "eager_advanced": None}
