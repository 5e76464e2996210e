"""What a rollout holds in host memory per generated token, and what a training step's peak costs above the engine.

    python -m benchmarks.step_memory [--prompts 64] [--scales 1 4] [--skip_training]

Two figures, `name=value` lines:
- `rollout_bytes_per_token_<generator>`: Python's allocation tracing around one `rollout.generate` call on the
  arithmetic model (64 held-out prompts x M = 16, the colocated CPU engine): the bytes the result holds (traced
  with it alive, minus traced after it is freed) per generated token, for `parallel` and for `eager_init` at
  the recipe's label-free threshold (0.6, where about half the sequences are forks). `rollout_bytes_per_token`
  is the larger of the two. Split into the values' arrays per token and the Python objects (trees,
  sequences, fork events) per sequence: the objects' share per token falls as sequences get longer.
- `eager_peak_rss_ratio_x<scale>`: a training step's peak resident memory above what the process held before
  its first step (engine reservation, model and data already in), for the recipe's `eager` over `parallel`, at
  the recipe's shape and at `scale` times its prompts. Each run is its own process: the peak is the kernel's
  high-water mark (VmHWM), reset (/proc/self/clear_refs) when training begins.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

GENERATORS = {"parallel": 0.6, "eager_init": 0.6}  # the recipe's eager_entropy_threshold for the label-free one
STEPS = 2


def rollout_bytes(n_prompts: int, m: int = 16) -> dict[str, float]:
    """Bytes the result of one `generate` call holds per generated token, per generator."""
    from recipes.engine_env import cpu_engine_env

    cpu_engine_env(kv_cache_gib=2)
    from benchmarks.common import arithmetic_batch
    from rollout import EagerConfig, generate
    from rollout.vllm_engine import VLLMEngine, build_llm

    model, _, _, prompts, _ = arithmetic_batch(n_prompts)
    engine = VLLMEngine(build_llm(model, dtype="float32", max_model_len=256))
    out: dict[str, float] = {}
    for method, threshold in GENERATORS.items():
        cfg = EagerConfig(method=method, max_sequences=m, entropy_threshold=threshold, temperature=1.0,
                          max_new_tokens=128, seed=0)
        generate(engine, prompts[:4], cfg)  # warm-up: the engine's own first-call allocations are not the result's
        gc.collect()
        tracemalloc.start()
        result = generate(engine, prompts, cfg)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tokens, sequences, forks = result.tokens_generated, result.n_sequences, result.n_branches
        arrays = sum(sys.getsizeof(column) for column in result.trees[0].arena.columns)  # the call's one arena
        del result
        gc.collect()
        held -= tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        out[f"rollout_bytes_per_token_{method}"] = held / tokens
        out[f"rollout_array_bytes_per_token_{method}"] = arrays / tokens  # the values themselves (12 + growth room)
        out[f"rollout_object_bytes_per_sequence_{method}"] = (held - arrays) / sequences  # trees, sequences, forks
        out[f"rollout_tokens_{method}"] = tokens
        out[f"rollout_sequences_{method}"] = sequences
        out[f"rollout_forks_{method}"] = forks
    out["rollout_bytes_per_token"] = max(out[f"rollout_bytes_per_token_{m}"] for m in GENERATORS)
    return out


def _status() -> dict[str, int]:
    return {k: int(v) * 1024 for k, v in re.findall(r"(Vm\w+):\s+(\d+) kB", Path("/proc/self/status").read_text())}


def step_peak(generator: str, scale: int, out: Path) -> dict[str, float]:
    """In this process: the recipe's trainer for `generator` at `scale` x its prompts, STEPS steps; the peak resident
    bytes above those held when training began."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from benchmarks.equal_time import training_args
    from benchmarks.grpo_equal_time import arithmetic_task
    from benchmarks.grpo_run import train_and_log
    from recipes.arithmetic.pretrain import ensure_model
    from rewards import boxed_accuracy
    from trainers import EagerGRPOTrainer

    class Peak(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            gc.collect()
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from now
            self.base = _status()["VmRSS"]

        def on_train_end(self, args, state, control, **kwargs):
            self.peak = _status()["VmHWM"]

    task = arithmetic_task("default", str(ensure_model()), heldout=1)  # training rows only; 0 would not end
    fields = {"rollout_generator": generator, "per_device_train_batch_size": 64 * scale}
    trainer = EagerGRPOTrainer(model=task.model, reward_funcs=[boxed_accuracy], train_dataset=Dataset.from_list(
        task.rows).shuffle(seed=0), args=training_args(task, fields, 0, str(out), STEPS, None))
    peak = Peak()
    trainer.add_callback(peak)
    logs = train_and_log(trainer)
    return {"peak_above_start_bytes": peak.peak - peak.base, "start_rss_bytes": peak.base,
            "tokens": sum(h["eager/rollout_tokens"] for h in logs)}


def peak_ratios(scales: list[int], out: Path) -> dict[str, float]:
    """Each (generator, scale) in a fresh process; eager's peak above start over parallel's, per scale."""
    figures: dict[str, float] = {}
    for scale in scales:
        peaks = {}
        for generator in ("parallel", "eager"):
            proc = subprocess.run([sys.executable, "-m", "benchmarks.step_memory", "--child", generator, str(scale),
                                   str(out / f"{generator}-x{scale}")], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{generator} x{scale} failed:\n{proc.stderr[-3000:]}")
            peaks[generator] = json.loads(proc.stdout.strip().splitlines()[-1])
            figures[f"{generator}_peak_above_start_mb_x{scale}"] = peaks[generator]["peak_above_start_bytes"] / 2**20
            figures[f"{generator}_start_rss_mb_x{scale}"] = peaks[generator]["start_rss_bytes"] / 2**20
        figures[f"eager_peak_rss_ratio_x{scale}"] = (peaks["eager"]["peak_above_start_bytes"]
                                                     / peaks["parallel"]["peak_above_start_bytes"])
    figures["eager_peak_rss_ratio"] = max(figures[f"eager_peak_rss_ratio_x{s}"] for s in scales)
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--skip_training", action="store_true", help="the rollout figure only")
    ap.add_argument("--out", type=Path, default=Path("outputs/step_memory"))
    ap.add_argument("--child", nargs=3, metavar=("GENERATOR", "SCALE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        generator, scale, out = args.child
        print(json.dumps(step_peak(generator, int(scale), Path(out))))
        return
    figures = {} if args.skip_training else peak_ratios(args.scales, args.out)  # before this process builds an engine
    figures.update(rollout_bytes(args.prompts))
    for name, value in figures.items():
        print(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")


if __name__ == "__main__":
    main()
