"""The arithmetic recipe: task, tokenizer, tiny models, and the engine path end to end (CPU, quick)."""

from __future__ import annotations

import json

import pytest

from recipes.arithmetic.task import (
    CHARACTERS_USED,
    Problem,
    extract_boxed,
    heldout_problems,
    is_correct,
    make_problems,
    read_jsonl,
    write_splits,
)
from recipes.arithmetic.tokenizer import BOS_ID, CHARACTERS, EOS_ID, build_tokenizer, encode
from recipes.tiny_model import PRESETS, SPEC_FILE, random_qwen2

MIXTURE = [1, 2, 3, 4, 5, 6, 7]


def test_worked_solution_format():
    p = Problem(4728, 3956, "+", 4)
    assert p.prompt == "4728+3956="
    assert p.solution == "\n8+6=14 4\n2+5+1=8 84\n7+9=16 684\n4+3+1=8 8684\n\\boxed{8684}"
    assert Problem(95, 17, "+", 2).solution == "\n5+7=12 2\n9+1+1=11 112\n\\boxed{112}"
    q = Problem(4728, 3956, "-", 4)
    assert q.solution == "\n8-6=2 2\n12-5=7 72\n17-9-1=7 772\n4-3-1=0 0772\n\\boxed{772}"


def test_problems_deterministic_by_seed():
    a = make_problems(200, seed=3, digits=MIXTURE, ops=["+", "-"])
    assert a == make_problems(200, seed=3, digits=MIXTURE, ops=["+", "-"])
    assert a != make_problems(200, seed=4, digits=MIXTURE, ops=["+", "-"])
    assert {p.digits for p in a} == set(MIXTURE)
    assert all(len(str(p.a)) == len(str(p.b)) == p.digits for p in a if p.digits > 1)


@pytest.mark.parametrize("op", ["+", "-"])
def test_boxed_answer_is_gold(op):
    for p in make_problems(2000, seed=0, digits=MIXTURE, ops=[op]):
        assert extract_boxed(p.solution) == p.answer == str(eval(p.prompt[:-1]))
        assert is_correct(p.solution, p.answer)
        assert not is_correct(p.solution.replace("boxed", "box"), p.answer)


def test_extract_boxed_takes_the_last():
    assert extract_boxed("\\boxed{1} then \\boxed{ 23 }") == "23"
    assert extract_boxed("no box") is None
    assert extract_boxed("\\boxed{12} \\boxed{3") == "12"  # a truncated last box: the complete one before it


def test_the_recipe_checks_answers_with_the_rewards_rule():
    """One boxed-answer rule in the project: the recipe's held-out check reads boxes as the training rewards do."""
    import rewards

    assert extract_boxed is rewards.extract_boxed
    # the brace-matched box that closes last, where a regex took the last innermost one
    assert not is_correct("\\boxed{1\\boxed{2}}", "2")
    assert is_correct("7+5=12 2\n\\boxed{12}", "12") and not is_correct("\\boxed{12}", "13")


def test_splits_are_disjoint_and_fixed(tmp_path):
    held = heldout_problems(300)
    assert held == heldout_problems(300) and all(p.is_heldout for p in held)
    train = make_problems(3000, seed=0, digits=[2, 3, 4, 5], split="train")
    assert not set(held) & set(train)
    train_path, held_path = write_splits(tmp_path, n_train=50, n_heldout=20)
    rows = read_jsonl(held_path)
    assert len(rows) == 20 and set(rows[0]) >= {"prompt", "answer"}
    assert all(isinstance(r["prompt"], str) and isinstance(r["answer"], str) for r in rows)
    assert len(read_jsonl(train_path)) == 50


def test_tokenizer_round_trips_every_task_character(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert set(CHARACTERS_USED) <= set(CHARACTERS)
    texts = [CHARACTERS] + [p.prompt + p.solution for p in make_problems(50, 0, MIXTURE, ["+", "-"])]
    assert set("".join(texts[1:])) == set(CHARACTERS_USED)
    for t in (tok, loaded):
        for text in texts:
            ids = t(text)["input_ids"]
            assert ids[0] == BOS_ID and ids[1:] == encode(text) and len(ids) == len(text) + 1
            assert t.decode(ids, skip_special_tokens=True) == text
    assert (loaded.bos_token_id, loaded.eos_token_id) == (BOS_ID, EOS_ID)
    # A one-message conversation renders to exactly the plain prompt's ids.
    message = [{"role": "user", "content": "12+34="}]
    chat = loaded.apply_chat_template(message, add_generation_prompt=True, tokenize=True)
    chat = chat["input_ids"] if hasattr(chat, "keys") else chat
    assert list(chat) == loaded("12+34=")["input_ids"]


def test_random_presets_have_their_size():
    import torch
    from transformers import Qwen2ForCausalLM

    from recipes.tiny_model import count_parameters, qwen2_config

    for name, low, high in [("1m", 0.8e6, 1.3e6), ("60m", 55e6, 66e6)]:
        spec = PRESETS[name]
        assert spec.hidden_size // spec.num_heads == 64
        with torch.device("meta"):  # shapes only, no weights
            n = count_parameters(Qwen2ForCausalLM(qwen2_config(spec)))
        assert low < n < high, (name, n)


@pytest.mark.slow
def test_random_model_without_tokenizer_runs_in_vllm(tmp_path):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from recipes.arithmetic.evaluate import load_llm

    path = random_qwen2("1m", cache_dir=tmp_path)
    assert random_qwen2("1m", cache_dir=tmp_path) == path  # cached
    llm = load_llm(path, max_model_len=128, skip_tokenizer_init=True)
    out = llm.generate(
        [TokensPrompt(prompt_token_ids=list(range(1, 12)))],
        SamplingParams(max_tokens=8, temperature=1.0, ignore_eos=True, detokenize=False),
        use_tqdm=False,
    )
    assert len(out[0].outputs[0].token_ids) == 8


@pytest.mark.parametrize("wrong_at", [None, "prompt", "eos"])
def test_solution_probabilities_score_solution_and_eos_only(wrong_at):
    """The teacher-forced accuracy estimate scores the worked solution and its EOS, not the prompt."""
    import torch

    from recipes.arithmetic.pretrain import make_batch, validation_batch
    from recipes.arithmetic.tokenizer import EOS_ID, PAD_ID
    from recipes.sft import solution_probabilities

    problems = [Problem(12, 34, "+", 2), Problem(95, 17, "+", 2)]
    ids, _ = make_batch(problems)
    nxt = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], PAD_ID)], 1)  # (B, T): the right next tokens
    if wrong_at == "prompt":
        nxt[:, 1] = PAD_ID  # position 1 predicts a prompt digit
    elif wrong_at == "eos":
        nxt[nxt == EOS_ID] = PAD_ID

    class Scripted(torch.nn.Module):
        def forward(self, input_ids):
            return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, 128).float() * 50})

    probs, greedy = solution_probabilities(Scripted(), problems, validation_batch)
    right = wrong_at != "eos"
    assert torch.allclose(probs, torch.full((2,), float(right)), atol=1e-6)
    assert greedy.tolist() == [float(right)] * 2


@pytest.mark.slow
def test_pretrain_smoke_then_vllm_and_hf(tmp_path):
    """20 training steps, then the engine path the demo uses: vLLM sampling and HF greedy on the saved model."""
    from recipes.arithmetic.evaluate import evaluate, hf_greedy, load_llm
    from recipes.arithmetic.pretrain import PretrainConfig, ensure_model, is_trained

    cfg = PretrainConfig(
        steps=20, warmup_steps=2, batch_size=8, digits=[1, 2], log_every=10, eval_every=10, val_size=8
    )
    path = ensure_model(cfg, cache_dir=tmp_path)
    meta = json.loads((path / SPEC_FILE).read_text())
    assert is_trained(path, cfg) and meta["final_loss"] < 4.0  # ln(100) = 4.6 is chance
    assert meta["steps_trained"] == 20 and meta["stop_reason"] == "steps"  # far from the target accuracy
    assert all(0.0 <= v <= 1.0 for v in meta["validation_accuracy"].values())
    assert ensure_model(cfg, cache_dir=tmp_path) == path

    problems = heldout_problems(8, digits=[1, 2])
    report = evaluate(llm=load_llm(path, max_model_len=128), problems=problems, temperature=1.0)
    assert report.n == 8 and 0.0 <= report.accuracy <= 1.0 and report.stderr >= 0.0
    assert len(hf_greedy(path, [p.prompt for p in problems[:2]], max_new_tokens=8)) == 2


def test_the_shipped_model_is_the_one_the_pretraining_config_builds():
    """The recipe's model ships with the hash of the config it was trained with. A change to the pretraining
    config, the task's solution format or the tokenizer changes the hash: then retrain into the shipped
    directory (`python -m recipes.arithmetic.pretrain --out recipes/arithmetic/model --force`) and commit it."""
    from recipes.arithmetic.pretrain import SHIPPED, PretrainConfig, ensure_model, is_trained

    assert (SHIPPED / "model.safetensors").stat().st_size > 1_000_000
    assert is_trained(SHIPPED, PretrainConfig()), "the shipped model is stale: retrain it (see the docstring)"
    assert ensure_model() == SHIPPED
