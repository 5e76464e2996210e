"""The driver on a real `vllm serve` (the CPU build) with the shipped arithmetic model, against the colocated engine.

Each server is a subprocess started and ended by the fixture (by its process group). The server and the colocated
engine run the same model, dtype and CPU kernels, so the same seeds must give the same trees.
"""

import os
import signal

import numpy as np
import pytest

from recipes.arithmetic.pretrain import SHIPPED
from recipes.arithmetic.task import heldout_problems, is_correct
from recipes.arithmetic.tokenizer import BOS_ID, EOS_ID, build_tokenizer, encode
from recipes.serve import LocalServer, free_port
from rollout import EagerConfig, generate
from rollout.engine import Request
from rollout.server_engine import ServerEngine, ServerError, read_server
from tests.server_api import body_fields, get

pytestmark = pytest.mark.slow  # a server subprocess: the full run only

MODEL = str(SHIPPED)
PROBLEMS = heldout_problems(6)


def start(tmp_path_factory, *extra: str, dev_mode: bool = True) -> LocalServer:
    log = tmp_path_factory.mktemp("server") / "server.log"
    return LocalServer(MODEL, free_port(), log=log, max_model_len=256, dtype="float32", dev_mode=dev_mode,
                       extra=list(extra))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with start(tmp_path_factory) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(server):
    engine = ServerEngine(server.url, model=MODEL, eos_token_ids=[EOS_ID])
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def colocated():
    from rollout.vllm_engine import VLLMEngine, build_llm

    llm = build_llm(MODEL, dtype="float32", max_model_len=256)
    yield VLLMEngine(llm)
    del llm


@pytest.fixture(scope="module")
def prompts():
    return [[BOS_ID, *encode(p.prompt)] for p in PROBLEMS]  # the recipe's chat template: BOS + the problem


def verifier():
    tok = build_tokenizer()
    return lambda i, ids: is_correct(tok.decode(ids, skip_special_tokens=True), PROBLEMS[i].answer)


def cfg(**kw):
    base = dict(method="eager_init", max_sequences=6, entropy_threshold=0.3, temperature=1.0, max_new_tokens=120,
                stop_token_ids=[EOS_ID], seed=5)
    base.update(kw)
    return EagerConfig(**base)


VARIANTS = {
    "parallel": dict(method="parallel"),
    "eager_init-top2": dict(fork_mode="top2"),
    "eager_init-alternative": dict(fork_mode="alternative"),
    "eager_init-resample": dict(fork_mode="resample"),
    "eager_adapt": dict(method="eager_adapt"),
    "eager-passes-abort": dict(method="eager", online=True, allocation="passes", on_solved="abort"),
    "eager-screen": dict(method="eager", online=True, allocation="screen", screen_roots=2, screen_forks=2),
}


def trees(result):
    return [[(s.tokens, s.parent, s.n_inherited, s.finish_reason) for s in t.sequences] for t in result.trees]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_server_trees_match_the_colocated_engine(variant, remote, colocated, prompts):
    c = cfg(**VARIANTS[variant])
    label_aware = c.method == "eager"
    a = generate(remote, prompts, c, verifier=verifier() if label_aware else None)
    b = generate(colocated, prompts, c, verifier=verifier() if label_aware else None)
    assert not a.errors and trees(a) == trees(b)
    assert [t.branches for t in a.trees] == [t.branches for t in b.trees]
    if variant != "parallel":
        assert a.n_branches > 0
    if variant == "eager-passes-abort":
        assert any(s.finish_reason == "abort" for t in a.trees for s in t.sequences)  # streams cancelled mid-way
    for ta, tb in zip(a.trees, b.trees):
        for sa, sb in zip(ta.sequences, tb.sequences):
            np.testing.assert_allclose(sa.logprobs, sb.logprobs, atol=1e-5)
            np.testing.assert_allclose(sa.entropies, sb.entropies, atol=1e-5)
    assert a.tokens_generated == b.tokens_generated and a.engine_steps == b.engine_steps
    assert not remote.has_unfinished()


def test_server_reports_its_settings(server, remote):
    assert remote.logprobs_after_temperature  # processed_logprobs, as TRL's colocated engine
    assert remote.max_model_len == 256 and remote.max_running and remote.info.prefix_caching
    shared = ServerEngine(server.url, share=3)  # three processes streaming from one server
    try:
        assert shared.max_running == remote.max_running // 3
    finally:
        shared.close()


def test_the_cpu_server_runs_the_model_inside_its_engine_core(server):
    """No process of its own for the model: the engine core would spin-wait on it (recipes.engine_env)."""
    import psutil

    titles = [" ".join(p.cmdline()) for p in psutil.Process(server.proc.pid).children(recursive=True)]
    assert any("VLLM::EngineCore" in t for t in titles) and not any("VLLM::Worker" in t for t in titles), titles


def test_a_stopped_server_times_out_with_its_url(server, prompts):
    """Deterministic: the server is SIGSTOPped between two steps and a request added after can get no token."""
    engine = ServerEngine(server.url, eos_token_ids=[EOS_ID])
    try:
        engine.configure(1.0, 20, [EOS_ID], False)
        engine.add(Request("a", prompts[0], 100, seed=1))
        (first,) = engine.step()
        engine.timeout_s = 1.0  # from here on nothing can arrive
        os.killpg(server.proc.pid, signal.SIGSTOP)
        try:
            engine.add(Request("fork", prompts[0] + [first.token_id], 99, seed=2))
            with pytest.raises(ServerError, match=f"{server.url} left [12] requests without a token for 1.0 s"):
                while engine.has_unfinished():
                    engine.step()
        finally:
            os.killpg(server.proc.pid, signal.SIGCONT)
    finally:
        engine.close()


def test_every_field_the_adapter_sends_is_in_the_servers_schema(server, remote, prompts):
    """vLLM logs and drops a body field it does not know: a renamed one would silently stop working."""
    known = body_fields(get(f"{server.url}/openapi.json"), "/v1/completions")
    sent = set(remote.payload(Request("r", prompts[0], 8, seed=1)))
    assert "stream_interval" in sent and sent <= known, sent - known
    with pytest.raises(ValueError, match="stream_interval=0"):
        ServerEngine(server.url, stream_interval=0)


def test_abort_drops_a_running_stream(remote, prompts):
    remote.configure(1.0, 20, [EOS_ID], False)
    remote.add(Request("a", prompts[0], 100, seed=1))
    remote.add(Request("b", prompts[1], 100, seed=2))
    first = remote.step()
    assert sorted(o.request_id for o in first) == ["a", "b"]
    remote.abort(["a"])
    rest = []
    while remote.has_unfinished():
        rest += remote.step()
    assert {o.request_id for o in rest} == {"b"} and rest[-1].finished


def test_wrong_model_and_missing_server_are_named(server):
    with pytest.raises(ServerError, match="serves .* not 'other/model'.*--served-model-name"):
        ServerEngine(server.url, model="other/model")
    with pytest.raises(ServerError, match="no vLLM server answers at http://127.0.0.1:"):
        ServerEngine(f"http://127.0.0.1:{free_port()}")


def test_full_vocab_entropy_is_refused(remote):
    with pytest.raises(ValueError, match="entropy_source='topk'"):
        remote.configure(1.0, 20, [], True)


def test_a_server_without_prefix_caching_is_refused(tmp_path_factory):
    with start(tmp_path_factory, "--no-enable-prefix-caching", dev_mode=False) as srv:
        info = read_server(srv.url)  # without dev mode: the cache setting comes from /metrics
        assert not info.prefix_caching and info.logprobs_after_temperature is None and info.max_running is None
        with pytest.raises(ServerError, match="--enable-prefix-caching"):
            ServerEngine(srv.url)


def test_a_server_killed_mid_step_fails_the_step_with_its_url(tmp_path_factory, prompts):
    """Deterministic: the kill comes between two steps, and the fork added after it can never connect."""
    srv = start(tmp_path_factory, dev_mode=False)
    engine = None
    try:
        engine = ServerEngine(srv.url, eos_token_ids=[EOS_ID])
        assert engine.logprobs_after_temperature  # no dev mode: probed (T=1 and T=2 log-probs differ)
        engine.configure(1.0, 20, [EOS_ID], False)
        for i, p in enumerate(prompts):
            engine.add(Request(f"{i}", p, 100, seed=i))
        first = engine.step()
        assert len(first) == len(prompts)
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        engine.add(Request("fork", prompts[0] + [first[0].token_id], 99, seed=9))
        with pytest.raises(ServerError, match=f"{srv.url} failed request"):
            while engine.has_unfinished():
                engine.step()
    finally:
        if engine is not None:
            engine.close()
        srv.stop()
