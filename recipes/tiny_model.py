"""Small Qwen2 models built in code: random weights for engine tests and throughput benchmarks.

Nothing can be downloaded on the development machines, so every model the project runs on is
made here from a config (seconds). Qwen2 is the family both transformers and vLLM load;
heads are 64 wide (bf16 with 32-wide heads crashed vLLM's CPU attention kernel with SIGILL on
short prompts) and weights are float32 safetensors.

Presets are cached under `cache_root() / "models"`, one directory per hash of everything that
defines the model, so a changed config builds a new one instead of reusing a stale one.

A model saved without a tokenizer must be opened with `vllm.LLM(..., skip_tokenizer_init=True)`
and fed token ids; with a tokenizer (saved into the same directory) it takes text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

logger = logging.getLogger(__name__)

CACHE_ENV = "EAGER_RL_CACHE"
FORMAT_VERSION = 1  # bump when the saved layout changes, so cached models are rebuilt
SPEC_FILE = "eager_rl_model.json"  # written last: a directory without it is incomplete


@dataclass(frozen=True)
class Qwen2Spec:
    """Shape of a Qwen2 model; the head width is hidden_size / num_heads."""

    vocab_size: int = field(metadata={"help": "Embedding rows; at least the tokenizer's length."})
    hidden_size: int = field(metadata={"help": "Model width; num_heads * 64 keeps heads 64 wide."})
    num_layers: int = field(metadata={"help": "Decoder layers."})
    num_heads: int = field(metadata={"help": "Query heads."})
    num_kv_heads: int = field(metadata={"help": "Key/value heads (GQA when fewer than num_heads)."})
    intermediate_size: int = field(metadata={"help": "MLP width."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Longest sequence (RoPE table)."})
    tie_word_embeddings: bool = field(
        default=False,
        metadata={"help": "Share embedding and LM head. Off: untied weights are the safer case for weight sync."},
    )

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")


PRESETS: dict[str, Qwen2Spec] = {
    # ~60M parameters with a 32k vocabulary: a realistic LM-head and log-prob cost for benchmarks.
    "60m": Qwen2Spec(32768, 512, 8, 8, 2, 2048, max_position_embeddings=2048),
    # ~1M parameters, 128-token vocabulary (fits the arithmetic character tokenizer): for tests.
    "1m": Qwen2Spec(128, 128, 4, 2, 1, 512, max_position_embeddings=512),
}


def cache_root() -> Path:
    """`$EAGER_RL_CACHE`, else `<repo>/.cache` in a source checkout, else `~/.cache/eager-rl`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "eager-rl"


def fingerprint(*parts: object) -> str:
    """Short stable hash of JSON-able parts (dataclasses are taken as dicts)."""
    norm = [asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts]
    blob = json.dumps([FORMAT_VERSION, *norm], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase | None) -> str | None:
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256((text + str(tokenizer.chat_template)).encode()).hexdigest()[:12]


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    return {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}


def qwen2_config(spec: Qwen2Spec, tokenizer: PreTrainedTokenizerBase | None = None) -> Qwen2Config:
    """A float32 Qwen2 config; special token ids come from the tokenizer when there is one."""
    if tokenizer is not None and len(tokenizer) > spec.vocab_size:
        raise ValueError(f"vocab_size {spec.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    ids = special_token_ids(tokenizer) if tokenizer is not None else {}
    return Qwen2Config(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        use_sliding_window=False,
        dtype="float32",
        **ids,
    )


def save_model(
    model: Qwen2ForCausalLM,
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase | None,
    meta: dict,
) -> Path:
    """Write weights, config, generation config, tokenizer, then `SPEC_FILE`, which marks the model complete."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
        GenerationConfig(**special_token_ids(tokenizer)).save_pretrained(out)  # vLLM reads EOS from here
    (out / SPEC_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out


def build_random_qwen2(
    out_dir: str | Path,
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
    seed: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
    tie_word_embeddings: bool = False,
) -> Path:
    """Save a random-weight float32 `Qwen2ForCausalLM` (and the tokenizer, if given) to `out_dir`."""
    spec = Qwen2Spec(
        vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size,
        max_position_embeddings, tie_word_embeddings,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(qwen2_config(spec, tokenizer)).to(torch.float32)
    meta = {"kind": "random", "spec": asdict(spec), "seed": seed, "n_params": count_parameters(model)}
    return save_model(model, out_dir, tokenizer, meta)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied LM head counts once)."""
    return sum(p.numel() for p in model.parameters())


def cached_build(key: str, cache_dir: Path, build: Callable[[Path], object]) -> Path:
    """`cache_dir/key` if complete, else `build(tmp_dir)` moved there atomically.

    Concurrent builders (parallel tests) each build in their own temporary directory; the
    first rename wins and the others discard theirs.
    """
    target = cache_dir / key
    if (target / SPEC_FILE).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache is meant to be shared
        if target.exists() and not (target / SPEC_FILE).exists():
            shutil.rmtree(target, ignore_errors=True)  # a crashed earlier build
        try:
            tmp.rename(target)
        except OSError:
            if not (target / SPEC_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def random_qwen2(
    preset: str = "1m",
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Path:
    """Directory of a cached random model of a preset ("60m" or "1m"), built on first use."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    spec = PRESETS[preset]
    models = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    key = f"random-qwen2-{preset}-" + fingerprint(spec, seed, tokenizer_fingerprint(tokenizer))
    path = cached_build(key, models, lambda d: build_random_qwen2(d, seed=seed, tokenizer=tokenizer, **asdict(spec)))
    logger.info("random Qwen2 %s at %s", preset, path)
    return path
