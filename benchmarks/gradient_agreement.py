"""Which allocation teaches most per second, without a training run: gradient agreement at a fixed checkpoint.

At one checkpoint, a reference gradient of the GRPO objective is estimated from many parallel samples
(`--ref_samples` per prompt, on `--ref_prompts` prompts the batches never see). Then each generator
makes steps on the same batches of prompts, exactly as training would (TRL's trainer, the rollout
hook, the loss), without the optimiser update; for each step: the cosine of its gradient with the
reference, its norm, the step's seconds (generation, scoring, loss forward and backward), the share of
prompts with a learning signal and the rows the loss kept. It separates too little signal (a low
cosine from noise) from a wrong direction, in minutes, and shows which allocation to train with.

Generators (`GENERATORS`; recipe: `recipes/cpu_default.yaml`, every step trains on its P x G rows):
  parallel         TRL's own sampling, P prompts x G
  parallel_half    2P prompts x G/2 (the alternative a user would try first)
  eager_passes     the paper's online passes (EAGer's training allocation before the screen allocation)
  screen*          allocation=screen: f x P prompts handed (oversample), a pool of P x G sequences,
                   screening, fills and probes as named

Prints, per generator, mean cosine (with its standard error over batches), mean seconds, mean norm;
last: `eager_cosine_per_second_ratio=` (the headline generator's mean cosine per mean second over
parallel's) and `eager_snr_per_second_ratio=` (the same for cos^2 / (1 - cos^2), which grows with the
number of independent samples a gradient averages).

    python -m benchmarks.gradient_agreement [--mix mixed] [--batches 8] [--generators parallel screen ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from recipes.engine_env import cpu_engine_env

cpu_engine_env()

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu_default.yaml"
NOT_TRAINING_ARGS = ("model_name_or_path", "dtype", "dataset_name", "reward_funcs")
MIXES = {"default": (4, 5, 6), "mixed": (1, 2, 3, 4, 5, 6, 7, 8)}
SCREEN = dict(rollout_generator="eager", dynamic_sampling=True)  # (the training allocation)
PLAIN = dict(rollout_generator="parallel", dynamic_sampling=False, oversample=1.0)  # TRL's own sampling
TREES = {"baseline": "verdicts", "credit": "segments"}  # segment credit for trees, with the baseline it needs
GENERATORS = {  # name -> EagerGRPOConfig fields over the recipe's; every step trains on the recipe's rows (P x G)
    "parallel": PLAIN,
    "parallel_half": dict(PLAIN, num_generations=4),
    "eager_passes": dict(rollout_generator="eager", eager_advanced={"allocation": "passes"}),
    "screen": dict(SCREEN, oversample=2.0),
    # Screen wide and keep what disagrees: no fills, one pass; flat groups leave the loss batch.
    "wide_r8": dict(SCREEN, oversample=1.0, eager_screen_roots=8),
    "wide_r4": dict(SCREEN, oversample=2.0, eager_screen_roots=4),
    "wide_r2": dict(SCREEN, oversample=4.0, eager_screen_roots=2),
    "screen_fill4": dict(SCREEN, oversample=2.0, eager_fill_size=4),
    "screen_f3": dict(SCREEN, oversample=3.0),
    "screen_r3": dict(SCREEN, oversample=2.0, eager_screen_roots=3),
    "screen_probe": dict(SCREEN, oversample=2.0, eager_advanced={"probe_roots": 2}),
    "screen_f3_probe": dict(SCREEN, oversample=3.0, eager_advanced={"probe_roots": 2}),
    # Screening by entropy: one root, forks where it is uncertain; segment credit for the trees.
    "screen_forks": dict(SCREEN, oversample=2.0, eager_screen_roots=1, eager_entropy_threshold=0.6,
                         eager_advanced={"screen_forks": 2, **TREES}, dynamic_sampling=False),
    "screen_forks_f4": dict(SCREEN, oversample=4.0, eager_screen_roots=1, eager_entropy_threshold=0.6,
                            eager_advanced={"screen_forks": 1, **TREES}, dynamic_sampling=False),
}


def trainer_for(model: str, fields: dict, out: str, prompts: int | None = None):
    import yaml
    from datasets import Dataset

    from rewards import boxed_accuracy
    from trainers import EagerGRPOConfig, EagerGRPOTrainer

    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in NOT_TRAINING_ARGS}
    if prompts is not None:  # the reference: `prompts` prompts x num_generations rows
        recipe["per_device_train_batch_size"] = prompts * fields["num_generations"]
    recipe.update(output_dir=out, report_to="none", **fields)
    args = EagerGRPOConfig(**recipe)
    data = Dataset.from_list([{"prompt": "1+1=", "answer": "2"}])  # never sampled: batches are handed in
    trainer = EagerGRPOTrainer(model=model, reward_funcs=[boxed_accuracy], train_dataset=data, args=args)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()  # a training step (TRL reads the mode for its group size and metrics)
    return trainer


def step_gradient(trainer, problems: list, step: int) -> dict:
    """One training step's gradient on `problems` (each repeated num_generations times, as TRL's sampler does)."""
    import torch

    g = trainer.num_generations
    inputs = [{"prompt": p.prompt, "answer": p.answer} for p in problems for _ in range(g)]
    trainer.state.global_step = step  # fresh rollout seeds per batch (and TRL's weight sync, as in training)
    trainer.model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    output = trainer._generate_and_score_completions(inputs)
    t1 = time.perf_counter()
    trainer.compute_loss(trainer.model, output).backward()
    t2 = time.perf_counter()
    grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]).double()
    metrics = trainer._metrics["train"]
    return dict(grad=grad, seconds=t2 - t0, generation_s=t1 - t0, loss_s=t2 - t1,
                signal=metrics["eager/frac_with_signal"][-1], rows=int(output["completion_ids"].shape[0]),
                tokens=metrics["eager/rollout_tokens"][-1])


def release(trainer) -> None:
    import gc

    if getattr(trainer, "vllm_generation", None) is not None:
        del trainer.vllm_generation.llm
    gc.collect()


def reference_gradient(model: str, problems: list, samples: int, out: str):
    """The reference, cached on disk by model, prompts and samples (it costs minutes and never changes)."""
    import hashlib

    import torch

    from recipes.tiny_model import cache_root

    weights = Path(model) / "model.safetensors"
    key = hashlib.sha256(repr((weights.stat().st_mtime_ns if weights.exists() else model, [p.prompt for p in problems],
                               samples)).encode()).hexdigest()[:16]
    path = cache_root() / "gradient_reference" / f"{key}.pt"
    if path.exists():
        return torch.load(path)
    trainer = trainer_for(model, dict(rollout_generator="parallel", num_generations=samples), out, len(problems))
    try:
        grad = step_gradient(trainer, problems, 0)["grad"]
    finally:
        release(trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(grad, path)
    return grad


def run_generator(name: str, model: str, batches: list[list], reference, out: str) -> list[dict]:
    import torch

    trainer = trainer_for(model, GENERATORS[name], out)
    handed = trainer.args.per_device_train_batch_size // trainer.num_generations  # prompts a step sees
    try:
        step_gradient(trainer, batches[0][:handed], 10_000)  # warm-up: engine, caches; not counted
        steps = []
        for b, batch in enumerate(batches):
            s = step_gradient(trainer, batch[:handed], b + 1)
            s["cosine"] = float(torch.nn.functional.cosine_similarity(s["grad"], reference, dim=0))
            s["norm"] = float(s.pop("grad").norm())
            steps.append(s)
        return steps
    finally:
        release(trainer)


def summary(steps: list[dict]) -> dict:
    mean = lambda key: statistics.mean(s[key] for s in steps)  # noqa: E731
    cos = [s["cosine"] for s in steps]
    snr = statistics.mean(c * c / max(1e-9, 1 - c * c) for c in cos)
    return dict(cosine=mean("cosine"), cosine_se=statistics.stdev(cos) / math.sqrt(len(cos)) if len(cos) > 1 else 0,
                seconds=mean("seconds"), generation_s=mean("generation_s"), loss_s=mean("loss_s"), norm=mean("norm"),
                signal=mean("signal"), rows=mean("rows"), tokens=mean("tokens"), snr=snr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: the recipe's arithmetic model)")
    ap.add_argument("--mix", default="mixed", choices=list(MIXES), help="digit counts of the prompts")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--ref_prompts", type=int, default=48)
    ap.add_argument("--ref_samples", type=int, default=32)
    ap.add_argument("--generators", nargs="+", default=["parallel", "parallel_half", "screen", "screen_fill4"],
                    choices=list(GENERATORS))
    ap.add_argument("--headline", default="screen", choices=list(GENERATORS))
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import make_problems

    model = opts.model or str(ensure_model())
    most = 4 * 8  # prompts the widest generator sees in a step (oversample 4 of the recipe's 8)
    pool = make_problems(opts.ref_prompts + opts.batches * most, 1000 + opts.seed, MIXES[opts.mix])
    ref_problems, rest = pool[: opts.ref_prompts], pool[opts.ref_prompts:]
    batches = [rest[b * most:(b + 1) * most] for b in range(opts.batches)]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        reference = reference_gradient(model, ref_problems, opts.ref_samples, out)
        print(f"reference: {opts.ref_prompts} prompts x {opts.ref_samples} samples, {time.perf_counter() - t0:.0f} s, "
              f"norm {float(reference.norm()):.4g}", flush=True)
        results = {}
        for name in opts.generators:
            results[name] = summary(run_generator(name, model, batches, reference, out))
            r = results[name]
            print(f"{name}: cosine={r['cosine']:.3f}+-{r['cosine_se']:.3f} seconds={r['seconds']:.2f} "
                  f"(generation {r['generation_s']:.2f}, loss {r['loss_s']:.2f}) norm={r['norm']:.4g} "
                  f"signal={r['signal']:.3f} loss_rows={r['rows']:.1f} tokens={r['tokens']:.0f} snr={r['snr']:.3f}",
                  flush=True)
    print(f"model={model} mix={opts.mix} batches={opts.batches}")
    if "parallel" in results and opts.headline in results:
        par, head = results["parallel"], results[opts.headline]
        print(f"eager_snr_per_second_ratio={(head['snr'] / head['seconds']) / (par['snr'] / par['seconds']):.3f}")
        print(f"eager_cosine_per_second_ratio={(head['cosine'] / head['seconds']) / (par['cosine'] / par['seconds']):.3f}")


if __name__ == "__main__":
    main()
