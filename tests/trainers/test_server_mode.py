"""TRL's server mode with the EAGer generators: GRPO steps against a real `vllm serve` (the CPU build).

NCCL cannot run here (no CUDA), so the weight push is the one part replaced: tests/trainers/server_sync.py
stands in for TRL's NCCL rendezvous and broadcast with vLLM's own `reload_weights` from a file, and says so.
The NCCL path is held by the contract tests at the bottom: TRL's own code runs with only the CUDA calls
stubbed, and the payloads it sends are checked against the pinned vLLM's types and the real server's routes.
"""

from __future__ import annotations

import threading
from dataclasses import fields

import numpy as np
import pytest
import torch
from datasets import Dataset

from recipes.serve import LocalServer, free_port
from tests.server_api import body_fields, get
from tests.trainers import server_sync
from tests.trainers.conftest import make_args
from tests.trainers.helpers import Recorder, build_tiny_model, label_grade, rows
from tests.trainers.test_launch import check_two_ranks, launch

pytestmark = pytest.mark.slow  # a server subprocess and training: the full run only


@pytest.fixture(scope="module")
def untied_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-untied", tied=False)


@pytest.fixture(scope="module")
def server(untied_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(str(untied_model), free_port(), log=log, max_model_len=256, dtype="float32") as srv:
        yield srv


def test_grpo_steps_generate_on_the_server(server, untied_model, tmp_path, monkeypatch):
    from trl.generation.vllm_client import VLLMClient

    from rollout.server_engine import ServerEngine
    from trainers import EagerGRPOTrainer

    for name, method in server_sync.replacements(tmp_path / "pushed").items():
        monkeypatch.setattr(VLLMClient, name, method)
    server_sync.SYNCS.clear()
    args = make_args(tmp_path / "out", vllm_mode="server", vllm_server_base_url=server.url,
                     rollout_generator="eager", eager_screen_roots=2)
    trainer = EagerGRPOTrainer(model=str(untied_model), reward_funcs=Recorder(), args=args,
                               train_dataset=Dataset.from_list(rows(8)), verifier=label_grade)
    assert trainer.vllm_generation.vllm_client.base_url == server.url
    assert getattr(trainer.vllm_generation, "llm", None) is None  # no engine in the trainer's process
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer._eager_engine is None  # closed after training: no stream and no thread left
    assert not any(t.name == "eager-server" for t in threading.enumerate())

    engine = trainer.eager_engine()  # a new connection, for the checks below
    assert isinstance(engine, ServerEngine) and not engine.has_unfinished()
    assert trainer.eager_step.rollout.n_sequences >= 4 and trainer.eager_step.rollout.engine_steps > 0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(0 < h["eager/rows_used_frac"] <= 1 for h in logs)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in trainer.model.named_parameters())

    # TRL pushed the weights before each step's rollout (steps 0 and 1): the server now samples from the
    # weights of the second push, which were the trainer's after its first update.
    assert len(server_sync.SYNCS) == 2
    pushed = dict(trainer.model.named_parameters())
    from safetensors.torch import load_file

    last = load_file(str(tmp_path / "pushed" / "model.safetensors"))
    assert any(not torch.equal(last[n], before[n]) for n in last if n in before)
    try:
        check_server_samples_from(engine, trainer, last, pushed, before)
    finally:
        engine.close()


def check_server_samples_from(engine, trainer, weights: dict, params: dict, initial: dict) -> None:
    """The server's log-probs of its own samples are the trainer model's loaded with `weights`, and measurably
    not its log-probs under the `initial` weights (so the check can fail)."""
    from rollout.engine import Request

    prompt = trainer.processing_class("Question 3: what is 3 plus 3?")["input_ids"]
    engine.configure(1.0, 5, [], False)
    engine.add(Request("check", prompt, 6, seed=1))
    tokens = []
    while engine.has_unfinished():
        tokens += engine.step()
    ids = torch.tensor([prompt + [t.token_id for t in tokens]])
    served = np.array([t.logprob for t in tokens])
    np.testing.assert_allclose(served, policy_logprobs(trainer.model, params, weights, ids, len(prompt)), atol=2e-3)
    assert np.abs(served - policy_logprobs(trainer.model, params, initial, ids, len(prompt))).max() > 1e-2


def policy_logprobs(model, params: dict, weights: dict, ids, prompt_len: int) -> np.ndarray:
    """Log-probs of `ids`' completion under `model` loaded with `weights` (its own weights restored after)."""
    with torch.no_grad():
        saved = {n: p.detach().clone() for n, p in params.items()}
        for n, p in params.items():
            if n in weights:
                p.copy_(weights[n])
        logits = model(ids).logits[0, prompt_len - 1 : -1].double()
        for n, p in params.items():
            p.copy_(saved[n])
    return torch.log_softmax(logits, -1)[torch.arange(ids.shape[1] - prompt_len), ids[0, prompt_len:]].numpy()


def test_two_processes_share_one_server(server, untied_model, tmp_path):
    """Each rank streams its own prompts' rollouts from the same server; rank 0 pushes the weights."""
    scored, state, _ = launch("cpu_2proc.yaml", untied_model, tmp_path, vllm_mode="server",
                              vllm_server_base_url=server.url,
                              env={"EAGER_TEST_SERVER_SYNC": str(tmp_path / "pushed")})
    check_two_ranks(scored, state)
    assert (tmp_path / "pushed" / "model.safetensors").exists()


def test_a_server_on_another_model_is_refused_at_the_first_step(server, tiny_model, tmp_path, monkeypatch):
    from trl.generation.vllm_client import VLLMClient

    from rollout.server_engine import ServerError
    from trainers import EagerGRPOTrainer

    for name, method in server_sync.replacements(tmp_path / "pushed").items():
        monkeypatch.setattr(VLLMClient, name, method)
    monkeypatch.setattr(VLLMClient, "update_named_params", lambda self, metadata, params: None)  # another model
    args = make_args(tmp_path / "out", vllm_mode="server", vllm_server_base_url=server.url,
                     rollout_generator="eager_init", max_steps=1)
    trainer = EagerGRPOTrainer(model=str(tiny_model), reward_funcs=Recorder(), args=args,
                               train_dataset=Dataset.from_list(rows(8)))
    with pytest.raises(ServerError, match="--served-model-name"):
        trainer.train()
    assert trainer._eager_engine is None  # refused before any stream opened


# --- the NCCL weight push: TRL 1.16's client against vLLM 0.32 ------------------------------------------------------

def test_trl_uses_the_weight_transfer_api_of_the_pinned_vllm():
    """TRL picks its code path by vLLM version: at 0.32 it takes the stateful-trainer path (vLLM >= 0.28)."""
    from trl.generation import vllm_client

    assert vllm_client._HAS_STATEFUL_TRAINER_ENGINE and vllm_client._HAS_RESET_PREFIX_CACHE_SUCCESS
    from vllm.distributed.weight_transfer import nccl_common, packed_tensor

    assert vllm_client.open_trainer_endpoint is nccl_common.trainer_init
    assert vllm_client.packed_nccl_broadcast_producer is packed_tensor.packed_nccl_broadcast_producer


def test_trl_payloads_parse_as_the_pinned_vllm_types(monkeypatch):
    """TRL's own `init_communicator` and `update_named_params` run, with only CUDA and NCCL stubbed; what they
    send must build vLLM's NCCL init and update infos, and what they stream must be what they announced."""
    from trl.generation import vllm_client
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

    posted, endpoints, streamed = {}, [], []
    client = object.__new__(vllm_client.VLLMClient)
    client.base_url, client.group_port, client._updating_weights = "http://server", 51216, False
    monkeypatch.setattr(client, "get_server_info", lambda: {"weight_transfer_config": {"backend": "nccl"}},
                        raising=False)
    monkeypatch.setattr(client, "get_world_size", lambda: 1, raising=False)
    monkeypatch.setattr(client, "_post", lambda url, json=None: posted.update({url.rsplit("/", 1)[1]: json}) or {},
                        raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(vllm_client, "open_trainer_endpoint", lambda info: endpoints.append(info) or "group")
    monkeypatch.setattr(vllm_client, "atexit", type("A", (), {"register": staticmethod(lambda f: None)}))
    def broadcast(iterator, group, src, post_iter_func):  # TRL's call, without NCCL
        streamed.extend(post_iter_func(x) for x in iterator)

    monkeypatch.setattr(vllm_client, "packed_nccl_broadcast_producer", broadcast)
    client.init_communicator(device="cuda:0")
    init = posted["init_weight_transfer_engine"]["init_info"]
    assert endpoints == [init] and client.communicator == "group"
    NCCLWeightTransferEngine.init_info_cls(**init)  # the server's parse of TRL's init info
    assert init["packed"] and init["rank_offset"] == 1 and init["world_size"] == 2

    tensors = [("w", torch.ones(2, 3)), ("b", torch.zeros(3))]
    client.update_named_params([(n, "float32", list(t.shape)) for n, t in tensors], iter(tensors))
    update = posted["update_weights"]["update_info"]
    info = NCCLWeightTransferEngine.update_info_cls(**update)
    assert info.names == ["w", "b"] and info.shapes == [[2, 3], [3]] and len(streamed) == 2
    assert {"start_weight_update", "finish_weight_update"} <= set(posted)
    assert {f.name for f in fields(NCCLWeightTransferEngine.update_info_cls)} >= set(update)


def test_the_server_has_every_route_trl_calls(server):
    spec = get(f"{server.url}/openapi.json")
    paths = spec["paths"]
    for route, method in [("/init_weight_transfer_engine", "post"), ("/start_weight_update", "post"),
                          ("/update_weights", "post"), ("/finish_weight_update", "post"),
                          ("/reset_prefix_cache", "post"), ("/server_info", "get"), ("/get_world_size", "get"),
                          ("/v1/completions", "post"), ("/v1/models", "get"), ("/health", "get")]:
        assert method in paths.get(route, {}), route
    assert body_fields(spec, "/update_weights") == {"update_info"}  # TRL posts {"update_info": ...}
    assert body_fields(spec, "/init_weight_transfer_engine") == {"init_info"}
    assert get(f"{server.url}/get_world_size")["world_size"] == 1
    assert "weight_transfer_config" in get(f"{server.url}/server_info?config_format=json")["vllm_config"]
