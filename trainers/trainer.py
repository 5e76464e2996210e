"""`EagerGRPOTrainer`: TRL's GRPOTrainer with EAGer rollouts on its vLLM engine (colocated or a server).

What it overrides in `trl.GRPOTrainer`, and why:
- `__init__` passes the rollout hook (`trainers.rollout_hook.eager_rollout`) when
  `args.rollout_generator` is an EAGer generator; with the CPU build of vLLM it builds the
  engine without compiling and pushes weights with `reload_weights` (`trainers.weight_sync`).
  With `vllm_mode: server` every process streams its own rollouts from TRL's server
  (`rollout.server_engine`); TRL's client on the main process keeps pushing the weights.
- `train` closes a server engine afterwards.
- `_generate_and_score_completions` stashes the batch rows (the hook never sees dataset
  columns), and after TRL's method returns, recomputes the advantages over each prompt's real
  group (rows are shared unequally among prompts), shapes the loss batch and logs the `eager/` metrics.
  A step whose vLLM server failed raises with the URL, the step and the checkpoint to resume from
  (`trainers.cluster`).
- `_generate` scores the rows as soon as they exist (TRL scores after its log-prob pass) and
  chooses the step's rows and those that stay in the loss batch (`trainers.loss_batch`): unused
  rows (by default), groups whose rewards all agree (`dynamic_sampling`, any generator), groups past the step's rows under `oversample`. `_calculate_rewards` returns those
  scores; each row is scored against the prompt it actually holds, unused rows NaN.
- `_get_per_token_logps_and_entropies` runs TRL's log-prob pass over the rows that stay only.
- `_prepare_inputs` splits those rows over the gradient-accumulation slices unevenly (by at most one
  row), where TRL's equal split would need padding rows (`trainers.loss_batch.split_rows`).
- `log` adds `eager/train_wall_s`.
With `rollout_generator: parallel` and neither `dynamic_sampling` nor `oversample` nothing changes but
the `eager/` metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer
from trl.trainer.utils import (shuffle_sequence_dict, split_pixel_values_by_grid, split_tensor_dict,
                               unsplit_pixel_values_by_grid)

from rollout.config import pool_size
from trainers.advantages import group_advantages
from trainers.callbacks import TrainSecondsLimit
from trainers.cluster import kill_if_testing, server_failure, wandb_defaults
from trainers.loss_batch import (BATCH_KEYS, ROW_KEYS, budget_normalizer, keep_rows, rows_each_process_keeps,
                                 rows_to_keep, signal_rows, split_rows, step_groups)
from trainers.config import EagerGRPOConfig
from trainers.dataset_check import check_trainer_rows
from trainers.metrics import step_metrics
from trainers.tree_credit import segment_advantages
from trainers.rollout_hook import Grade, check_hook_inputs, eager_rollout
from trainers.step_state import Scored, StepState
from trainers.weight_sync import cpu_build, cpu_engine_kwargs, use_cpu_weight_sync

logger = logging.getLogger(__name__)


class EagerGRPOTrainer(GRPOTrainer):
    """GRPO with `rollout_generator` parallel | eager_init | eager_adapt | eager.

    `verifier(prediction, gold) -> float | None` grades sequences for label-aware `eager`
    while they generate (default: `rewards.Verifier(kind=args.eager_answer_kind)`).
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: EagerGRPOConfig | None = None,
                 train_dataset: Any = None, *, verifier: Grade | None = None, **kwargs: Any) -> None:
        if not isinstance(args, EagerGRPOConfig):
            raise TypeError(f"args must be an EagerGRPOConfig, got {type(args).__name__}.")
        if args.is_eager:
            check_hook_inputs(args, kwargs, train_dataset)
            kwargs["rollout_func"] = eager_rollout
        train_dataset = check_trainer_rows(model, args, train_dataset, kwargs)  # bad rows: now, not at their step
        wandb_defaults(args)
        on_cpu_engine = args.use_vllm and args.vllm_mode == "colocate" and cpu_build()
        with cpu_engine_kwargs(on_cpu_engine, dtype=lambda: self.model.dtype):
            super().__init__(model, reward_funcs, args, train_dataset, **kwargs)
        if on_cpu_engine:
            use_cpu_weight_sync(self.vllm_generation)
        if verifier is None and args.rollout_generator == "eager":
            from rewards import Verifier

            verifier = Verifier(kind=args.eager_answer_kind)
        self.eager_grade = verifier
        self.eager_think_end_token_id = self._single_token_id(args.eager_think_end_token)
        self.eager_step = StepState()  # what this step's hook and overrides share (made fresh at each step)
        self._eager_engine = None
        self._eager_tokens_total = 0.0
        self.eager_t0: float | None = None  # when the first step began: training seconds count from here
        self.add_callback(TrainSecondsLimit(self))

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's training loop; afterwards (or on an error) a server engine's open streams are cancelled and its
        connection thread ends. The next call builds a new one."""
        try:
            return super().train(*args, **kwargs)
        finally:
            close = getattr(self._eager_engine, "close", None)  # the colocated engine belongs to TRL
            if close is not None:
                close()
                self._eager_engine = None

    # --- what the rollout hook uses -------------------------------------------------------------
    def eager_engine(self) -> Any:
        """The step-wise `rollout` engine: over the colocated `vllm.LLM`, or over TRL's server (built on first use)."""
        if self._eager_engine is None:
            if self.args.vllm_mode == "server":
                from rollout.server_engine import ServerEngine

                self._eager_engine = ServerEngine(self.args.vllm_server_url, model=self.model.name_or_path,
                                                  eos_token_ids=list(self.eos_token_ids),
                                                  share=self.accelerator.num_processes)
            else:
                from rollout.vllm_engine import VLLMEngine

                self._eager_engine = VLLMEngine(self.vllm_generation.llm)
        return self._eager_engine

    def decode_completion(self, completion_ids: list[int]) -> str:
        """Completion text as TRL decodes it for the rewards."""
        return self._tokenizer.decode(completion_ids, skip_special_tokens=True)

    @property
    def eager_pad_completion(self) -> list[int]:
        """The one-token completion of an unused row."""
        return [self.eos_token_ids[0] if self.eos_token_ids else self._tokenizer.pad_token_id]

    def _single_token_id(self, token: str | None) -> int | None:
        if token is None:
            return None
        ids = self._tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"eager_think_end_token={token!r} is {len(ids)} tokens for this tokenizer: give a single "
                             "token (e.g. '</think>' for Qwen3), or None.")
        return ids[0]

    # --- what TRL's step calls ------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, Any]:
        self.eager_step = step = StepState(inputs=inputs)
        start = time.perf_counter()
        if self.eager_t0 is None:  # the first step of this process: a resumed run goes on from its checkpoint
            self.eager_t0 = start - self._resumed_counters()
        try:
            output = super()._generate_and_score_completions(inputs)
        except Exception as exc:
            on_server = self.args.use_vllm and self.args.vllm_mode == "server" and self.model.training
            failed = server_failure(exc, self.args.vllm_server_url, self.state.global_step + 1, self.args.output_dir)
            if not on_server or failed is None:
                raise
            raise failed from exc
        finally:
            step.logp_rows = step.sampling_logps = None  # TRL's loss pass (with gradients) covers its own rows
        mode = "train" if self.model.training else "eval"
        # "Generation": everything here but the rewards (weight sync, rollouts, TRL's log-prob pass over
        # the rows); optimisation is what the step spends after this.
        self._metrics[mode]["eager/time_generation_s"].append(time.perf_counter() - start - step.score_s)
        self._metrics[mode]["eager/time_scoring_s"].append(step.score_s)
        scored = step.scored
        rewards_per_func, groups, used, stats, baselines = (scored.rewards_per_func, scored.groups, scored.used,
                                                            scored.stats, scored.baselines)
        if self.args.is_eager:
            advantages, std = group_advantages(rewards_per_func, groups, self.reward_weights,
                                               self.scale_rewards, self.multi_objective_aggregation,
                                               baselines if self.args.advanced.baseline == "verdicts" else None)
            output["advantages"] = self._local(advantages, len(inputs))
            if self.args.advanced.credit == "segments":  # per token: every token once, weighted by its branch
                rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
                output["advantages"] = segment_advantages(
                    step.rollout.trees, step.row_sequences, self._local(rewards, len(inputs)),
                    self._local(baselines, len(inputs)), output["completion_ids"].shape[1],
                    self.scale_rewards != "none").to(output["completion_ids"].device)
            self._correct_trl_logs(mode, advantages, std, used)
        if mode == "train":
            output = self._shape_loss_batch(output, len(inputs))
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        metrics = step_metrics(rewards, groups, used, group_size, stats[0].item(), stats[1].item())
        metrics["eager/engine_steps"] = stats[2].item()
        if mode == "train":
            self._eager_tokens_total += stats[0].item()
            metrics.update(self._mechanism_metrics(len(inputs)))
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)
        self._metrics[mode]["eager/rollout_tokens_cumulative"] = [self._eager_tokens_total]
        return output

    def _generate(self, prompts: list) -> tuple:
        """TRL's generation (or the rollout hook), then the rewards at once: TRL would score after its log-prob pass,
        and the step must know which rows it trains on before that pass (`_choose_rows`)."""
        out = super()._generate(prompts)
        _, completion_ids_list, _, completions, sampling_logps, extra_fields, _, _ = out
        inputs = self.eager_step.inputs
        for i, row in enumerate(inputs):  # as TRL merges them next: each row's own prompt and columns
            row.update({key: values[i] if isinstance(values, list) else values for key, values in extra_fields.items()
                        if not isinstance(values, list) or i < len(values)})
        self.eager_step.rewards = self._score_rows(inputs, prompts, completions, completion_ids_list)
        self.eager_step.sampling_logps = sampling_logps
        if self.model.training:
            self._choose_rows(len(inputs))
            kill_if_testing(self.state.global_step + 1)
        return out

    def _calculate_rewards(self, inputs: list[dict], prompts: list, completions: list,
                           completion_ids_list: list) -> torch.Tensor:
        """The rewards `_generate` computed (the same rows: TRL calls this right after its log-prob pass)."""
        step = self.eager_step
        if step.rewards is None:
            raise RuntimeError("TRL asked for rewards before it generated: the order of GRPOTrainer's step changed; "
                               "see tests/trainers/test_trl_contract.py.")
        rewards, step.rewards = step.rewards, None
        return rewards

    def _choose_rows(self, n: int) -> None:
        """The step's rows and the rows that stay in its loss batch (trainers.loss_batch), from the rewards; TRL's
        log-prob pass then covers only the rows that stay."""
        scored = self.eager_step.scored
        rewards_per_func, groups, used = scored.rewards_per_func, scored.groups, scored.used
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        step = used.clone()
        if not self.args.is_eager and self.args.rows_per_step is not None:  # parallel under oversample: DAPO's pick
            g = self.num_generations
            signal = signal_rows(rewards, groups, used).view(-1, g).any(dim=1).view(self.accelerator.num_processes, -1)
            chosen = [step_groups(flags.tolist(), pool_size(n, self.args.oversample) // g) for flags in signal]
            step = torch.tensor([c for flags in chosen for c in flags], device=used.device).repeat_interleave(g)
        stay = step & signal_rows(rewards, groups, used) if self.args.dynamic_sampling else step
        self.eager_step.step_rows, self.eager_step.loss_rows = step, stay
        if self.args.drops_unused_rows and self.args.advanced.credit != "segments":
            local = self._local(stay, n).cpu()
            rows = self.eager_step.logp_rows
            self.eager_step.logp_rows = local if rows is None else rows & local

    def _resumed_counters(self) -> float:
        """The training seconds of the run this one resumes, and its rollout tokens (into the cumulative count),
        from the logs its checkpoint holds (TRL restores them before the first step); 0 for a fresh run. So
        `eager/train_wall_s`, `eager/rollout_tokens_cumulative` and `max_train_seconds` count the whole run."""
        logged = [h for h in self.state.log_history if "eager/train_wall_s" in h]
        if not logged:
            return 0.0
        self._eager_tokens_total = logged[-1].get("eager/rollout_tokens_cumulative", 0.0)
        return logged[-1]["eager/train_wall_s"]

    def _mechanism_metrics(self, n: int) -> dict[str, float]:
        """What the step trained on and where it came from: the rows its loss batch holds (padding aside: without
        dynamic sampling, groups whose rewards agree included), the share of them that an entropy fork started,
        and the share of the used rows that started after a verdict on their prompt (budget a verdict placed:
        fills, probes, extra passes). Both shares are 0 for parallel."""
        step = self.eager_step
        stay = self._local(step.loss_rows, n).tolist()
        forks = moved = used = 0
        if self.args.is_eager:
            trees = step.rollout.trees
            for r, slot in enumerate(step.row_sequences):
                if slot is None:
                    continue
                seq = trees[slot[0]].sequences[slot[1]]
                used += 1
                forks += stay[r] and seq.parent is not None
                moved += sum(seq.verdicts_at_start) > 0
        counts = torch.tensor([float(sum(stay)), float(forks), float(moved), float(used)], device=self.accelerator.device)
        trained, forks, moved, used = self.accelerator.gather(counts).view(-1, 4).sum(dim=0).tolist()
        return {"eager/rows_trained": trained, "eager/fork_rows_frac": forks / trained if trained else 0.0,
                "eager/moved_rows_frac": moved / used if used else 0.0,
                "eager/rows_without_loss": float(step.rows_without_loss)}

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                           logits_to_keep: int, *args: Any, **kwargs: Any) -> tuple:
        """TRL's log-prob pass (no gradient) over the rows that stay in the loss batch only; a row that leaves gets
        the engine's own log-probs (ratio 1 in TRL's importance-sampling statistics; nothing trains on it). With the
        gradient on (the loss step), TRL's own, over the rows it is given."""
        rows, sampling_logps = self.eager_step.logp_rows, self.eager_step.sampling_logps
        per_row = [v for v in (*args, *kwargs.values()) if torch.is_tensor(v) and v.dim() > 0]
        # One process only: under ZeRO-3 or FSDP every forward gathers parameters, so processes must run the same
        # number of forward chunks; and a step with no row left keeps TRL's pass (it cannot concatenate nothing).
        if rows is None or torch.is_grad_enabled() or per_row or len(rows) != input_ids.size(0) or bool(rows.all()) \
                or not bool(rows.any()) or self.accelerator.num_processes > 1:
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              *args, **kwargs)
        idx = rows.nonzero().flatten().to(input_ids.device)
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            model, input_ids[idx], attention_mask[idx], logits_to_keep, *args, **kwargs)
        full = logps.new_zeros(input_ids.size(0), logps.size(1))
        skipped = (~rows).nonzero().flatten().tolist() if sampling_logps else []
        for r in skipped:
            values = sampling_logps[r][:logits_to_keep]
            values = torch.tensor([float("nan") if x is None else x for x in values])
            full[r, :len(values)] = torch.nan_to_num(values).to(full)
        full[idx] = logps
        if entropies is not None:
            entropies = entropies.new_zeros(full.shape).index_copy(0, idx, entropies)
        return full, entropies, aux

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        """TRL's, except that a training batch whose rows left the loss batch is split for gradient accumulation into
        slices that differ by at most one row (`split_rows`): TRL's split needs equal slices, which would need padding
        rows that pay a forward and backward each."""
        slices = self.args.steps_per_generation
        if not (self.model.training and self.args.drops_unused_rows and slices > 1):
            return super()._prepare_inputs(generation_batch)
        if self._step % (slices * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            if set(batch) <= {*ROW_KEYS, *BATCH_KEYS}:
                self._buffered_inputs = split_rows(shuffle_sequence_dict(batch), slices)
            else:  # rows stayed (`_shape_loss_batch`: images): TRL's equal split, pixel values by their grid
                batch = shuffle_sequence_dict(split_pixel_values_by_grid(batch))
                self._buffered_inputs = [unsplit_pixel_values_by_grid(b) for b in split_tensor_dict(batch, slices)]
        return self._buffered_inputs[self._step % slices]

    def _local(self, values: torch.Tensor, n: int) -> torch.Tensor:
        """This process's slice of gathered per-row values."""
        return values[self.accelerator.process_index * n:][:n]

    def _budget_normalizer(self, n: int) -> torch.Tensor:
        """Over the rows the step may spend: 1/oversample of the n it was handed, when it was handed more."""
        rows = pool_size(n, self.args.oversample) if self.args.rows_per_step is not None else n
        return budget_normalizer(rows * self.accelerator.num_processes, self.args.max_completion_length,
                                 self.accelerator.device)

    def _shape_loss_batch(self, output: dict[str, Any], n: int) -> dict[str, Any]:
        """The step's rows and normaliser; then only the rows that stay (see loss_batch and `_choose_rows`)."""
        step, stay = self.eager_step.step_rows, self.eager_step.loss_rows
        if not self.args.is_eager and not bool(step.all()):  # parallel's groups past the step: no advantage, and
            # no tokens in the normaliser (an EAGer rollout's unused rows have neither already)
            local = self._local(step, n).to(output["advantages"].device)
            output["advantages"] = output["advantages"] * (local.view(-1, *[1] * (output["advantages"].dim() - 1)))
            loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
            output["num_items_in_batch"] = self.accelerator.gather(loss_mask[local].sum()).sum().to(
                output["num_items_in_batch"])
        if self.args.loss_normalizer == "budget":
            output["num_items_in_batch"] = self._budget_normalizer(n)
        processes = self.accelerator.num_processes
        if not self.args.drops_unused_rows or not set(output) <= {*ROW_KEYS, *BATCH_KEYS}:
            self.eager_step.rows_without_loss = n * processes - int(stay.sum())
            return output
        most = rows_each_process_keeps(stay.view(-1, n).sum(dim=1).tolist(), self.args.steps_per_generation, n)
        self.eager_step.rows_without_loss = most * processes - int(stay.sum())  # padding: equal rows per process
        return keep_rows(output, rows_to_keep(self._local(stay, n), most))

    def _score_rows(self, inputs: list[dict], prompts: list, completions: list,
                    completion_ids_list: list) -> torch.Tensor:
        n, device = len(inputs), self.accelerator.device
        if self.args.is_eager:  # the hook wrote each row's own prompt into its inputs
            prompts = [row["prompt"] for row in inputs]
            groups = torch.tensor([row["eager_group"] for row in inputs], device=device)
            used = torch.tensor([row["eager_used"] for row in inputs], device=device)
            baselines = torch.tensor([row["eager_baseline"] for row in inputs], dtype=torch.float32, device=device)
            ends = [*self.eos_token_ids, self._tokenizer.pad_token_id]
            shapes = torch.tensor([[len(ids), ids[-1] not in ends] for ids in completion_ids_list], device=device)
            self.eager_step.shapes = self.accelerator.gather(shapes)  # (N, 2) length, truncated
            result = self.eager_step.rollout
            stats = torch.tensor([result.tokens_generated, result.n_branches, result.engine_steps],
                                 dtype=torch.float32, device=device)
        else:  # TRL's layout: G consecutive rows per prompt, all used
            g = self.num_generations if self.model.training else self.num_generations_eval
            # a group may straddle two processes when a process's rows are not a multiple of G
            groups = (self.accelerator.process_index * n + torch.arange(n, device=device)) // g
            used = torch.ones(n, dtype=torch.long, device=device)
            baselines = torch.full((n,), 0.5, device=device)
            tokens = float(sum(len(ids) for ids in completion_ids_list))
            # vLLM takes one engine step per token of the longest completion: the critical path
            stats = torch.tensor([tokens, 0.0, float(max(map(len, completion_ids_list)))], device=device)
        start = time.perf_counter()
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.eager_step.score_s += time.perf_counter() - start
        groups, used = self.accelerator.gather(groups), self.accelerator.gather(used).bool()
        baselines = self.accelerator.gather(baselines)
        stats = self.accelerator.gather(stats).view(-1, 3)
        stats = torch.cat([stats[:, :2].sum(dim=0), stats[:, 2:].max(dim=0).values])  # sums; the slowest process
        rewards_per_func[~used] = torch.nan  # an unused row has no reward and no place in a baseline
        self.eager_step.scored = Scored(rewards_per_func.clone(), groups, used, stats, baselines)
        if self.args.is_eager:
            self.eager_step.row_prompts = gather_object(prompts)
        return rewards_per_func

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, plus `eager/train_wall_s`: seconds since the first step began (generation, scoring and
        optimisation; the trainer's set-up before it is not counted), so runs compare on a time axis."""
        if self.eager_t0 is not None and self.model.training:
            logs["eager/train_wall_s"] = time.perf_counter() - self.eager_t0
        super().log(logs, start_time)

    def _correct_trl_logs(self, mode: str, advantages: torch.Tensor, std: torch.Tensor, used: torch.Tensor) -> None:
        """TRL logged fixed-stride statistics, unused rows as empty completions and the sampler's prompts:
        put the values of the real rows and groups in their place."""
        metrics = self._metrics[mode]
        metrics["frac_reward_zero_std"][-1] = torch.isclose(std, torch.zeros_like(std))[used].float().mean().item()
        shapes = self.eager_step.shapes
        lengths, truncated = shapes[used, 0].float(), shapes[used, 1].bool()
        terminated = lengths[~truncated] if (~truncated).any() else torch.zeros(1)
        for key, values in (("", lengths), ("terminated_", terminated)):
            for stat in ("mean", "min", "max"):
                metrics[f"completions/{stat}_{key}length"][-1] = getattr(values, stat)().item()
        metrics["completions/clipped_ratio"][-1] = truncated.float().mean().item()
        for key, values in (("advantages", advantages.tolist()), ("prompt", self.eager_step.row_prompts)):
            log = self._logs[key]
            tail = values[-len(log):] if log else []
            for i, value in enumerate(tail):
                log[len(log) - len(tail) + i] = value
