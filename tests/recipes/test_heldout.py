"""Held-out scoring: one engine for many checkpoints gives what a fresh engine on each gives, and its standard
error is the one over problems."""

from __future__ import annotations

import os
import shutil

import pytest

from recipes.heldout import accuracy_of


def test_accuracy_and_its_standard_error_over_problems():
    a = accuracy_of([1.0, 0.0, 1.0, 0.5], samples=8)
    assert a.mean == pytest.approx(0.625) and a.samples == 8
    assert a.stderr == pytest.approx((sum((x - 0.625) ** 2 for x in [1, 0, 1, 0.5]) / 3 / 4) ** 0.5)
    assert accuracy_of([1.0], 1).stderr == 0.0


@pytest.mark.slow
def test_a_checkpoint_loaded_in_place_scores_as_on_a_fresh_engine(tmp_path):
    import gc

    import torch
    from safetensors.torch import load_file, save_file

    from recipes.arithmetic.pretrain import ensure_model
    from recipes.arithmetic.task import heldout_problems, is_correct
    from recipes.heldout import CheckpointScorer

    base = ensure_model()
    perturbed = tmp_path / "perturbed"
    shutil.copytree(base, perturbed)
    weights = load_file(str(perturbed / "model.safetensors"))
    torch.manual_seed(0)
    weights = {k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()}
    save_file(weights, str(perturbed / "model.safetensors"), metadata={"format": "pt"})
    problems = heldout_problems(48)
    args = ([p.prompt for p in problems], [p.answer for p in problems], is_correct)

    def scorer(model):
        return CheckpointScorer(model, *args, max_tokens=80, samples=2)

    shared = scorer(base)
    before, after, again = shared.score(), shared.score(perturbed), shared.score(base)
    shared.close()
    gc.collect()
    fresh = scorer(perturbed)
    assert fresh.score().per_problem == after.per_problem  # loading in place is loading
    fresh.close()
    assert again.per_problem == before.per_problem  # and back
    assert after.per_problem != before.per_problem  # the perturbation changed the samples
    assert before.samples == 96 and 0 <= before.mean <= 1 and before.stderr > 0
    assert os.path.exists(perturbed / "model.safetensors")
