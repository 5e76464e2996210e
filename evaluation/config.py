"""`eager-eval`'s parameters: the seed's flags, the engine's, and what users need beyond them.

The command line is generated from `EvalConfig`'s fields (names, types, defaults, help), so
the dataclass is the one place a flag is defined. The rollout's settings are not declared
here: every `rollout.EagerConfig` field is a flag of the same name, type and help (with the
paper's test-time defaults, `rollout.config.TEST_TIME_DEFAULTS`), except those set from
eager-eval's own flags or the tokenizer (`DERIVED`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, make_dataclass
from typing import Any, get_args, get_type_hints

from evaluation.data import TASKS
from rollout.config import METHODS, TEST_TIME_DEFAULTS, EagerConfig, SettingError, surface_fields

ORDER = METHODS  # what `all` runs, in this order (eglr needs --backend hf)
EXPERIMENT_CHOICES = (*ORDER, "all", "eglr")
# The rollout settings eager-eval does not take as `--<name>`: where each comes from instead.
DERIVED = {
    "method": "--experiments (each experiment is a method)",
    "max_new_tokens": "--max_new_tokens (None: max_model_len minus the longest prompt)",
    "stop_token_ids": "the tokenizer's EOS id",
    "think_end_token_id": "the tokenizer's </think>, when it is one token",
    "recursion_span": "the first of --eglr_spans",
    "online": "off: eager-eval runs the paper's two phases, resumable prompt by prompt",
    "pass_start_limit": "none: a setting of online runs (training)",
    "pass_roots": "none: a setting of online runs (training)",
    "allocation": "none: eager-eval runs the paper's passes (the screen allocation is online, for training)",
    "screen_roots": "none: see allocation",
    "screen_forks": "none: see allocation",
    "fill_start_limit": "none: see allocation",
    "fill_size": "none: see allocation",
    "probe_roots": "none: see allocation",
    "fill_with": "none: see allocation",
    "probe_with": "none: see allocation",
    "refill_at": "none: see allocation",
    "oversample": "none: see allocation",
}

EvalRolloutFields = make_dataclass(
    "EvalRolloutFields", surface_fields(skip=tuple(DERIVED), defaults=TEST_TIME_DEFAULTS))
EvalRolloutFields.__module__ = __name__
ROLLOUT_FLAGS = tuple(name for name, _, _ in surface_fields(skip=tuple(DERIVED)))
# The rollout's experiment settings: listed in --help under their own heading, after what a user sets.
ADVANCED_FLAGS = tuple(name for name, _, _ in surface_fields(skip=tuple(DERIVED), advanced=True))


@dataclass
class EvalConfig(EvalRolloutFields):
    """A test-time experiment: which model, which data, which methods, where the results go."""

    model_name: str = field(kw_only=True, metadata={"help": "Hub id or local directory of the model (and its tokenizer)."})
    data_name: str = field(
        kw_only=True,
        metadata={
            "help": "Hub dataset id (Maxwell-Jia/AIME_2024, opencompass/AIME2025, MathArena/hmmt_feb_2025, "
            "fingertap/GPQA-Diamond, evalplus/humanevalplus, ...) or a local .jsonl/.json/.parquet file."
        },
    )
    experiments: str = field(
        default="all",
        metadata={"help": "eager and eager_adapt reuse eager_init's results. eglr (entropy-gated latent recursion, "
                  "--backend hf): per prompt, eglr_samples rollouts for each span L and for the plain model, greedy "
                  "rollouts per span, and plain samples up to the same count; gate: --entropy_threshold.",
                  "choices": EXPERIMENT_CHOICES},
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Results directory (the experiment's id). Default: outputs/<model>/<data>/<timestamp>."},
    )
    # Engine.
    backend: str = field(
        default="vllm",
        metadata={"help": "vllm (fast) or hf (plain transformers, slow reference).", "choices": ("vllm", "hf")},
    )
    server_url: str | None = field(
        default=None,
        metadata={"help": "Generate on a running vLLM server (e.g. http://localhost:8000, started as the README says) "
                  "instead of loading the model here; --model still names it (the tokenizer, and the server must "
                  "serve it)."},
    )
    dtype: str = field(
        default="auto", metadata={"help": "auto (the model's own on GPU, float32 on CPU), bfloat16, float16, float32."}
    )
    max_model_len: int = field(default=32768, metadata={"help": "Longest prompt + completion, in tokens."})
    gpu_memory_utilization: float = field(default=0.7, metadata={"help": "Share of GPU memory vLLM may take."})
    device: str = field(
        default="auto",
        metadata={"help": "auto, cuda or cpu, for the hf backend (vLLM picks its platform; CUDA_VISIBLE_DEVICES)."},
    )
    # Generation.
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Cap on each sequence's tokens. Default: max_model_len - longest prompt."}
    )
    prompt_batch_size: int = field(
        default=0,
        metadata={"help": "Prompts generated at once in parallel/eager_init (0: all). Smaller saves memory on GPU."},
    )
    # EGLR (--experiments eglr; --fork_mode recursion forks with the first span).
    eglr_spans: str = field(
        default="2,4,8", metadata={"help": "eglr: comma-separated spans L (top decoder layers re-applied), each >= 1."}
    )
    eglr_samples: int = field(default=4, metadata={"help": "eglr: temperature samples T per span."})
    # Data.
    limit: int | None = field(default=None, metadata={"help": "Use only the first N prompts of the dataset."})
    question_column: str | None = field(default=None, metadata={"help": "Question column (found automatically)."})
    answer_column: str | None = field(default=None, metadata={"help": "Answer column (found automatically)."})
    split: str | None = field(default=None, metadata={"help": "Dataset split for hub ids (known for the seed's)."})
    subset: str | None = field(default=None, metadata={"help": "Dataset configuration/subset for hub ids."})
    task: str = field(
        default="auto",
        metadata={"help": "math, choice (letters) or code (HumanEval tests); auto: from the data.", "choices": TASKS},
    )
    prompt_template: str | None = field(
        default=None, metadata={"help": "User message with a {question} placeholder. Default asks for \\boxed{}."}
    )
    chat_template: bool = field(default=True, metadata={"help": "Wrap prompts in the tokenizer's chat template."})
    enable_thinking: bool | None = field(
        default=None, metadata={"help": "Pass enable_thinking to the chat template (Qwen3); default: template's."}
    )
    # Output.
    overwrite: bool = field(
        default=False,
        metadata={"help": "Start the experiments afresh; results with other parameters (or unreadable) are set aside."},
    )
    notes: str = field(default="", metadata={"help": "Free text stored in each results file."})
    log_level: str = field(default="INFO", metadata={"help": "Logging level."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"--{name}={getattr(self, name)!r}: {why}")

        if self.experiments not in EXPERIMENT_CHOICES:
            raise bad("experiments", f"choose one of {EXPERIMENT_CHOICES}.")
        if self.backend not in ("vllm", "hf"):
            raise bad("backend", "choose vllm or hf.")
        if self.server_url is not None and (self.backend != "vllm" or not self.server_url.startswith(("http://",
                                                                                                      "https://"))):
            raise bad("server_url", "give the server's http(s) URL, with --backend vllm (the server runs vLLM).")
        if self.limit is not None and self.limit < 1:
            raise bad("limit", "use at least 1 prompt.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be at least 1.")
        if self.prompt_batch_size < 0:
            raise bad("prompt_batch_size", "use 0 (all prompts) or a positive number.")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise bad("gpu_memory_utilization", "must be in (0, 1].")
        if self.fork_mode == "recursion" and self.backend != "hf":
            raise bad("fork_mode", "recursion forks re-apply the model's layers with transformers: add --backend hf "
                      "(the span is --eglr_spans' first).")
        if self.experiments == "eglr" and self.backend != "hf":
            raise bad("experiments", "eglr re-applies the model's layers with transformers: add --backend hf (vLLM "
                      "cannot run it; README, EGLR).")
        try:
            spans = self.eglr_span_list()
        except ValueError:
            spans = []
        if not spans or any(s < 1 for s in spans) or len(set(spans)) != len(spans):
            raise bad("eglr_spans", "give distinct spans >= 1, comma-separated, e.g. 2,4,8.")
        if self.eglr_samples < 1:
            raise bad("eglr_samples", "at least one sample per span.")
        self.rollout_settings(max_new_tokens=self.max_new_tokens or 1)  # rollout's own checks, named as flags

    def rollout_settings(self, **overrides: Any) -> EagerConfig:
        """The `rollout.EagerConfig` of these flags (`overrides`: what the data decides, e.g. max_new_tokens)."""
        values = {name: getattr(self, name) for name in ROLLOUT_FLAGS}
        values["recursion_span"] = self.eglr_span_list()[0] if self.fork_mode == "recursion" else 0
        values.update(overrides)
        try:
            return EagerConfig(**values)
        except SettingError as err:
            label = {"recursion_span": "--eglr_spans"}.get(err.name, f"--{err.name}")
            raise err.rename(label) from None

    def eglr_span_list(self) -> list[int]:
        return [int(x) for x in self.eglr_spans.split(",") if x.strip()]

    def experiment_list(self) -> list[str]:
        return list(ORDER) if self.experiments == "all" else [self.experiments]


def _flag_type(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y"):
        return True
    if text.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(cls: type = EvalConfig, prog: str = "eager-eval") -> argparse.ArgumentParser:
    """An argparse parser with one `--field` per dataclass field (help text from its metadata)."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    advanced = parser.add_argument_group("advanced", "experiment settings of the rollout (rollout.EagerConfig)")
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        group = advanced if f.name in ADVANCED_FLAGS else parser
        tp = _flag_type(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default
        kw: dict[str, Any] = {"help": f.metadata.get("help", ""), "dest": f.name}
        if tp is bool and default is False:
            kw.update(action="store_true")
        elif tp is bool:  # True or None by default: accept --x, --no_x and --x=false
            kw.update(type=_str2bool, nargs="?", const=True, default=default)
            group.add_argument(
                f"--no_{f.name}", dest=f.name, action="store_false", default=default, help=f"Turn --{f.name} off."
            )
        else:
            kw.update(type=tp, default=default, required=required)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            else:
                kw["metavar"] = f.name.upper()
        group.add_argument(f"--{f.name}", **kw)
    return parser


def parse_args(argv: list[str] | None = None) -> EvalConfig:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return EvalConfig(**vars(ns))
    except ValueError as exc:
        parser.error(str(exc))  # exits 2 with the usage line and the message
        raise  # unreachable; keeps type checkers happy
