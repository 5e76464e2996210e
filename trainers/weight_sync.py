"""Engine settings and the weight push for the colocated vLLM engine on the CPU build.

TRL pushes weights with `model_runner.model.load_weights(...)`, one tensor at a time. On the
CPU build that fails (`'Parameter' object has no attribute 'weight_loader'`: the CPU backend
repacks linear weights) or, for some tensors, "succeeds" with no effect. vLLM's own in-place
reload (`reload_weights`, layer-wise: a layer is re-processed once all its tensors arrived)
works there, given every tensor of a layer in one call (partial layers left the model
corrupted): the whole model goes in one call, streamed from TRL's own parameter iterator
(which gathers ZeRO-3 shards one parameter at a time). A tied output head is then re-packed
(see `repack_lm_head`). The engine is built in the trainer's dtype (vLLM's "auto" would load a
float32 checkpoint as bfloat16 on CPU) and without compiling. On CUDA, TRL's path is kept.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from rollout.vllm_engine import CPU_ENGINE_KWARGS, repack_lm_head

logger = logging.getLogger(__name__)


def cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (False without vLLM: TRL refuses use_vllm then)."""
    try:
        from rollout.vllm_engine import is_cpu_build
    except ImportError:
        return False
    return is_cpu_build()


@contextlib.contextmanager
def cpu_engine_kwargs(enabled: bool, dtype: Callable[[], Any]) -> Iterator[None]:
    """While active, TRL builds its colocated `vllm.LLM` with `CPU_ENGINE_KWARGS` and the trainer's dtype.

    `dtype()` is called when the engine is built (the model exists by then): vLLM's "auto" loads a
    float32 checkpoint as bfloat16 on CPU, and an engine sampling from rounded weights is not the
    policy the trainer scores. No-op when not enabled.
    """
    if not enabled:
        yield
        return
    from trl.generation import vllm_generation

    original = vllm_generation.LLM

    def build(*args: Any, **kwargs: Any) -> Any:
        opts = {**CPU_ENGINE_KWARGS, "dtype": dtype(), **kwargs}
        if opts.get("max_model_len"):  # unchunked, one step must hold a whole prompt (TRL asks for 4096)
            opts["max_num_batched_tokens"] = max(opts.get("max_num_batched_tokens") or 0, opts["max_model_len"])
        return original(*args, **opts)

    vllm_generation.LLM = build
    try:
        yield
    finally:
        vllm_generation.LLM = original


def reload_weights(vllm_generation: Any) -> None:
    """Push the trainer's current weights into the colocated engine in place (CPU build)."""
    llm = vllm_generation.llm
    # Clones: the reload buffers a layer's tensors until the layer is complete, and a ZeRO-3 parameter
    # is only materialised while TRL's iterator holds it.
    weights = ((name, tensor.detach().clone()) for name, tensor in vllm_generation._iter_named_params())
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
    for _ in weights:  # every process must take part in every gather, even if the loader stopped early
        pass
    llm.collective_rpc(repack_lm_head)
    llm.reset_prefix_cache()


def use_cpu_weight_sync(vllm_generation: Any) -> None:
    """Replace `vllm_generation.sync_weights` by `reload_weights` (for the CPU build of vLLM only)."""
    vllm_generation.sync_weights = functools.partial(reload_weights, vllm_generation)
    logger.info("vLLM CPU build: weights are pushed with reload_weights instead of TRL's load_weights")
