"""Held-out accuracy of an arithmetic model, sampled with vLLM and checked by exact match.

The check is the task's own (`task.is_correct`: the last boxed answer, found by
`rewards.extract_boxed`, equals the gold string); digit answers need no math-verify.

    python -m recipes.arithmetic.evaluate --model DIR [--n 400] [--temperature 1.0] [--compare_hf]
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import HfArgumentParser

from recipes.arithmetic.task import HELDOUT_DIGITS, Problem, heldout_problems, is_correct, max_solution_chars

if TYPE_CHECKING:
    from vllm import LLM

logger = logging.getLogger(__name__)
RECIPE_TEMPERATURE = 1.0  # GRPO samples at T=1 (TRL's default), so that is the accuracy RL starts from


def max_completion_tokens(digits: int) -> int:
    """Room for a worked solution of `digits`-digit operands and its EOS, with slack for a wandering sample."""
    return max_solution_chars(digits) + 16


def load_llm(model_dir: str | Path, max_model_len: int = 256, seed: int = 0, **kwargs: Any) -> LLM:
    """A vLLM engine on the model with the CPU settings (float32, eager mode, 32-token KV blocks for prefix hits)."""
    from recipes.heldout import build_engine

    return build_engine(model_dir, max_model_len=max_model_len, seed=seed, **kwargs)


@dataclass
class EvalReport:
    accuracy: float
    stderr: float  # over problems (recipes.heldout)
    n: int
    temperature: float
    per_digits: dict[int, float]  # digit count -> accuracy
    samples: list[tuple[str, str, str]] = field(repr=False)  # (prompt, completion, gold) of every problem

    def summary(self) -> str:
        per = " ".join(f"{d}d={a:.2f}" for d, a in sorted(self.per_digits.items()))
        return f"accuracy={self.accuracy:.3f} +- {self.stderr:.3f} (n={self.n}, T={self.temperature}) {per}"


def evaluate(
    model_dir: str | Path | None = None,
    n: int = 400,
    temperature: float = RECIPE_TEMPERATURE,
    digits: Sequence[int] = HELDOUT_DIGITS,
    seed: int = 0,
    llm: LLM | None = None,
    problems: Sequence[Problem] | None = None,
) -> EvalReport:
    """Sample one completion per held-out problem (greedy when temperature is 0) and score it.

    Pass an existing `llm` to reuse an engine; otherwise one is built on `model_dir`.
    """
    from recipes.heldout import sample_accuracy

    if llm is None and model_dir is None:
        raise ValueError("pass model_dir or an llm")
    problems = list(problems) if problems is not None else heldout_problems(n, digits)
    llm = llm if llm is not None else load_llm(model_dir, seed=seed)
    accuracy, texts = sample_accuracy(
        llm, [p.prompt for p in problems], [p.answer for p in problems], is_correct,
        max_tokens=max_completion_tokens(max(p.digits for p in problems)), temperature=temperature, seed=seed)
    by_digits = defaultdict(list)
    for p, right in zip(problems, accuracy.per_problem):
        by_digits[p.digits].append(right)
    return EvalReport(
        accuracy=accuracy.mean,
        stderr=accuracy.stderr,
        n=len(problems),
        temperature=temperature,
        per_digits={d: sum(v) / len(v) for d, v in by_digits.items()},
        samples=[(p.prompt, t[0], p.answer) for p, t in zip(problems, texts)],
    )


def hf_greedy(model_dir: str | Path, prompts: Sequence[str], max_new_tokens: int = 64) -> list[str]:
    """Greedy completions from transformers, one prompt at a time (no padding to get wrong)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        texts.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return texts


@dataclass
class EvalArgs:
    model: str = field(metadata={"help": "Model directory (from recipes.arithmetic.pretrain)."})
    n: int = field(default=400, metadata={"help": "Held-out problems."})
    temperature: float = field(default=RECIPE_TEMPERATURE, metadata={"help": "Sampling temperature; 0 is greedy."})
    digits: list[int] = field(default_factory=lambda: list(HELDOUT_DIGITS), metadata={"help": "Digit mixture."})
    greedy_too: bool = field(default=False, metadata={"help": "Also report greedy accuracy."})
    compare_hf: int = field(
        default=0, metadata={"help": "Check vLLM's greedy output against HF's on this many prompts."}
    )
    show: int = field(default=3, metadata={"help": "Print this many samples."})


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (args,) = HfArgumentParser(EvalArgs).parse_args_into_dataclasses(args=argv)
    llm = load_llm(args.model)
    problems = heldout_problems(args.n, args.digits)
    temps = [args.temperature] + ([0.0] if args.greedy_too and args.temperature else [])
    for t in temps:
        report = evaluate(llm=llm, problems=problems, temperature=t)
        print(report.summary())
        for prompt, completion, gold in report.samples[: args.show]:
            print(f"--- {prompt} (gold {gold})\n{completion}")
    if args.compare_hf:
        greedy = evaluate(llm=llm, problems=problems[: args.compare_hf], temperature=0.0)
        cap = max_completion_tokens(max(args.digits))
        hf = hf_greedy(args.model, [p.prompt for p in problems[: args.compare_hf]], max_new_tokens=cap)
        same = sum(v == h for (_, v, _), h in zip(greedy.samples, hf))
        print(f"HF vs vLLM greedy: {same}/{len(hf)} identical completions")
        for (prompt, v, _), h in zip(greedy.samples, hf):
            if v != h:
                print(f"--- differs on {prompt}\nvLLM: {v!r}\nHF:   {h!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
