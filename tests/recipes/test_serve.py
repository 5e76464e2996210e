"""`recipes.serve`: the flags and environment of a vLLM server EAGer can branch on (no server started here)."""

from __future__ import annotations

import pytest

from recipes import serve


@pytest.fixture
def inherited(monkeypatch):
    """What an in-process engine leaves in this process's environment."""
    monkeypatch.setenv("VLLM_DIST_IDENT", "shm-of-the-colocated-engine")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_cpu_server_flags_and_environment(inherited, monkeypatch):
    monkeypatch.setattr(serve, "is_cpu_build", lambda: True)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING")
    argv, env = serve.serve_command("m", 8123, max_model_len=256, dtype="float32", train=True, extra=["--x"])
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and argv[-1] == "--x"
    for flag in (*serve.EAGER_FLAGS, *serve.CPU_FLAGS, "--max-model-len", "--max-num-batched-tokens"):
        assert flag in argv, flag
    assert "--weight-transfer-config" not in argv  # NCCL needs CUDA
    assert argv[argv.index("--host") + 1] == "127.0.0.1"  # dev mode's weight routes stay on this machine
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and env["OMP_NUM_THREADS"] and env["HF_HUB_OFFLINE"] == "1"
    assert "VLLM_DIST_IDENT" not in env
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # the model inside the engine-core process, no spin-wait


def test_gpu_server_for_training_gets_trls_weight_transfer(inherited, monkeypatch):
    monkeypatch.setattr(serve, "is_cpu_build", lambda: False)
    argv, env = serve.serve_command("Qwen/Qwen3-4B", 8000, train=True, dev_mode=False)
    assert argv[argv.index("--weight-transfer-config") + 1] == '{"backend": "nccl"}'
    assert not set(serve.CPU_FLAGS) & set(argv)
    assert env["VLLM_SERVER_DEV_MODE"] == "0" and "HF_HUB_OFFLINE" not in env  # a GPU user may download
    assert "VLLM_DIST_IDENT" not in env and "VLLM_ENABLE_V1_MULTIPROCESSING" not in env


def test_free_port_is_free():
    import socket

    port = serve.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
