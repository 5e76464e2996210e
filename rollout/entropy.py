"""Next-token entropy from the engine's top-k log-probs, on the T = 1 scale.

The paper's thresholds were tuned on top-k (k = 20) log-probs taken before temperature.
Engines may report log-probs after temperature (vLLM `processed_logprobs`, which TRL uses):
then `lp_raw = T * lp_T + const`, and the constant drops out when the top-k entries are
renormalised, so the T = 1 distribution over those entries is recovered exactly.
"""

from __future__ import annotations

import numpy as np


def topk_entropy(logprobs: np.ndarray, temperature: float = 1.0, after_temperature: bool = False) -> np.ndarray:
    """Entropy in nats of each row's renormalised top-k distribution.

    Args:
        logprobs: (R, K) log-probs; -inf marks an absent entry (rows may hold 20 or 21 tokens).
        temperature: the sampling temperature the engine applied.
        after_temperature: True if `logprobs` are temperature-scaled (vLLM processed_logprobs).

    Returns:
        (R,) entropies on the T = 1 scale.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.ndim == 1:
        lp = lp[None, :]
    if after_temperature and temperature != 1.0:
        lp = lp * temperature  # back to the T = 1 scale, up to a per-row constant
    lp = lp - lp.max(axis=1, keepdims=True)  # the constant (and overflow) goes here
    p = np.exp(lp)  # exp(-inf) = 0 for absent entries
    p /= p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def full_vocab_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy in nats over the whole vocabulary from (R, V) T = 1 logits (opt-in `full_vocab`)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    return -(p * logp).sum(axis=1)
