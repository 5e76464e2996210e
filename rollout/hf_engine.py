"""A transformers backend with the same step interface, for machines without vLLM.

It is the reference implementation, not a fast one: every step runs one forward pass per
running request, each with its own KV cache (requests come and go at any step, which a
per-request cache handles without padding bookkeeping). Sampling uses a
per-request `torch.Generator`, so a request's tokens depend only on its seed and its
logits. Log-probs are reported after temperature, like vLLM's `processed_logprobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rollout.engine import Request, TokenOutput


@dataclass
class _Running:
    request: Request
    generator: torch.Generator
    past: Any = None  # this request's KV cache
    pending: list[int] = field(default_factory=list)  # tokens not yet fed to the model
    length: int = 0  # tokens already in the cache
    produced: int = 0


class HFEngine:
    """`rollout.engine.Engine` over a transformers causal LM (batch of one per forward, cached)."""

    def __init__(self, model: Any, *, eos_token_ids: set[int] | None = None, max_model_len: int | None = None) -> None:
        self.model = model.eval()
        cfg = model.config
        if eos_token_ids is None:
            eos = getattr(model.generation_config, "eos_token_id", None) or getattr(cfg, "eos_token_id", None)
            eos_token_ids = set([eos] if isinstance(eos, int) else list(eos or []))
        self.eos_token_ids = set(eos_token_ids)
        self._max_len = int(max_model_len or getattr(cfg, "max_position_embeddings", 2048))
        self._running: dict[str, _Running] = {}
        self._temperature, self._k, self._stop, self._full = 1.0, 20, set(), False

    @property
    def logprobs_after_temperature(self) -> bool:
        return True

    @property
    def max_model_len(self) -> int:
        return self._max_len

    def configure(self, temperature: float, top_logprobs: int, stop_token_ids: list[int], full_vocab: bool) -> None:
        self._temperature, self._k, self._full = temperature, top_logprobs, full_vocab
        self._stop = set(stop_token_ids) | self.eos_token_ids

    def add(self, request: Request) -> None:
        gen = torch.Generator().manual_seed(request.seed)
        self._running[request.request_id] = _Running(request, gen, pending=list(request.token_ids))

    def abort(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self._running.pop(rid, None)

    def has_unfinished(self) -> bool:
        return bool(self._running)

    @torch.no_grad()
    def step(self) -> list[TokenOutput]:
        outs = []
        for rid in list(self._running):
            run = self._running[rid]
            logits = self._forward(run)  # (V,) at T = 1
            outs.append(self._sample(rid, run, logits))
        return outs

    def _forward(self, run: _Running) -> torch.Tensor:
        ids = torch.tensor([run.pending], dtype=torch.long)
        pos = torch.arange(run.length, run.length + ids.shape[1]).unsqueeze(0)
        out = self.model(input_ids=ids, position_ids=pos, past_key_values=run.past, use_cache=True)
        run.past, run.length, run.pending = out.past_key_values, run.length + ids.shape[1], []
        return out.logits[0, -1].float()

    def _sample(self, rid: str, run: _Running, logits: torch.Tensor) -> TokenOutput:
        logp = torch.log_softmax(logits / self._temperature, dim=-1)
        token = int(torch.multinomial(logp.exp(), 1, generator=run.generator))
        k = min(self._k, logp.shape[0])
        top_lp, top_id = torch.topk(logp, k)
        top_ids = np.full(self._k + 1, -1, dtype=np.int64)
        top_lps = np.full(self._k + 1, -np.inf)
        top_ids[:k], top_lps[:k] = top_id.numpy(), top_lp.double().numpy()
        if token not in top_ids[:k]:  # like vLLM: the sampled token is added when outside the top k
            top_ids[k], top_lps[k] = token, float(logp[token])
        full = None
        if self._full:
            p = torch.softmax(logits.double(), dim=-1)
            full = float(-(p * torch.log(p.clamp_min(1e-300))).sum())
        run.produced += 1
        run.pending = [token]
        reason = None
        if token in self._stop:
            reason = "stop"
        elif run.produced >= run.request.max_tokens:
            reason = "length"
        if reason:
            del self._running[rid]
        return TokenOutput(rid, token, float(logp[token]), top_ids, top_lps, reason is not None, reason, full)
