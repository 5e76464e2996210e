"""The `eager-grpo` entry point under `accelerate launch` with two real CPU processes, plain and ZeRO-2.

Each process runs its own colocated engine on its half of the prompts; the reward function
(tests/trainers/helpers.rank_reward) writes what each process scored, and rank 0's
trainer_state.json holds the metrics gathered from both.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.trainers.helpers import label_of, rows

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

REPO = Path(__file__).resolve().parents[2]
PROMPTS_PER_RANK, G = 2, 4
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


def launch(accelerate_config: str, tiny_model: Path, tmp_path: Path, env: dict | None = None,
           **overrides) -> tuple[list[dict], dict, Path]:
    proc, records = run_recipe(accelerate_config, tiny_model, tmp_path, env, **overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    return scored_rows(records), state, tmp_path


def run_recipe(accelerate_config: str, tiny_model: Path, tmp_path: Path, env: dict | None = None,
               **overrides) -> tuple[Finished, Path]:
    """`accelerate launch -m recipes.grpo` on a recipe written into `tmp_path`, in its own session (process
    group id = the launcher's pid, for `left_behind`); returns the finished process and its records folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows(16)))
    recipe = {
        "model_name_or_path": str(tiny_model), "dtype": "float32", "dataset_name": str(data),
        "reward_funcs": ["tests.trainers.helpers.rank_reward"], "output_dir": str(tmp_path / "out"),
        "use_cpu": True, "bf16": False, "use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": 128,
        "rollout_generator": "eager", "eager_entropy_threshold": 4.0, "num_generations": G,
        "per_device_train_batch_size": PROMPTS_PER_RANK * G, "max_completion_length": 8, "max_steps": 2,
        "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "shuffle_dataset": False, "seed": 0, **overrides,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    records = tmp_path / "records"
    records.mkdir()
    # A launched run is a job of its own: not the rank, world or rendezvous port an in-process trainer of this
    # test session left in os.environ (TRL's colocated engine sets them), whose port this process still holds.
    inherited = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env = {**inherited, "EAGER_TEST_RECORD_DIR": str(records), "WANDB_DIR": str(tmp_path),
           "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions"),  # DeepSpeed's shm op, compiled once
           **(env or {})}
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--config_file", str(REPO / "recipes" / "accelerate" / accelerate_config),
           "-m", "recipes.grpo", "--config", str(tmp_path / "recipe.yaml")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run, its engine included
        out, err = proc.communicate()
    return Finished(proc.returncode, out, err, proc.pid), records


@dataclass(frozen=True)
class Finished:
    """A launched run that has ended; `pid` is also its process group's id."""

    returncode: int
    stdout: str
    stderr: str
    pid: int


def scored_rows(records: Path) -> list[dict]:
    """What `rank_reward` recorded, every process's rows in one list."""
    lines = [line for path in sorted(records.glob("rank*.jsonl")) for line in path.read_text().splitlines()]
    return [json.loads(line) for line in lines]


def check_two_ranks(scored: list[dict], state: dict) -> None:
    assert {r["world_size"] for r in scored} == {2}
    assert {r["rank"] for r in scored} == {0, 1}, "both processes must score their own rollouts"
    logs = [h for h in state["log_history"] if "loss" in h]
    assert len(logs) == 2
    for step, log in enumerate(logs):
        calls = {r["rank"]: r for r in scored if r["step"] == step}
        assert set(calls) == {0, 1}
        for rank, call in calls.items():
            assert len(call["prompts"]) == PROMPTS_PER_RANK * G  # each rank: its own prompts, whole groups
            own = range(rank * PROMPTS_PER_RANK, (rank + 1) * PROMPTS_PER_RANK)
            assert set(call["eager_group"]) <= set(own)
            assert all(answer == label_of(prompt) for prompt, answer in zip(call["prompts"], call["answer"]))
        used = sum(sum(call["eager_used"]) for call in calls.values())
        # Rank 0 logs metrics over both ranks' rows.
        assert log["eager/rows_used_frac"] == pytest.approx(used / (2 * PROMPTS_PER_RANK * G))
        assert log["eager/sequences_per_prompt_mean"] * 2 * PROMPTS_PER_RANK == pytest.approx(used)


def test_two_cpu_processes(tiny_model, tmp_path):
    scored, state, out = launch("cpu_2proc.yaml", tiny_model, tmp_path, report_to="wandb")
    check_two_ranks(scored, state)
    # W&B (offline): one run, from rank 0, carrying the generator and its parameters, grouped by them.
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    inspect = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
                              str(runs[0])], capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    config = json.loads(inspect.stdout)["config"]
    tag = "eager-G4-T1-entropy_threshold=4"
    assert config["rollout_generator"] == "eager" and config["eager_entropy_threshold"] == 4
    assert config["run_name"] == f"{tag}-seed0"
    # The group is not in `inspect`'s output; it is a field of the run record in the .wandb file.
    raw = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert re.search(re.escape(tag).encode() + rb"(?!-seed)", raw)


def test_two_cpu_processes_deepspeed_zero2(tiny_model, tmp_path):
    scored, state, _ = launch("cpu_2proc_zero2.yaml", tiny_model, tmp_path)
    check_two_ranks(scored, state)
