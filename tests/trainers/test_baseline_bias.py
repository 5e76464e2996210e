"""What the advantage estimates under a stop rule, on simulated prompts of known pass rate.

Each prompt k has a pass rate p_k: a sequence is right with probability p_k, drawn from a hash
of its tokens (independent of other sequences unless they hold the very same tokens; a real
fork's outcome is correlated with its parent's). Rollouts
come from the real driver on a scripted engine, with the real stop rules, so which sequences a
group holds depends on the verdicts as they arrived.

The yardstick: with outcomes X_k and advantages A_k, the expected policy-gradient update of a
prompt is proportional to E[sum_k A_k (X_k - p)] (right answers move the policy one way,
wrong ones the other). For an unbiased estimate it must equal E[N] p (1 - p), N the group size,
whatever p is: R(p) = E[sum A (X - p)] / (E[N] p (1 - p)) = 1. R is estimated from a finite
number of batches, so each check allows four standard errors of that estimate (a ratio
estimator's, from the per-batch terms), which is wide at p = 0.9 where p (1 - p) is small. Fixed groups with the group
mean give the known (n - 1) / n; a stop rule with the group mean gives an R that falls with p
(easy prompts' groups are cut short on a right answer, so their right answers get little
credit); the verdict baseline (`trainers.advantages.verdict_baseline`) gives 1 for every p.
"""

import random

import numpy as np
import pytest

from rollout import EagerConfig, generate
from tests.rollout.scripted import EOS, ScriptedEngine
from trainers.advantages import verdict_baseline

pytestmark = pytest.mark.slow  # engines, subprocesses or training: the full run only

V = 30
PASS_RATES = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.8]
DRAWS = 150


def script(completion, prompt_len=0):
    """High entropy at positions 0 and 6; a sequence's length (4..23) depends on its first token."""
    z = np.zeros(V)
    z[1] = z[22:] = -50.0
    z[EOS] = -50.0
    pos = len(completion)
    if completion and pos >= 4 + (completion[0] * 7) % 20:
        z[EOS] = 40.0
    elif pos not in (0, 6):
        z[2 + pos % 20] = 12.0
    return z


def right(draw: int, prompt: int, tokens) -> bool:
    return random.Random(hash((draw, prompt, tuple(tokens)))).random() < PASS_RATES[prompt]


def ratio_by_pass_rate(config: dict, baseline: str) -> dict[float, tuple[float, float]]:
    """R(p) and its standard error over DRAWS batches of the 8 simulated prompts."""
    num, den = {}, {}
    prompts = [[1] * (3 + i) for i in range(len(PASS_RATES))]
    for d in range(DRAWS):
        cfg = EagerConfig(temperature=1.0, max_new_tokens=40, max_sequences=8, p99_floor=False, seed=d, **config)
        verifier = (lambda i, ids, d=d: right(d, i, ids)) if cfg.method == "eager" else None
        for tree in generate(ScriptedEngine(script), prompts, cfg, verifier=verifier).trees:
            p = PASS_RATES[tree.prompt_index]
            seqs = tree.kept()
            x = np.array([float(right(d, tree.prompt_index, s.tokens)) for s in seqs])
            if baseline == "group":
                b = np.full(len(x), x.mean())
            else:
                b = np.array([verdict_baseline(*s.verdicts_at_start) for s in seqs])
            num.setdefault(p, []).append(float(((x - b) * (x - p)).sum()))
            den.setdefault(p, []).append(len(x) * p * (1 - p))
    out = {}
    for p in sorted(num):
        n, d = np.array(num[p]), np.array(den[p])
        r = n.sum() / d.sum()
        out[p] = (r, float(np.std(n - r * d, ddof=1) * np.sqrt(len(n)) / d.sum()))
    return out


def within(r: dict[float, tuple[float, float]], target: float) -> bool:
    return all(abs(v - target) <= 4 * se for v, se in r.values())


PARALLEL = dict(method="parallel")
# Sample until the first right answer, one root at a time, no forks: the paper's retries in their purest form.
FIRST_RIGHT = dict(method="eager", online=True, entropy_threshold=100.0, pass_start_limit=10.0)
SIGNAL = dict(method="eager", online=True, entropy_threshold=1.0, stop_rule="signal")


def test_fixed_groups_with_the_group_mean_give_the_known_shrinkage():
    r = ratio_by_pass_rate(PARALLEL, "group")
    assert within(r, 7 / 8), r


def test_stopping_at_the_first_right_answer_biases_the_group_mean_against_easier_prompts():
    r = ratio_by_pass_rate(FIRST_RIGHT, "group")
    # Prompts the first answers often solve get less weight than fixed groups give them (7/8).
    assert all(r[p][0] + 4 * r[p][1] < 7 / 8 for p in (0.5, 0.6, 0.7)), r


@pytest.mark.parametrize("config", [FIRST_RIGHT, SIGNAL, PARALLEL], ids=["first_right", "signal", "parallel"])
def test_the_verdict_baseline_is_unbiased_under_every_rule(config):
    r = ratio_by_pass_rate(config, "verdicts")
    assert within(r, 1.0), r
