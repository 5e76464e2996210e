"""Thin adapter from a running vLLM server (`vllm serve`) to the driver's step interface.

Each sequence is one streamed `/v1/completions` request on token ids: the prompt (plus a
fork's shared prefix) goes in as ids, every streamed token comes back as its id with the
top-k log-probs of its position (`return_tokens_as_token_ids`), and closing a stream aborts
the request on the server. A fork is a new request whose prompt is the prompt plus the
parent's tokens so far; the server's prefix cache makes that prefix nearly free.

Requests stream on an asyncio loop in a background thread; `step()` hands the driver one
token of every running request, waiting until each has one. That lock step is what the
colocated engine does (one token per running request per engine step), so the driver makes
the same fork decisions in the same order, and the same seeds give the same trees as long as
the server computes the same log-probs (same model, dtype and vLLM build: a server batches
requests as they arrive, and a GPU's kernels may round differently for another batch shape).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollout.engine import Request, TokenOutput

LAUNCH_HINT = "README: 'Generation on a vLLM server' has the launch line"
# Tokens per streamed chunk. Each chunk costs the server a response object, a JSON dump and a socket
# write, and the client a read and a parse, whatever it holds; a fork decided at a token waits for
# its chunk. On the CPU benchmark (benchmarks.server_overhead) 4 was fastest of 1, 2, 4, 8 and 16.
STREAM_INTERVAL = 4
_ID_AT = len("token_id:")  # top log-prob keys with return_tokens_as_token_ids


class ServerError(RuntimeError):
    """The vLLM server cannot serve this rollout (down, misconfigured, or it failed mid-step)."""


@dataclass(frozen=True)
class ServerInfo:
    """What the adapter needs to know about a running server, read once at connection."""

    base_url: str
    model: str  # the served model name requests must name
    root: str  # what the server loaded (path or hub id)
    max_model_len: int
    prefix_caching: bool
    logprobs_after_temperature: bool | None  # None: the server does not say (no dev mode); probed instead
    max_running: int | None  # scheduler's max_num_seqs, when the server says
    max_logprobs: int | None


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def read_server(base_url: str, timeout: float = 10.0) -> ServerInfo:
    """Connect to the server at `base_url` and read its model, limits and cache settings."""
    base = base_url.rstrip("/")
    try:
        status, body = _get(f"{base}/v1/models", timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"no vLLM server answers at {base} ({exc}): start one first ({LAUNCH_HINT}).") from exc
    if status != 200:
        raise ServerError(f"{base}/v1/models answered HTTP {status}: is this a vLLM server? ({LAUNCH_HINT})")
    card = json.loads(body)["data"][0]
    _, metrics = _get(f"{base}/metrics", timeout)
    found = re.search(r'vllm:cache_config_info\{[^}]*enable_prefix_caching="(\w+)"', metrics)
    prefix = found is not None and found.group(1) == "True"
    after_t = max_running = max_logprobs = None
    status, body = _get(f"{base}/server_info?config_format=json", timeout)  # dev mode only (TRL needs it anyway)
    if status == 200:
        cfg = json.loads(body)["vllm_config"]
        after_t = str(cfg["model_config"]["logprobs_mode"]).startswith("processed")
        max_running = int(cfg["scheduler_config"]["max_num_seqs"])
        max_logprobs = int(cfg["model_config"]["max_logprobs"])
        prefix = bool(cfg["cache_config"]["enable_prefix_caching"])
    return ServerInfo(base, card["id"], card.get("root") or card["id"], int(card["max_model_len"]), prefix, after_t,
                      max_running, max_logprobs)


def check_model(info: ServerInfo, expected: str | None) -> None:
    """Refuse a server that serves another model than the one the caller trains or evaluates."""
    if expected is None:
        return
    names = {info.model.rstrip("/"), info.root.rstrip("/")}
    same_dir = os.path.isdir(expected) and os.path.isdir(info.root) and os.path.samefile(expected, info.root)
    if expected.rstrip("/") not in names and not same_dir:
        raise ServerError(
            f"the vLLM server at {info.base_url} serves {info.root!r} (name {info.model!r}), not {expected!r}: start "
            f"it on the same model, or give that name with `--served-model-name {expected}` ({LAUNCH_HINT})."
        )


@dataclass
class _Stream:
    tokens: deque = field(default_factory=deque)  # TokenOutputs received, not yet handed to the driver
    ended: bool = False  # the server closed the stream (its last token carries finished)
    error: str | None = None
    future: Future | None = None


class ServerEngine:
    """`rollout.engine.Engine` over a vLLM server's streamed `/v1/completions`."""

    def __init__(self, base_url: str, *, model: str | None = None, eos_token_ids: tuple[int, ...] | list[int] = (),
                 share: int = 1, timeout_s: float | None = None, stream_interval: int = STREAM_INTERVAL) -> None:
        """`eos_token_ids`: the model's end tokens, sent with every request's stop ids (a server started with
        `--generation-config vllm` does not read them from generation_config.json). `share`: processes that
        stream from this server at once (each counts on its share of the server's width). `timeout_s`: how
        long `step()` waits for a step's tokens before it calls the server hung (None: forever,
        as TRL's client does; a queued request may wait long behind other processes' requests).
        `stream_interval`: tokens per streamed chunk (a server started with a larger `--stream-interval` wins)."""
        if stream_interval < 1:
            raise ValueError(f"stream_interval={stream_interval}: a chunk holds at least 1 token.")
        self.info = read_server(base_url)
        check_model(self.info, model)
        if not self.info.prefix_caching:
            raise ServerError(
                f"the vLLM server at {self.info.base_url} runs without prefix caching, so every fork would recompute "
                f"its parent's prefix: restart it with --enable-prefix-caching ({LAUNCH_HINT}).")
        self.eos_token_ids = set(eos_token_ids)
        self.timeout_s, self._share, self._interval = timeout_s, max(1, share), stream_interval
        self._url = f"{self.info.base_url}/v1/completions"
        self._k, self._temperature, self._stop = 20, 1.0, sorted(self.eos_token_ids)
        self._streams: dict[str, _Stream] = {}
        self._waiting: set[str] = set()  # running requests with no token in hand: step() waits for these
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eager-server", daemon=True)
        self._thread.start()
        self._session = None
        try:
            self._session = asyncio.run_coroutine_threadsafe(self._open_session(), self._loop).result()
            after_t = self.info.logprobs_after_temperature
            self._after_t = self._probe_logprobs_mode() if after_t is None else after_t
        except BaseException:
            self.close()
            raise

    @property
    def logprobs_after_temperature(self) -> bool:
        return self._after_t

    @property
    def max_model_len(self) -> int:
        return self.info.max_model_len

    @property
    def max_running(self) -> int | None:
        """This process's share of the server's `max_num_seqs` when it reports it (dev mode)."""
        return None if self.info.max_running is None else max(1, self.info.max_running // self._share)

    def configure(self, temperature: float, top_logprobs: int, stop_token_ids: list[int], full_vocab: bool) -> None:
        if full_vocab:
            raise ValueError("entropy_source='full_vocab' would stream the whole vocabulary with every token from the "
                             "server: use entropy_source='topk' with a vLLM server.")
        if self.info.max_logprobs is not None and 0 <= self.info.max_logprobs < top_logprobs:
            raise ServerError(f"top_logprobs={top_logprobs} but the server at {self.info.base_url} returns at most "
                              f"{self.info.max_logprobs}: lower top_logprobs or restart it with --max-logprobs "
                              f"{top_logprobs}.")
        # The model's end tokens go with the caller's: a server on `--generation-config vllm` reads none itself.
        self._temperature, self._k = temperature, top_logprobs
        self._stop = sorted({*stop_token_ids, *self.eos_token_ids})

    def payload(self, request: Request) -> dict:
        """The `/v1/completions` body of one sequence."""
        return {
            "model": self.info.model, "prompt": list(request.token_ids), "max_tokens": request.max_tokens, "n": 1,
            "temperature": self._temperature, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "seed": request.seed,
            "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,  # no server defaults
            "logprobs": self._k, "stop_token_ids": self._stop, "stream": True,
            "return_token_ids": True, "return_tokens_as_token_ids": True, "skip_special_tokens": False,
            "stream_interval": self._interval,
        }

    def add(self, request: Request) -> None:
        payload = self.payload(request)
        stream = _Stream()
        with self._cond:
            self._streams[request.request_id] = stream
            self._waiting.add(request.request_id)
        stream.future = asyncio.run_coroutine_threadsafe(self._run(request.request_id, stream, payload), self._loop)

    def abort(self, request_ids: list[str]) -> None:
        with self._cond:
            dropped = [self._streams.pop(rid) for rid in request_ids if rid in self._streams]
            self._waiting.difference_update(request_ids)
        for stream in dropped:  # closing the stream aborts the request on the server
            stream.future.cancel()

    def has_unfinished(self) -> bool:
        with self._cond:
            return bool(self._streams)

    def step(self) -> list[TokenOutput]:
        """One token of every running request (waits for the slowest; raises if the server failed)."""
        with self._cond:
            while self._waiting:
                broken = [rid for rid in self._waiting if self._streams[rid].ended]
                if broken:
                    rid, s = broken[0], self._streams[broken[0]]
                    raise ServerError(f"the vLLM server at {self.info.base_url} failed request {rid} mid-stream "
                                      f"({s.error or 'the stream ended without a finish reason'}); this step's "
                                      "unfinished rollouts are lost.")
                if not self._cond.wait(timeout=self.timeout_s):
                    raise ServerError(f"the vLLM server at {self.info.base_url} left {len(self._waiting)} requests "
                                      f"without a token for {self.timeout_s} s (is it stopped?).")
            out = []
            for rid, stream in list(self._streams.items()):
                token = stream.tokens.popleft()
                out.append(token)
                if token.finished:
                    del self._streams[rid]
                elif not stream.tokens:
                    self._waiting.add(rid)
            return out

    def close(self) -> None:
        """Cancel every stream and stop the background loop."""
        self.abort(list(self._streams))
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:  # streams still reading their closing "[DONE]"
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- the background loop ------------------------------------------------------------------
    async def _open_session(self) -> Any:
        import aiohttp

        # One connection per stream, no client-side cap: the server's scheduler is the only queue. No reuse:
        # the server closes idle keep-alive connections (uvicorn: after 5 s), and a POST sent on one it just
        # closed fails ("Server disconnected"), e.g. the first requests of the next training step.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        # No read timeout per stream: a request queued behind others sends nothing until it runs; a hung
        # server is step()'s `timeout_s`, a dead one a closed connection.
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=30, sock_read=None))

    async def _run(self, rid: str, stream: _Stream, payload: dict) -> None:
        try:
            async with self._session.post(self._url, json=payload) as resp:
                if resp.status != 200:
                    raise ServerError(f"HTTP {resp.status}: {(await resp.text())[:300]}")
                async for line in resp.content:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    tokens = self._tokens(rid, json.loads(line[6:]))
                    with self._cond:
                        stream.tokens.extend(tokens)
                        if tokens and self._streams.get(rid) is stream:
                            self._waiting.discard(rid)
                            if not self._waiting:  # one wake-up a step, not one a token
                                self._cond.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead server, a refused request: the driver hears it at its next step
            with self._cond:
                stream.error = f"{type(exc).__name__}: {exc}"
                self._cond.notify_all()
        finally:
            with self._cond:
                stream.ended = True
                self._cond.notify_all()

    def _tokens(self, rid: str, event: dict) -> list[TokenOutput]:
        if "error" in event or not event.get("choices"):
            raise ServerError(str(event.get("error", event))[:300])
        choice = event["choices"][0]
        ids, lp = choice.get("token_ids") or [], choice.get("logprobs") or {}
        reason = choice.get("finish_reason")
        out = [self._token(rid, t, lp["token_logprobs"][j], lp["top_logprobs"][j])
               for j, t in enumerate(ids)]
        if reason is not None:
            if not out:
                raise ServerError(f"finish reason {reason!r} without a token")
            out[-1].finished, out[-1].finish_reason = True, reason
        return out

    def _token(self, rid: str, token: int, logprob: float, top: dict[str, float]) -> TokenOutput:
        """Lay the streamed top-k out as the colocated engine does: k ranked slots, then the sampled token when
        it falls outside them (the server then sends k + 1 entries). Keys read "token_id:<id>". The server sends
        the sampled token first, then the others in rank order; sorting by log-prob puts a sampled token that
        ties another exactly in front of it, where vLLM's rank may not (a tie to the last bit of a float)."""
        k = self._k
        ids = np.fromiter((int(key[_ID_AT:]) for key in top), dtype=np.int64, count=len(top))
        lps = np.fromiter(top.values(), dtype=np.float64, count=len(top))
        if len(ids) > k:  # the sampled token is the extra entry
            keep = ids != token
            extra_lp = lps[~keep][0]
            ids, lps = ids[keep], lps[keep]
        order = np.argsort(-lps, kind="stable")[:k]
        top_ids = np.full(k + 1, -1, dtype=np.int64)
        top_lps = np.full(k + 1, -np.inf)
        top_ids[: len(order)], top_lps[: len(order)] = ids[order], lps[order]
        if len(top) > k:
            top_ids[k], top_lps[k] = token, extra_lp
        return TokenOutput(rid, int(token), float(logprob), top_ids, top_lps, False, None)

    def _probe_logprobs_mode(self) -> bool:
        """Without dev mode the server does not say whether log-probs are taken after temperature: read the
        top 5 of one position at T=1 and at T=2; processed log-probs differ, raw ones do not."""
        tops = []
        for t in (1.0, 2.0):
            self.configure(t, 5, [], False)
            self.add(Request(f"probe-{t}", [0], 1, seed=1))
            while self.has_unfinished():
                (tok,) = self.step()
            tops.append(tok.topk_logprobs[:5])
        self.configure(1.0, 20, [], False)
        return bool(np.max(np.abs(tops[0] - tops[1])) > 1e-4)
