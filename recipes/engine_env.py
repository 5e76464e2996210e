"""The environment every CPU entry point runs the vLLM engine under: one place, one reason per variable.

Call `cpu_engine_env()` at the top of an entry point, before torch or vLLM is imported (OpenMP
reads its thread count when it starts), or pass `env=` to fill a subprocess's environment. Values
are defaults: a variable already set by the user wins. Imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def cpu_engine_env(kv_cache_gib: int = 1, env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set the CPU engine's defaults in `env` (default: this process's `os.environ`) and return it.

    - OMP_NUM_THREADS=1: two threads on 2 vCPUs made vLLM's decode erratic and slower.
    - VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine runs in this process, as TRL's colocated one
      does; the step loop drives it from here, and no engine process outlives a killed parent.
      A server's engine core runs in a process of its own whatever this says; there it keeps the
      model inside that process, as on one GPU. Otherwise the CPU build starts one more process
      for the model and the engine core spin-waits on it (`sched_yield`), the core that a 2-core
      machine's API server and client need.
    - VLLM_CPU_KVCACHE_SPACE=`kv_cache_gib`: the KV cache in GiB; vLLM's CPU default takes
      about 10, more than these small models need and more than a small machine can spare.
    - HF_HUB_OFFLINE=1, HF_HUB_DISABLE_TELEMETRY=1: every model and tokenizer here is local.
    - TRL_EXPERIMENTAL_SILENCE=1: TRL's GRPO trainer warns that `rollout_func` (our hook) is experimental.
    """
    env = os.environ if env is None else env
    defaults = {
        "OMP_NUM_THREADS": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


# Set by an engine inside this process, never for a server started from it: an in-process CPU worker
# names its shared memory after VLLM_DIST_IDENT (a server that inherited a colocated engine's ident had
# its engine shut down mid-run).
IN_PROCESS_ONLY = ("VLLM_DIST_IDENT",)


def server_env(cpu: bool) -> dict[str, str]:
    """The environment of a `vllm serve` started from this process: this one's less `IN_PROCESS_ONLY`, with
    the CPU defaults when `cpu` (the CPU build); a GPU server gets no multiprocessing setting of ours."""
    env = dict(os.environ)
    for key in IN_PROCESS_ONLY:
        env.pop(key, None)
    if cpu:
        return dict(cpu_engine_env(env=env))
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    return env
