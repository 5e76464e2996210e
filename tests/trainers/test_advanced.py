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
