"""EagerGRPOConfig: a drop-in GRPOConfig by default, and errors that say what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from tests.trainers.conftest import make_args
from tests.trainers.helpers import label_reward, rows

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_default_is_trl_parallel_and_needs_no_vllm(tmp_path):
    args = make_args(tmp_path, use_vllm=False)
    assert args.rollout_generator == "parallel" and not args.is_eager
    assert args.eager_budget == args.num_generations


def test_server_mode_is_accepted_and_names_trls_url(tmp_path):
    args = make_args(tmp_path, rollout_generator="eager", vllm_mode="server", vllm_server_port=8123)
    assert args.vllm_server_url == "http://0.0.0.0:8123"
    args = make_args(tmp_path, rollout_generator="eager", vllm_mode="server", vllm_server_base_url="http://gen:9000",
                     vllm_enable_sleep_mode=True)  # the server's business, not the rollout's
    assert args.vllm_server_url == "http://gen:9000"
    with pytest.raises(ValueError, match="vllm_enable_sleep_mode"):
        make_args(tmp_path, rollout_generator="eager", vllm_enable_sleep_mode=True)  # colocated: refused


def test_eager_config_valid(tmp_path):
    args = make_args(tmp_path, rollout_generator="eager", eager_max_sequences=3)
    assert args.is_eager and args.eager_budget == 3
    assert args.run_tag == "eager-G4-T1-max_sequences=3"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"rollout_generator": "beam"}, ["rollout_generator", "parallel", "eager_init"]),
        ({"use_vllm": False}, ["use_vllm=True"]),
        ({"loss_type": "grpo"}, ["loss_type", "dapo", "bnpo", "cispo", "dilute"]),
        ({"loss_type": "sapo"}, ["loss_type"]),
        ({"loss_type": "luspo"}, ["loss_type"]),
        ({"top_p": 0.9}, ["top_p=1.0", "temperature only"]),
        ({"top_k": 50}, ["top_k=0"]),
        ({"repetition_penalty": 1.1}, ["repetition_penalty=1.0"]),
        ({"eager_max_sequences": 5}, ["eager_max_sequences", "num_generations=4"]),
        ({"eager_advanced": {"fork_mode": "best"}}, ["eager_advanced.fork_mode", "resample"]),
        ({"eager_advanced": {"fork_mode": "recursion"}}, ["eager_advanced.fork_mode", "transformers", "vLLM"]),
        ({"eager_advanced": {"on_solved": "stop"}}, ["eager_advanced.on_solved", "finish", "abort"]),
        ({"eager_answer_kind": "code"}, ["eager_answer_kind", "math", "choice"]),
        ({"eager_advanced": {"solved_min_correct": 0}}, ["eager_advanced.solved_min_correct"]),
        ({"eager_entropy_threshold": -1.0}, ["eager_entropy_threshold"]),
        ({"eager_advanced": {"stop_rule": "mixed"}}, ["eager_advanced.stop_rule", "solved", "signal"]),
        ({"eager_advanced": {"baseline": "mean"}}, ["eager_advanced.baseline", "group", "verdicts"]),
        ({"eager_advanced": {"baseline": "verdicts"}, "rollout_generator": "eager_init"},
         ["eager_advanced.baseline", "rollout_generator"]),
        ({"eager_advanced": {"signal_easy_k": 0}}, ["eager_advanced.signal_easy_k"]),
        ({"eager_advanced": {"pass_start_limit": -0.5}}, ["eager_advanced.pass_start_limit"]),
        ({"eager_advanced": {"pass_roots": 0}}, ["eager_advanced.pass_roots"]),
        ({"eager_advanced": {"fil_with": "forks"}}, ["eager_advanced.fil_with", "no such setting", "fill_with"]),
        ({"eager_advanced": {"entropy_threshold": 1}}, ["eager_advanced.entropy_threshold", "eager_entropy_threshold: 1"]),
    ],
)
def test_bad_eager_settings_say_what_to_change(tmp_path, overrides, names):
    overrides = {"rollout_generator": "eager", **overrides}  # an override's own generator wins
    with pytest.raises(ValueError) as err:
        make_args(tmp_path, **overrides)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize("generator", ["parallel", "eager"])
def test_sleep_mode_refused_on_cpu_engine(tmp_path, generator):
    with pytest.raises(ValueError, match="vllm_enable_sleep_mode=False"):
        make_args(tmp_path, rollout_generator=generator, vllm_enable_sleep_mode=True)


def test_mask_safe_losses_accepted(tmp_path):
    for loss in ("dapo", "bnpo", "cispo", "dr_grpo"):
        assert make_args(tmp_path, rollout_generator="eager_init", loss_type=loss).loss_type == loss


def test_groups_must_not_straddle_processes(tmp_path, monkeypatch):
    from trainers import EagerGRPOConfig

    # Two processes of 2 rows each: TRL is content (4 rows in all), but a group of 4 would span both.
    monkeypatch.setattr(EagerGRPOConfig, "world_size", property(lambda self: 2))
    make_args(tmp_path, per_device_train_batch_size=2)  # parallel: TRL gathers groups across processes
    with pytest.raises(ValueError) as err:
        make_args(tmp_path, rollout_generator="eager", per_device_train_batch_size=2)
    for name in ("per_device_train_batch_size", "straddle", "num_generations=4"):
        assert name in str(err.value)
    make_args(tmp_path, rollout_generator="eager", per_device_train_batch_size=4)


def test_label_aware_refuses_a_dataset_without_gold(tmp_path, tiny_model):
    from trainers import EagerGRPOTrainer

    data = Dataset.from_list([{"prompt": r["prompt"], "solution": r["answer"]} for r in rows(4)])
    args = make_args(tmp_path, rollout_generator="eager")
    with pytest.raises(ValueError) as err:
        EagerGRPOTrainer(model=str(tiny_model), reward_funcs=label_reward, args=args, train_dataset=data)
    assert "'answer'" in str(err.value) and "eager_gold_column" in str(err.value)


def test_trainer_refuses_a_plain_grpo_config(tmp_path, tiny_model):
    from trl import GRPOConfig

    from trainers import EagerGRPOTrainer

    with pytest.raises(TypeError, match="EagerGRPOConfig"):
        EagerGRPOTrainer(model=str(tiny_model), reward_funcs=label_reward,
                         args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False))


def test_think_end_token_must_be_one_token():
    from transformers import AutoTokenizer

    from tests.trainers.helpers import TOKENIZER
    from trainers import EagerGRPOTrainer

    holder = type("T", (), {"_tokenizer": AutoTokenizer.from_pretrained(TOKENIZER)})()
    assert EagerGRPOTrainer._single_token_id(holder, "</think>") == holder._tokenizer.convert_tokens_to_ids("</think>")
    assert EagerGRPOTrainer._single_token_id(holder, None) is None
    with pytest.raises(ValueError, match="eager_think_end_token"):
        EagerGRPOTrainer._single_token_id(holder, "end of thinking")


@pytest.mark.parametrize("recipe", ["cpu_default.yaml", "qwen3_4b_aime.yaml"])
def test_recipes_parse_with_trl_parser(recipe):
    from trl import ModelConfig, TrlParser

    from recipes.grpo import GRPOScriptArguments
    from trainers import EagerGRPOConfig

    parser = TrlParser((GRPOScriptArguments, EagerGRPOConfig, ModelConfig))
    cpu = ["--use_cpu", "true", "--bf16", "false"] if recipe.startswith("qwen3") else []  # a GPU recipe, here
    script, args, model = parser.parse_args_and_config(
        args=["--config", str(RECIPES / recipe), "--eager_entropy_threshold", "1.5", *cpu])
    assert isinstance(args, EagerGRPOConfig)
    assert args.eager_entropy_threshold == 1.5  # the command line wins over the YAML
    assert args.rollout_generator in ("parallel", "eager_init", "eager_adapt", "eager")
    assert script.reward_funcs and model.model_name_or_path


def test_recipe_unknown_key_is_an_error(tmp_path):
    from trl import ModelConfig, TrlParser

    from recipes.grpo import GRPOScriptArguments
    from trainers import EagerGRPOConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES / "cpu_default.yaml").read_text() + "\neager_treshold: 2.0\n")
    with pytest.raises((ValueError, SystemExit)):
        TrlParser((GRPOScriptArguments, EagerGRPOConfig, ModelConfig)).parse_args_and_config(
            args=["--config", str(bad)])


def test_accelerate_configs():
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (RECIPES / "accelerate").glob("*.yaml")}
    assert set(configs) >= {"cpu", "single_gpu", "multi_gpu", "zero2", "zero3", "cpu_2proc", "cpu_2proc_zero2"}
    # Two real CPU processes: MULTI_GPU or DEEPSPEED without use_cpu (MULTI_CPU and use_cpu run only one).
    for name in ("cpu_2proc", "cpu_2proc_zero2"):
        assert configs[name]["num_processes"] == 2 and configs[name]["use_cpu"] is False
        assert configs[name]["mixed_precision"] == "no"
    assert configs["cpu_2proc"]["distributed_type"] == "MULTI_GPU"
    assert configs["cpu_2proc_zero2"]["deepspeed_config"]["zero_stage"] == 2
    assert configs["zero3"]["deepspeed_config"]["zero_stage"] == 3


@pytest.mark.parametrize(
    "overrides, drops",
    [
        ({}, True),
        ({"eager_advanced": {"drop_unused_rows": False}}, False),
        ({"loss_type": "dr_grpo"}, False),  # divides by the row count
        ({"loss_type": "bnpo"}, False),  # divides by the tokens of the micro-batch it is given
        # gradient accumulation: the kept rows are split over the slices unevenly (trainer tests)
        ({"steps_per_generation": 2, "per_device_train_batch_size": 4}, True),
        ({"rollout_generator": "parallel"}, False),  # TRL's own: nothing leaves
        ({"rollout_generator": "parallel", "dynamic_sampling": True}, True),
    ],
)
def test_when_unused_rows_leave_the_loss_batch(tmp_path, overrides, drops):
    args = make_args(tmp_path, **{"rollout_generator": "eager_init", **overrides})
    assert args.drops_unused_rows is drops


def test_rows_kept_match_the_busiest_process():
    import torch

    from trainers.loss_batch import rows_to_keep

    used = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    assert rows_to_keep(used, 3).tolist() == used.tolist()  # the busiest process: its used rows only
    # A process with 3 used rows when another uses 5 keeps its first 2 unused rows too (they carry no loss).
    assert rows_to_keep(used, 5).tolist() == [True, True, True, True, False, True]
    assert rows_to_keep(used, 6).all()


def test_rows_kept_are_the_busiest_processes_with_a_row_per_slice():
    from trainers.loss_batch import rows_each_process_keeps

    assert rows_each_process_keeps([3, 5], slices=1, rows=16) == 5  # the busiest process
    assert rows_each_process_keeps([0, 0], slices=1, rows=16) == 1  # a step without signal keeps one row
    assert rows_each_process_keeps([3, 5], slices=4, rows=16) == 5  # no padding to whole slices
    assert rows_each_process_keeps([2, 1], slices=4, rows=16) == 4  # but a row for every slice
    assert rows_each_process_keeps([15], slices=4, rows=16) == 15


def test_accumulation_slices_differ_by_at_most_one_row():
    import torch

    from trainers.loss_batch import split_rows

    batch = {"completion_ids": torch.arange(13).view(13, 1), "advantages": torch.arange(13.0),
             "num_items_in_batch": torch.tensor(40.0), "tool_mask": None}
    parts = split_rows(batch, 8)
    assert [len(p["completion_ids"]) for p in parts] == [1, 2, 1, 2, 2, 1, 2, 2]
    assert torch.cat([p["advantages"] for p in parts]).tolist() == batch["advantages"].tolist()  # every row, once
    assert all(p["num_items_in_batch"] is batch["num_items_in_batch"] and p["tool_mask"] is None for p in parts)
    with pytest.raises(ValueError, match="3 rows cannot fill 4"):
        split_rows({"advantages": torch.zeros(3)}, 4)


def test_oversample_hands_more_prompts_and_keeps_the_rows_a_step_trains_on(tmp_path):
    import dataclasses

    from trainers import EagerGRPOConfig

    args = make_args(tmp_path, rollout_generator="eager", oversample=2.0, eager_screen_roots=2,
                     per_device_train_batch_size=16)
    assert (args.per_device_train_batch_size, args.rows_per_step) == (32, 16)  # 8 prompts handed, 16 rows
    assert args.rollout_settings().oversample == 2.0
    computed = ("generation_batch_size", "steps_per_generation")  # TRL refuses both set; it derives them
    again = EagerGRPOConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args)
                               if f.init and f.name not in computed})
    assert again.per_device_train_batch_size == 32  # rebuilt from its own fields: not scaled twice
    # Parallel too, with dynamic sampling to pick the step's groups (DAPO); without it, nothing would pick.
    parallel = make_args(tmp_path, rollout_generator="parallel", per_device_train_batch_size=16, oversample=2.0,
                         dynamic_sampling=True)
    assert (parallel.per_device_train_batch_size, parallel.rows_per_step) == (32, 16)
    with pytest.raises(ValueError, match="oversample=2.0 with rollout_generator='parallel'.*dynamic_sampling: true"):
        make_args(tmp_path, rollout_generator="parallel", per_device_train_batch_size=16, oversample=2.0)


def test_oversample_must_hand_whole_groups_and_a_loss_that_sees_every_row_is_refused(tmp_path):
    with pytest.raises(ValueError, match="oversample=1.4.*whole multiple of num_generations=4"):
        make_args(tmp_path, rollout_generator="eager", oversample=1.4, per_device_train_batch_size=16)
    with pytest.raises(ValueError, match="oversample=2.0.*dr_grpo divides by every row handed"):
        make_args(tmp_path, rollout_generator="eager", oversample=2.0, eager_screen_roots=2,
                  loss_type="dr_grpo")


@pytest.mark.parametrize("generator", ["parallel", "eager"])
@pytest.mark.parametrize("overrides, field", [
    ({"loss_type": "grpo"}, "loss_type"),  # averages over rows: a row that leaves changes the others' loss
    ({"loss_type": "dr_grpo"}, "loss_type"),
    ({"loss_type": "bnpo"}, "loss_type"),  # its normaliser counts the micro-batch's tokens: a row that leaves moves it
    ({"beta": 0.04}, "beta"),  # a flat row still carries the KL term
    ({"entropy_coef": 0.01}, "entropy_coef"),
    ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
    ({"eager_advanced": {"drop_unused_rows": False}}, "eager_advanced.drop_unused_rows"),
    ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation"),
])
def test_dynamic_sampling_is_refused_where_it_cannot_act(tmp_path, generator, overrides, field):
    with pytest.raises(ValueError, match=f"dynamic_sampling=True with {field}="):
        make_args(tmp_path, rollout_generator=generator, dynamic_sampling=True, **overrides)
    make_args(tmp_path, rollout_generator=generator, dynamic_sampling=False,
              **{k: v for k, v in overrides.items() if generator == "parallel" or k != "loss_type"})


def test_dynamic_sampling_is_refused_with_the_verdict_baseline(tmp_path):
    with pytest.raises(ValueError, match="dynamic_sampling=True with eager_advanced.baseline='verdicts'"):
        make_args(tmp_path, rollout_generator="eager", eager_advanced={"allocation": "passes", "baseline": "verdicts"},
                  dynamic_sampling=True)


def test_gpu_recipe_pays_for_no_masked_rows():
    """The GPU recipe accumulates gradients over 8 slices: the rows that stay are split over them unevenly, none
    masked or padded (the slices themselves: test_grpo_steps' accumulated run)."""
    import yaml

    from trainers import EagerGRPOConfig

    recipe = yaml.safe_load((RECIPES / "qwen3_4b_aime.yaml").read_text())
    fields = {k: v for k, v in recipe.items() if k in EagerGRPOConfig.__dataclass_fields__ and k not in
              ("bf16", "gradient_checkpointing", "dtype", "attn_implementation", "model_name_or_path")}
    args = EagerGRPOConfig(**{**fields, "use_cpu": True, "bf16": False})
    assert args.steps_per_generation == 8 and args.drops_unused_rows and args.dynamic_sampling
    from trainers.loss_batch import rows_each_process_keeps

    # 13 rows with a signal: 13 kept over the 8 slices (the trainer's uneven split), none padded
    assert rows_each_process_keeps([13], args.steps_per_generation, args.per_device_train_batch_size) == 13


def test_evaluation_rollout_settings_are_checked_before_training(tmp_path):
    """Evaluation groups may be smaller than training's: a fill size they cannot hold fails at once, not at the
    first evaluation after hours of training."""
    with pytest.raises(ValueError, match="eager_fill_size"):
        make_args(tmp_path, rollout_generator="eager", eager_fill_size=4, num_generations_eval=2,
                  eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4)
    make_args(tmp_path, rollout_generator="eager", eager_fill_size=4)  # no evaluation: fine


def test_signal_rows_keep_groups_whose_rewards_differ():
    """DAPO's dynamic sampling keeps a group whose rewards differ; an all-right, all-wrong or one-row group leaves,
    and an unused or unscored row never stays."""
    import torch

    from trainers.loss_batch import signal_rows

    nan = float("nan")
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, nan, 0.5, nan, 1.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    used = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=torch.bool)
    assert signal_rows(rewards, groups, used).tolist() == [
        True, True,  # right and wrong
        False, False,  # all right
        False, False,  # all wrong
        False, False,  # one scored row
        False, False,  # one scored row (the other unscorable)
        False, False,  # the wrong row is unused
    ]


def test_step_groups_take_signal_first_in_batch_order():
    from trainers.loss_batch import step_groups

    assert step_groups([False, True, False, True, True], 2) == [False, True, False, True, False]
    # Fewer groups with a signal than the step holds: flat ones fill it, in batch order (they count in the
    # normaliser, as they would in a step of that many groups, and add no gradient).
    assert step_groups([False, True, False, False], 3) == [True, True, True, False]
    assert step_groups([True, False], 4) == [True, True]


@pytest.mark.parametrize("recipe", ["cpu_default.yaml", "qwen3_4b_aime.yaml"])
@pytest.mark.parametrize("generator", ["eager_init", "eager_adapt"])
def test_a_label_free_generator_on_a_shipped_recipe_says_in_one_line_what_to_change(recipe, generator):
    from recipes.grpo import parse_args

    cpu = ["--use_cpu", "true", "--bf16", "false"] if recipe.startswith("qwen3") else []  # a GPU recipe, here
    argv = ["--config", str(RECIPES / recipe), "--rollout_generator", generator, "--output_dir", "unused", *cpu]
    with pytest.raises(ValueError, match=r"oversample=2.*rollout_generator=.*add --oversample 1\.$") as err:
        parse_args(argv)
    assert "\n" not in str(err.value)
    _, args, _ = parse_args([*argv, "--oversample", "1"])  # the change it names is enough
    assert args.rollout_generator == generator and args.oversample == 1


def test_every_setting_with_choices_refuses_another_value_by_name(tmp_path):
    """One check reads the choices each field declares (no hand-written list beside it to fall out of step)."""
    from dataclasses import fields

    from trainers import EagerGRPOConfig

    with_choices = [f.name for f in fields(EagerGRPOConfig) if f.metadata.get("choices") and
                    (f.name.startswith("eager_") or f.name in ("rollout_generator", "bad_rows", "loss_normalizer"))]
    assert {"rollout_generator", "bad_rows", "loss_normalizer", "eager_answer_kind"} <= set(with_choices)
    for name in with_choices:
        with pytest.raises(ValueError, match=rf"^{name}='nonsense': choose one of"):
            make_args(tmp_path, **{name: "nonsense"})


def test_a_setting_that_does_nothing_here_is_named_once_with_the_reason(tmp_path, caplog):
    import logging

    from trainers import config as trainer_config

    trainer_config._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="trainers.config"):
        make_args(tmp_path, rollout_generator="eager", eager_fill_size=3,
                  eager_advanced={"allocation": "passes", "max_retries": 3, "fill_with": "forks"})
        make_args(tmp_path, rollout_generator="eager", eager_advanced={"allocation": "passes"}, eager_fill_size=3)
        make_args(tmp_path, rollout_generator="parallel", eager_entropy_threshold=1.0, eager_gold_column="label")
        make_args(tmp_path, rollout_generator="parallel", eager_entropy_threshold=1.0, eager_gold_column="label")
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "eager_fill_size=3 does nothing here: it acts in the screen allocation (label-aware eager, allocation=screen) "
        "only.",
        "eager_advanced.fill_with='forks' does nothing here: it acts in the screen allocation (label-aware eager, "
        "allocation=screen) only.",
        "eager_entropy_threshold=1.0 does nothing here: rollout_generator=parallel is TRL's own sampling.",
    ]  # max_retries acts under passes; the gold column names the accuracy rewards' answers under any generator
