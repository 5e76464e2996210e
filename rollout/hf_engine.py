"""A transformers backend with the same step interface, for machines without vLLM.

It is the reference implementation, not a fast one: every step runs one forward pass per
running request, each with its own KV cache (requests come and go at any step, which a
per-request cache handles without padding bookkeeping). Sampling uses a
per-request `torch.Generator`, so a request's tokens depend only on its seed and its
logits. Log-probs are reported after temperature, like vLLM's `processed_logprobs`.

It also runs entropy-gated latent recursion (`rollout.recursion`), which needs the model's
layers and hidden states and so has no vLLM counterpart (README, "EGLR"): as a decoding
mode (`set_decoding`: a gated token is drawn, or taken greedily, from the recursed
distribution; the reported log-probs stay the policy's) and as a fork source
(`recursed_token`, EAGer's `fork_mode="recursion"`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rollout.engine import Request, TokenOutput
from rollout.recursion import Recursion, RecursionStats, check_recursable, gate_entropy, last_layer, recurse


@dataclass
class _Running:
    request: Request
    generator: torch.Generator
    past: Any = None  # this request's KV cache
    pending: list[int] = field(default_factory=list)  # tokens not yet fed to the model
    length: int = 0  # tokens already in the cache
    produced: int = 0
    hidden: torch.Tensor | None = None  # last decoder layer's output at the last position fed (EGLR starts there)
    logits: torch.Tensor | None = None  # T = 1 logits at that position


class HFEngine:
    """`rollout.engine.Engine` over a transformers causal LM (batch of one per forward, cached)."""

    def __init__(
        self, model: Any, *, eos_token_ids: set[int] | None = None, max_model_len: int | None = None,
        recursion: Recursion | None = None, greedy: bool = False,
    ) -> None:
        self.model = model.eval()
        cfg = model.config
        if eos_token_ids is None:
            eos = getattr(model.generation_config, "eos_token_id", None) or getattr(cfg, "eos_token_id", None)
            eos_token_ids = set([eos] if isinstance(eos, int) else list(eos or []))
        self.eos_token_ids = set(eos_token_ids)
        self._max_len = int(max_model_len or getattr(cfg, "max_position_embeddings", 2048))
        self._running: dict[str, _Running] = {}
        self._temperature, self._k, self._stop, self._full = 1.0, 20, set(), False
        # only the last position's logits (the LM head on a whole prompt costs prompt length x vocabulary)
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        self._finished: dict[str, _Running] = {}  # requests that ended in the last step (a fork may still read them)
        self._hidden: torch.Tensor | None = None
        self._keeps_hidden = False  # set once recursion is wanted: plain runs keep no hidden state, run no check
        self._why_not: str | None | bool = False  # False: not checked yet
        self.recursion_stats = RecursionStats()
        self.recursion_trace: list[list[float]] | None = None  # set to [] to log each gated token's distances
        self.set_decoding(recursion, greedy)

    @property
    def why_no_recursion(self) -> str | None:
        """Why EGLR cannot run on this model, or None when it can (checked once, on first use)."""
        if self._why_not is False:
            try:
                check_recursable(self.model)
                self._why_not = None
            except Exception as exc:  # whatever the check trips on, plain generation must still work
                self._why_not = str(exc) or type(exc).__name__
        return self._why_not

    @property
    def can_recurse(self) -> bool:
        """True when EGLR can run on this model (`why_no_recursion` says why not)."""
        return self.why_no_recursion is None

    def enable_recursion(self) -> None:
        """Keep each request's last hidden state from now on (EGLR starts from it); raise if EGLR cannot run."""
        if self.why_no_recursion is not None:
            raise ValueError(f"HFEngine cannot recurse: {self.why_no_recursion}")
        self._keeps_hidden = True

    def _keep_hidden(self, module: Any, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        self._hidden = out[0, -1].clone()

    def set_decoding(self, recursion: Recursion | None = None, greedy: bool = False) -> None:
        """How the next requests' tokens are chosen: sampled (or greedy) from the policy, or from the
        recursed distribution at gated positions when `recursion` has a span > 0."""
        if recursion is not None and recursion.span > 0:
            self.enable_recursion()
        self._recursion = recursion if recursion is not None and recursion.span > 0 else None
        self._greedy = greedy

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
            self._finished.pop(rid, None)

    def has_unfinished(self) -> bool:
        return bool(self._running)

    @torch.no_grad()
    def step(self) -> list[TokenOutput]:
        outs = []
        self._finished = {}
        for rid in list(self._running):
            run = self._running[rid]
            logits = self._forward(run)  # (V,) at T = 1
            outs.append(self._sample(rid, run, logits, self._decoding_logits(run, logits)))
        return outs

    def _decoding_logits(self, run: _Running, logits: torch.Tensor) -> torch.Tensor:
        """The logits a token is chosen from: the policy's, or the recursed ones at a gated position."""
        if self._recursion is None:
            return logits
        self.recursion_stats.tokens += 1
        if gate_entropy(logits, self._recursion.top_k) <= self._recursion.gate:
            return logits
        return recurse(self.model, run.hidden, run.past, run.length - 1, self._recursion, logits, self.recursion_stats,
                       self.recursion_trace)

    @torch.no_grad()
    def recursed_token(self, request_id: str, exclude: int, recursion: Recursion) -> tuple[int, float]:
        """EGLR as a fork source: at the position that just produced `request_id`'s last token, the most
        likely token of the recursed distribution other than `exclude` (the parent's), with the policy's
        log-prob of it after temperature (what the other fork modes report). Call it before the next step,
        on an engine that kept hidden states since the request started (`enable_recursion`)."""
        run = self._running.get(request_id) or self._finished.get(request_id)
        if run is None or run.hidden is None:
            raise KeyError(f"recursed_token: request {request_id!r} produced no token in the last step, or the "
                           "engine kept no hidden state for it (call enable_recursion() before adding requests).")
        logits = recurse(self.model, run.hidden, run.past, run.length - 1, recursion, run.logits, self.recursion_stats)
        logits = logits.clone()
        logits[exclude] = -float("inf")
        token = int(torch.argmax(logits))
        return token, float(torch.log_softmax(run.logits / self._temperature, dim=-1)[token])

    def _forward(self, run: _Running) -> torch.Tensor:
        ids = torch.tensor([run.pending], dtype=torch.long)
        pos = torch.arange(run.length, run.length + ids.shape[1]).unsqueeze(0)
        # The last layer's output at the last position is kept only once EGLR is wanted; the hook
        # lives for this call only, so it neither fires during a recursion nor keeps the engine alive.
        handle = last_layer(self.model).register_forward_hook(self._keep_hidden) if self._keeps_hidden else None
        try:
            out = self.model(input_ids=ids, position_ids=pos, past_key_values=run.past, use_cache=True, **self._last_only)
        finally:
            if handle is not None:
                handle.remove()
        run.past, run.length, run.pending = out.past_key_values, run.length + ids.shape[1], []
        # copies: views would keep the whole forward's logits (prompt length x vocabulary) alive
        run.logits, run.hidden = out.logits[0, -1].float().clone(), self._hidden
        self._hidden = None
        return run.logits

    def _sample(self, rid: str, run: _Running, logits: torch.Tensor, choose_from: torch.Tensor) -> TokenOutput:
        """Choose the token from `choose_from` (the policy's or recursed logits); report the policy's log-probs."""
        logp = torch.log_softmax(logits / self._temperature, dim=-1)
        # one draw per token in every mode, so a request's random stream stays aligned across decoding modes
        probs = logp.exp() if choose_from is logits else torch.softmax(choose_from / self._temperature, dim=-1)
        draw = torch.multinomial(probs, 1, generator=run.generator)
        token = int(torch.argmax(choose_from)) if self._greedy else int(draw)
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
            self._finished[rid] = self._running.pop(rid)
        return TokenOutput(rid, token, float(logp[token]), top_ids, top_lps, reason is not None, reason, full)
