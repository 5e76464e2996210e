"""The step-wise engine interface the branching driver runs on.

An engine holds requests (a prompt as token ids plus a token cap) and advances every
running request by one token per `step()`. It reports, for each new token, the sampling
log-prob of that token and the top-k log-probs of the position. The driver never sees
text. Two implementations: `rollout.vllm_engine.VLLMEngine` (vLLM's V1 engine, the one
TRL colocates) and `rollout.hf_engine.HFEngine` (plain transformers, for machines without
vLLM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Request:
    request_id: str
    token_ids: list[int]  # prompt + any prefix the request continues from (a fork's shared prefix)
    max_tokens: int
    seed: int


@dataclass
class TokenOutput:
    """One new token of one request."""

    request_id: str
    token_id: int
    logprob: float  # sampling log-prob of token_id (processed, i.e. after temperature, when the engine says so)
    topk_ids: np.ndarray  # (k,) or (k+1,) int: the top-k tokens, plus the sampled one when outside them
    topk_logprobs: np.ndarray  # (same,) float: their log-probs, on the same scale as `logprob`
    finished: bool
    finish_reason: str | None  # "stop" or "length" once finished
    full_entropy: float | None = None  # full-vocabulary entropy at T=1, only when the engine was asked for it


class Engine(Protocol):
    """What the driver needs from an inference engine."""

    @property
    def logprobs_after_temperature(self) -> bool:
        """True if reported log-probs are temperature-scaled (vLLM `processed_logprobs`, TRL's mode)."""

    @property
    def max_model_len(self) -> int:
        """Longest prompt + completion the engine accepts."""

    # Optional: `max_running` (int), the requests the engine runs at once; online runs start no new
    # pass that would only wait in its queue. Engines without it are taken as unbounded.

    def configure(self, temperature: float, top_logprobs: int, stop_token_ids: list[int], full_vocab: bool) -> None:
        """Sampling settings shared by every request of the next run."""

    def add(self, request: Request) -> None:
        """Queue a request; it produces its first token at a later `step()`."""

    def step(self) -> list[TokenOutput]:
        """Advance every running request by one token."""

    def abort(self, request_ids: list[str]) -> None:
        """Drop requests; they produce no more output."""

    def has_unfinished(self) -> bool:
        """True while any request is queued or running."""
