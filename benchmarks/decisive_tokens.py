"""Where is a sample's answer decided, and does a fork there find a right answer more cheaply than a new root?

The bound under EAGer's forks in training. A fork pays only if, at the tokens where the model is
uncertain, a re-sampled continuation of a wrong sample comes back right more often per generated
token than a fresh sample of the prompt does. Per model:

1. Roots: `--roots` T=1 samples of each of `--prompts` (`--smollm2_prompts`) training prompts (the
   arithmetic model on the mixed set of 1-8 digit sums, the fine-tuned SmolLM2 on the word problems' train
   split), with the top-20 entropy of every token on the T=1 scale, as the driver's fork rule sees it.
2. For every root, `--draws` continuations of each kind, in one engine batch:
     fork    the root's prefix up to its highest-entropy token, that token sampled again
             (`fork_mode=resample`: the continuation is an exact policy sample given the prefix)
     surprise the same at the token the root drew with the lowest probability (where a slip is likeliest)
     random  the same at a position drawn uniformly (does the entropy pick the place?)
     root    a new root of the prompt.

Printed per model (SmolLM2's lines carry a `smollm2_` prefix):
- `tokens_above_threshold_frac=`: the share of generated tokens above the recipe's fork threshold;
- `decisive_fork_rate=`, `surprise_fork_rate=`, `random_fork_rate=`, `new_root_rate=`: how often a continuation
  of a wrong root comes back right; `fork_minus_root_rate=` and `surprise_minus_root_rate=`, paired per prompt
  (the mean over its wrong roots), with their 95% t intervals;
- `fork_group_token_ratio=`: generated tokens of a group of the prompt's roots plus one fork of each,
  against the roots plus as many new roots (the shared prefix counted once);
- `fork_right_per_token_ratio=`: right answers per generated token of forks over wrong roots, against roots;
- `fork_row_tokens_ratio=`: what the trainer still pays: a fork's completion tokens in the loss (its
  shared prefix included, as every row's) against a new root's;
- `probe_signal_per_second_ratio=`: a replay at equal seconds of the probe of an all-wrong prompt, each
  wrong root followed by one fork or by one new root: signal rows (a group with a right and a wrong
  answer) per second of screening, probe and loss rows (`benchmarks.allocation_bound`'s cost model,
  fitted on the arithmetic model here), forks over roots, beside the share of probed rows that a right
  answer turned into signal (`probe_fork_signal_frac`, `probe_root_signal_frac`);
- `fill_seconds_ratio=`: a mixed prompt filled to twice its roots by forks of its samples or by new
  roots: the seconds of the group, forks over roots (both groups carry a signal).
It writes every figure to `--json`, one entry per model with its settings (a run of one model keeps the others').

    python -m benchmarks.decisive_tokens [--models arithmetic smollm2] [--prompts 512] [--smollm2_prompts 128]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=2)

KINDS = ("fork", "surprise", "random", "root")
RECIPES = {"arithmetic": Path(__file__).resolve().parents[1] / "recipes" / "cpu_default.yaml",
           "smollm2": Path(__file__).resolve().parent / "wordmath" / "grpo.yaml"}


@dataclass
class Task:
    """One model's prompts (token ids), their gold answers, how a completion is checked, and its fork threshold."""

    model_dir: str
    tokenizer: object
    prompts: list[list[int]]
    golds: list[str]
    is_correct: object
    threshold: float
    max_new_tokens: int


def recipe_threshold(model: str) -> float:
    import yaml

    return float(yaml.safe_load(RECIPES[model].read_text())["eager_entropy_threshold"])


def load_task(model: str, n: int, seed: int) -> Task:
    from transformers import AutoTokenizer

    if model == "arithmetic":
        from benchmarks.allocation_bound import MIXES
        from recipes.arithmetic.pretrain import ensure_model
        from recipes.arithmetic.task import TRAIN_SEED, is_correct, make_problems

        model_dir = str(ensure_model())
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        problems = make_problems(n, TRAIN_SEED + 101 + seed, MIXES["mixed"])
        prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
        return Task(model_dir, tokenizer, prompts, [p.answer for p in problems], is_correct,
                    recipe_threshold(model), 128)
    from benchmarks.wordmath.model import MAX_NEW_TOKENS, ensure_model
    from benchmarks.wordmath.task import TRAIN_SEED, is_correct, make_problems, render_prompt

    model_dir = str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = make_problems(n, TRAIN_SEED + 101 + seed)
    prompts = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in problems]
    # The benchmark's recipe leaves the threshold to a calibration: the paper's 2.0 is its stand-in.
    return Task(model_dir, tokenizer, prompts, [p.answer for p in problems], is_correct,
                recipe_threshold(model), MAX_NEW_TOKENS)


def complete(engine, requests) -> dict[str, list[int]]:
    """Run `requests` (rollout.engine.Request) to their end on `engine`; the new token ids of each."""
    out: dict[str, list[int]] = {r.request_id: [] for r in requests}
    for r in requests:
        engine.add(r)
    while engine.has_unfinished():
        for o in engine.step():
            out[o.request_id].append(o.token_id)
    return out


def continuation_requests(task: Task, roots, draws: int, seed: int):
    """Per root {(prompt i, sample s): (tokens, entropies, sampled log-probs)}, `draws` continuations of each kind;
    (requests, plan), plan[request id] = (root key, kind, shared prefix tokens)."""
    from rollout.driver import request_seed
    from rollout.engine import Request

    rng = random.Random(seed)
    requests, plan = [], {}
    for (i, s), (tokens, entropies, logprobs) in roots.items():
        decisive = max(range(len(tokens)), key=lambda t: entropies[t])
        surprise = min(range(len(tokens)), key=lambda t: logprobs[t])  # the least likely token it drew
        for d in range(draws):
            for k, kind in enumerate(KINDS):
                pos = {"fork": decisive, "surprise": surprise, "random": rng.randrange(len(tokens)), "root": 0}[kind]
                rid = f"{i}.{s}.{kind}.{d}"
                room = task.max_new_tokens - pos
                requests.append(Request(rid, task.prompts[i] + tokens[:pos], room,
                                        request_seed(seed + 1, i, s, 1 + d * len(KINDS) + k)))
                plan[rid] = ((i, s), kind, pos)
    return requests, plan


def sample(task: Task, roots_per_prompt: int, draws: int, seed: int):
    """(roots {(i, s): (tokens, entropies, right, log-probs)}, continuations {rid: (root key, kind, prefix, new
    tokens, right)})."""
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    llm = build_llm(task.model_dir, dtype="float32", max_model_len=256, seed=seed)
    engine = VLLMEngine(llm)
    config = EagerConfig(method="parallel", max_sequences=roots_per_prompt, temperature=1.0,
                         max_new_tokens=task.max_new_tokens, seed=seed)
    result = generate(engine, task.prompts, config)
    right = lambda i, ids: bool(task.is_correct(task.tokenizer.decode(ids, skip_special_tokens=True),  # noqa: E731
                                                task.golds[i]))
    roots = {(t.prompt_index, s.index): (list(s.tokens), list(s.entropies), right(t.prompt_index, s.tokens),
                                         list(s.logprobs)) for t in result.trees for s in t.sequences if s.tokens}
    requests, plan = continuation_requests(task, {k: (v[0], v[1], v[3]) for k, v in roots.items()}, draws, seed)
    engine.configure(config.temperature, config.top_logprobs, config.stop_token_ids, False)
    new = complete(engine, requests)
    del engine, llm
    gc.collect()
    conts = {}
    for rid, (key, kind, pos) in plan.items():
        full = roots[key][0][:pos] + new[rid]
        conts[rid] = (key, kind, pos, len(new[rid]), right(key[0], full))
    return roots, conts


def group_replay(roots, by_root, keys, kind: str, draws: int, probe: bool) -> tuple[float, float]:
    """(signal rows, seconds) over prompts `keys` (prompt -> its root keys), each root followed by one `kind`
    continuation, per draw. A probe trains the group only if a continuation made it mixed; a fill always does."""
    from benchmarks.allocation_bound import DEFAULT_COST, Cost, mixed

    cost = Cost(*DEFAULT_COST)
    signal = seconds = 0.0
    for d in range(draws):
        for prompt_roots in keys.values():
            first = [(roots[k][2], len(roots[k][0])) for k in prompt_roots]
            second = [(ok, n) for k in prompt_roots for n, ok, _ in by_root[k][kind][d:d + 1]]
            rows = len(first) + len(second) if (not probe or mixed(first + second)) else 0
            signal += rows
            seconds += cost.seconds([first, second], rows)
    return signal, seconds


def figures(task: Task, roots, conts, draws: int) -> dict:
    """Every printed figure of one model (see the module)."""
    from benchmarks.equal_time.stats import interval
    from rollout.types import INHERITED

    nan = float("nan")
    mean = lambda xs: statistics.mean(xs) if xs else nan  # noqa: E731
    entropies = [h for v in roots.values() for h in v[1] if h != INHERITED]
    by_root: dict = defaultdict(lambda: defaultdict(list))  # root -> kind -> [(new tokens, right, prefix)]
    for key, kind, pos, n, ok in conts.values():
        by_root[key][kind].append((n, ok, pos))
    wrong = [k for k, v in roots.items() if not v[2]]
    prompts: dict = defaultdict(list)
    for k in wrong:
        prompts[k[0]].append(k)
    rate = lambda kind, keys: mean([ok for k in keys for _, ok, _ in by_root[k][kind]])  # noqa: E731
    delta = interval([rate("fork", ks) - rate("root", ks) for ks in prompts.values()])  # the prompt is the unit
    surprise = interval([rate("surprise", ks) - rate("root", ks) for ks in prompts.values()])
    tokens = lambda kind, keys: sum(n for k in keys for n, _, _ in by_root[k][kind])  # noqa: E731
    right = lambda kind, keys: sum(ok for k in keys for _, ok, _ in by_root[k][kind])  # noqa: E731
    every = list(roots)

    def per_token(kind: str) -> float:
        """Right answers per generated token of `kind` continuations of wrong roots, over new roots' (nan: no right
        new root)."""
        root = right("root", wrong) / max(1, tokens("root", wrong))
        return right(kind, wrong) / max(1, tokens(kind, wrong)) / root if root else nan

    root_tokens = sum(len(roots[k][0]) for k in every) * draws
    out = {
        "prompts": len(task.prompts), "roots": len(roots), "root_accuracy": mean([v[2] for v in roots.values()]),
        "threshold": task.threshold, "mean_entropy": mean(entropies),
        "tokens_above_threshold_frac": mean([h > task.threshold for h in entropies]),
        "wrong_roots": len(wrong), "prompts_with_a_wrong_root": len(prompts),
        "decisive_position_frac": mean([by_root[k]["fork"][0][2] / len(roots[k][0]) for k in every]),
        "decisive_fork_rate": rate("fork", wrong), "surprise_fork_rate": rate("surprise", wrong),
        "surprise_minus_root_rate": surprise.mean, "surprise_minus_root_ci95_low": surprise.low,
        "surprise_minus_root_ci95_high": surprise.high, "random_fork_rate": rate("random", wrong),
        "new_root_rate": rate("root", wrong), "fork_minus_root_rate": delta.mean,
        "fork_minus_root_ci95_low": delta.low, "fork_minus_root_ci95_high": delta.high,
        "fork_tokens_mean": tokens("fork", every) / (len(every) * draws),
        "root_tokens_mean": tokens("root", every) / (len(every) * draws),
        "fork_group_token_ratio": (root_tokens + tokens("fork", every)) / (root_tokens + tokens("root", every)),
        "fork_right_per_token_ratio": per_token("fork"), "surprise_right_per_token_ratio": per_token("surprise"),
        "surprise_tokens_mean": tokens("surprise", every) / (len(every) * draws),
        "fork_row_tokens_ratio": mean([n + pos for k in every for n, _, pos in by_root[k]["fork"]])
                                 / mean([n for k in every for n, _, _ in by_root[k]["root"]]),
    }
    groups: dict = defaultdict(list)
    for k in every:
        groups[k[0]].append(k)
    hard = {i: ks for i, ks in groups.items() if not any(roots[k][2] for k in ks)}
    mixed_ = {i: ks for i, ks in groups.items() if 0 < sum(roots[k][2] for k in ks) < len(ks)}
    out["hard_prompts"], out["mixed_prompts"] = len(hard), len(mixed_)
    rows = 2 * draws * sum(map(len, hard.values()))  # every probed group's rows, had each found a right answer
    probe = {kind: group_replay(roots, by_root, hard, kind, draws, True) for kind in KINDS}
    fill = {kind: group_replay(roots, by_root, mixed_, kind, draws, False)[1] for kind in KINDS}
    (rs, rt), rf = probe["root"], fill["root"]
    for kind, name in (("fork", ""), ("surprise", "surprise_")):
        fs, ft = probe[kind]
        out[f"probe_{kind}_signal_frac"], out["probe_root_signal_frac"] = (fs / rows, rs / rows) if rows else (nan, nan)
        out[f"{name}probe_signal_per_second_ratio"] = (fs / ft) / (rs / rt) if rs and ft else nan  # no root signal
        out[f"{name}fill_seconds_ratio"] = fill[kind] / rf if rf else nan
    return out


HEADLINE = ("tokens_above_threshold_frac", "decisive_fork_rate", "surprise_fork_rate", "random_fork_rate",
            "new_root_rate", "fork_minus_root_rate", "fork_minus_root_ci95_low", "fork_minus_root_ci95_high",
            "surprise_minus_root_rate", "surprise_minus_root_ci95_low", "surprise_minus_root_ci95_high",
            "fork_group_token_ratio", "fork_right_per_token_ratio", "surprise_right_per_token_ratio",
            "fork_row_tokens_ratio", "probe_signal_per_second_ratio", "surprise_probe_signal_per_second_ratio",
            "fill_seconds_ratio", "surprise_fill_seconds_ratio")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["arithmetic", "smollm2"], choices=list(RECIPES))
    ap.add_argument("--prompts", type=int, default=512, help="training prompts of the arithmetic model")
    ap.add_argument("--smollm2_prompts", type=int, default=128, help="training prompts of SmolLM2 (a larger model)")
    ap.add_argument("--roots", type=int, default=4, help="T=1 samples per prompt")
    ap.add_argument("--draws", type=int, default=2, help="continuations of each kind per root")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("docs/results/decisive_tokens.json"))
    opts = ap.parse_args(argv)
    if "smollm2" in opts.models:
        from benchmarks import smollm2

        if not smollm2.is_available():
            ap.error(f"--models smollm2 needs the SmolLM2 weights: {smollm2.INSTALL_HINT} (or leave smollm2 out).")
    settings = {k: v for k, v in vars(opts).items() if k not in ("json", "models")}
    report = json.loads(opts.json.read_text()) if opts.json.exists() else {"models": {}}  # other models' stay
    for model in opts.models:
        task = load_task(model, opts.prompts if model == "arithmetic" else opts.smollm2_prompts, opts.seed)
        roots, conts = sample(task, opts.roots, opts.draws, opts.seed)
        out = figures(task, roots, conts, opts.draws)
        report["models"][model] = {**out, "settings": settings}
        prefix = "" if model == "arithmetic" else f"{model}_"
        print(f"{model}: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in out.items() if k not in HEADLINE), flush=True)
        for k in HEADLINE:
            print(f"{prefix}{k}={out[k]:.4f}", flush=True)
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
