"""Seeds added in rounds, with error control that survives looking after each round.

A hypothesis is looked at after a fixed schedule of seed counts (its *looks*: 3, 5, 8, 13, 20
for `seeds = { min = 3, max = 20 }`). At every look each prediction gets a t-interval at one
stricter *nominal* level, chosen so that the intervals of all looks together cover the true
effect with the stated confidence (repeated confidence intervals with a constant, Pocock-type
level: Jennison & Turnbull, "Group Sequential Methods", ch. 9). Because the coverage holds for
every look at once, it holds whatever rule decides when to stop: adding seeds while a verdict is
open, and stopping as soon as it is decided, cannot inflate the false decision rate. The
verdict is read off the intersection of the intervals seen so far, which is as valid and never
widens.

The nominal level is calibrated by simulating the t-statistics of Gaussian seeds at the looks.
The t-statistic's distribution does not depend on the mean or the spread, so the calibration is
exact for Gaussian per-seed numbers up to its Monte Carlo error (about 1% of the level).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from hypotune.stats import Interval, PerSeed, t_interval

GROWTH = 1.6  # each look has about this many times the seeds of the one before
CALIBRATION_PATHS = 200_000


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds an arm trains: `min` first, then more in rounds up to `max` while open."""

    min: int
    max: int

    @property
    def adaptive(self) -> bool:
        return self.max > self.min

    @property
    def looks(self) -> tuple[int, ...]:
        """The seed counts at which verdicts are read: min, then about x1.6 each round, then max."""
        counts = [self.min]
        while counts[-1] < self.max:
            grown = max(counts[-1] + 1, round(counts[-1] * GROWTH))
            counts.append(min(grown, self.max))
        return tuple(counts)

    def next_look(self, seeds: int) -> int:
        """The first look with more than `seeds` seeds (max when none is left)."""
        return next((n for n in self.looks if n > seeds), self.max)

    def describe(self) -> str:
        if not self.adaptive:
            return f"{self.min} seeds"
        return f"{self.min} to {self.max} seeds (looks at {', '.join(map(str, self.looks))})"


@functools.lru_cache(maxsize=64)
def _smallest_p(looks: tuple[int, ...]) -> np.ndarray:
    """Per simulated Gaussian study, the smallest two-sided p-value of the true mean over the
    looks, sorted: the distribution both the per-look level and the repeated p-value come from."""
    rng = np.random.default_rng(20261129)
    draws = rng.standard_normal((CALIBRATION_PATHS, looks[-1]))
    smallest = np.ones(CALIBRATION_PATHS)
    for n in looks:
        if n < 2:
            continue
        sample = draws[:, :n]
        t_stat = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / math.sqrt(n))
        smallest = np.minimum(smallest, 2 * scipy_stats.t.sf(np.abs(t_stat), n - 1))
    return np.sort(smallest)


def nominal_alpha(looks: tuple[int, ...], alpha: float) -> float:
    """The per-look two-sided level at which t-intervals at all `looks` cover together with
    probability 1 - alpha. One look is the plain t-interval."""
    if len(looks) == 1:
        return alpha
    # Intervals at level a all cover iff every look's p-value of the true mean is >= a.
    return float(np.quantile(_smallest_p(tuple(looks)), alpha))


def repeated_p(looks: tuple[int, ...], p_values: Sequence[float]) -> float:
    """The smallest family level at which some look's interval would exclude the null, given each
    completed look's p-value of it: the p-value that agrees with a verdict read off the
    intersection of the looks' intervals (Jennison & Turnbull, ch. 9.5)."""
    finite = [p for p in p_values if not math.isnan(p)]
    if not finite:
        return math.nan
    if len(looks) == 1:
        return min(finite)
    smallest = _smallest_p(tuple(looks))
    return float(np.searchsorted(smallest, min(finite), side="right") / len(smallest))


def look_seeds(per_seed: PerSeed, looks: Sequence[int]) -> list[list[int]]:
    """The seeds of every look that the data completes: the first n seeds, for each look n."""
    seeds = sorted(s for s, v in per_seed.items() if not math.isnan(v))
    return [seeds[:n] for n in looks if n <= len(seeds)]


def sequential_interval(per_seed: PerSeed, looks: Sequence[int], alpha: float, null: float = 0.0) -> Interval:
    """The intersection of the repeated intervals at every completed look, at family level `alpha`.

    Its mean and seed count are those of the last completed look, and its p-value the repeated
    one over the completed looks; with no complete look yet it is the plain interval over the
    seeds there are (shown, never decisive).
    """
    nominal = nominal_alpha(tuple(looks), alpha)
    completed = look_seeds(per_seed, looks)
    if not completed:
        return t_interval([per_seed[s] for s in sorted(per_seed)], nominal, null)
    intervals = [t_interval([per_seed[s] for s in seeds], nominal, null) for seeds in completed]
    last = intervals[-1]
    if last.bounded and last.std == 0:  # the same number on every seed: a point, not an interval
        return dataclasses.replace(last, level=alpha)
    # Only intervals with spread bound anything; one that did not meet the others is a miss of
    # coverage, and then the latest interval stands alone.
    proper = [i for i in intervals if i.bounded and i.std > 0]
    low = max((i.low for i in proper), default=math.nan)
    high = min((i.high for i in proper), default=math.nan)
    if low > high:
        low, high = last.low, last.high
    p_value = repeated_p(tuple(looks), [i.p_value for i in intervals])
    return Interval(last.mean, low, high, p_value, last.n, last.std, nominal, level=alpha)


def seeds_needed(std: float, margin: float, looks: Sequence[int], alpha: float) -> int | None:
    """About how many seeds decide a prediction whose true effect is one margin away from the
    boundary it is tested against, at the nominal level used at every look (80% power).

    Sized from the margin and the spread of the per-seed numbers, never from the effect seen.
    """
    if not (margin > 0 and std > 0):
        return None
    from hypotune.stats import seeds_for

    return seeds_for(margin / std, nominal_alpha(tuple(looks), alpha))
