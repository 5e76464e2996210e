"""The code sandbox: right answers pass; runaway, forking and networking completions are stopped and score 0."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from rewards.code import CodeAccuracy, build_program, code_accuracy, extract_code, run_tests

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

# A HumanEval-shaped row.
PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
ENTRY = "add"
SOLUTION = "def add(a: int, b: int) -> int:\n    return a + b\n"
LIMITS = {"timeout_s": 2.0, "memory_mb": 512}


def test_a_correct_completion_passes() -> None:
    result = run_tests(SOLUTION, TEST, ENTRY, **LIMITS)
    assert result.passed and result.score == 1.0 and float(result) == 1.0 and result.status == "passed"


def test_a_body_only_completion_continues_the_prompt() -> None:
    assert run_tests("    return a + b\n", TEST, ENTRY, prompt=PROMPT, **LIMITS).passed


def test_a_fenced_completion() -> None:
    completion = f"Here it is:\n```python\n{SOLUTION}```\nDone."
    assert extract_code(completion) == SOLUTION
    assert run_tests(completion, TEST, ENTRY, **LIMITS).passed


def test_a_wrong_completion_fails() -> None:
    result = run_tests("def add(a, b):\n    return a - b\n", TEST, ENTRY, **LIMITS)
    assert not result.passed and result.status == "failed" and "AssertionError" in result.stderr_tail


def test_an_infinite_loop_is_stopped() -> None:
    """Stopped by the sandbox itself (its CPU-time limit or its deadline), not by finishing."""
    result = run_tests("def add(a, b):\n    while True:\n        pass\n", TEST, ENTRY, timeout_s=1.0)
    assert result.score == 0.0 and result.status in ("timeout", "failed")
    assert result.status == "timeout" or result.returncode != 0


def test_unbounded_allocation_is_stopped() -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n" + SOLUTION
    result = run_tests(hog, TEST, ENTRY, **LIMITS)
    assert result.score == 0.0 and "MemoryError" in result.stderr_tail


def test_forking_is_refused() -> None:
    # Bounded on purpose: were the limit missing, this must not swamp a shared machine.
    forker = "import os\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)\n" + SOLUTION
    result = run_tests(forker, TEST, ENTRY, **LIMITS)
    assert result.score == 0.0 and "BlockingIOError" in result.stderr_tail


def test_fork_through_libc_is_refused_too() -> None:
    forker = "import ctypes\nassert ctypes.CDLL(None).fork() >= 0\n" + SOLUTION
    assert run_tests(forker, TEST, ENTRY, **LIMITS).score == 0.0


def test_no_network_even_to_this_machine() -> None:
    """A listener on this host's loopback is unreachable from the sandbox."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        caller = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n" + SOLUTION
        result = run_tests(caller, TEST, ENTRY, **LIMITS)
    assert result.score == 0.0, "the sandbox reached the host's loopback"
    assert "unreachable" in result.stderr_tail or "denied" in result.stderr_tail


def test_files_and_output_are_contained() -> None:
    if os.geteuid() == 0:  # dropped to `nobody`, the sandbox cannot write where root can
        writer = "open('/etc/eager-sandbox-escape-test', 'w').write('x')\n" + SOLUTION
        assert run_tests(writer, TEST, ENTRY, **LIMITS).score == 0.0
        assert not os.path.exists("/etc/eager-sandbox-escape-test")
    spammer = "while True:\n    print('x' * 10000)\n" + SOLUTION
    result = run_tests(spammer, TEST, ENTRY, **LIMITS)
    assert result.score == 0.0 and "File too large" in result.stderr_tail  # the file-size limit stops it
    scratch = "open('scratch.txt', 'w').write('ok')\n" + SOLUTION  # its own directory is writable
    assert run_tests(scratch, TEST, ENTRY, **LIMITS).passed


def test_trl_code_reward_runs_rows_in_parallel() -> None:
    completions = [SOLUTION, "def add(a, b):\n    return 0\n", [{"role": "assistant", "content": "    return a + b\n"}]]
    kwargs = {"prompts": [PROMPT] * 3, "test": [TEST] * 3, "entry_point": [ENTRY] * 3, "completion_ids": [[1]] * 3}
    assert code_accuracy(completions, **kwargs) == [1.0, 0.0, 1.0]
    assert CodeAccuracy(name="humaneval").__name__ == "humaneval"


def test_program_layout() -> None:
    program = build_program("    return a + b\n", TEST, ENTRY, PROMPT)
    assert program.startswith(PROMPT) and program.rstrip().endswith("check(add)")
    assert not build_program(SOLUTION, TEST, ENTRY, PROMPT).startswith(PROMPT + PROMPT)
    assert extract_code("```python\ndef add(a, b):\n    return a + b\n") == "def add(a, b):\n    return a + b\n"


def test_a_full_function_still_gets_the_prompts_imports() -> None:
    prompt = "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    completion = "def total(xs: List[int]) -> int:\n    return sum(xs)\n"
    test = "def check(candidate):\n    assert candidate([1, 2]) == 3\n"
    assert run_tests(completion, test, "total", prompt=prompt, **LIMITS).passed


def test_sandbox_from_a_worker_thread() -> None:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(run_tests(SOLUTION, TEST, ENTRY, **LIMITS)))
    thread.start()
    thread.join(timeout=30)
    assert results and results[0].passed


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop happens only when started as root")
def test_runs_as_nobody_when_started_as_root() -> None:
    probe = "import os\nassert os.getuid() == 65534 and os.geteuid() == 65534\n" + SOLUTION
    assert run_tests(probe, TEST, ENTRY, **LIMITS).passed
