"""Entropy centroid on hand-computed trajectories (thresholds worked out in the comments)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from rewards.centroid import (
    entropy_centroid,
    entropy_centroid_reward,
    high_entropy_phases,
    lowest_centroid_select,
    percentile,
    select_answer,
)

# L = 10. Sorted: eight 0.1, then 2.0, 3.0. P99 at rank 8.91: 2.0 + 0.91 = 2.91.
# P80 at rank 7.2: 0.1 + 0.2 * 1.9 = 0.48. The phase starts at t=2 (3.0), t=3 (2.0) keeps
# it open, t=4 and t=5 are low: it ends with d = 4 - 2 = 2. Centroid 2 * (2 + 1) / 2 / 10.
ONE_PHASE = [0.1, 0.1, 3.0, 2.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
# L = 20. Sorted: fifteen 0.2, 1.0, 1.0, 4.0, 5.0, 5.0: P99 = 5.0, P80 (rank 15.2) = 1.0.
# Phases (1, 1) (t=2 and t=3 are <= 1.0) and (14, 2) (t=15 is 4.0, t=16, 17 are low).
# Centroid (1 * 1.5 + 2 * 15) / 3 / 20 = 31.5 / 60.
TWO_PHASES = [0.2] * 20
TWO_PHASES[1], TWO_PHASES[2], TWO_PHASES[14], TWO_PHASES[15], TWO_PHASES[16] = 5.0, 1.0, 5.0, 4.0, 1.0
# Thresholds as ONE_PHASE; the phase starts at t=8 and is still open at the end: (8, 2).
LATE_PHASE = [0.1] * 8 + [3.0, 2.0]
FLAT = [0.7] * 12


def test_phases_by_hand() -> None:
    assert high_entropy_phases(ONE_PHASE) == [(2, 2)]
    assert high_entropy_phases(TWO_PHASES) == [(1, 1), (14, 2)]
    assert high_entropy_phases(LATE_PHASE) == [(8, 2)]
    assert high_entropy_phases(FLAT) == []
    assert high_entropy_phases([]) == []


def test_centroids_by_hand() -> None:
    assert entropy_centroid(ONE_PHASE) == pytest.approx(0.3)
    assert entropy_centroid(TWO_PHASES) == pytest.approx(31.5 / 60)
    assert entropy_centroid(LATE_PHASE) == pytest.approx(0.9)
    assert entropy_centroid(FLAT) is None
    assert entropy_centroid([]) is None


def test_unknown_entries_are_ignored_but_keep_their_positions() -> None:
    """-1.0 marks a token inherited from the parent: out of the percentiles and the phase logic."""
    prefixed = [-1.0] * 5 + ONE_PHASE  # same known values, so the same thresholds, shifted by 5
    assert high_entropy_phases(prefixed) == [(7, 2)]
    assert entropy_centroid(prefixed) == pytest.approx(2 * (7 + 1) / 2 / 15)
    # an unknown token inside the closing run neither closes nor interrupts it
    interrupted = ONE_PHASE[:5] + [-1.0] + ONE_PHASE[5:]
    assert high_entropy_phases(interrupted) == [(2, 2)]
    assert entropy_centroid([-1.0] * 4) is None


@pytest.mark.parametrize("bad", [[0.5, -0.5], [0.5, math.nan], [math.inf]])
def test_invalid_entropies_are_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="entropies are >= 0"):
        entropy_centroid(bad)


def test_percentile_matches_numpy() -> None:
    rng = random.Random(0)
    for _ in range(200):
        values = [rng.random() * 5 for _ in range(rng.randint(1, 60))]
        for q in (0, 37.5, 80, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_lowest_centroid_selection() -> None:
    # centroids 0.3, 0.525, 0.9 (FLAT has none): mean 0.575; 0.3 < 0.575 - 0.1 is dropped
    trajectories = [ONE_PHASE, TWO_PHASES, LATE_PHASE, FLAT]
    assert lowest_centroid_select(trajectories) == 1
    assert lowest_centroid_select(trajectories, tau=0.5) == 0  # nothing that far below the mean
    assert lowest_centroid_select([FLAT, []]) is None
    assert lowest_centroid_select([TWO_PHASES, TWO_PHASES]) == 0  # ties: the first


def test_select_answer_over_a_prompts_sequences() -> None:
    completions = [r"\boxed{5}", r"so \boxed{7}", r"\boxed{9}", r"\boxed{11}"]
    trajectories = [ONE_PHASE, TWO_PHASES, LATE_PHASE, FLAT]
    assert select_answer(completions, trajectories) == "7"
    # without an answer a sequence is no candidate: among 0.3 and 0.9 (mean 0.6) 0.3 is dropped
    assert select_answer([r"\boxed{5}", "no answer", r"\boxed{9}", r"\boxed{11}"], trajectories) == "9"
    assert select_answer(["none"], [ONE_PHASE]) is None


def test_label_free_reward() -> None:
    completions = ["a", "b", "c"]
    rewards = entropy_centroid_reward(completions, eager_entropies=[ONE_PHASE, FLAT, []], prompts=["p"] * 3)
    assert rewards[0] == pytest.approx(0.7) and rewards[1:] == [None, None]
    with pytest.raises(ValueError, match="eager_entropies"):
        entropy_centroid_reward(completions, prompts=["p"] * 3)
