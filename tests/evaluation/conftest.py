"""Fixtures for the evaluation tests: a tiny random Qwen2 with the real Qwen3 tokenizer, a fake engine.

The model is random, so it is basically never right: the end-to-end tests check structure
(files, counts, resume), and the metrics are checked on hand-made records instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
TOKENIZER_DIR = REPO.parent / "shared" / "assets" / "qwen3-tokenizer"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 Qwen2 (float32, head_dim 64: vLLM's CPU kernels are happy) saved with a chat template."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(TOKENIZER_DIR / name, out / name)
    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        num_key_value_heads=1, head_dim=64, max_position_embeddings=1024, tie_word_embeddings=True,
        # a wide init spreads the entropies (about 1.6-3.0 nats), so some prompts branch and some do not
        initializer_range=0.3, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    Qwen2ForCausalLM(cfg).to(torch.float32).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark files shared by the project (`<repo>/../shared/data`)."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The Qwen3 tokenizer (with its chat template), shared by the project."""
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def qwen_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


class FakeEngine:
    """A deterministic engine: each request's tokens depend only on its seed (like vLLM with per-request seeds).

    Positions alternate between confident and uncertain top-k distributions at random, so
    EAGer forks some of the time; token 0 is EOS and ends a sequence early now and then.
    """

    logprobs_after_temperature = True
    max_model_len = 4096
    eos_token_ids = {0}

    def __init__(self, vocab: int = 20) -> None:
        self.vocab = vocab
        self.running: dict[str, tuple] = {}
        self.steps = 0

    def configure(self, temperature: float, top_logprobs: int, stop_token_ids: list[int], full_vocab: bool) -> None:
        self.k = top_logprobs

    def add(self, request) -> None:
        self.running[request.request_id] = (request, np.random.default_rng(request.seed), [0])

    def abort(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self.running.pop(rid, None)

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def step(self) -> list:
        from rollout.engine import TokenOutput

        self.steps += 1
        outs = []
        for rid, (req, rng, produced) in list(self.running.items()):
            sharp = rng.random() < 0.7
            logits = rng.normal(size=self.vocab) * (6.0 if sharp else 0.3)
            lps = logits - np.log(np.exp(logits).sum())
            order = np.argsort(-lps)
            token = int(rng.choice(self.vocab, p=np.exp(lps)))
            produced[0] += 1
            finished = token == 0 or produced[0] >= req.max_tokens
            reason = ("stop" if token == 0 else "length") if finished else None
            top_ids, top_lps = order.astype(np.int64), lps[order]
            outs.append(TokenOutput(rid, token, float(lps[token]), top_ids, top_lps, finished, reason))
            if finished:
                del self.running[rid]
        return outs


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_fake_engine() -> type[FakeEngine]:
    """The class itself, for tests that need several independent engines."""
    return FakeEngine
