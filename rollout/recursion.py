"""Entropy-gated latent recursion (EGLR, arXiv 2606.16620) over a transformers decoder.

At a position whose next-token entropy is above a gate, the frozen model's top L decoder
layers are applied again to the position's last hidden state (before the final norm),
up to `k_max` times, until the next-token distribution stops changing; the token is then
taken from that recursed distribution. For a fixed L the result is a deterministic function
of the prefix, so each span L is a different rollout of the same model.

The recursion touches the current position only. Its attention reads the cached keys and
values of the earlier positions through `_PeekCache`, a read-only view, and writes nothing:
the next token's forward pass sees exactly the cache a plain forward pass built, so the
sequence's later hidden states are the model's own (tests check it against a full forward).

Convergence: the total-variation distance between the distributions of two successive
iterations, at T = 1. TV is the most any set of tokens' probability moved, in [0, 1], so the
tolerance reads directly ("no event moved by more than 2 points"); KL would be unbounded
and asymmetric, an argmax test blind to how sure the model is (sampled decoding cares).

Cost per gated token: each iteration runs L of the model's N layers on one position
(about L/N of a decode step's layer work, attention over the prefix included) plus the
final norm and LM head for the convergence test; at most `k_max` iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Recursion:
    """EGLR settings: span L, iteration cap, entropy gate and convergence tolerance."""

    span: int  # L: how many of the top decoder layers are re-applied (0: off)
    k_max: int = 4  # most re-applications per gated token
    gate: float = 1.0  # top-k entropy (nats, T = 1 scale, like EAGer's thresholds) above which a token is recursed
    tol: float = 0.02  # stop once the total-variation distance between two iterations' distributions is below this
    top_k: int = 20  # k of the gate's top-k entropy

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"Recursion.{name}={getattr(self, name)!r}: {why}")

        if self.span < 0:
            raise bad("span", "re-apply L >= 0 top layers (0 turns the recursion off).")
        if self.k_max < 1:
            raise bad("k_max", "at least one re-application per gated token.")
        if self.gate < 0:
            raise bad("gate", "entropies are >= 0 nats; use a gate >= 0.")
        if not 0 <= self.tol < 1:
            raise bad("tol", "a total-variation distance in [0, 1).")
        if self.top_k < 1:
            raise bad("top_k", "the gate's entropy needs k >= 1.")


@dataclass
class RecursionStats:
    """What the recursion cost in a run: gated tokens, iterations and layer applications."""

    tokens: int = 0  # tokens decoded (gated or not)
    gated: int = 0  # tokens whose distribution was recursed
    iterations: int = 0  # re-applications of the top-L block, summed
    layer_passes: int = 0  # single-layer applications at one position, summed


def gate_entropy(logits: torch.Tensor, k: int) -> float:
    """Entropy (nats) of the renormalised top-k distribution of T = 1 logits: EAGer's signal."""
    top = torch.topk(logits.double(), min(k, logits.shape[-1])).values
    logp = torch.log_softmax(top, dim=-1)
    return float(-(logp.exp() * logp).sum())


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(0.5 * (p - q).abs().sum())


class _PeekCache:
    """A read-only view of a transformers `DynamicCache` for one extra query position.

    Attention calls `update(k, v, layer)` with the new position's key and value; the view
    returns the cached keys and values of the earlier positions with the new ones appended,
    and stores nothing. The cache's last entry is the position being recursed (its forward
    pass already wrote it), so it is left out: the new key replaces it for this query only.
    """

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        layer = self.cache.layers[layer_idx]
        keys = torch.cat([layer.keys[..., :-1, :], key_states], dim=-2)
        values = torch.cat([layer.values[..., :-1, :], value_states], dim=-2)
        return keys, values


def decoder_parts(model: Any) -> tuple[Any, Any, Any, Any]:
    """(decoder layers, final norm, rotary embedding, LM head) of a Llama-style causal LM, or a clear error."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    parts = tuple(getattr(decoder, name, None) for name in ("layers", "norm", "rotary_emb"))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or any(p is None for p in parts) or head is None:
        raise ValueError(
            f"EGLR needs a decoder with .layers, .norm, .rotary_emb and an LM head (Llama, Qwen2, Qwen3, Mistral "
            f"and the like); {type(model).__name__} does not have them."
        )
    return parts[0], parts[1], parts[2], head


def last_layer(model: Any) -> Any:
    """The module whose output is the last hidden state before the final norm (what the recursion starts from)."""
    return decoder_parts(model)[0][-1]


@torch.no_grad()
def check_recursable(model: Any) -> None:
    """Raise ValueError, saying why, unless the recursion reproduces this model exactly where it should.

    Three things must hold: Llama-style parts (`decoder_parts`); a cache of plain full-attention
    layers (a sliding-window layer keeps only the last W - 1 tokens, so the read-only view could
    not give the recursed position the window the plain pass used); and logits that are the LM
    head of the final norm and nothing more (Granite's logit scaling, Cohere's logit scale and
    Gemma 2's soft-capping come after the head). The last is checked on a two-token forward pass.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers, norm, _, head = decoder_parts(model)
    kinds = {type(layer).__name__ for layer in DynamicCache(config=model.config).layers}
    if kinds != {DynamicLayer.__name__}:
        raise ValueError(f"EGLR needs full-attention cache layers; {type(model).__name__} uses {sorted(kinds)} "
                         "(sliding-window or other attention), which the recursion's read-only view cannot reproduce.")
    seen = []
    handle = layers[-1].register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        ids = torch.tensor([[1, 2]], device=next(model.parameters()).device)
        logits = model(input_ids=ids).logits[0, -1].float()
    finally:
        handle.remove()
    mine = head(norm(seen[-1]))[0, -1].float()
    if not torch.allclose(mine, logits, rtol=1e-3, atol=1e-3 * float(logits.abs().max()) + 1e-5):
        raise ValueError(f"EGLR needs logits that are the LM head of the final norm; {type(model).__name__} "
                         "changes them after the head (logit scaling or soft-capping), so recursed logits would "
                         "be on another scale.")


@torch.no_grad()
def recurse(
    model: Any, hidden: torch.Tensor, cache: Any, position: int, recursion: Recursion,
    base_logits: torch.Tensor, stats: RecursionStats | None = None, trace: list[list[float]] | None = None,
) -> torch.Tensor:
    """T = 1 logits of the recursed distribution at `position`.

    Args:
        hidden: (hidden_size,) the last decoder layer's output at `position` (before the final norm).
        cache: the request's `DynamicCache`, holding keys and values up to and including `position`.
        base_logits: (V,) the plain forward pass's logits at `position` (iteration 0).
        trace: when given, gets this token's total-variation distance of each iteration to the one before.
    """
    layers, norm, rotary, head = decoder_parts(model)
    if not 1 <= recursion.span <= len(layers):
        raise ValueError(f"Recursion.span={recursion.span}: the model has {len(layers)} decoder layers; use 1..{len(layers)}.")
    block = layers[len(layers) - recursion.span:]
    h = hidden.reshape(1, 1, -1)
    pos = torch.tensor([[position]], device=h.device)
    rope = rotary(h, position_ids=pos)
    view = _PeekCache(cache)
    prev = torch.softmax(base_logits.double(), dim=-1)
    logits = base_logits
    k = 0
    distances: list[float] = []
    for k in range(1, recursion.k_max + 1):
        for layer in block:
            out = layer(h, attention_mask=None, position_ids=pos, past_key_values=view, use_cache=False,
                        position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
        logits = head(norm(h))[0, -1].float()
        p = torch.softmax(logits.double(), dim=-1)
        distances.append(total_variation(p, prev))
        if distances[-1] < recursion.tol:
            break
        prev = p
    if trace is not None:
        trace.append(distances)
    if stats is not None:
        stats.gated += 1
        stats.iterations += k
        stats.layer_passes += k * recursion.span
    return logits
