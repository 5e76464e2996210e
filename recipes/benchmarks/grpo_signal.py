"""GRPO learning signal per rollout token: parallel vs label-aware EAGer, on this machine (issue 5).

Same model (the arithmetic recipe's), data, seed and number of steps for each generator, the
rest from recipes/cpu_default.yaml; GRPO on CPU with the colocated vLLM engine. Per generator
it prints the rollout tokens per step, the fraction of prompts with a learning signal (their
rows' rewards differ, so their advantages are not all zero), the prompts with a signal per
1,000 rollout tokens and the wall time; last,
`signal_per_token_ratio=<x>`: eager's prompts-with-signal per rollout token / parallel's.

    python -m recipes.benchmarks.grpo_signal [--steps 8] [--prompts 8] [--num_generations 8]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env(kv_cache_gib=1)

RECIPE = Path(__file__).resolve().parents[1] / "cpu_default.yaml"
NOT_TRAINING_ARGS = ("model_name_or_path", "dtype", "dataset_name", "reward_funcs")  # other dataclasses' fields


def training_args(generator: str, opts: argparse.Namespace, output_dir: str):
    """EagerGRPOConfig from the CPU recipe, with the benchmark's generator, batch and steps."""
    import yaml

    from trainers import EagerGRPOConfig

    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in NOT_TRAINING_ARGS}
    recipe.update(
        rollout_generator=generator, max_steps=opts.steps, num_generations=opts.num_generations,
        per_device_train_batch_size=opts.prompts * opts.num_generations, output_dir=output_dir, report_to="none",
        seed=opts.seed, eager_entropy_threshold=opts.threshold, eager_solved_min_incorrect=opts.min_incorrect,
    )
    return EagerGRPOConfig(**recipe)


def run(generator: str, model: str, dataset, opts: argparse.Namespace) -> dict[str, float]:
    """Train `opts.steps` GRPO steps with `generator`; the eager/ metrics of every step, summed."""
    from transformers import PrinterCallback, ProgressCallback

    from rewards import boxed_accuracy
    from trainers import EagerGRPOTrainer

    with tempfile.TemporaryDirectory() as out:
        trainer = EagerGRPOTrainer(model=model, reward_funcs=[boxed_accuracy], train_dataset=dataset,
                                   args=training_args(generator, opts, out))
        for callback in (ProgressCallback, PrinterCallback):  # keep the output to the summary lines
            trainer.remove_callback(callback)
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "eager/rollout_tokens" in h]
    del trainer.vllm_generation.llm  # free this engine before the next generator builds its own
    del trainer
    gc.collect()
    tokens = sum(h["eager/rollout_tokens"] for h in logs)
    signal = sum(h["eager/frac_with_signal"] for h in logs) * opts.prompts
    return {
        "steps": len(logs),
        "tokens_per_step": tokens / len(logs),
        "frac_with_signal": signal / (len(logs) * opts.prompts),
        "frac_solved": sum(h["eager/frac_solved"] for h in logs) / len(logs),
        "sequences_per_prompt": sum(h["eager/sequences_per_prompt_mean"] for h in logs) / len(logs),
        "reward": sum(h["reward"] for h in logs) / len(logs),
        "signal_per_1k_tokens": 1000 * signal / tokens,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the arithmetic recipe's model)")
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps per generator")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--num_generations", type=int, default=8, help="rows per prompt (G), the budget M of eager")
    ap.add_argument("--digits", type=int, nargs="+", default=[2, 3, 4, 5], help="operand digits of the prompts")
    ap.add_argument("--threshold", type=float, default=0.6, help="eager_entropy_threshold")
    ap.add_argument("--min_incorrect", type=int, default=0, help="eager_solved_min_incorrect (1: stop at a mix)")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)

    from datasets import Dataset

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import TRAIN_SEED, make_problems, to_record

    model = opts.model or str(ensure_model())
    problems = make_problems(opts.steps * opts.prompts, TRAIN_SEED + opts.seed, opts.digits, split="train")
    dataset = Dataset.from_list([to_record(p) for p in problems])
    results = {g: run(g, model, dataset, opts) for g in ("parallel", "eager")}
    print(f"model={model} steps={opts.steps} prompts={opts.prompts} G={opts.num_generations} "
          f"digits={opts.digits} threshold={opts.threshold} min_incorrect={opts.min_incorrect} seed={opts.seed}")
    for generator, r in results.items():
        print(f"{generator:9s} tokens/step={r['tokens_per_step']:8.1f} frac_with_signal={r['frac_with_signal']:.3f} "
              f"signal/1k_tokens={r['signal_per_1k_tokens']:.3f} frac_solved={r['frac_solved']:.3f} "
              f"seq/prompt={r['sequences_per_prompt']:.2f} reward={r['reward']:.3f} wall={r['wall_s']:.1f}s")
    ratio = results["eager"]["signal_per_1k_tokens"] / max(results["parallel"]["signal_per_1k_tokens"], 1e-9)
    print(f"signal_per_token_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
