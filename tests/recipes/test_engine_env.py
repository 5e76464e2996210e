"""One helper sets the CPU engine's environment for every entry point (`recipes.engine_env`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.engine_env import cpu_engine_env

REPO = Path(__file__).resolve().parents[2]
ENGINE_VARS = ("OMP_NUM_THREADS", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE")


def test_defaults_fill_only_what_is_unset():
    before = dict(os.environ)
    env = {"OMP_NUM_THREADS": "4"}  # the user's choice wins
    assert cpu_engine_env(kv_cache_gib=3, env=env) is env
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRL_EXPERIMENTAL_SILENCE"] == "1"
    assert dict(os.environ) == before  # `env=` leaves this process alone


def test_no_entry_point_keeps_its_own_copy():
    """The variables are spelled out once, in recipes/engine_env.py."""
    files = sorted((REPO / "recipes").rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py"))
    copies = [p.relative_to(REPO) for p in files
              if p.name != "engine_env.py" and "VLLM_ENABLE_V1_MULTIPROCESSING" in p.read_text()]
    assert copies == []
    for name in ("recipes/demo.py", "benchmarks/tradeoff.py", "benchmarks/rollout_throughput.py",
                 "benchmarks/server_overhead.py",
                 "benchmarks/signal_bound.py", "recipes/heldout.py"):
        assert "cpu_engine_env(" in (REPO / name).read_text(), name


@pytest.mark.parametrize("module, kv_gib", [("benchmarks.tradeoff", "2"),
                                            ("benchmarks.rollout_throughput", "4"),
                                            ("benchmarks.signal_bound", "1")])
def test_importing_a_benchmark_sets_the_engine_environment(module, kv_gib):
    """Set at import, before the benchmark imports torch or vLLM."""
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_VARS}
    code = f"import json, os, {module}; print(json.dumps({{k: os.environ.get(k) for k in {ENGINE_VARS!r}}}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": kv_gib,
                   "HF_HUB_OFFLINE": "1"}
