"""A scripted engine for testing the branching logic without a model (not a mock of vLLM:
the driver only needs the `rollout.engine.Engine` interface, and this one implements it
with logits that a test chooses per prefix, sampled from a seeded numpy generator)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rollout.engine import Request, TokenOutput

EOS = 0


def peaked(vocab: int, favourite: int, margin: float) -> np.ndarray:
    """Logits with one favourite token `margin` nats above the rest (large margin = low entropy)."""
    z = np.zeros(vocab)
    z[favourite] = margin
    return z


class ScriptedEngine:
    """Logits = script(completion tokens so far, prompt length); top-k log-probs after temperature, like vLLM's processed mode."""

    def __init__(self, script: Callable[[list[int], int], np.ndarray], prompt_len_cap: int = 4096) -> None:
        self.script = script
        self.eos_token_ids = {EOS}
        self._max_len = prompt_len_cap
        self.running: dict[str, tuple[Request, int, np.random.Generator, list[int]]] = {}
        self.added: list[Request] = []
        self.aborted: list[str] = []
        self._t, self._k, self._stop = 1.0, 20, {EOS}

    @property
    def logprobs_after_temperature(self) -> bool:
        return True

    @property
    def max_model_len(self) -> int:
        return self._max_len

    def configure(self, temperature, top_logprobs, stop_token_ids, full_vocab) -> None:
        self._t, self._k, self._stop = temperature, top_logprobs, set(stop_token_ids) | {EOS}

    def add(self, request: Request) -> None:
        self.added.append(request)
        self.running[request.request_id] = (request, 0, np.random.default_rng(request.seed), [])

    def abort(self, request_ids) -> None:
        self.aborted.extend(request_ids)
        for r in request_ids:
            self.running.pop(r, None)

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def step(self) -> list[TokenOutput]:
        outs = []
        for rid in list(self.running):
            req, produced, rng, new = self.running[rid]
            completion = list(req.token_ids[self.prompt_len(req):]) + new
            z = self.script(completion, self.prompt_len(req)) / self._t
            lp = z - np.log(np.exp(z - z.max()).sum()) - z.max()
            tok = int(rng.choice(len(lp), p=np.exp(lp) / np.exp(lp).sum()))
            order = np.argsort(-lp, kind="stable")[: self._k]
            ids = np.full(self._k + 1, -1)
            lps = np.full(self._k + 1, -np.inf)
            ids[: len(order)], lps[: len(order)] = order, lp[order]
            if tok not in order:
                ids[self._k], lps[self._k] = tok, lp[tok]
            produced += 1
            reason = "stop" if tok in self._stop else ("length" if produced >= req.max_tokens else None)
            if reason:
                del self.running[rid]
            else:
                self.running[rid] = (req, produced, rng, new + [tok])
            outs.append(TokenOutput(rid, tok, float(lp[tok]), ids, lps, reason is not None, reason))
        return outs

    def prompt_len(self, req: Request) -> int:
        """Tests use prompts of token 1s only (completions never emit 1), so the prompt is the leading run of 1s."""
        n = 0
        while n < len(req.token_ids) and req.token_ids[n] == 1:
            n += 1
        return n
