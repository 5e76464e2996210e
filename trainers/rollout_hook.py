"""TRL's rollout hook for the EAGer generators: P prompts x G rows in, P x G rows out.

TRL hands each process its prompts already repeated G = num_generations times. The hook
generates once per distinct prompt with `rollout.generate` (budget M <= G sequences each,
and for label-aware `eager` a shared pool that moves budget from solved to unsolved prompts
within the call), then lays the sequences out over the same P x G rows:

    prompt k owns rows [k*G, (k+1)*G). Its first min(n_k, G) sequences fill them in order.
    A prompt with n_k > G sequences (it took budget from solved prompts) spills into the rows
    its lenders left empty. Rows nobody fills are "unused": a one-token EOS completion with
    env_mask [0] (no loss) and eager_used 0 (reward NaN, so no place in any baseline).

Every row carries its own prompt: `prompt_ids`, and as extra fields the prompt itself and all
of that prompt's dataset columns (so a moved row brings its gold answer to the rewards), plus
`eager_group` (a group id unique across processes) and `eager_baseline` (the pass rate estimated
from the verdicts known when the row's sequence started) for the advantages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from rewards import GoldVerifier
from rollout import EagerConfig, RolloutResult, generate
from trainers.advantages import verdict_baseline

if TYPE_CHECKING:
    from trainers.config import EagerGRPOConfig
    from trainers.trainer import EagerGRPOTrainer

logger = logging.getLogger(__name__)

Grade = Callable[[str, Any], "float | None"]  # rewards.Verifier's signature: (prediction, gold) -> score
RESERVED = ("prompt_ids", "completion_ids", "logprobs", "env_mask", "eager_group", "eager_used", "eager_baseline")


def layout_rows(counts: list[int], group_size: int) -> list[tuple[int, int] | None]:
    """Assign sequences to rows.

    Args:
        counts: sequences per prompt (n_k), with sum(counts) <= len(counts) * group_size.
        group_size: G, the rows each prompt owns.
    Returns:
        one entry per row (len(counts) * G): (prompt k, sequence j), or None for an unused row.
    """
    g = group_size
    rows: list[tuple[int, int] | None] = [None] * (len(counts) * g)
    spill: list[tuple[int, int]] = []
    for k, n in enumerate(counts):
        for j in range(n):
            if j < g:
                rows[k * g + j] = (k, j)
            else:
                spill.append((k, j))
    free = [r for r, slot in enumerate(rows) if slot is None]
    if len(spill) > len(free):
        raise RuntimeError(f"{sum(counts)} sequences for {len(rows)} rows: the rollout overspent its budget.")
    for r, item in zip(free, spill):
        rows[r] = item
    return rows


def rollout_config(trainer: EagerGRPOTrainer, group_size: int) -> EagerConfig:
    """The `rollout` settings of this step: the trainer's, with this step's seed, stop ids and budget."""
    args = trainer.args
    process = trainer.accelerator.process_index
    step = trainer.state.global_step + (0 if trainer.model.training else 1_000_000)
    return args.step_settings(
        group_size,
        trainer.model.training,
        think_end_token_id=trainer.eager_think_end_token_id,
        stop_token_ids=list(trainer.eos_token_ids),
        seed=(args.seed * 1_000_003 + step * 10_007 + process * 101) % (2**31 - 1),  # fresh draws every step
    )


def _distinct_prompts(prompts: list, group_size: int) -> list:
    if len(prompts) % group_size:
        raise RuntimeError(f"{len(prompts)} rows is not a multiple of the group size {group_size}.")
    distinct = prompts[::group_size]
    for k, prompt in enumerate(distinct):
        if any(p != prompt for p in prompts[k * group_size : (k + 1) * group_size]):
            raise RuntimeError(f"rows {k * group_size}..{(k + 1) * group_size - 1} do not repeat one prompt: "
                               "TRL's sampler layout changed; see tests/trainers/test_trl_contract.py.")
    return distinct


def eager_rollout(prompts: list, trainer: EagerGRPOTrainer) -> dict[str, list]:
    """TRL `rollout_func`: EAGer rollouts for this process's prompts, one completion per incoming row."""
    g = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
    distinct = _distinct_prompts(prompts, g)
    sources = trainer.eager_step.inputs[::g]  # dataset rows of the distinct prompts (stashed by the trainer)
    prompt_ids, images, _ = trainer._tokenize_prompts(distinct)
    if images is not None:
        raise ValueError("EAGer rollouts take text prompts only; use rollout_generator='parallel' for images.")
    config = rollout_config(trainer, g)
    verifier = None
    if config.method == "eager":
        column = trainer.args.eager_gold_column
        if column not in sources[0]:
            raise ValueError(f"rollout_generator='eager' needs the gold answer of each prompt in column {column!r}, "
                             f"which the batch lacks (columns: {sorted(sources[0])}). Set eager_gold_column.")
        golds = [row[column] for row in sources]
        verifier = GoldVerifier(trainer.decode_completion, golds, trainer.eager_grade)
    engine = trainer.eager_engine()
    if trainer.args.vllm_mode == "server":  # the main process has just pushed this step's weights to the server
        trainer.accelerator.wait_for_everyone()
    result = generate(engine, [list(p) for p in prompt_ids], config, verifier=verifier)
    for k, why in result.errors.items():
        logger.warning("prompt %d got no rollout (%s): its rows are unused this step", k, why)
    return _rows(result, sources, prompt_ids, g, trainer)


def _rows(result: RolloutResult, sources: list[dict], prompt_ids: list, g: int,
          trainer: EagerGRPOTrainer) -> dict[str, list]:
    """The hook's output: P x G rows laid out by `layout_rows`, each with its own prompt's columns."""
    kept = [[s for s in tree.kept() if s.n_tokens] for tree in result.trees]
    layout = layout_rows([len(seqs) for seqs in kept], g)
    offset = trainer.accelerator.process_index * len(sources)  # group ids unique across processes
    columns = [key for key in sources[0] if key not in RESERVED]
    out: dict[str, list] = {key: [] for key in (*RESERVED, *columns)}
    segments = trainer.args.advanced.credit == "segments"
    step = trainer.eager_step
    step.row_sequences = []  # per row: (prompt k, sequence index in its tree) or None
    for r, slot in enumerate(layout):
        k = slot[0] if slot is not None else r // g  # an unused row keeps its owner's prompt
        baseline = 0.5
        if slot is not None:
            seq = kept[k][slot[1]]
            completion, logprobs = seq.tokens, seq.logprobs  # TRL's rows are lists: built here, once per row
            inherited = seq.n_inherited if segments else 0  # segment credit: a token is in the loss once
            mask = [0] * inherited + [1] * (len(completion) - inherited)
            baseline = verdict_baseline(*seq.verdicts_at_start)
            step.row_sequences.append((k, seq.index))
        else:
            completion, logprobs, mask = trainer.eager_pad_completion, [0.0], [0]
            step.row_sequences.append(None)
        out["prompt_ids"].append(list(prompt_ids[k]))
        out["completion_ids"].append(completion)
        out["logprobs"].append(logprobs)
        out["env_mask"].append(mask)
        out["eager_group"].append(offset + k)
        out["eager_used"].append(int(slot is not None))
        out["eager_baseline"].append(baseline)
        for key in columns:
            out[key].append(sources[k][key])  # "prompt" included: _calculate_rewards reads it back
    step.rollout = result
    step.logp_rows = torch.tensor(out["eager_used"], dtype=torch.bool)  # TRL's log-prob pass skips the rest
    return out


def check_hook_inputs(args: EagerGRPOConfig, kwargs: dict, train_dataset: Any) -> None:
    """Refuse what the EAGer hook cannot serve, before TRL builds anything."""
    if kwargs.get("rollout_func") is not None:
        raise ValueError(f"rollout_generator={args.rollout_generator!r} installs its own rollout_func: pass "
                         "rollout_func only with rollout_generator='parallel'.")
    for name in ("tools", "environment_factory"):
        if kwargs.get(name):
            raise ValueError(f"{name} is not supported with rollout_generator={args.rollout_generator!r}: use "
                             "rollout_generator='parallel'.")
    if args.rollout_generator != "eager":
        return
    for dataset in (train_dataset, *_datasets(kwargs.get("eval_dataset"))):
        columns = getattr(dataset, "column_names", None)
        if columns is not None and args.eager_gold_column not in columns:
            raise ValueError(
                f"rollout_generator='eager' verifies sequences against the gold answers in column "
                f"{args.eager_gold_column!r}, which the dataset lacks (columns: {columns}). Set eager_gold_column to "
                "the column holding the answers, or use a label-free generator (eager_init, eager_adapt)."
            )


def _datasets(eval_dataset: Any) -> list:
    if eval_dataset is None:
        return []
    return list(eval_dataset.values()) if isinstance(eval_dataset, dict) else [eval_dataset]
