"""`eager-grpo`: GRPO training with a switchable rollout generator, from a YAML recipe.

    accelerate launch --config_file recipes/accelerate/cpu.yaml -m recipes.grpo --config recipes/cpu_default.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml -m recipes.grpo \\
        --config recipes/qwen3_4b_aime.yaml --rollout_generator eager

Every field of `GRPOScriptArguments`, `trainers.EagerGRPOConfig` and TRL's `ModelConfig` can be
set in the YAML or on the command line (the command line wins). The dataset needs a `prompt`
column (text or chat messages; or name another with `prompt_column`) and, for the label-aware
generator and the accuracy reward, the gold answers (`eager_gold_column`, default `answer`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import yaml
from trl import ModelConfig, ScriptArguments, TrlParser

from trainers import EagerGRPOConfig, EagerGRPOTrainer
from trainers.advanced import OLD_KEYS, overlay, parse, upgrade

logger = logging.getLogger(__name__)


@dataclass
class GRPOScriptArguments(ScriptArguments):
    """TRL's script arguments (dataset_name, splits, ...) plus the rewards and the prompt column."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["boxed_accuracy"],
        metadata={
            "help": "Reward functions: names from `rewards` (boxed_accuracy, choice_accuracy, format_reward) or "
            "dotted import paths (my_pkg.rewards.my_reward). The accuracy rewards read eager_gold_column."
        },
    )
    prompt_column: str = field(
        default="prompt",
        metadata={"help": "Dataset column holding the prompt; another name is copied into `prompt`."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "If set, text prompts become chat messages [system, user] (for chat models)."},
    )


def load_rewards(names: list[str], gold_column: str) -> list[Any]:
    """Reward callables from names in `rewards` or dotted import paths."""
    import rewards

    with_gold = {"boxed_accuracy": rewards.BoxedAccuracy, "choice_accuracy": rewards.ChoiceAccuracy}
    funcs = []
    for name in names:
        if name in with_gold and gold_column != "answer":  # the rewards read the same gold column as EAGer
            funcs.append(with_gold[name](gold_column=gold_column, name=name))
        elif "." in name:
            module, attr = name.rsplit(".", 1)
            funcs.append(getattr(importlib.import_module(module), attr))
        elif hasattr(rewards, name):
            funcs.append(getattr(rewards, name))
        else:
            raise ValueError(f"reward_funcs: unknown reward {name!r}; use a name from `rewards` or a dotted path.")
    return funcs


def load_splits(script_args: GRPOScriptArguments, training_args: EagerGRPOConfig) -> tuple[Any, Any]:
    """(train, eval or None): a hub id, a local directory, or a local .json/.jsonl file."""
    from datasets import load_dataset

    name = script_args.dataset_name
    if name is None:
        raise ValueError("dataset_name is not set: give a hub dataset id or a local .jsonl file.")
    if name.endswith((".json", ".jsonl")):
        data = load_dataset("json", data_files={script_args.dataset_train_split: name})
    else:
        data = load_dataset(name, name=script_args.dataset_config)
    data = data.map(lambda row: {"prompt": _prompt(row, script_args)})
    want_eval = training_args.eval_strategy != "no" and script_args.dataset_test_split in data
    return data[script_args.dataset_train_split], data[script_args.dataset_test_split] if want_eval else None


def _prompt(row: dict, script_args: GRPOScriptArguments) -> Any:
    text = row[script_args.prompt_column]
    if script_args.system_prompt is None or not isinstance(text, str):
        return text
    return [{"role": "system", "content": script_args.system_prompt}, {"role": "user", "content": text}]


def parse_args(argv: list[str] | None = None) -> tuple[GRPOScriptArguments, EagerGRPOConfig, ModelConfig]:
    """The command line (and its `--config` YAML), every setting checked. Keys from before `eager_advanced`, in the
    YAML or as flags, load with a message that says where each went (`trainers.advanced.upgrade`), and a
    command line's `--eager_advanced` updates the recipe's mapping key by key."""
    args = list(argv) if argv is not None else sys.argv[1:]
    config: dict[str, Any] = {}
    if "--config" in args:
        at = args.index("--config")
        path = args[at + 1]
        del args[at:at + 2]
        with open(path) as f:
            config = yaml.safe_load(f)
        if not isinstance(config, dict):
            raise ValueError(f"Config file {path} must contain a YAML mapping.")
    flags, args = _moved_flags(args)
    if not config and not flags:
        return TrlParser((GRPOScriptArguments, EagerGRPOConfig, ModelConfig)).parse_args_and_config(args=args)
    config, flags = upgrade(config), upgrade(flags)
    config = overlay(config, flags)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:  # TRL's parser reads the upgraded recipe
        yaml.safe_dump(config, f)
        f.flush()
        return TrlParser((GRPOScriptArguments, EagerGRPOConfig, ModelConfig)).parse_args_and_config(
            args=["--config", f.name, *args])


def _moved_flags(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The flags of `args` that name an old key (`OLD_KEYS`, `--no_<key>` too, `-` or `_` in names as TRL reads them)
    or `--eager_advanced` (repeats merge), as a mapping (YAML's reading of each value; a flag without one is true),
    and the other arguments."""
    taken: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        name, eq, value = args[i].removeprefix("--").partition("=")
        name = name.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in OLD_KEYS
        key = name[3:] if negated else name
        if not args[i].startswith("--") or (key not in OLD_KEYS and key != "eager_advanced"):
            rest.append(args[i])
            i += 1
            continue
        if not eq and not negated and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, eq = args[i + 1], "="
            i += 1
        if key == "eager_advanced":
            taken[key] = {**taken.get(key, {}), **parse(value)}
        else:
            taken[key] = False if negated else yaml.safe_load(value) if eq else True
        i += 1
    return taken, rest


def main(argv: list[str] | None = None) -> None:
    script_args, training_args, model_args = parse_args(argv)
    if "wandb" in (training_args.report_to or []) and not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")  # no key here: log locally, sync later with `wandb sync`
    if training_args.model_init_kwargs is None and model_args.dtype is not None:
        training_args.model_init_kwargs = {"dtype": model_args.dtype}
    train, evaluation = load_splits(script_args, training_args)
    trainer = EagerGRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=load_rewards(script_args.reward_funcs, training_args.eager_gold_column),
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged metrics, eager/ ones included
    trainer.accelerator.print(f"model saved to {training_args.output_dir}")
    if "wandb" in (training_args.report_to or []) and trainer.accelerator.is_main_process:
        import wandb

        wandb.finish()  # transformers' callback leaves the run open; offline runs are only complete once finished
    # No trainer.end(): the colocated vLLM engine tears the process groups down itself at exit, and
    # fails loudly if they are already gone.


if __name__ == "__main__":
    main()
