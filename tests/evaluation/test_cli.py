"""eager-eval and eager-recap end to end on a tiny random model and a shared data file.

The `all` run goes through the real vLLM engine; the kill -9 run uses the transformers
backend (starts in seconds). Runs are interrupted at a known prompt: a test-only environment
variable makes eager-eval stop itself (SIGSTOP) after writing it, and the test waits for the stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from evaluation import recap
from evaluation.cli import main
from evaluation.runner import TEST_STOP_AFTER_ENV

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

REPO = Path(__file__).resolve().parents[2]


def eval_cmd() -> list[str]:
    script = Path(sys.executable).parent / "eager-eval"  # the console script, when the project is installed
    return [str(script)] if script.exists() else [sys.executable, "-m", "evaluation.cli"]


def eval_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name", str(model), "--data_name", str(data), "--output_dir", str(out), "--max_model_len", "1024",
        "--temperature", "0.6", "--seed", "7", *extra,
    ]


def results(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def records(data: dict) -> list[dict]:
    return data.get("entropy-aware-generations", data.get("default-generations"))


@pytest.fixture(scope="module")
def all_run(tiny_model, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run1"
    args = eval_args(tiny_model, shared_data / "aime_2025.jsonl", out, "--experiments", "all", "--limit", "3",
                     "--max_sequences", "4", "--max_new_tokens", "24", "--entropy_threshold", "2.95")
    proc = subprocess.run(eval_cmd() + args, cwd=REPO, capture_output=True, text=True, timeout=400)
    return out, args, proc


def test_all_experiments_complete(all_run):
    out, _, proc = all_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = results(out)
    assert sorted(files) == sorted([
        "run1_default_results.json", "run1_aware_results__th2.95.json",
        "run1_aware_more_budget_results__th2.95.json", "run1_aware_easy_more_budget_results__th2.95.json",
    ])
    for name, data in files.items():
        assert data["status"]["state"] == "COMPLETED", name
        assert [r["index"] for r in records(data)] == [0, 1, 2], name
        for key in ("avg_acc", "pass_at_1", "cons_at_max"):
            assert key in data["results"]
        for r in records(data):
            seqs = r["tree"]["sequences"]
            assert r["tokens_generated"] == sum(len(s["token_ids"]) - s["n_inherited"] for s in seqs)
            assert r["generated_sequences"] == len(r["generations"]) == len(r["entropies"]) == len(seqs)
            assert all(len(e) == len(s["token_ids"]) for e, s in zip(r["entropies"], seqs, strict=True))
    parallel, init = files["run1_default_results.json"], files["run1_aware_results__th2.95.json"]
    assert all(r["generated_sequences"] == 4 for r in records(parallel))
    assert all(1 <= r["generated_sequences"] <= 4 for r in records(init))
    for name in ("run1_aware_more_budget_results__th2.95.json", "run1_aware_easy_more_budget_results__th2.95.json"):
        phase2 = files[name]
        used = sum(r["generated_sequences"] for r in records(init))
        assert phase2["extra"]["budget_plan"]["saved_budget"] == 3 * 4 - used
        assert phase2["data"]["eager_init_run"] == init["extra"]["run_id"]
        for before, after in zip(records(init), records(phase2), strict=True):  # eager_init's sequences stay first
            assert after["generations"][: before["generated_sequences"]] == before["generations"]
    assert "| parallel |" in proc.stdout and "Pass@k" in proc.stdout  # the recap table at the end


def test_recap_prints_a_table_and_writes_plots(all_run, capsys):
    out, _, _ = all_run
    assert recap.main([str(out), "--plots_dir", str(out / "figs")]) == 0
    printed = capsys.readouterr().out
    for header in ("Pass@k", "Cons@k", "PassRate", "#T", "#S", "LowestCentroid"):
        assert header in printed
    assert sum(line.startswith("| eager") for line in printed.splitlines()) == 3
    pngs = sorted((out / "figs").glob("*.png"))
    assert [p.name for p in pngs][-1] == "pass_at_k_vs_tokens.png"
    assert any(p.name.startswith("entropy_trace_eager_init") for p in pngs)
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_running_again_changes_nothing(all_run):
    out, args, _ = all_run
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert main(args) == 0  # everything is complete: no engine is even built
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before


def start_stopping_after(args: list[str], n: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start eager-eval with the test-only hook that makes it SIGSTOP itself after writing its n-th prompt.

    Its stderr goes to a temporary file (`stderr_tail` reads it): a pipe nobody reads while the
    test waits could fill up and block the child before its stop point.
    """
    env = {**(env or os.environ), TEST_STOP_AFTER_ENV: str(n)}
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(eval_cmd() + args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
                            preexec_fn=_default_sigint)
    proc.log = log
    return proc


def _default_sigint() -> None:
    """Give the child SIGINT's default disposition, so Python turns Ctrl-C into KeyboardInterrupt.

    A command run in the background by a non-interactive shell (as a CI runner may run the suite)
    inherits SIGINT *ignored*, and Python keeps an ignored SIGINT ignored: the child's Ctrl-C
    would do nothing, and the run would finish (a fresh-clone run failed with `assert 0 == 130`).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stderr_tail(proc: subprocess.Popen, chars: int = 3000) -> str:
    proc.log.seek(0)
    return proc.log.read()[-chars:]


def wait_until_stopped(proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Block until the child has stopped itself (a wait on the process, not a poll of its files).

    The timer only guards against a hang: it kills the child, and the test fails with its stderr.
    """
    guard = threading.Timer(timeout_s, proc.kill)
    guard.start()
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns on a stop without reaping the child
    finally:
        guard.cancel()
    if not os.WIFSTOPPED(status):
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
        raise AssertionError(f"eager-eval ended ({proc.returncode}) before its stop point:\n{stderr_tail(proc)}")


def _interrupt(args: list[str], after: int, sig: int) -> subprocess.Popen:
    """Run eager-eval until it has written `after` more prompts, then send `sig` (and let it go on)."""
    proc = start_stopping_after(args, after)
    wait_until_stopped(proc)
    os.kill(proc.pid, sig)  # SIGINT stays pending while the child is stopped ...
    os.kill(proc.pid, signal.SIGCONT)  # ... and is handled as soon as it runs again
    proc.wait(timeout=120)
    return proc


def test_kill_9_and_ctrl_c_then_resume_give_every_prompt_exactly_once(tiny_model, shared_data, tmp_path):
    out = tmp_path / "killed"
    args = eval_args(tiny_model, shared_data / "gsm8k_test.jsonl", out, "--experiments", "eager_init",
                     "--backend", "hf", "--limit", "6", "--max_sequences", "2", "--max_new_tokens", "24",
                     "--entropy_threshold", "2.95", "--prompt_batch_size", "1")
    path = out / "killed_aware_results__th2.95.json"
    proc = _interrupt(args, after=1, sig=signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, stderr_tail(proc)
    first = json.loads(path.read_text())
    assert first["status"]["completed"] == 1 and first["status"]["state"] == "IN_PROGRESS"

    proc = _interrupt(args, after=1, sig=signal.SIGINT)  # Ctrl-C after one more prompt
    assert proc.returncode == 130, stderr_tail(proc)
    second = json.loads(path.read_text())
    assert second["status"]["completed"] == 2

    again = subprocess.run(eval_cmd() + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    final = json.loads(path.read_text())
    assert final["status"]["state"] == "COMPLETED"
    assert [r["index"] for r in records(final)] == [0, 1, 2, 3, 4, 5]
    kept = {r["index"]: r for r in records(final)}
    for r in records(second):  # nothing done before an interruption was lost or regenerated
        assert kept[r["index"]] == r
    assert not list(out.glob(".*.tmp"))


def test_eager_killed_in_phase_2_and_resumed_matches_an_uninterrupted_run(tiny_model, shared_data, tmp_path):
    """Every prompt once, nothing finished redone, and the same trees as a run that was never stopped.

    Phase 2 resumes with the stored budget plan and seeds that follow the prompt index, so the
    prompts it still lacks are generated exactly as an uninterrupted run generates them. (On the
    transformers backend each request has its own forward pass: batch composition cannot matter.)
    """
    def args(out: Path, experiment: str) -> list[str]:
        return eval_args(tiny_model, shared_data / "gsm8k_test.jsonl", out, "--experiments", experiment,
                         "--backend", "hf", "--limit", "5", "--max_sequences", "3", "--max_new_tokens", "16",
                         "--entropy_threshold", "2.95")

    straight, resumed = tmp_path / "a" / "run", tmp_path / "b" / "run"
    assert main(args(straight, "eager_init")) == 0 and main(args(straight, "eager")) == 0
    name = "run_aware_more_budget_results__th2.95.json"
    expected = json.loads((straight / name).read_text())
    targets = sum(1 for v in expected["extra"]["budget_plan"]["shares"].values() if v > 0)
    assert targets >= 3, "the kills should land inside phase 2"

    resumed.mkdir(parents=True)
    shutil.copy(straight / "run_aware_results__th2.95.json", resumed)  # the same eager_init run
    seen: dict[int, dict] = {}
    for _ in range(2):  # kill -9 right after one more prompt of phase 2, twice
        proc = _interrupt(args(resumed, "eager"), after=1, sig=signal.SIGKILL)
        assert proc.returncode == -signal.SIGKILL, stderr_tail(proc)
        now = {r["index"]: r for r in records(json.loads((resumed / name).read_text()))}
        assert len(now) == (len(seen) if seen else 5 - targets) + 1  # prompts with no share are kept at once
        assert all(now[i] == r for i, r in seen.items())  # nothing finished was redone
        seen = now
    assert main(args(resumed, "eager")) == 0
    final = json.loads((resumed / name).read_text())
    assert [r["index"] for r in records(final)] == [0, 1, 2, 3, 4]
    assert all({r["index"]: r for r in records(final)}[i] == r for i, r in seen.items())
    assert records(final) == records(expected)  # the same trees, texts, answers and token counts
    assert final["extra"]["budget_plan"] == expected["extra"]["budget_plan"]


def test_kill_9_leaves_no_process_of_eager_eval_behind(tiny_model, shared_data, tmp_path):
    """The vLLM engine runs inside eager-eval: kill -9 must not leave engine processes (EngineCore) orphaned."""
    args = eval_args(tiny_model, shared_data / "gsm8k_test.jsonl", tmp_path / "o", "--experiments", "eager_init",
                     "--limit", "3", "--max_sequences", "2", "--max_new_tokens", "16", "--entropy_threshold", "2.95",
                     "--prompt_batch_size", "1")
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # as in a user's shell (tests/conftest.py sets it for pytest)
    proc = start_stopping_after(args, 1, env=env)
    wait_until_stopped(proc)
    started = psutil.Process(proc.pid).children(recursive=True)  # everything it started, while it is frozen
    proc.kill()
    proc.wait(timeout=60)
    # Orphans die at once or not at all; the bounded wait returns as soon as every one is gone.
    _, alive = psutil.wait_procs(started, timeout=30)
    alive = [p for p in alive if _running(p)]
    for p in alive:  # leave nothing behind even when the test fails
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not alive, f"left running after kill -9: {[(p.pid, _name(p)) for p in alive]}"


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:120] or p.name()
    except psutil.Error:
        return "?"


# --- bad input: a clear message and a non-zero exit, before any engine starts ------------------------


def test_unknown_column_lists_the_existing_ones(tiny_model, shared_data, tmp_path, capsys):
    rc = main(eval_args(tiny_model, shared_data / "aime_2024.jsonl", tmp_path / "o", "--question_column", "nope"))
    err = capsys.readouterr().err
    assert rc == 2 and "unknown question column 'nope'" in err and "'Problem'" in err and "'Answer'" in err


def test_temperature_zero_is_refused(tiny_model, shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(eval_args(tiny_model, shared_data / "aime_2024.jsonl", tmp_path / "o") + ["--temperature", "0"])
    assert exc.value.code == 2 and "temperature" in capsys.readouterr().err


def test_missing_model_path_exits_non_zero(shared_data, tmp_path):
    missing = tmp_path / "no-such-model"
    proc = subprocess.run(eval_cmd() + eval_args(missing, shared_data / "aime_2024.jsonl", tmp_path / "o"),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"model path {missing} does not exist" in proc.stderr


def test_truncated_results_file_is_named_and_left_alone(all_run, tmp_path, capsys):
    src, args, _ = all_run
    out = tmp_path / "run1"
    shutil.copytree(src, out)
    victim = out / "run1_aware_results__th2.95.json"
    victim.write_bytes(victim.read_bytes()[:500])
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    rc = main([a if a != str(src) else str(out) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and str(victim) in err and "truncated" in err
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before


def test_results_with_other_parameters_are_refused(all_run, tmp_path, capsys):
    src, args, _ = all_run
    out = tmp_path / "run1"
    shutil.copytree(src, out)
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    argv = [a if a != str(src) else str(out) for a in args]
    rc = main(argv[:argv.index("--max_sequences") + 1] + ["5"] + argv[argv.index("--max_sequences") + 2:])
    err = capsys.readouterr().err
    assert rc == 2 and "other parameters" in err and "max_sequences" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before


def test_eager_without_eager_init_says_what_to_run(tiny_model, shared_data, tmp_path, capsys):
    rc = main(eval_args(tiny_model, shared_data / "aime_2025.jsonl", tmp_path / "o", "--experiments", "eager",
                        "--limit", "2"))
    err = capsys.readouterr().err
    assert rc == 2 and "eager_init" in err and "does not exist" in err


def test_model_names_that_are_paths():
    from evaluation.context import looks_local

    assert looks_local("/abs/model") and looks_local("./rel") and looks_local("~/m") and looks_local("a/b/c")
    assert not looks_local("Qwen/Qwen3-4B") and not looks_local("gpt2")


def test_eager_eval_on_a_server_gives_the_colocated_results(all_run, tiny_model, tmp_path):
    """`--server_url`: the same experiments on a running `vllm serve` (CPU build) give the same samples."""
    from recipes.serve import LocalServer, free_port

    out, args, proc = all_run
    assert proc.returncode == 0
    with LocalServer(str(tiny_model), free_port(), log=tmp_path / "server.log", max_model_len=1024,
                     dtype="float32") as server:
        served = tmp_path / out.name  # result files are named after the directory
        mine = [served if a == str(out) else a for a in args]
        run = subprocess.run(eval_cmd() + [str(a) for a in mine] + ["--server_url", server.url], cwd=REPO,
                             capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stderr[-3000:]
    colocated, remote = results(out), results(served)
    assert sorted(colocated) == sorted(remote)
    for name in colocated:
        a, b = records(colocated[name]), records(remote[name])
        assert [r["generations"] for r in a] == [r["generations"] for r in b], name
