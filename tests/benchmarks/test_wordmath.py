"""The word-problem task and the fine-tune that makes SmolLM2 a mid-band RL model.

The task tests are pure. The fine-tune runs for real, at a tiny scale: a random 2-layer
Qwen2 with the Qwen3 tokenizer (its chat template included) stands in for SmolLM2, so the
test needs no package and takes seconds; the full fine-tune is `python -m benchmarks.wordmath.model`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.wordmath import task
from benchmarks.wordmath.task import WordProblem, heldout_problems, is_correct, make_problems

QWEN3_TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "assets" / "qwen3-tokenizer"


def test_solutions_are_right_and_answers_positive():
    for p in make_problems(2000, seed=5):
        lines = p.solution.splitlines()
        assert len(lines) == 3
        for line in lines[:2]:
            x, op, y, result = re.fullmatch(r"(\d+) ([-+*]) (\d+) = (\d+)\.", line).groups()
            assert task.OPS[op](int(x), int(y)) == int(result)
        assert int(p.answer) > 0 and lines[1].endswith(f"= {p.answer}.")
        assert is_correct(p.solution, p.answer)
        assert p.question.endswith("?") and str(p.a) in p.question


def test_splits_are_disjoint_and_fixed_by_the_question():
    held = heldout_problems(200)
    assert len(set(held)) == 200 and all(p.is_heldout for p in held)
    assert held == heldout_problems(200)  # the same set every time, whatever else ran
    train = make_problems(3000, seed=task.TRAIN_SEED)
    assert not {p.question for p in held} & {p.question for p in train}
    assert {p.kind for p in held} == set(task.STORIES)
    with pytest.raises(ValueError, match="split must be"):
        next(task.iter_problems(0, split="test"))


def test_is_correct_reads_the_last_box():
    assert is_correct("12 + 3 = 15.\nThe answer is \\boxed{15}.", "15")
    assert not is_correct("\\boxed{15} then \\boxed{16}", "15")
    assert not is_correct("fifteen", "15")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    if not QWEN3_TOKENIZER.is_dir():
        pytest.skip(f"needs the shared Qwen3 tokenizer at {QWEN3_TOKENIZER}")
    from transformers import AutoTokenizer

    from recipes.tiny_model import build_random_qwen2

    tokenizer = AutoTokenizer.from_pretrained(QWEN3_TOKENIZER)
    return build_random_qwen2(tmp_path_factory.mktemp("base"), vocab_size=len(tokenizer), hidden_size=64,
                              num_layers=2, num_heads=1, num_kv_heads=1, intermediate_size=128,
                              max_position_embeddings=256, seed=0, tokenizer=tokenizer, tie_word_embeddings=True)


@pytest.mark.slow
def test_batch_labels_are_the_solution_and_end_of_turn(tiny_base):
    from transformers import AutoTokenizer

    from benchmarks.wordmath.model import IGNORE, make_batch

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    problems = make_problems(3, seed=1)
    ids, labels, mask = make_batch(tokenizer, problems)
    for row, p in enumerate(problems):
        kept = labels[row][labels[row] != IGNORE].tolist()
        assert tokenizer.decode(kept[:-1]) == p.solution and kept[-1] == tokenizer.eos_token_id
        prompt_len = int((labels[row] == IGNORE).long().argmin())
        assert tokenizer.decode(ids[row, :prompt_len]) == task.render_prompt(tokenizer, p)
        assert int(mask[row].sum()) == prompt_len + len(kept)


@pytest.mark.slow
def test_finetune_saves_a_cached_model_with_its_record(tiny_base, tmp_path, monkeypatch):
    from benchmarks.wordmath import model as wm

    cfg = wm.FinetuneConfig(base_model=str(tiny_base), steps=3, warmup_steps=1, batch_size=2, eval_every=2,
                            val_size=4, target_accuracy=0.0)
    path = wm.ensure_model(cfg, cache_dir=tmp_path)
    meta = json.loads((path / "eager_rl_model.json").read_text())
    assert meta["kind"] == "wordmath-finetune" and meta["steps_trained"] == 3 and meta["stop_reason"] == "steps"
    assert meta["key"] == cfg.key(Path(tiny_base)) and path.name.endswith(meta["key"])
    monkeypatch.setattr(wm, "train", lambda *a: pytest.fail("a cached model was trained again"))
    assert wm.ensure_model(cfg, cache_dir=tmp_path) == path
    # The early stop: validations scripted to 0.1 then 0.3 (a random model scores ~0) end training at
    # the first one at or above the target, the second (step 4).
    monkeypatch.undo()
    scores = iter([0.0, 0.1, 0.3, 0.9])
    monkeypatch.setattr(wm, "solution_probability", lambda *a: next(scores))
    cfg_stop = wm.FinetuneConfig(base_model=str(tiny_base), steps=9, warmup_steps=1, batch_size=2, eval_every=2,
                                 val_size=4, target_accuracy=0.25)
    meta = json.loads((wm.train(cfg_stop, tmp_path / "stop") / "eager_rl_model.json").read_text())
    assert meta["stop_reason"] == "target_accuracy" and meta["steps_trained"] == 4
    assert meta["validation_before"] == 0.0 and meta["validation_accuracy"] == {"sampled_t1": 0.3}


def test_bad_config_names_the_field():
    from benchmarks.wordmath.model import FinetuneConfig

    with pytest.raises(ValueError, match="warmup_steps"):
        FinetuneConfig(steps=5, warmup_steps=5)


def test_threshold_calibration_picks_the_smallest_candidate_within_the_share():
    from benchmarks.real_model import choose_threshold

    entropies = [0.1] * 90 + [1.2] * 7 + [2.2] * 3  # 10% above 1.0, 3% above 2.0, none above 3.0
    chosen, shares = choose_threshold(entropies, [3.0, 1.0, 2.0], target_share=0.05)
    assert chosen == 2.0 and shares == {1.0: 0.10, 2.0: 0.03, 3.0: 0.0}
    assert choose_threshold(entropies, [1.0, 2.0], target_share=0.01)[0] == 2.0  # none within: the largest
    with pytest.raises(ValueError, match="calibration_prompts"):
        choose_threshold([], [1.0], 0.02)


def test_grpo_recipe_is_a_valid_eager_config(tmp_path):
    """The benchmark's GRPO recipe parses, with unused rows dropped from the loss batch."""
    import yaml

    from benchmarks.real_model import RECIPE
    from trainers import EagerGRPOConfig

    recipe = {k: v for k, v in yaml.safe_load(RECIPE.read_text()).items() if k not in ("dtype", "reward_funcs")}
    args = EagerGRPOConfig(**recipe, output_dir=str(tmp_path))
    assert args.rollout_generator == "eager" and args.drops_unused_rows
    assert args.per_device_train_batch_size % args.num_generations == 0
