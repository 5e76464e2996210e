"""Everything an experiment run shares: tokenizer, prompts, parameters, output directory, engine.

Built once per `eager-eval` call, cheapest checks first, so that bad input (a missing model,
an unknown column, a directory holding other results) fails in seconds, before an engine
is started. The engine itself is built only when some prompt still needs generating.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import data as data_mod
from evaluation.config import EvalConfig
from evaluation.data import Problem
from evaluation.scoring import AnswerScorer
from rollout.config import EagerConfig, non_default

logger = logging.getLogger(__name__)

_MULTIPROC_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
# Rollout settings the header records elsewhere or that do not shape a results file's samples.
_NOT_IN_HEADER = ("method", "extra_cap", "stop_token_ids", "recursion_span", "recursion_k_max", "recursion_tol")


class ModelError(ValueError):
    """The model cannot be found or loaded; the message names it."""


def looks_local(name: str) -> bool:
    """A path rather than a hub id ("org/name" or "name"): absolute, dotted, home-relative, or deeper."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def load_tokenizer(model_name: str) -> Any:
    from transformers import AutoTokenizer

    if not os.path.isdir(os.path.expanduser(model_name)) and looks_local(model_name):
        raise ModelError(
            f"model path {model_name} does not exist (give a model directory or a hub id such as Qwen/Qwen3-4B)."
        )
    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(model_name))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load model {model_name!r}: no such local directory, and the hub lookup failed ({exc})"
        ) from exc


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    # float32 on CPU: bf16 crashed vLLM's CPU attention kernel (SIGILL) on prompts shorter than about 7 tokens.
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "auto"


def default_output_dir(cfg: EvalConfig) -> Path:
    data = Path(cfg.data_name).stem if data_mod.is_local_path(cfg.data_name) else cfg.data_name.split("/")[-1]
    return Path("outputs") / cfg.model_name.rstrip("/").split("/")[-1] / data / time.strftime("%Y-%m-%d_%H-%M-%S")


def think_end_id(tokenizer: Any) -> int | None:
    """`</think>`'s id when it is a single token of the vocabulary (thinking models), else None."""
    tid = tokenizer.get_vocab().get("</think>")
    return int(tid) if tid is not None else None


@dataclass
class EvalContext:
    cfg: EvalConfig
    tokenizer: Any
    problems: list[Problem]
    prompt_ids: list[list[int]]
    out_dir: Path
    params: dict[str, Any]
    data_info: dict[str, Any]
    rollout_config: EagerConfig
    device: str = "cpu"
    scorer: AnswerScorer = field(default_factory=AnswerScorer)
    _engine: Any = None

    @property
    def experiment_name(self) -> str:
        return self.out_dir.name

    def header(self, experiment: str) -> dict[str, Any]:
        """The parameter part of a results file (what resume compares)."""
        params, c = dict(self.params), self.cfg
        if experiment == "eglr":
            params.update(eglr_spans=c.eglr_span_list(), eglr_samples=c.eglr_samples, eglr_k_max=c.recursion_k_max,
                          eglr_tol=c.recursion_tol)
        elif c.fork_mode == "recursion" and experiment != "parallel":  # what the forks use, nothing else
            params.update(recursion_span=c.eglr_span_list()[0], recursion_k_max=c.recursion_k_max,
                          recursion_tol=c.recursion_tol)
        return {
            "experiment_name": self.experiment_name,
            "experiment": experiment,
            "params": params,
            "data": dict(self.data_info),
        }

    def config_for(self, method: str) -> EagerConfig:
        return EagerConfig(**{**self.rollout_config.__dict__, "method": method})

    def engine(self) -> Any:
        if self._engine is None:
            eos = model_eos_ids(self.tokenizer, self.cfg.model_name) if self.cfg.server_url else []
            engine = build_engine(self.cfg, self.params["dtype"], self.device, eos)
            if "eglr" in self.cfg.experiment_list() or self.cfg.fork_mode == "recursion":
                from evaluation.eglr import check_spans

                spans = self.cfg.eglr_span_list()  # recursion forks use the first
                check_spans(engine, spans if "eglr" in self.cfg.experiment_list() else spans[:1])
            self._engine = engine
        return self._engine


def in_process_engine() -> None:
    """Make vLLM run its engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), as the trainer does.

    The step loop drives the engine from this process anyway. A separate engine process
    (EngineCore and its Worker) would outlive a `kill -9` of eager-eval and keep its memory
    (a GPU's included) until killed by hand. vLLM reads the variable when the engine is built.
    """
    previous = os.environ.get(_MULTIPROC_ENV, "0")
    if previous != "0":
        logger.warning("%s=%s ignored: eager-eval runs the vLLM engine in process.", _MULTIPROC_ENV, previous)
    os.environ[_MULTIPROC_ENV] = "0"


def model_eos_ids(tokenizer: Any, model_name: str) -> list[int]:
    """The tokenizer's end token and generation_config.json's (what vLLM stops at when it loads the model)."""
    from transformers import GenerationConfig

    ids = {tokenizer.eos_token_id} - {None}
    try:
        eos = GenerationConfig.from_pretrained(os.path.expanduser(model_name)).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return sorted(ids)


def build_engine(cfg: EvalConfig, dtype: str, device: str, eos_token_ids: list[int] = ()) -> Any:
    t0 = time.perf_counter()
    if cfg.server_url is not None:
        from rollout.server_engine import ServerEngine

        engine = ServerEngine(cfg.server_url, model=os.path.expanduser(cfg.model_name), eos_token_ids=eos_token_ids)
    elif cfg.backend == "vllm":
        in_process_engine()
        from rollout.vllm_engine import VLLMEngine, build_llm

        # No device for vLLM: it picks its platform itself (CUDA_VISIBLE_DEVICES selects GPUs), and
        # vLLM 0.32's EngineArgs has no `device` field, so passing one fails.
        llm = build_llm(
            os.path.expanduser(cfg.model_name), dtype=dtype, max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed,
        )
        engine = VLLMEngine(llm)
    else:
        import torch
        from transformers import AutoModelForCausalLM

        from rollout.hf_engine import HFEngine

        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(cfg.model_name), dtype=torch_dtype).to(device)
        engine = HFEngine(model, max_model_len=cfg.max_model_len)
    logger.info("%s engine ready in %.1f s", cfg.server_url or cfg.backend, time.perf_counter() - t0)
    return engine


def _fingerprint(prompt_ids: list[list[int]], problems: list[Problem]) -> str:
    blob = json.dumps([prompt_ids, [str(p.target) for p in problems]]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_context(cfg: EvalConfig) -> EvalContext:
    """Resolve and check everything except the engine (cheap failures first)."""
    tokenizer = load_tokenizer(cfg.model_name)
    rows = data_mod.load_rows(cfg.data_name, cfg.split, cfg.subset)
    problems, resolved = data_mod.build_problems(
        rows, cfg.data_name, cfg.question_column, cfg.answer_column, cfg.task, cfg.limit
    )
    texts = [data_mod.prompt_text(p, cfg.prompt_template) for p in problems]
    prompt_ids = [data_mod.encode_prompt(tokenizer, t, cfg.chat_template, cfg.enable_thinking) for t in texts]
    longest = max(len(p) for p in prompt_ids)
    if longest >= cfg.max_model_len:
        raise data_mod.DataError(
            f"the longest prompt has {longest} tokens, not shorter than --max_model_len={cfg.max_model_len}: raise it."
        )
    max_new = cfg.max_new_tokens or cfg.max_model_len - longest
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    stop = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rollout_config = cfg.rollout_settings(
        method="eager_init", max_new_tokens=max_new, think_end_token_id=think_end_id(tokenizer), stop_token_ids=stop)
    params = {
        # the seed's five first, then what else shapes the samples (keys as older results files have them)
        "model_name": cfg.model_name, "temperature": cfg.temperature, "entropy_threshold": cfg.entropy_threshold,
        "max_sequences": cfg.max_sequences, "seed": cfg.seed, "max_new_tokens": max_new,
        "fork_mode": cfg.fork_mode, "backend": "vllm-server" if cfg.server_url else cfg.backend, "dtype": dtype,
        "top_logprobs": rollout_config.top_logprobs, "p99_floor": rollout_config.p99_floor,
        "branch_patience": rollout_config.branch_patience, "think_end_token_id": rollout_config.think_end_token_id,
        "eager_extra_cap": rollout_config.extra_cap, "adapt_extra_cap": rollout_config.adapt_extra_cap,
        "max_retries": rollout_config.max_retries,
        "chat_template": cfg.chat_template, "enable_thinking": cfg.enable_thinking,
        "prompt_template": cfg.prompt_template,
    }
    # Every other rollout setting that shapes the samples, when it is not its default (older files match).
    params.update(non_default(rollout_config, skip=(*params, *_NOT_IN_HEADER)))
    data_info = {
        "data_name": cfg.data_name, "split": cfg.split, "subset": cfg.subset, "limit": cfg.limit, **resolved,
        "num_prompts": len(problems), "fingerprint": _fingerprint(prompt_ids, problems),
        "targets": [p.target for p in problems],
    }
    out_dir = Path(cfg.output_dir).expanduser() if cfg.output_dir else default_output_dir(cfg)
    return EvalContext(cfg, tokenizer, problems, prompt_ids, out_dir, params, data_info, rollout_config, device)
