"""The driver on real engines: vLLM's V1 engine (CPU build) and the transformers backend, tiny random Qwen2."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from rollout import INHERITED, EagerConfig, generate
from rollout.hf_engine import HFEngine

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

STOP = list(range(2, 60))  # a random model rarely picks one token; with 58 stop ids most sequences end early
PROMPTS = [[7, 8, 9, 10, 11, 12, 13, 14, 15 + i] for i in range(4)]  # 8+ tokens: avoids a CPU attention-kernel fault


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen2")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=256,
                      eos_token_id=2, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def vllm_engine(model_dir):
    from rollout.vllm_engine import VLLMEngine, build_llm

    llm = build_llm(model_dir, dtype="float32", max_model_len=256, tokenizer=False)
    yield VLLMEngine(llm)
    del llm


def cfg(**kw):
    base = dict(method="eager_init", max_sequences=4, entropy_threshold=1.0, temperature=0.8, max_new_tokens=24,
                stop_token_ids=STOP, seed=3)
    base.update(kw)
    return EagerConfig(**base)


def assert_valid(result, max_new=24):
    for tree in result.trees:
        assert 1 <= tree.n_sequences <= tree.budget
        for s in tree.sequences:
            assert len(s.tokens) == len(s.logprobs) == len(s.entropies) <= max_new
            assert s.entropies[: s.n_inherited] == [INHERITED] * s.n_inherited
            assert all(0 <= e <= np.log(21) + 1e-9 for e in s.entropies[s.n_inherited:])
            assert all(lp <= 0 for lp in s.logprobs)
            if s.parent is not None:
                assert s.tokens[: s.n_inherited] == tree.sequences[s.parent].tokens[: s.n_inherited]
            # the sequence ends exactly where the engine stopped it: at its first stop token, or at the cap
            stops = [k for k, t in enumerate(s.tokens) if t in STOP]
            if s.finish_reason == "stop":
                assert stops and stops[0] == len(s.tokens) - 1
            else:
                assert s.finish_reason == "length" and len(s.tokens) == max_new and not stops


def hf_logprobs(model_dir, prompt, tokens, temperature):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].double() / temperature
    return torch.log_softmax(logits, -1)[torch.arange(len(tokens)), torch.tensor(tokens)].numpy()


@pytest.mark.parametrize("mode", ["top2", "alternative", "resample"])
def test_vllm_trees_are_valid_and_reproducible(vllm_engine, mode):
    a = generate(vllm_engine, PROMPTS, cfg(fork_mode=mode))
    b = generate(vllm_engine, PROMPTS, cfg(fork_mode=mode))
    assert_valid(a)
    assert a.n_branches > 0 and a.n_sequences > len(PROMPTS)
    assert [[s.tokens for s in t.sequences] for t in a.trees] == [[s.tokens for s in t.sequences] for t in b.trees]
    assert [t.branches for t in a.trees] == [t.branches for t in b.trees]
    c = generate(vllm_engine, PROMPTS, cfg(fork_mode=mode, seed=4))
    assert [[s.tokens for s in t.sequences] for t in a.trees] != [[s.tokens for s in t.sequences] for t in c.trees]


def test_vllm_logprobs_are_the_policy_logprobs_of_every_token(vllm_engine, model_dir):
    """Inherited and forced tokens included: what TRL's importance-sampling correction needs."""
    r = generate(vllm_engine, PROMPTS[:2], cfg(fork_mode="top2"))
    checked = 0
    for tree in r.trees:
        for s in tree.sequences:
            ref = hf_logprobs(model_dir, tree.prompt_ids, s.tokens, 0.8)
            np.testing.assert_allclose(s.logprobs, ref, atol=2e-3)
            checked += 1 + bool(s.forced)
    assert checked > len(r.trees)


def test_vllm_parallel_and_accounting(vllm_engine):
    par = generate(vllm_engine, PROMPTS, cfg(method="parallel"))
    eag = generate(vllm_engine, PROMPTS, cfg())
    assert_valid(par)
    assert all(t.n_sequences == 4 and not t.branches for t in par.trees)
    assert par.tokens_generated == sum(len(s.tokens) for t in par.trees for s in t.sequences)
    assert eag.tokens_generated == sum(len(s.tokens) - s.n_inherited for t in eag.trees for s in t.sequences)
    assert eag.tokens_generated < sum(len(s.tokens) for t in eag.trees for s in t.sequences)


def test_vllm_many_long_seeded_prompts_in_one_step(vllm_engine):
    """24 x 200 prompt tokens exceed one step's 4096-token budget: with chunked prefill, vLLM's CPU
    build split a seeded prompt and crashed ("CPU Generator does not use offset")."""
    prompts = [[(7 * i + j) % 250 + 3 for j in range(200)] for i in range(24)]
    r = generate(vllm_engine, prompts, cfg(max_new_tokens=4))
    assert not r.errors and all(t.n_sequences >= 1 for t in r.trees)


def test_vllm_bad_prompt_does_not_stop_the_batch(vllm_engine):
    r = generate(vllm_engine, [[], [5] * 300, PROMPTS[0]], cfg())
    assert set(r.errors) == {0, 1} and r.trees[2].n_sequences >= 1


def test_hf_backend_same_invariants(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    engine = HFEngine(model, max_model_len=256)
    for mode in ("top2", "resample"):
        r = generate(engine, PROMPTS[:2], cfg(fork_mode=mode, max_new_tokens=16))
        assert_valid(r, max_new=16)
        assert r.n_branches > 0
        again = generate(engine, PROMPTS[:2], cfg(fork_mode=mode, max_new_tokens=16))
        assert [[s.tokens for s in t.sequences] for t in r.trees] == [[s.tokens for s in t.sequences] for t in again.trees]
    tree = r.trees[0]
    np.testing.assert_allclose(tree.sequences[0].logprobs, hf_logprobs(model_dir, tree.prompt_ids,
                                                                      tree.sequences[0].tokens, 0.8), atol=1e-5)


def test_hf_full_vocab_entropy_is_opt_in(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    r = generate(HFEngine(model, max_model_len=256), PROMPTS[:1],
                 cfg(entropy_source="full_vocab", max_new_tokens=6, entropy_threshold=10.0))
    ents = r.trees[0].sequences[0].entropies
    assert all(np.log(21) < e <= np.log(256) + 1e-9 for e in ents)  # near-uniform random model: far above ln 21
