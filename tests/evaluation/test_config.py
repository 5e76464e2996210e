"""The command line: the seed's flags, checked with messages that say what to change."""

from __future__ import annotations

import pytest

from evaluation.config import EvalConfig, build_parser, parse_args

SEED_ARGS = [
    "--model_name", "openai/gpt-oss-20b", "--data_name", "opencompass/AIME2025", "--temperature", "0.6",
    "--entropy_threshold", "2.2", "--max_sequences", "32", "--experiments", "eager", "--output_dir", "out",
    "--seed", "55", "--dtype", "bfloat16", "--max_model_len", "32768", "--gpu_memory_utilization", "0.8",
    "--device", "cuda",
]


def test_the_seeds_command_line_parses():
    cfg = parse_args(SEED_ARGS)
    assert (cfg.model_name, cfg.data_name, cfg.experiments, cfg.max_sequences) == (
        "openai/gpt-oss-20b", "opencompass/AIME2025", "eager", 32)
    assert (cfg.temperature, cfg.entropy_threshold, cfg.seed, cfg.dtype) == (0.6, 2.2, 55, "bfloat16")
    assert cfg.fork_mode == "top2" and cfg.chat_template is True and cfg.enable_thinking is None


def test_extras_and_booleans():
    cfg = parse_args(["--model_name", "m", "--data_name", "d.jsonl", "--limit", "5", "--max_new_tokens", "64",
                      "--fork_mode", "resample", "--backend", "hf", "--overwrite", "--no_chat_template",
                      "--enable_thinking", "false", "--question_column", "Problem", "--answer_column", "Answer"])
    assert (cfg.limit, cfg.max_new_tokens, cfg.fork_mode, cfg.backend) == (5, 64, "resample", "hf")
    assert cfg.overwrite is True and cfg.chat_template is False and cfg.enable_thinking is False
    assert cfg.experiment_list() == ["parallel", "eager_init", "eager_adapt", "eager"]


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--temperature", "0"], "temperature"),
        (["--fork_mode", "best"], "fork_mode"),
        (["--max_sequences", "0"], "max_sequences"),
        (["--experiments", "everything"], "experiments"),
        (["--backend", "tgi"], "backend"),
    ],
)
def test_bad_flags_exit_2_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--model_name", "m", "--data_name", "d.jsonl", *flags])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_every_flag_has_help():
    for action in build_parser()._actions:
        if action.dest != "help":
            assert action.help, action.dest
    with pytest.raises(ValueError, match="temperature"):
        EvalConfig(model_name="m", data_name="d", temperature=0.0)
