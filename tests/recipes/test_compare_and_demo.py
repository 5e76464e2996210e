"""eager-compare on real offline W&B runs, and the demo's summary and plot from a run's trainer_state.json."""

import json
import os
import subprocess
import sys

import pytest

from recipes import compare, demo


def _offline_run(root, name: str, generator: str, per_step_tokens: int) -> None:
    code = f"""
import wandb
run = wandb.init(project="eager-rl", group="g1", name={name!r}, dir={str(root)!r}, mode="offline",
                 config={{"rollout_generator": {generator!r}}})
cum = 0
for step in range(4):
    cum += {per_step_tokens}
    run.log({{"train/eager/rollout_tokens_cumulative": cum, "train/reward": 0.1 * step,
             "train/eager/frac_with_signal": 0.5, "train/eager/train_wall_s": cum / 100}})
run.finish()
"""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)


@pytest.mark.slow
def test_compare_reads_offline_runs_on_the_token_axis(tmp_path, capsys):
    _offline_run(tmp_path, "par", "parallel", 300)
    _offline_run(tmp_path, "eag", "eager", 100)
    out = tmp_path / "cmp.png"
    compare.main([str(tmp_path / "wandb"), "--out", str(out)])
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if " | " in line}
    assert rows["par"][1:5] == ["g1", "parallel", "4", "1200"]
    assert rows["eag"][1:5] == ["g1", "eager", "4", "400"]
    assert float(rows["par"][5]) == 12.0 and float(rows["eag"][5]) == 4.0  # training seconds
    assert out.stat().st_size > 1000


def test_demo_summary_time_split_and_plot(tmp_path, capsys):
    runs = {}
    for gen, tokens, gen_s in (("parallel", 3000.0, 4.0), ("eager", 1000.0, 2.0)):
        d = tmp_path / gen
        d.mkdir()
        history = [{"step": s, "eager/rollout_tokens": tokens, "eager/rollout_tokens_cumulative": tokens * s,
                    "eager/frac_with_signal": 0.25 * s, "eager/sequences_per_prompt_mean": 4.0,
                    "eager/rows_trained": 8.0 * s, "eager/fork_rows_frac": 0.5 if gen == "eager" else 0.0,
                    "eager/moved_rows_frac": 0.25 if gen == "eager" else 0.0,
                    "eager/time_generation_s": gen_s, "eager/time_scoring_s": 0.5,
                    "eager/train_wall_s": (gen_s + 1.5) * s} for s in (1, 2)]
        (d / "trainer_state.json").write_text(json.dumps({"log_history": history + [{"step": 2, "loss": 0}]}))
        runs[gen] = demo.summarize(gen, d, 12.0, [(0.0, 0.0, 0.3), (tokens * 2, (gen_s + 1.5) * 2, 0.4)])
    assert runs["eager"]["rollout_tokens"] == 2000.0 and runs["eager"]["frac_with_signal"] == 0.375
    assert runs["eager"]["train_s"] == 7.0 and runs["eager"]["generation_s"] == 4.0
    assert runs["eager"]["scoring_s"] == 1.0 and runs["eager"]["optimisation_s"] == 2.0
    assert runs["eager"]["rows_trained"] == 12.0 and runs["eager"]["fork_rows_frac"] == 0.5
    assert runs["eager"]["moved_rows_frac"] == 0.25
    # parallel (the first) trained 11 s; eager is read there on its curve: 0.3 at 0 s, 0.5 at 22 s -> 0.4 at 11 s
    demo.report(list(runs.values()), {"parallel": [(0, 0, 0.3), (6000, 11, 0.4)],
                                      "eager": [(0, 0, 0.3), (2000, 22, 0.5)]}, tmp_path, problems=400)
    text = capsys.readouterr().out
    assert runs["eager"]["accuracy_at_equal_seconds"] == pytest.approx(0.4)
    se = (0.4 * 0.6 / 400) ** 0.5
    assert f"eager_minus_parallel=+0.000 +- {2 ** 0.5 * se:.3f}" in text
    assert "_ratio=" not in text  # no ratio that reads as a loss without a word
    assert (tmp_path / "accuracy_vs_seconds.png").stat().st_size > 1000
    assert json.loads((tmp_path / "comparison.json").read_text())["runs"][1]["generator"] == "eager"


def test_demo_progress_prints_one_line_per_logged_step(capsys):
    line = ("{'loss': '0.1', 'reward': '0.5', 'eager/frac_with_signal': '0.75', 'eager/rows_used_frac': '0.5', "
            "'eager/rollout_tokens_cumulative': '1234', 'eager/train_wall_s': '3.25'}\n")  # as transformers prints
    demo._progress("eager", line)
    demo._progress("eager", "INFO 12-03 vllm: something the log keeps\n")
    demo._progress("eager", "{'train_runtime': '10.0', 'eager/train_wall_s': '12.5'}\n")  # the run's summary
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[eager]    3.2 s  reward 0.500  signal 0.75  rows used 0.50  tokens 1,234"]


def test_demo_curve_scores_every_checkpoint_and_the_final_model(tmp_path):
    history = [{"step": s, "eager/rollout_tokens": 10.0, "eager/rollout_tokens_cumulative": 10.0 * s,
                "eager/train_wall_s": 2.0 * s} for s in (1, 2, 3)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (tmp_path / "checkpoint-2").mkdir()

    class Scorer:
        def score(self, path):
            return type("A", (), {"mean": {"checkpoint-2": 0.4}.get(path.name, 0.5)})

    assert demo.curve(Scorer(), tmp_path, 0.3) == [(0.0, 0.0, 0.3), (20.0, 4.0, 0.4), (30.0, 6.0, 0.5)]


def test_demo_checks_every_generator_before_the_first_run(tmp_path):
    """A generator the recipe cannot run fails before any training, with the generator and the field named."""
    cfg = demo.DemoConfig(output_dir=str(tmp_path))
    demo.check_runs(cfg, tmp_path / "model", tmp_path / "train.jsonl")  # the default race: fine
    cfg.generators = list(demo.GENERATORS)  # every entry, experiment settings passed as --eager_advanced
    demo.check_runs(cfg, tmp_path / "model", tmp_path / "train.jsonl")
    cfg.generators = ["parallel", "eager_init"]
    with pytest.raises(SystemExit, match="--generators eager_init: choose among .*parallel_dynamic_8x8"):
        demo.check_runs(cfg, tmp_path / "model", tmp_path / "train.jsonl")
