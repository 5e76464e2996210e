"""Seconds, not tokens: wall-clock, engine steps and tokens of parallel vs EAGer rollouts.

The arithmetic model (the one the project trains itself), `rollout.generate` on the colocated
kind of vLLM engine, M = 8, threshold 0.6, T = 1, 128 new tokens, at two scales:
  small  8 prompts x M   the engine runs far below its width: time follows engine steps;
  large 64 prompts x M   512 sequences for 256 engine slots: time follows tokens.
Methods: parallel, eager_init, online eager (stop at the first right answer), online eager
with `solved_min_incorrect=1` (a prompt needs a right and a wrong answer), all with the
training default `resample` forks, and online eager with the paper's `top2` forks. One engine, warmed
up first; the methods alternate `--repeats` times and each keeps its fastest run (the trees
are the same every run: same seeds, same batch). Answers are checked by exact match of the
last boxed answer (`rewards.extract_boxed`), which is what math-verify gives on these
digit-only answers, at a cost that does not blur the schedule's.

Per method and scale: wall seconds, engine steps (the critical path), tokens, peak running
sequences, prompts solved (a right answer among the kept sequences) and prompts with both a
right and a wrong answer (a GRPO learning signal). Two reference points from parallel's own
samples: the sequential floor (one sample at a time until the first right one) and one pass of
w samples per prompt (the width a schedule without a second pass needs to solve as much).
Last lines, in this order:
`eager_step_ratio` (online eager's engine steps / parallel's, large scale),
`eager_time_ratio_small`, `eager_time_ratio_large` (online eager's wall / parallel's).

    python -m benchmarks.rollout_wallclock [--repeats 2] [--pass_start_limit 0.5] [--profile]
"""

from __future__ import annotations

import argparse
import time

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

from benchmarks.common import draw_extremes, exact_verifier  # noqa: E402  (after the engine's environment is set)

METHODS = {  # name -> EagerConfig fields
    "parallel": dict(method="parallel"),
    "eager_init": dict(method="eager_init"),
    "eager": dict(method="eager", online=True),
    "eager_mixed": dict(method="eager", online=True, solved_min_incorrect=1),
    "eager_top2": dict(method="eager", online=True, fork_mode="top2"),  # the paper's forks (off-policy for RL)
}


def outcome(result, verifier) -> tuple[int, int]:
    """(prompts solved, prompts with both a right and a wrong answer) over the kept sequences."""
    solved = mixed = 0
    for tree in result.trees:
        verdicts = [verifier(tree.prompt_index, s.tokens) for s in tree.kept()]
        solved += any(verdicts)
        mixed += any(verdicts) and not all(verdicts)
    return solved, mixed


def sequential_floor(result, verifier) -> tuple[float, float]:
    """Parallel's own samples drawn one at a time, in random order, until the first right one.

    What sequential sampling with a perfect verifier would spend on this very batch to solve
    exactly what parallel solves (a prompt parallel never solves takes all its samples): a
    reference point for root-sampling schedules, not a bound (one draw can beat an expectation,
    and a schedule could also cut long sequences). Exact expectation over orders: with c right samples among a prompt's n, a
    wrong one is drawn before the first right one with probability 1/(c+1), a right one is the
    first with probability 1/c. Returns (expected tokens / parallel's tokens, mean expected
    samples drawn one after another per prompt: the passes such a schedule chains).
    """
    tokens = passes = 0.0
    for tree in result.trees:
        verdicts = [(verifier(tree.prompt_index, s.tokens), s.n_generated) for s in tree.kept()]
        right = sum(v for v, _ in verdicts)
        if right == 0:
            tokens += sum(n for _, n in verdicts)
            passes += len(verdicts)
            continue
        tokens += sum(n / right if v else n / (right + 1) for v, n in verdicts)
        passes += (len(verdicts) - right) / (right + 1) + 1
    return tokens / result.tokens_generated, passes / len(result.trees)


def one_pass_widths(result, verifier) -> list[tuple[float, float]]:
    """Per width w = 1..M: (expected prompts solved, expected tokens / parallel's) of one pass of w
    independent samples per prompt, drawn from parallel's own M (a random subset of w, exact expectation).

    What a schedule with no second pass (the critical path of one pass) gets by sampling every
    prompt equally wide: with c right among a prompt's n samples, w of them miss every right one
    with probability C(n - c, w) / C(n, w).
    """
    trees = [[(verifier(t.prompt_index, s.tokens), s.n_generated) for s in t.kept()] for t in result.trees]
    n = max(len(t) for t in trees)
    out = []
    for w in range(1, n + 1):
        solved = sum(1 - draw_extremes(sum(v for v, _ in t), len(t), w)[0] for t in trees if len(t) >= w)
        tokens = sum(sum(k for _, k in t) * w / len(t) for t in trees if len(t) >= w)
        out.append((solved, tokens / result.tokens_generated))
    return out


def run_scale(engine, tokenizer, problems, args) -> dict[str, dict[str, float]]:
    from rollout import EagerConfig, generate

    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    verifier = exact_verifier(tokenizer, [p.answer for p in problems])
    common = dict(max_sequences=args.max_sequences, entropy_threshold=args.threshold, temperature=args.temperature,
                  max_new_tokens=args.max_new_tokens, fork_mode="resample", seed=args.seed,
                  pass_start_limit=args.pass_start_limit, pass_roots=args.pass_roots)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name, fields in METHODS.items():
            cfg = EagerConfig(**{**common, **fields})  # method's own fields win (eager_top2's fork mode)
            start = time.perf_counter()
            result = generate(engine, prompts, cfg, verifier=verifier if cfg.method == "eager" else None)
            wall = time.perf_counter() - start
            if name in best and best[name]["wall_s"] <= wall:
                continue
            solved, mixed = outcome(result, verifier)
            if name == "parallel":
                floor = sequential_floor(result, verifier)
                widths = one_pass_widths(result, verifier)
            best[name] = dict(wall_s=wall, engine_steps=result.engine_steps, tokens=result.tokens_generated,
                              peak_running=result.peak_running, sequences=result.n_sequences, solved=solved,
                              mixed=mixed)
    best["parallel"]["floor_token_ratio"], best["parallel"]["floor_passes"] = floor
    best["parallel"]["widths"] = widths
    return best


def profile_online_eager(engine, tokenizer, problems, args) -> None:
    """cProfile of one online eager call (warm engine): where its time goes."""
    import cProfile
    import pstats

    from rollout import EagerConfig, generate

    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    cfg = EagerConfig(method="eager", online=True, max_sequences=args.max_sequences, entropy_threshold=args.threshold,
                      temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed,
                      pass_start_limit=args.pass_start_limit)
    verifier = exact_verifier(tokenizer, [p.answer for p in problems])
    prof = cProfile.Profile()
    prof.runcall(generate, engine, prompts, cfg, verifier=verifier)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(14)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the recipe's arithmetic model)")
    ap.add_argument("--small", type=int, default=8, help="prompts at the small scale")
    ap.add_argument("--large", type=int, default=64, help="prompts at the large scale")
    ap.add_argument("--max_sequences", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--pass_start_limit", type=float, default=0.5)
    ap.add_argument("--pass_roots", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also cProfile one online eager call at the large scale")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import heldout_problems
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model_dir = args.model or str(ensure_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = heldout_problems(max(args.small, args.large))
    engine = VLLMEngine(build_llm(model_dir, dtype="float32", max_model_len=256, seed=args.seed))
    warm = [tokenizer(p.prompt)["input_ids"] for p in problems[:4]]
    generate(engine, warm, EagerConfig(method="parallel", max_sequences=2, temperature=1.0, max_new_tokens=16))
    print(f"model={model_dir} M={args.max_sequences} threshold={args.threshold} T={args.temperature} "
          f"max_new_tokens={args.max_new_tokens} pass_start_limit={args.pass_start_limit} "
          f"engine_width={engine.max_running} repeats={args.repeats}")
    scales = {"small": args.small, "large": args.large}
    figures = {}
    for scale, n in scales.items():
        figures[scale] = run_scale(engine, tokenizer, problems[:n], args)
        for name, f in figures[scale].items():
            print(f"{scale} prompts={n} {name}: wall_s={f['wall_s']:.3f} engine_steps={f['engine_steps']} "
                  f"tokens={f['tokens']} peak_running={f['peak_running']} sequences={f['sequences']} "
                  f"solved={f['solved']} mixed={f['mixed']}")
        par = figures[scale]["parallel"]
        print(f"{scale} sequential floor (parallel's samples drawn one at a time until the first right one): "
              f"tokens={par['floor_token_ratio']:.3f} of parallel's, {par['floor_passes']:.2f} passes per prompt")
        target = par["solved"] - 1
        curve = " ".join(f"w{w}={solved:.1f}/{tokens:.2f}" for w, (solved, tokens) in enumerate(par["widths"], 1))
        need = next((w for w, (solved, _) in enumerate(par["widths"], 1) if solved >= target), None)
        print(f"{scale} one pass of w samples per prompt (expected solved/tokens of parallel's): {curve}")
        print(f"{scale} one-pass width to solve {target} (parallel - 1): "
              + (f"w={need}, tokens={par['widths'][need - 1][1]:.3f} of parallel's" if need else "none"))
        for name in ("eager_init", "eager", "eager_mixed", "eager_top2"):
            f = figures[scale][name]
            print(f"{scale} {name}_vs_parallel: time={f['wall_s'] / par['wall_s']:.3f} "
                  f"steps={f['engine_steps'] / par['engine_steps']:.3f} tokens={f['tokens'] / par['tokens']:.3f}")
    if args.profile:
        profile_online_eager(engine, tokenizer, problems[: args.large], args)
    large, small = figures["large"], figures["small"]
    print(f"eager_step_ratio={large['eager']['engine_steps'] / large['parallel']['engine_steps']:.3f}")
    print(f"eager_time_ratio_small={small['eager']['wall_s'] / small['parallel']['wall_s']:.3f}")
    print(f"eager_time_ratio_large={large['eager']['wall_s'] / large['parallel']['wall_s']:.3f}")


if __name__ == "__main__":
    main()
