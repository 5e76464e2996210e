"""Entropy centroid: where in a trajectory its uncertainty sits, as a label-free signal.

From "Entropy Centroids as Intrinsic Rewards" (arXiv 2604.26173):
- A High Entropy Phase starts at a token whose entropy is at or above the trajectory's
  top-1% percentile (its 99th percentile) and ends once c = 2 consecutive tokens are at or
  below its 80th percentile; the phase's duration excludes those c tokens.
- The centroid is `sum_i d_i (s_i + d_i / 2) / sum_i d_i / L` (start s, duration d, length L):
  0 when the uncertainty is all at the start, near 1 when it is all at the end.
- Lowest Centroid selection: drop trajectories with no phase, drop those more than tau = 0.1
  below the mean centroid (outliers), take the lowest remaining.

Choices the paper leaves open, made here:
- Unknown entropies: the rollout marks a token a forked child inherited from its parent
  with -1.0 (`rollout.INHERITED`). Such entries are ignored, not rejected: they count in
  positions and in L (so s / L is a position in the whole completion), but not in the
  percentiles, and they neither start, close nor interrupt the closing of a phase. Any other
  negative or non-finite value raises ValueError.
- A token starts a phase only if it is also strictly above the 80th percentile, so a flat
  trajectory (every entropy equal) has no phase rather than one per token.
- A phase still open at the end of the trajectory runs to its end (d = L - s).
- Percentiles interpolate linearly between order statistics (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewards.extract import completion_text, extract_boxed

UNKNOWN = -1.0  # the rollout's marker for an inherited token (rollout.INHERITED)
TOP_PERCENTILE = 99.0  # a phase starts at or above this ("top 1%")
LOW_PERCENTILE = 80.0  # and ends after CLOSE_RUN tokens at or below this
CLOSE_RUN = 2
TAU = 0.1


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as `numpy.percentile`."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _known(entropies: Sequence[float]) -> list[float]:
    known = []
    for i, h in enumerate(entropies):
        if h == UNKNOWN:
            continue
        if not math.isfinite(h) or h < 0:
            raise ValueError(f"entropy at position {i} is {h!r}: entropies are >= 0, or -1.0 for unknown")
        known.append(float(h))
    return known


def high_entropy_phases(
    entropies: Sequence[float],
    top_percentile: float = TOP_PERCENTILE,
    low_percentile: float = LOW_PERCENTILE,
    close_run: int = CLOSE_RUN,
) -> list[tuple[int, int]]:
    """The High Entropy Phases of one trajectory, as (start, duration) in token positions."""
    known = _known(entropies)
    if not known:
        return []
    high = percentile(known, top_percentile)
    low = percentile(known, low_percentile)
    phases: list[tuple[int, int]] = []
    start: int | None = None
    run_start, run = 0, 0  # the current streak of low tokens inside a phase
    for t, h in enumerate(entropies):
        if h == UNKNOWN:
            continue
        if start is None:
            if h >= high and h > low:
                start, run = t, 0
            continue
        if h <= low:
            run_start, run = (t, 1) if run == 0 else (run_start, run + 1)
            if run == close_run:
                phases.append((start, run_start - start))
                start = None
        else:
            run = 0
    if start is not None:
        phases.append((start, len(entropies) - start))
    return phases


def entropy_centroid(entropies: Sequence[float]) -> float | None:
    """The trajectory's entropy centroid in [0, 1], or None when it has no phase."""
    phases = high_entropy_phases(entropies)
    total = sum(d for _, d in phases)
    if not phases or total == 0:
        return None
    return sum(d * (s + d / 2) for s, d in phases) / total / len(entropies)


def lowest_centroid_select(entropies: Sequence[Sequence[float]], tau: float = TAU) -> int | None:
    """Index of the trajectory Lowest Centroid selection picks, or None if none has a phase.

    Ties go to the earliest trajectory.
    """
    centroids = [(i, c) for i, c in enumerate(entropy_centroid(e) for e in entropies) if c is not None]
    if not centroids:
        return None
    mean = sum(c for _, c in centroids) / len(centroids)
    kept = [(c, i) for i, c in centroids if c >= mean - tau]  # never empty: the largest is >= mean
    return min(kept)[1]


def select_answer(completions: Sequence[Any], entropies: Sequence[Sequence[float]], tau: float = TAU) -> str | None:
    """A prompt's answer by Lowest Centroid selection over its sequences (label-free).

    Only sequences with a boxed answer are candidates: picking one without an answer would
    answer nothing. Returns the chosen sequence's boxed answer, or None.
    """
    if len(completions) != len(entropies):
        raise ValueError(f"{len(completions)} completions but {len(entropies)} entropy lists")
    answers = [extract_boxed(completion_text(c)) for c in completions]
    candidates = [i for i, a in enumerate(answers) if a]
    chosen = lowest_centroid_select([entropies[i] for i in candidates], tau)
    return None if chosen is None else answers[candidates[chosen]]


class EntropyCentroidReward:
    """Label-free TRL reward: 1 - entropy centroid, from per-token entropies the rollout returns.

    The rollout hands them over as an extra per-row field (`eager_entropies` by default): one
    list of floats per completion token, -1.0 for unknown (see the module docstring). A row
    without a phase (or without entropies) gets `no_phase_reward`, None by default, which
    TRL leaves out of the group baseline.
    """

    def __init__(self, entropy_key: str = "eager_entropies", no_phase_reward: float | None = None,
                 name: str = "entropy_centroid_reward") -> None:
        self.entropy_key = entropy_key
        self.no_phase_reward = no_phase_reward
        self.__name__ = name

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        rows = kwargs.get(self.entropy_key)
        if rows is None:
            raise ValueError(
                f"the entropy-centroid reward needs per-token entropies in the {self.entropy_key!r} field; "
                "the EAGer rollout returns them, a plain TRL rollout does not"
            )
        if len(rows) != len(completions):
            raise ValueError(f"{len(rows)} entropy lists for {len(completions)} completions")
        rewards: list[float | None] = []
        for entropies in rows:
            centroid = entropy_centroid(entropies) if entropies is not None and len(entropies) else None
            rewards.append(self.no_phase_reward if centroid is None else 1.0 - centroid)
        return rewards


_CENTROID_REWARD = EntropyCentroidReward()


def entropy_centroid_reward(completions: list, **kwargs: Any) -> list[float | None]:
    """1 - entropy centroid per row, from the `eager_entropies` field; None where no phase."""
    return _CENTROID_REWARD(completions, **kwargs)
