"""Rewards, graders and a tiny model for the trainer tests (importable by dotted path from a launched run).

Prompts are "Question <i>: ..." with gold answers cycling yes / no / coin / coin. The grader and
the reward agree: "yes" is always right, "no" always wrong, "coin" right when the completion
text has an even length (about half the time for a random model). So a "yes" prompt is solved
by its first sequence, a "no" prompt never is, and "coin" prompts give a learning signal.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

LABELS = ("yes", "no", "coin", "coin")
TOKENIZER = Path("/work/shared/assets/qwen3-tokenizer")


def prompt_text(i: int) -> str:
    return f"Question {i}: what is {i} plus {i}? Think, then answer."


def rows(n: int) -> list[dict]:
    return [{"prompt": prompt_text(i), "answer": LABELS[i % len(LABELS)], "index": i} for i in range(n)]


def label_of(prompt: str) -> str:
    return LABELS[int(prompt.split()[1].rstrip(":")) % len(LABELS)]


def label_grade(text: str, gold: str) -> float:
    """Grader in rewards.Verifier's signature: (prediction, gold) -> 1.0 / 0.0."""
    return float(gold == "yes" or (gold == "coin" and len(text) % 2 == 0))


def label_reward(completions: list, answer: list, **kwargs) -> list[float]:
    return [label_grade(c, a) for c, a in zip(completions, answer)]


class Recorder:
    """A reward function that records what TRL hands it (thread-safe enough for one trainer)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.__name__ = "label_reward"  # TRL names reward functions by __name__

    def __call__(self, prompts, completions, completion_ids, answer, **kwargs) -> list[float]:
        rewards = label_reward(completions, answer)
        self.calls.append({"prompts": list(prompts), "answer": list(answer), "completion_ids": list(completion_ids),
                           "eager_group": kwargs.get("eager_group"), "eager_used": kwargs.get("eager_used"),
                           "eager_baseline": kwargs.get("eager_baseline"), "rewards": rewards})
        return rewards


def rank_reward(prompts, completions, answer, completion_ids=None, trainer_state=None, **kwargs) -> list[float]:
    """label_reward that also writes, per process, the rows it scored (multi-process tests)."""
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    out = Path(os.environ["EAGER_TEST_RECORD_DIR"]) / f"rank{rank}.jsonl"
    record = {"rank": rank, "world_size": world, "step": trainer_state.global_step if trainer_state else None,
              "prompts": list(prompts), "answer": list(answer), "completion_ids": [list(c) for c in completion_ids or []],
              "eager_group": kwargs.get("eager_group"),
              "eager_used": kwargs.get("eager_used")}
    with _lock, out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return label_reward(completions, answer)


_lock = threading.Lock()

if os.environ.get("EAGER_TEST_SERVER_SYNC"):  # a launched run in server mode on CPU (tests/trainers/server_sync.py)
    from tests.trainers.server_sync import install

    install(Path(os.environ["EAGER_TEST_SERVER_SYNC"]))


def build_tiny_model(out: Path, tied: bool = True) -> Path:
    """A random float32 Qwen2 (~10M parameters, mostly the 151k-token embedding) with the Qwen3 tokenizer.
    `tied=False` gives it its own output head (a CPU server re-packs no tied head after a reload)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64,  # head_dim 64: 32 crashed vLLM's CPU attention
        max_position_embeddings=256, tie_word_embeddings=tied, dtype="float32",
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

