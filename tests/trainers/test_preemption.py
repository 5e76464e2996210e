"""What a cluster does to a training run: SIGKILL mid-step, then --resume_from_checkpoint; a vLLM server that dies.

The kill is deterministic: the trainer's test-only hook (`trainers.cluster.TEST_KILL_ENV`) sends its own
process SIGKILL in a fixed step, once that step's rollouts are scored and before its update; no timer races the
run. The server dies at a fixed point too: the rollout engine's first step in a fixed training step stops it.
On CPU the server's NCCL weight push is replaced as in test_server_mode.py (tests/trainers/server_sync.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from datasets import Dataset

from recipes.serve import LocalServer, free_port
from tests.trainers import server_sync
from tests.trainers.conftest import make_args, release
from tests.trainers.helpers import build_tiny_model, label_grade, label_reward, rows
from tests.trainers.test_launch import run_recipe, scored_rows
from trainers.cluster import TEST_KILL_ENV

pytestmark = pytest.mark.slow  # launched training runs and a server: the full run only

STEPS, KILLED_IN = 3, 2  # checkpoints after every step; killed in step 2, so checkpoint-1 is the last
RUN = dict(max_steps=STEPS, save_strategy="steps", save_steps=1)


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-untied", tied=False)


@pytest.fixture(scope="module")
def server(untied_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(str(untied_model), free_port(), log=log, max_model_len=256, dtype="float32") as srv:
        yield srv


def left_behind(group: int) -> list[str]:
    """Processes still alive in the process group `group` (a launched run's session), by command line."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return alive


def gone(group: int, wait_s: float = 30.0) -> bool:
    """Whether the process group empties within `wait_s` (a child that watches for its parent's death may take a
    moment to exit; one that stays is a process left behind)."""
    deadline = time.monotonic() + wait_s
    while left_behind(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def rollouts(records: Path, steps: set[int]) -> dict[int, list]:
    """Per training step (TRL's global_step while it ran: 0-based), the prompts and completions it scored."""
    return {r["step"]: (r["prompts"], r["completion_ids"]) for r in scored_rows(records) if r["step"] in steps}


def train_logs(out: Path) -> list[dict]:
    return [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]


def check_kill_and_resume(model: Path, tmp_path: Path, env: dict | None = None, **overrides) -> None:
    """A run killed in step 2 and resumed from checkpoint-1 generates, in steps 2 and 3, exactly the rollouts of
    an uninterrupted run (same prompts, same tokens), and its counters go on from the checkpoint."""
    settings = {**RUN, **overrides}
    straight, straight_records = run_recipe("cpu.yaml", model, tmp_path / "straight", env, **settings)
    assert straight.returncode == 0, straight.stderr[-5000:]
    out = tmp_path / "killed" / "out"
    killed, killed_records = run_recipe("cpu.yaml", model, tmp_path / "killed", {**(env or {}),
                                        TEST_KILL_ENV: str(KILLED_IN)}, **settings)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr + killed.stdout, killed.stderr[-3000:]
    assert gone(killed.pid), left_behind(killed.pid)  # no engine (or anything else) outlives the killed run
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()
    assert set(rollouts(killed_records, {0, 1})) == {0, 1}  # it did generate step 2 before it died

    resumed, resumed_records = run_recipe("cpu.yaml", model, tmp_path / "resumed", env, output_dir=str(out),
                                          resume_from_checkpoint=str(out / "checkpoint-1"), **settings)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert rollouts(resumed_records, {1, 2}) == rollouts(straight_records, {1, 2})
    assert rollouts(killed_records, {1}) == rollouts(straight_records, {1})
    want, got = train_logs(tmp_path / "straight" / "out"), train_logs(out)
    assert [h["step"] for h in got] == [1, 2, 3]
    for key in ("eager/rollout_tokens", "eager/rollout_tokens_cumulative"):
        assert [h[key] for h in got] == [h[key] for h in want], key
    seconds = [h["eager/train_wall_s"] for h in got]
    assert seconds == sorted(seconds) and seconds[0] > 0  # the resumed steps count on from step 1's seconds


def test_a_run_killed_mid_step_resumes_with_the_rollouts_and_counters_of_an_uninterrupted_run(tiny_model, tmp_path):
    check_kill_and_resume(tiny_model, tmp_path)


def test_a_server_run_killed_mid_step_resumes_the_same_way(server, untied_model, tmp_path):
    check_kill_and_resume(untied_model, tmp_path, {"EAGER_TEST_SERVER_SYNC": str(tmp_path / "pushed")},
                          vllm_mode="server", vllm_server_base_url=server.url)
    assert server.proc.poll() is None  # the server is the user's: the killed run leaves it serving


def test_a_server_that_dies_mid_step_names_itself_and_the_checkpoint_and_the_run_resumes(
        untied_model, tmp_path, monkeypatch):
    """On its own server (the test stops it), then on a new one at the same port."""
    port = free_port()
    with LocalServer(str(untied_model), port, log=tmp_path / "first.log", max_model_len=256, dtype="float32") as server:
        check_server_death(server, port, untied_model, tmp_path, monkeypatch)


def check_server_death(server: LocalServer, port: int, untied_model: Path, tmp_path: Path, monkeypatch) -> None:
    from trl.generation.vllm_client import VLLMClient

    from rollout.server_engine import ServerEngine, ServerError
    from trainers import EagerGRPOTrainer

    for name, method in server_sync.replacements(tmp_path / "pushed").items():
        monkeypatch.setattr(VLLMClient, name, method)
    args = make_args(tmp_path / "out", vllm_mode="server", vllm_server_base_url=server.url,
                     rollout_generator="eager", **RUN)

    def trainer():
        return EagerGRPOTrainer(model=str(untied_model), reward_funcs=label_reward, args=args,
                                train_dataset=Dataset.from_list(rows(16)), verifier=label_grade)

    first, engine_step = trainer(), ServerEngine.step

    def step_then_die(engine):  # the test hook: the server dies at the first engine step of step 2's rollout
        if first.state.global_step == KILLED_IN - 1 and server.proc.poll() is None:
            server.stop()
        return engine_step(engine)

    monkeypatch.setattr(ServerEngine, "step", step_then_die)
    try:
        with pytest.raises(ServerError) as failed:
            first.train()
    finally:
        release(first)
    message = str(failed.value)
    assert server.url in message and f"training step {KILLED_IN}" in message
    assert str(tmp_path / "out" / "checkpoint-1") in message and "--resume_from_checkpoint" in message
    assert not (tmp_path / "out" / f"checkpoint-{KILLED_IN}").exists()

    monkeypatch.setattr(ServerEngine, "step", engine_step)
    with LocalServer(str(untied_model), port, log=tmp_path / "again.log", max_model_len=256, dtype="float32"):
        server_sync.SYNCS.clear()
        resumed = trainer()
        try:
            resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))
            assert resumed.state.global_step == STEPS
            assert len(server_sync.SYNCS) == STEPS - 1  # the weights went to the new server before its first rollout
        finally:
            release(resumed)
