"""The statistics of a comparison at equal seconds, where the seed is the unit.

Each seed trains every generator once and scores every model on the same held-out problems and
samples, so a seed gives one paired difference per pair of generators; its held-out noise is inside
that difference. A figure is the mean of the per-seed differences with a Student t interval on n-1
degrees of freedom: with 3 seeds a t of 3.0 is p = 0.09 (two-sided), not the 0.003 a normal reading
gives. A difference whose interval holds 0 is not shown.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Interval:
    """The mean of per-seed values with its t interval (level 0.95 unless said)."""

    mean: float
    low: float
    high: float
    n: int
    values: tuple[float, ...]

    @property
    def shown(self) -> bool:
        """True when the interval excludes 0: a difference the seeds show."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] (n={self.n}, per seed "
                + ", ".join(f"{v:+.3f}" for v in self.values) + ")")


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student t critical value: P(|T| <= t) = level on `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean of per-seed values and its t interval on n-1 degrees of freedom (NaN bounds for one seed)."""
    n = len(values)
    mean = statistics.mean(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, tuple(values))
    half = t_quantile(n - 1, level) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, tuple(values))


def paired(a: list[float], b: list[float], level: float = 0.95) -> Interval:
    """a minus b, seed by seed (both in the order of the seeds), with its t interval."""
    if len(a) != len(b):
        raise ValueError(f"paired differences need one value per seed on both sides: {len(a)} against {len(b)}.")
    return interval([x - y for x, y in zip(a, b)], level)


def crossing_time(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time (linearly interpolated) at which the curve reaches `target` and stays at or above it at every
    later point; None when its last point is below. A curve that dips below after crossing crosses again later."""
    if not curve or curve[-1][1] < target:
        return None
    start = len(curve) - 1  # the earliest point from which every point is at or above the target
    while start > 0 and curve[start - 1][1] >= target:
        start -= 1
    if start == 0:
        return curve[0][0]
    (t0, a0), (t1, a1) = curve[start - 1], curve[start]
    return t0 + (target - a0) / (a1 - a0) * (t1 - t0)
