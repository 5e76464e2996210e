"""EGLR (rollout.recursion) on real transformers models: tiny random Llama and Qwen2, 4 layers.

The recursion's attention must see the cached prefix exactly (checked by re-applying layers
to their own inputs), must never change the cache later tokens read (checked against a full
forward pass), must not run below its gate, and is deterministic for a fixed span.
"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from rollout import EagerConfig, generate
from rollout.engine import Request
from rollout.hf_engine import HFEngine
from rollout.recursion import Recursion, _PeekCache, decoder_parts, gate_entropy, recurse, total_variation

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

PROMPTS = [[7, 8, 9, 10, 11, 12, 13, 14, 15 + i] for i in range(3)]
STOP = list(range(2, 12))


def _tiny(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, max_position_embeddings=256, eos_token_id=2,
                  initializer_range=0.2)
    model = LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common))
    return model.to(torch.float32).eval()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request):
    return _tiny(request.param)


def _run(engine, prompt, max_tokens=12, seed=5, temperature=1.0):
    engine.configure(temperature, 20, STOP, False)
    engine.add(Request("r", list(prompt), max_tokens, seed))
    outs = []
    while engine.has_unfinished():
        outs += engine.step()
    return outs


def test_peek_cache_reapplying_layers_to_their_inputs_gives_their_outputs(model):
    """The read-only view attends to exactly the cached prefix: layers re-run on their own input reproduce the forward."""
    layers, norm, rotary, head = decoder_parts(model)
    ids = torch.tensor([PROMPTS[0]])
    seen = {}
    hooks = [layer.register_forward_hook(lambda m, a, o, j=j: seen.__setitem__(j, (a[0][0, -1].clone(), o[0, -1].clone())))
             for j, layer in enumerate(layers)]
    with torch.no_grad():
        out = model(ids, use_cache=True)
    for h in hooks:
        h.remove()
    before = [layer.keys.clone() for layer in out.past_key_values.layers]
    pos = torch.tensor([[ids.shape[1] - 1]])
    h = seen[2][0].reshape(1, 1, -1)  # input of layer 2 at the last position
    with torch.no_grad():
        rope = rotary(h, position_ids=pos)
        for layer in layers[2:]:
            h = layer(h, attention_mask=None, position_ids=pos, past_key_values=_PeekCache(out.past_key_values),
                      position_embeddings=rope)
        logits = head(norm(h))[0, -1]
    torch.testing.assert_close(h[0, -1], seen[3][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, out.logits[0, -1], rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b.keys) for a, b in zip(before, out.past_key_values.layers))  # nothing stored


def test_recursion_leaves_the_cache_as_a_full_forward_builds_it(model):
    """Decoding with recursion at every token: the reported log-probs and the cache match one plain forward pass."""
    engine = HFEngine(model, recursion=Recursion(span=2, gate=0.0, k_max=3))
    outs = _run(engine, PROMPTS[0], max_tokens=10)
    assert engine.recursion_stats.gated == len(outs) > 0
    tokens = [o.token_id for o in outs]
    ids = torch.tensor([PROMPTS[0] + tokens])
    with torch.no_grad():
        full = model(ids, use_cache=True)
    logp = torch.log_softmax(full.logits[0, len(PROMPTS[0]) - 1: -1].double(), -1)
    expected = logp[torch.arange(len(tokens)), torch.tensor(tokens)]
    torch.testing.assert_close(torch.tensor([o.logprob for o in outs], dtype=torch.float64), expected,
                               rtol=1e-4, atol=1e-4)
    # the engine's own cache of the (finished) request against the full pass, every layer
    run = engine._finished["r"]
    for mine, ref in zip(run.past.layers, full.past_key_values.layers):
        n = mine.keys.shape[-2]  # the last token was never fed back: the cache holds prompt + tokens[:-1]
        torch.testing.assert_close(mine.keys, ref.keys[..., :n, :], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mine.values, ref.values[..., :n, :], rtol=1e-4, atol=1e-5)


def test_greedy_recursion_is_deterministic_and_differs_by_span(model):
    def greedy(span):
        engine = HFEngine(model, recursion=Recursion(span=span, gate=0.0, tol=0.0), greedy=True)
        return [o.token_id for o in _run(engine, PROMPTS[1], max_tokens=12, seed=1)], engine

    a, _ = greedy(2)
    b, _ = greedy(2)
    assert a == b
    plain = HFEngine(model, greedy=True)
    plain_tokens = [o.token_id for o in _run(plain, PROMPTS[1], max_tokens=12, seed=9)]
    spans = {span: greedy(span)[0] for span in (1, 2, 4)}
    assert any(tokens != plain_tokens for tokens in spans.values())  # the recursion changes the rollout


def test_no_recursion_below_the_gate(model):
    """Above every entropy the gate never fires: same tokens as the plain engine, no layer re-applied."""
    plain = [o.token_id for o in _run(HFEngine(model), PROMPTS[2], seed=3)]
    gated = HFEngine(model, recursion=Recursion(span=2, gate=100.0))
    assert [o.token_id for o in _run(gated, PROMPTS[2], seed=3)] == plain
    assert gated.recursion_stats.gated == 0 and gated.recursion_stats.tokens == len(plain)


def test_gate_fires_only_above_its_threshold(model):
    """With the gate at the median entropy of a plain run, exactly the tokens above it are recursed."""
    entropies = []
    for gate_at in (None, "median"):
        if gate_at is None:
            engine = HFEngine(model)
        else:
            gate = sorted(entropies)[len(entropies) // 2]
            engine, entropies = HFEngine(model, recursion=Recursion(span=1, gate=gate)), []
        engine.configure(1.0, 20, STOP, False)
        engine.add(Request("r", PROMPTS[0], 12, 4))
        while engine.has_unfinished():
            engine.step()
            run = engine._running.get("r") or engine._finished["r"]
            entropies.append(gate_entropy(run.logits, 20))  # the policy's entropy at the step's position
    above = sum(e > gate for e in entropies)
    assert 0 < above < len(entropies)
    assert engine.recursion_stats.gated == above and engine.recursion_stats.tokens == len(entropies)


def test_recurse_matches_the_layers_and_gets_the_position_from_the_engine(model, monkeypatch):
    """recurse() with one iteration is the top layers on the last hidden state at the last fed position."""
    import rollout.hf_engine as hf

    layers, norm, rotary, head = decoder_parts(model)
    ids = torch.tensor([PROMPTS[1]])
    hidden = []
    handle = layers[-1].register_forward_hook(lambda m, a, o: hidden.append(o[0, -1].clone()))
    with torch.no_grad():
        out = model(ids, use_cache=True)
    handle.remove()
    pos = torch.tensor([[ids.shape[1] - 1]])
    h = hidden[-1].reshape(1, 1, -1)
    with torch.no_grad():
        rope = rotary(h, position_ids=pos)
        for layer in layers[-2:]:
            h = layer(h, attention_mask=None, position_ids=pos, past_key_values=_PeekCache(out.past_key_values),
                      position_embeddings=rope)
        manual = head(norm(h))[0, -1]
    got = recurse(model, hidden[-1], out.past_key_values, ids.shape[1] - 1, Recursion(span=2, k_max=1),
                  out.logits[0, -1])
    torch.testing.assert_close(got, manual, rtol=1e-5, atol=1e-5)

    positions = []
    real = hf.recurse
    monkeypatch.setattr(hf, "recurse", lambda *a, **k: positions.append(a[3]) or real(*a, **k))
    outs = _run(HFEngine(model, recursion=Recursion(span=1, gate=0.0)), PROMPTS[1], max_tokens=5)
    start = len(PROMPTS[1]) - 1  # the prompt's last position predicts the first token
    assert positions == list(range(start, start + len(outs)))


def test_models_the_recursion_cannot_reproduce_are_refused():
    from transformers import GraniteConfig, GraniteForCausalLM, MistralConfig, MistralForCausalLM

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
    windowed = MistralForCausalLM(MistralConfig(**common, sliding_window=4))
    scaled = GraniteForCausalLM(GraniteConfig(**common, logits_scaling=8.0))
    for model, why in ((windowed, "full-attention"), (scaled, "after the head")):
        engine = HFEngine(model)
        assert not engine.can_recurse and why in engine.why_no_recursion
        with pytest.raises(ValueError, match=why):
            engine.set_decoding(Recursion(span=1))
        config = EagerConfig(fork_mode="recursion", recursion_span=1, max_new_tokens=4)
        with pytest.raises(ValueError, match=why):
            generate(engine, PROMPTS, config)
    assert HFEngine(MistralForCausalLM(MistralConfig(**common, sliding_window=None))).can_recurse


def test_convergence_stops_early_at_a_loose_tolerance(model):
    tight = HFEngine(model, recursion=Recursion(span=1, gate=0.0, k_max=4, tol=0.0))
    loose = HFEngine(model, recursion=Recursion(span=1, gate=0.0, k_max=4, tol=0.99))
    tight.recursion_trace, loose.recursion_trace = [], []
    _run(tight, PROMPTS[0], max_tokens=6, seed=2)
    _run(loose, PROMPTS[0], max_tokens=6, seed=2)
    assert tight.recursion_stats.iterations == 4 * tight.recursion_stats.gated
    assert len(tight.recursion_trace) == tight.recursion_stats.gated and {len(t) for t in tight.recursion_trace} == {4}
    assert all(len(t) == 1 and t[0] < 0.99 for t in loose.recursion_trace)
    assert loose.recursion_stats.iterations == loose.recursion_stats.gated  # one iteration, then within tolerance
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_recursion_fork_mode_in_rollout_generate(model):
    config = EagerConfig(method="eager_init", max_sequences=4, entropy_threshold=0.5, temperature=1.0,
                         max_new_tokens=16, stop_token_ids=STOP, seed=3, fork_mode="recursion", recursion_span=2)
    engine = HFEngine(model)
    a = generate(engine, PROMPTS, config)
    b = generate(HFEngine(model), PROMPTS, config)
    assert a.n_branches > 0
    assert [[s.tokens for s in t.sequences] for t in a.trees] == [[s.tokens for s in t.sequences] for t in b.trees]
    assert engine.recursion_stats.gated == a.n_branches  # one recursion per fork, none elsewhere
    for tree in a.trees:
        for ev in tree.branches:
            child, parent = tree.sequences[ev.new_seq], tree.sequences[ev.seq]
            assert ev.recursion_span == 2
            assert child.tokens[ev.position] == ev.branch_token != parent.tokens[ev.position] == ev.original_token
            assert ev.position in child.forced and ev.position not in parent.forced
            # the child's log-prob at the fork is the policy's for its token (plain forward, T = 1)
            ids = torch.tensor([tree.prompt_ids.tolist() + child.tokens[: ev.position]])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, -1].double(), -1)
            assert child.logprobs[ev.position] == pytest.approx(float(logp[ev.branch_token]), abs=1e-4)
            # ...and the token is the recursed distribution's best other than the parent's
            layers = decoder_parts(model)[0]
            hidden = []
            handle = layers[-1].register_forward_hook(lambda m, a, o: hidden.append(o[0, -1].clone()))
            with torch.no_grad():
                out = model(ids, use_cache=True)
            handle.remove()
            rec = recurse(model, hidden[-1], out.past_key_values, ids.shape[1] - 1, Recursion(span=2), out.logits[0, -1])
            rec[ev.original_token] = -float("inf")
            assert int(torch.argmax(rec)) == ev.branch_token


class _NoRecursion:
    """Any engine without `can_recurse` (vLLM's adapter is one)."""

    logprobs_after_temperature, max_model_len = True, 256

    def configure(self, *args):
        pass


def test_recursion_fork_mode_needs_a_span_and_a_capable_engine():
    with pytest.raises(ValueError, match="recursion_span"):
        EagerConfig(fork_mode="recursion")
    with pytest.raises(ValueError, match="HFEngine"):
        generate(_NoRecursion(), PROMPTS, EagerConfig(fork_mode="recursion", recursion_span=1, max_new_tokens=4))


def test_recursion_settings_are_checked():
    for bad in (dict(span=-1), dict(span=1, k_max=0), dict(span=1, tol=1.0), dict(span=1, gate=-0.1)):
        with pytest.raises(ValueError, match="Recursion"):
            Recursion(**bad)
    with pytest.raises(ValueError, match="decoder layers"):  # a span beyond the model's 4 layers
        recurse(_tiny("llama"), torch.zeros(64), None, 0, Recursion(span=9), torch.zeros(128))
