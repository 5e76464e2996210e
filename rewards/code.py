"""Code answers: run a completion against its tests in a sandboxed subprocess, never in-process.

A HumanEval(+) row carries `prompt` (signature and docstring), `test` (defines
`check(candidate)`) and `entry_point`. The program is the completion's code (the last
fenced block if it has one; the prompt prepended when the completion is only a body),
then the tests, then `check(entry_point)`. It passes when it exits 0 in time.

The sandbox (see `rewards/_sandbox.py`): a fresh temporary directory as working directory
and home; a private network namespace (no network at all; a Python-level socket block
where namespaces are unavailable); kernel limits on CPU time, address space, file size
and open files; no new processes or threads (RLIMIT_NPROC = 0, after dropping from root
to `nobody`, whom that limit binds); a wall-clock timeout after which its whole process
group is killed. It is a guard against runaway and careless code, not a jail for a
determined attacker: files readable by `nobody` stay readable.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.extract import completion_text

_BOOTSTRAP = Path(__file__).with_name("_sandbox.py")
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)[ \t]*\n", re.IGNORECASE)
_NOBODY = 65534
_STDERR_TAIL = 2_000


@dataclass(frozen=True)
class CodeResult:
    """The outcome of one sandboxed run."""

    passed: bool
    status: str  # "passed", "failed" (non-zero exit or killed by a limit), "timeout"
    returncode: int | None
    wall_s: float
    stderr_tail: str  # the end of stderr, for debugging a failed run

    @property
    def score(self) -> float:
        return 1.0 if self.passed else 0.0

    def __float__(self) -> float:
        return self.score


def extract_code(completion: str) -> str:
    """The code in a completion: its last fenced block (```python ...```), else the text itself.

    A last fence left open (the completion hit its length cap) counts up to the end.
    """
    blocks = _FENCE.findall(completion)
    if blocks:
        return blocks[-1]
    opened = _OPEN_FENCE.match(completion, completion.rfind("```")) if "```" in completion else None
    return completion[opened.end() :] if opened else completion


def build_program(completion: str, test: str, entry_point: str, prompt: str = "") -> str:
    """Completion code, then the tests, then the call that runs them.

    A completion that is only the function body continues `prompt`; one that defines the
    function itself still gets the prompt's imports (`from typing import List`), which
    models often leave out.
    """
    code = extract_code(completion)
    if prompt and not re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code):
        code = prompt + code
    elif prompt:
        imports = [line for line in prompt.splitlines() if line.startswith(("import ", "from "))]
        code = "\n".join(imports + [code])
    return f"{code}\n\n{test}\n\ncheck({entry_point})\n"


def _make_workdir() -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="eager-sandbox-"))
    if os.geteuid() == 0:
        os.chown(workdir, _NOBODY, _NOBODY)  # the child drops to nobody and must write here
    return workdir


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session and group
    except (ProcessLookupError, PermissionError):
        pass


def run_program(
    program: str, timeout_s: float = 10.0, memory_mb: int = 1024, file_mb: int = 16
) -> CodeResult:
    """Run Python source in the sandbox; see the module docstring for what it may not do."""
    workdir = _make_workdir()
    start = time.monotonic()
    try:
        (workdir / "solution.py").write_text(program)
        spec = {"cpu_s": max(1, math.ceil(timeout_s)), "memory_mb": memory_mb, "file_mb": file_mb}
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        cmd = [sys.executable, "-I", "-B", str(_BOOTSTRAP), json.dumps(spec), str(workdir / "solution.py")]
        with open(workdir / ".stdout", "wb") as out, open(workdir / ".stderr", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
            try:
                returncode: int | None = proc.wait(timeout=timeout_s)
                status = "passed" if returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                returncode, status = None, "timeout"
                # Killed while still unreaped, so its group id cannot have been reused yet.
                _kill_group(proc)
                proc.wait()
        stderr = (workdir / ".stderr").read_bytes()[-_STDERR_TAIL:].decode("utf-8", "replace")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return CodeResult(status == "passed", status, returncode, time.monotonic() - start, stderr)


def run_tests(
    completion: str,
    test: str,
    entry_point: str,
    prompt: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> CodeResult:
    """Run a completion against a HumanEval-style row's tests in the sandbox.

    Args:
        completion: the model's answer (a full function, or the body continuing `prompt`).
        test: source defining `check(candidate)`.
        entry_point: the function's name.
        prompt: the row's prompt, prepended when the completion does not define the function.
        timeout_s: wall-clock limit (CPU time is limited to the same, rounded up).
        memory_mb: address-space limit.
    """
    return run_program(build_program(completion, test, entry_point, prompt), timeout_s, memory_mb)


class CodeAccuracy:
    """TRL reward: 1.0 when the completion passes the row's `test`, else 0.0; runs rows in parallel.

    Reads the `test` and `entry_point` columns. TRL hands the dataset's `prompt` column over
    as `prompts`; a plain-string prompt is used as the code prefix for body-only answers.
    """

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 1024, max_parallel: int | None = None,
                 name: str = "code_accuracy") -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_parallel = max_parallel or max(1, min(8, os.cpu_count() or 1))
        self.__name__ = name

    def __call__(self, completions: list, test: list[str], entry_point: list[str], **kwargs: Any) -> list[float]:
        prompts = kwargs.get("prompts") or [""] * len(completions)
        jobs = [
            (completion_text(c), t, e, p if isinstance(p, str) else "")
            for c, t, e, p in zip(completions, test, entry_point, prompts)
        ]
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            results = list(pool.map(lambda job: run_tests(*job, self.timeout_s, self.memory_mb), jobs))
        return [r.score for r in results]


_CODE_ACCURACY = CodeAccuracy()


def code_accuracy(completions: list, test: list[str], entry_point: list[str], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 when the completion passes its row's tests in the sandbox, else 0.0."""
    return _CODE_ACCURACY(completions, test, entry_point, **kwargs)
