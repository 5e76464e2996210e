"""TRL's server-mode weight sync made to run on CPU, for tests only.

TRL pushes the trainer's weights to the vLLM server over NCCL (vLLM's weight-transfer engine), which
needs CUDA; this machine has none. So the two NCCL steps of TRL's client, and only they, are
replaced: `init_communicator` opens no NCCL group, and `update_named_params` writes the tensors TRL
streams (TRL's own metadata and parameter iterator) to a safetensors file that the server loads
with vLLM's `reload_weights` (dev-mode `/collective_rpc`). TRL's call to them, its prefix-cache
reset and every generation request stay real. The NCCL path itself is held by the contract tests
in tests/trainers/test_server_mode.py (TRL's payloads against vLLM's own types and routes).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

SYNCS: list[list[str]] = []  # names pushed per sync, in this process


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read() or b"{}")


def replacements(directory: Path) -> dict:
    """The two methods of TRL's `VLLMClient` that need NCCL, as CPU stand-ins; pushed weights go through `directory`."""
    from safetensors.torch import save_file

    def init_communicator(self, device=0) -> None:  # replaces the NCCL rendezvous (CUDA only)
        assert "weight_transfer_config" in self.get_server_info()  # what TRL reads first: dev mode is on

    def update_named_params(self, metadata, named_params) -> None:  # replaces the NCCL broadcast (CUDA only)
        tensors = {name: tensor.detach().clone().contiguous() for name, tensor in named_params}
        assert [m[0] for m in metadata] == list(tensors), "TRL's metadata must announce what it streams, in order"
        directory.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(directory / "model.safetensors"))
        _post(f"{self.base_url}/collective_rpc",
              {"method": "reload_weights", "kwargs": {"weights_path": str(directory), "is_checkpoint_format": True}})
        SYNCS.append(list(tensors))

    return {"init_communicator": init_communicator, "update_named_params": update_named_params}


def install(directory: Path) -> None:
    """Patch TRL's `VLLMClient` for the rest of this process (a launched test run)."""
    from trl.generation.vllm_client import VLLMClient

    for name, method in replacements(directory).items():
        setattr(VLLMClient, name, method)
