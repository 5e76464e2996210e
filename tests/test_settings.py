"""Every rollout setting is declared once (`rollout.EagerConfig`) and reachable from each surface that users set:
the trainer's config (`eager_<name>`) and eager-eval's flags (`--<name>`), with the same type, default and help,
or named in the surface's own table of settings it derives from something else."""

from __future__ import annotations

import dataclasses
from typing import get_type_hints

import pytest

from evaluation import config as eval_config
from rollout.config import TEST_TIME_DEFAULTS, TRAINING_DEFAULTS, EagerConfig, SettingError, field_default
from trainers import advanced
from trainers import config as trainer_config

ROLLOUT = {f.name: f for f in dataclasses.fields(EagerConfig)}


@pytest.mark.parametrize("surface", ["trainer", "eager-eval"])
def test_every_rollout_setting_is_reachable_or_derived_by_name(surface):
    if surface == "trainer":
        cls, prefix, derived, defaults = trainer_config.EagerGRPOConfig, "eager_", trainer_config.DERIVED, \
            TRAINING_DEFAULTS
    else:
        cls, prefix, derived, defaults = eval_config.EvalConfig, "", eval_config.DERIVED, TEST_TIME_DEFAULTS
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(derived) <= set(ROLLOUT), "a derived entry names no rollout setting"
    for name, source in ROLLOUT.items():
        if name in derived:
            assert derived[name], name
            continue
        if surface == "trainer" and name in advanced.ROLLOUT_KEYS:  # an experiment setting: a key of eager_advanced
            assert prefix + name not in fields, name
            assert advanced.default(name) == defaults.get(name, field_default(source)), name
            assert f"{name} (default {advanced.default(name)!r}): {source.metadata['help']}" in advanced.describe()
            continue
        mine = fields.get(prefix + name)
        assert mine is not None, f"{surface} cannot set rollout setting {name!r} and does not say why"
        assert field_default(mine) == defaults.get(name, field_default(source)), name
        assert mine.metadata["help"] == source.metadata["help"], name
        assert mine.type == get_type_hints(EagerConfig)[name], name


def test_trainer_and_yaml_keys_keep_their_names_or_say_where_they_went():
    fields = {f.name for f in dataclasses.fields(trainer_config.EagerGRPOConfig)}
    for name in ("eager_entropy_threshold", "eager_fork_mode", "eager_extra_cap", "eager_adapt_extra_cap",
                 "eager_stop_rule", "eager_signal_easy_k", "eager_pass_start_limit", "eager_pass_roots",
                 "eager_solved_min_correct", "eager_solved_min_incorrect", "eager_on_solved", "eager_branch_patience",
                 "eager_max_sequences", "eager_think_end_token", "eager_baseline", "eager_gold_column"):
        assert name in fields or name in advanced.OLD_KEYS, name


def test_the_trainer_builds_the_rollout_config_its_fields_describe(tmp_path):
    from tests.trainers.conftest import make_args

    args = make_args(tmp_path, rollout_generator="eager", eager_advanced={"stop_rule": "signal", "pass_roots": 2},
                     eager_entropy_threshold=0.7, max_completion_length=16, temperature=0.9)
    c = args.rollout_settings()
    assert (c.method, c.stop_rule, c.pass_roots, c.entropy_threshold) == ("eager", "signal", 2, 0.7)
    assert (c.max_new_tokens, c.temperature, c.max_sequences, c.online) == (16, 0.9, args.num_generations, True)


def test_eval_builds_the_rollout_config_its_flags_describe():
    cfg = eval_config.parse_args(["--model_name", "m", "--data_name", "d.jsonl", "--stop_rule", "signal",
                                  "--no_p99_floor", "--branch_patience", "7"])
    c = cfg.rollout_settings(max_new_tokens=10)
    assert (c.stop_rule, c.p99_floor, c.branch_patience, c.max_sequences, c.fork_mode) == (
        "signal", False, 7, 32, "top2")


@pytest.mark.parametrize(
    ("setting", "value", "trainer_label", "eval_label"),
    [
        ("pass_start_limit", float("inf"), "eager_advanced.pass_start_limit", None),  # finite on every surface
        ("branch_patience", 0, "eager_advanced.branch_patience", "--branch_patience"),
        ("extra_cap", -1, "eager_advanced.extra_cap", "--extra_cap"),
        ("signal_easy_k", 0, "eager_advanced.signal_easy_k", "--signal_easy_k"),
        ("stop_rule", "mixed", "eager_advanced.stop_rule", "--stop_rule"),
        ("entropy_threshold", -1.0, "eager_entropy_threshold", "--entropy_threshold"),
    ],
)
def test_one_validation_names_the_field_as_each_surface_spells_it(tmp_path, setting, value, trainer_label,
                                                                    eval_label):
    from tests.trainers.conftest import make_args

    with pytest.raises(SettingError) as err:
        EagerConfig(**{setting: value})
    assert str(err.value).startswith(f"EagerConfig.{setting}=")
    with pytest.raises(ValueError) as err:
        key = trainer_label.removeprefix("eager_advanced.")
        make_args(tmp_path, rollout_generator="eager",
                  **({"eager_advanced": {key: value}} if key != trainer_label else {trainer_label: value}))
    assert str(err.value).startswith(f"{trainer_label}=")
    if eval_label:
        with pytest.raises(ValueError) as err:
            eval_config.EvalConfig(model_name="m", data_name="d.jsonl", **{setting: value})
        assert str(err.value).startswith(f"{eval_label}=")


def test_run_tag_names_every_setting_that_differs(tmp_path):
    from tests.trainers.conftest import make_args

    base = make_args(tmp_path, rollout_generator="eager").run_tag
    tags = {base}
    for change in ({"stop_rule": "signal"}, {"pass_start_limit": 1.0}, {"pass_roots": 2}, {"baseline": "verdicts"},
                   {"extra_cap": 2}, {"signal_easy_k": 4}, {"allocation": "passes"}, {"drop_unused_rows": False}):
        tag = make_args(tmp_path, rollout_generator="eager", eager_advanced=change).run_tag
        assert tag not in tags, change
        tags.add(tag)
    for change in ({"eager_max_sequences": 3}, {"eager_fill_size": 2}, {"eager_answer_kind": "choice"}):
        tag = make_args(tmp_path, rollout_generator="eager", **change).run_tag
        assert tag not in tags, change
        tags.add(tag)
    assert base == "eager-G4-T1"


def test_eval_lists_experiment_settings_under_their_own_heading():
    usage_and_head, _, advanced = eval_config.build_parser().format_help().partition("\nadvanced:\n")
    head = usage_and_head.partition("\noptions:\n")[2]  # (the usage line lists every flag)
    assert "--fork_mode" in advanced and "--stop_rule" in advanced and "--fork_mode" not in head
    assert "--entropy_threshold" in head and "--max_sequences" in head and "--entropy_threshold" not in advanced
