"""Tree-shaped groups against the exact policy gradient of a small tabular policy.

The policy writes 3 binary tokens (2 or 3, then EOS); each prefix has its own two logits, so the exact
gradient of J = E[R] w.r.t. every logit is a sum over the 8 sequences. The real driver grows trees on a
scripted engine with that policy: resample forks where the binary entropy is high (some prefixes fork,
others never do), so the tree's shape depends on the prefix. Per token, the estimator's gradient is
advantage x (onehot(token) - softmax(logits of its prefix)).

- segment credit (every token once, `w_t (Q_t - b)`) averages to E[roots] x the exact gradient,
  component by component, within a few standard errors, under forks alone and under the online passes
  with the stop rule.
- Per-row credit (a child repeats its parent's prefix, GRPO's layout) does not: the prefixes that fork
  are counted once per leaf below them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rollout import EagerConfig, generate
from tests.rollout.scripted import EOS, ScriptedEngine
from trainers.tree_credit import token_credit

L = 3
LOGITS = {(): (0.0, 1.0), (2,): (1.5, 0.0), (3,): (0.0, 0.2), (2, 2): (0.3, 0.0), (2, 3): (0.0, 2.0),
          (3, 2): (0.0, 0.1), (3, 3): (1.0, 0.0)}  # high entropy at (3,), (2, 2), (3, 2): they fork


def reward(tokens: tuple) -> float:
    return float(tokens.count(3) >= 2 or tokens == (2, 2, 2))


def softmax(z) -> np.ndarray:
    e = np.exp(np.asarray(z) - max(z))
    return e / e.sum()


def exact_gradient() -> np.ndarray:
    """dJ/d(logits), one row per prefix (in LOGITS order), two columns (token 2, token 3)."""
    keys = list(LOGITS)
    grad = np.zeros((len(keys), 2))
    for seq in itertools.product((2, 3), repeat=L):
        p, score = 1.0, np.zeros_like(grad)
        for t in range(L):
            probs = softmax(LOGITS[seq[:t]])
            p *= probs[seq[t] - 2]
            score[keys.index(seq[:t])] += np.eye(2)[seq[t] - 2] - probs
        grad += p * reward(seq) * score
    return grad


def script(completion: list[int], prompt_len: int = 0) -> np.ndarray:
    z = np.full(30, -50.0)
    if len(completion) >= L:
        z[EOS] = 40.0
    else:
        z[2], z[3] = LOGITS[tuple(completion)]
    return z


def estimates(result, per_row: bool) -> np.ndarray:
    """Per prompt, the estimator's gradient: (prompts, prefixes, 2). Baseline 0.5 (what verdicts give a row that
    starts knowing nothing); the expectation does not depend on it."""
    keys = list(LOGITS)
    out = np.zeros((len(result.trees), len(keys), 2))
    for k, tree in enumerate(result.trees):
        rewards = {s.index: reward(tuple(s.tokens[:L])) for s in tree.kept()}
        credit = token_credit(tree, rewards)
        for s in tree.kept():
            weights, values = credit[s.index]
            for t in range(L):
                prefix, token = tuple(s.tokens[:t]), s.tokens[t]
                if per_row:
                    adv = rewards[s.index] - 0.5
                elif weights[t] == 0:
                    continue
                else:
                    adv = weights[t] * (values[t] - 0.5)
                out[k, keys.index(prefix)] += adv * (np.eye(2)[token - 2] - softmax(LOGITS[prefix]))
    return out


def roots(result) -> np.ndarray:
    return np.array([sum(1 for s in t.kept() if s.parent is None) for t in result.trees], dtype=float)


def z_scores(est: np.ndarray, target: np.ndarray) -> np.ndarray:
    mean, se = est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))
    return np.abs(mean - target) / np.maximum(se, 1e-12)


CASES = {  # the expected number of roots varies: 1 (forks alone), about 1.3 and 1.5 (extra passes)
    "forks": dict(method="eager_init", max_sequences=4),
    "online passes, stop at the first right answer": dict(method="eager", online=True, max_sequences=3,
                                                          pass_start_limit=3.0),
    "online passes, signal stop rule": dict(method="eager", online=True, max_sequences=3, pass_start_limit=3.0,
                                            stop_rule="signal", signal_easy_k=2),
}


@pytest.mark.slow  # a simulation of 2,000 trees per case
@pytest.mark.parametrize("case", list(CASES))
def test_segment_credit_is_unbiased_and_row_credit_is_not(case):
    config = EagerConfig(**CASES[case], entropy_threshold=0.6, p99_floor=False, fork_mode="resample",
                         temperature=1.0, max_new_tokens=L + 1, seed=5)
    n = 2000
    verifier = (lambda i, ids: reward(tuple(ids[:L])) >= 1.0) if config.method == "eager" else None
    result = generate(ScriptedEngine(script), [[1, 1, 1]] * n, config, verifier=verifier)
    assert sum(len(t.branches) for t in result.trees) > n / 2, "the tabular policy should fork often"
    if config.online:
        assert roots(result).mean() > 1.2, "the stop rule should start extra roots"
    target = exact_gradient() * roots(result).mean()
    segments = z_scores(estimates(result, per_row=False), target)
    assert segments.max() < 4.5, segments
    rows = z_scores(estimates(result, per_row=True), target)
    assert rows.max() > 8, rows  # forked prefixes counted once per leaf


def test_credit_of_a_hand_made_tree():
    """A root forked at 1 (child c) and again at 2 (grandchild g of the root): weights halve per fork on a
    token's own path, values average the branches, inherited tokens get no weight."""
    from rollout.types import BranchEvent, PromptTree, Sequence

    tree = PromptTree(0, [1], 4, 1.0)
    tree.sequences = [Sequence(0, [5, 6, 7, 0]), Sequence(1, [5, 8, 9, 0], parent=0, n_inherited=1),
                      Sequence(2, [5, 6, 4, 0], parent=0, n_inherited=2)]
    tree.branches = [BranchEvent(0, 1, 1, 1.0, 1.0, 6, None, 1), BranchEvent(0, 2, 2, 1.0, 1.0, 7, None, 2)]
    credit = token_credit(tree, {0: 1.0, 1: 0.0, 2: 0.0})
    root_w, root_v = credit[0]
    assert root_w == [1.0, 0.5, 0.25, 0.25]
    assert root_v == pytest.approx([0.25, 0.5, 1.0, 1.0])  # after token 0: half child (0), half (half 0, half 1)
    assert credit[1][0] == [0.0, 0.5, 0.5, 0.5] and credit[2][0] == [0.0, 0.0, 0.25, 0.25]
    assert credit[1][1][1:] == [0.0, 0.0, 0.0]
