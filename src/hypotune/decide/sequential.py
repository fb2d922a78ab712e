"""Seeds added in rounds, with error control that survives looking after each round, on the
skewed and heavy-tailed per-seed numbers that training produces.

A hypothesis is looked at after a fixed schedule of seed counts (its *looks*: 3, 5, 8, 13, 20
for `seeds = { min = 3, max = 20 }`). At every look each prediction gets an interval at that
look's level, chosen so that the intervals of all looks together cover the true effect with the
stated confidence (repeated confidence intervals: Jennison & Turnbull, "Group Sequential
Methods", ch. 9). Because the coverage holds for every look at once, it holds whatever rule
decides when to stop: adding seeds while a verdict is open, and stopping as soon as it is
decided, cannot inflate the false decision rate. The verdict is read off the intersection of
the intervals seen so far, which is as valid and never widens.

Three choices (`DESIGN`) make it hold beyond Gaussian seeds:
- each look's interval is the hull of the t-interval and a skew-corrected one
  (`stats.look_statistics`);
- the looks' levels follow a Wang-Tsiatis boundary: strict at the first looks, where three or
  five seeds cannot show how skewed their distribution is, spending the error where seeds are many;
- the boundary's height is calibrated by simulation to hold for the worst of several seed
  distributions (`SHAPES`: Gaussian, t with 3 degrees of freedom, lognormal with sigma 0.5 and 1,
  each skewed either way). The statistic depends only on the distribution's shape, not its mean
  or spread, so the calibration holds for every location and scale of those shapes, up to its
  Monte Carlo error.
Equivalence is read off one-sided bounds, each side at the family level (two one-sided tests, as
TOST does), calibrated on the worse side of each shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from hypotune import stats
from hypotune.stats import Interval, PerSeed, t_interval

CALIBRATION_PATHS = 100_000  # simulated studies per reference shape


Draw = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def _lognormal(sigma: float) -> tuple[Draw, float]:
    return (lambda rng, size: np.exp(sigma * rng.standard_normal(size))), math.exp(sigma**2 / 2)


SHAPES: dict[str, tuple[Draw, float]] = {  # each reference shape's draw, and its true mean
    "Gaussian": (lambda rng, size: rng.standard_normal(size), 0.0),
    "t(3)": (lambda rng, size: rng.standard_t(3, size), 0.0),
    "lognormal 0.5": _lognormal(0.5),
    "lognormal 1": _lognormal(1.0),
}


@dataclass(frozen=True)
class Design:
    """How the looks' intervals are built and calibrated."""

    shapes: tuple[str, ...] = tuple(SHAPES)  # the error must hold for the worst of these
    boundary: float = 0.0  # Wang-Tsiatis Delta: look k's z is c * (n_k / n_max) ** (Delta - 1/2)
    skew_corrected: bool = True  # the hull of the t-interval and Hall's; False: the t-interval
    one_sided_equivalence: bool = True  # TOST's bounds for equivalence; False: the two-sided ones


DESIGN = Design()
# The design before per-seed numbers were allowed to be skewed: Gaussian t-intervals at a
# constant level; kept to measure what the present one costs and gains (bench/calibration.py).
GAUSSIAN_POCOCK = Design(
    shapes=("Gaussian",), boundary=0.5, skew_corrected=False, one_sided_equivalence=False
)


@contextlib.contextmanager
def designed(design: Design) -> Iterator[None]:
    """Decide under another design for a while (the calibration bench compares designs)."""
    global DESIGN
    before, DESIGN = DESIGN, design
    try:
        yield
    finally:
        DESIGN = before


@dataclass(frozen=True, eq=False)
class Calibration:
    """For one schedule of looks and one design: per reference shape, over simulated studies,
    the largest excess of any look's statistic past the true mean in units of the boundary."""

    looks: tuple[int, ...]
    boundary: np.ndarray  # each look's share of the boundary's height
    both: dict[str, np.ndarray]  # the larger of the two sides' excesses, sorted
    sides: dict[str, tuple[np.ndarray, np.ndarray]]  # from below, from above
    exact: bool = False  # one look of Gaussian t-intervals: its statistic is exactly standard normal
    heights: dict[tuple[float, bool], float] = dataclasses.field(default_factory=dict)  # computed ones

    def z(self, alpha: float) -> np.ndarray:
        """Each look's z, so that all looks' intervals cover together with >= 1 - alpha."""
        return self._height(alpha, False) * self.boundary

    def z_one_sided(self, alpha: float) -> np.ndarray:
        """Each look's z for one-sided bounds, each side covering over all looks at >= 1 - alpha."""
        return self._height(alpha, True) * self.boundary

    def _height(self, alpha: float, one_sided: bool) -> float:
        if (alpha, one_sided) not in self.heights:
            if self.exact:
                height = -float(special.ndtri(alpha if one_sided else alpha / 2))
            elif one_sided:
                height = max(float(np.quantile(m, 1 - alpha)) for side in self.sides.values() for m in side)
            else:
                height = max(float(np.quantile(m, 1 - alpha)) for m in self.both.values())
            self.heights[alpha, one_sided] = height
        return self.heights[alpha, one_sided]

    def p_value(self, excess: float) -> float:
        """The smallest family level at which some look's interval would exclude a value whose
        largest excess is `excess` (a repeated p-value): the worst shape's chance of one as large."""
        if math.isnan(excess):
            return math.nan
        if self.exact:
            return float(2 * special.ndtr(-excess))
        return max(1 - np.searchsorted(m, excess, side="left") / len(m) for m in self.both.values())


@functools.lru_cache(maxsize=64)
def calibration(looks: tuple[int, ...], design: Design) -> Calibration:
    boundary = np.array([(n / looks[-1]) ** (design.boundary - 0.5) for n in looks])
    if len(looks) == 1 and design.shapes == ("Gaussian",) and not design.skew_corrected:
        return Calibration(looks, boundary, {}, {}, exact=True)
    rng = np.random.default_rng(20261205)
    both, sides = {}, {}
    for name in design.shapes:
        draw, centre = SHAPES[name]
        samples = draw(rng, (CALIBRATION_PATHS, looks[-1]))
        below = np.full(CALIBRATION_PATHS, -np.inf)
        above = np.full(CALIBRATION_PATHS, -np.inf)
        for k, n in enumerate(looks):
            if n < 2:
                continue
            from_below, from_above = stats.look_statistics(samples[:, :n], centre, design.skew_corrected)
            below = np.maximum(below, from_below / boundary[k])
            above = np.maximum(above, from_above / boundary[k])
        both[name] = np.sort(np.maximum(below, above))
        # A shape mirrored is skewed the other way and swaps its sides, so the worse side of each
        # shape covers both skews.
        sides[name] = (below, above)
    return Calibration(looks, boundary, both, sides)


def look_levels(looks: tuple[int, ...], alpha: float) -> np.ndarray:
    """Each look's two-sided nominal level (of a t-interval with the same quantile)."""
    return 2 * special.ndtr(-calibration(tuple(looks), DESIGN).z(alpha))


def look_seeds(per_seed: PerSeed, looks: Sequence[int]) -> list[list[int]]:
    """The seeds of every look that the data completes: the first n seeds, for each look n."""
    seeds = sorted(s for s, v in per_seed.items() if not math.isnan(v))
    return [seeds[:n] for n in looks if n <= len(seeds)]


def sequential_interval(per_seed: PerSeed, looks: Sequence[int], alpha: float, null: float = 0.0) -> Interval:
    """The intersection of the repeated intervals at every completed look, at family level `alpha`,
    with the one-sided bounds equivalence is read off and the repeated p-value of `null`.

    Its mean, spread and seed count are those of the last completed look; with no complete look
    yet it is the plain t-interval over the seeds there are (shown, never decisive).
    """
    looks = tuple(looks)
    completed = look_seeds(per_seed, looks)
    if not completed:
        return t_interval([per_seed[s] for s in sorted(per_seed)], alpha, null)
    design = DESIGN
    table = calibration(looks, design)
    z_both = table.z(alpha)
    z_side = table.z_one_sided(alpha) if design.one_sided_equivalence else z_both
    last_z = float(z_both[len(completed) - 1])
    nominal = float(2 * special.ndtr(-last_z))
    last = t_interval([per_seed[s] for s in completed[-1]], nominal, null)
    if not (last.std > 0):  # no spread: a point (same number as the null), or nothing to weigh
        return dataclasses.replace(last, level=alpha, eq_low=last.low, eq_high=last.high)
    low = eq_low = -math.inf
    high = eq_high = math.inf
    excess = -math.inf
    for k, seeds in enumerate(completed):
        values = np.array([per_seed[s] for s in seeds])
        if values.std() <= 1e-12 * max(1.0, abs(values.mean())):
            continue  # an early look whose seeds happened to agree exactly bounds nothing
        look_low, look_high = stats.robust_bounds(values, float(z_both[k]), design.skew_corrected)
        low, high = max(low, look_low), min(high, look_high)
        look_low, look_high = stats.robust_bounds(values, float(z_side[k]), design.skew_corrected)
        eq_low, eq_high = max(eq_low, look_low), min(eq_high, look_high)
        below, above = stats.look_statistics(values[None, :], null, design.skew_corrected)
        excess = max(excess, float(below[0]) / table.boundary[k], float(above[0]) / table.boundary[k])
    values = np.array([per_seed[s] for s in completed[-1]])
    # Intervals that do not meet are a miss of coverage: then the latest interval stands alone.
    if low > high:
        low, high = stats.robust_bounds(values, last_z, design.skew_corrected)
    if eq_low > eq_high:
        eq_low, eq_high = stats.robust_bounds(
            values, float(z_side[len(completed) - 1]), design.skew_corrected
        )
    return Interval(
        last.mean, low, high, table.p_value(excess), last.n, last.std, nominal, alpha, eq_low, eq_high
    )


def seeds_needed(std: float, margin: float, looks: Sequence[int], alpha: float) -> int | None:
    """About how many seeds decide a prediction whose true effect is one margin away from the
    boundary it is tested against, at the level of the last look (80% power).

    Sized from the margin and the spread of the per-seed numbers, never from the effect seen.
    """
    if not (margin > 0 and std > 0):
        return None
    return stats.seeds_for(margin / std, float(look_levels(tuple(looks), alpha)[-1]))


CHANCE_DRAWS = 512  # simulated next looks per chance: a Monte Carlo error of about 2 points


@functools.lru_cache(maxsize=32)
def _future_draws(new: int) -> np.ndarray:
    """Fixed standard normal draws for `new` seeds to come, so that a chance is reproducible."""
    return np.random.default_rng(20261207).standard_normal((CHANCE_DRAWS, new))


def look_chances(
    interval: Interval, looks: Sequence[int], alpha: float, margin: float = math.nan
) -> tuple[float, ...]:
    """For each look after the seeds there are, the chance that a prediction open now is decided
    by then, if its effect and spread are what they seem (conditional power at the observed
    effect, by simulating the looks to come); () where it cannot be told.

    The new seeds are drawn Gaussian with the mean and sd seen so far; each look's t-interval at
    its level, met with the intervals read before it, decides when it clears zero either way, or,
    with a margin, when its one-sided bounds fit inside it. The chances order which looks happen
    first under a budget and never enter a verdict: the coverage of the looks holds whichever of
    them happen.
    """
    if not (interval.std > 0 and math.isfinite(interval.mean) and interval.n >= 2):
        return ()
    eq_low = interval.eq_low if math.isfinite(interval.eq_low) else -math.inf
    eq_high = interval.eq_high if math.isfinite(interval.eq_high) else math.inf
    bounds = (interval.low, interval.high, eq_low, eq_high)
    return _path_chances(interval.mean, interval.std, interval.n, bounds, tuple(looks), alpha, margin)


def prior_chances(looks: tuple[int, ...], alpha: float) -> tuple[tuple[int, float], ...]:
    """For each look of 2 seeds or more, its seeds and the chance that a prediction not yet
    looked at is decided by then, taken to be as decidable as the seed plan is sized for: an effect that the
    last look would decide with a chance of 80% (`SIZED_FOR`), under the design in force. It
    orders first looks against later ones under a budget."""
    return _prior_chances(tuple(looks), alpha, DESIGN)


@functools.lru_cache(maxsize=64)
def _prior_chances(looks: tuple[int, ...], alpha: float, design: Design) -> tuple[tuple[int, float], ...]:
    free = (-math.inf, math.inf, -math.inf, math.inf)

    def by_last(effect: float) -> float:
        return _path_chances(effect, 1.0, 0, free, looks, alpha, math.nan, design)[-1]

    low, high = 0.0, 1.0
    while by_last(high) < SIZED_FOR and high < 1e6:
        low, high = high, 2 * high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if by_last(middle) < SIZED_FOR else (low, middle)
    chances = _path_chances(high, 1.0, 0, free, looks, alpha, math.nan, design)
    return tuple(zip([n for n in looks if n >= 2], chances, strict=True))


SIZED_FOR = 0.8  # a prediction before its first look: the last look decides it with this chance


def _path_chances(
    mean: float,
    std: float,
    seeds: int,
    bounds: tuple[float, float, float, float],
    looks: tuple[int, ...],
    alpha: float,
    margin: float,
    design: Design | None = None,
) -> tuple[float, ...]:
    """`look_chances` from a summary: the mean and sd of the `seeds` there are (none: the new
    seeds' own), and the interval and one-sided bounds read so far."""
    following = [k for k, n in enumerate(looks) if n > seeds and n >= 2]
    if not following:
        return ()
    design = design or DESIGN
    table = calibration(looks, design)
    z_both = table.z(alpha)
    z_side = table.z_one_sided(alpha) if design.one_sided_equivalence else z_both
    new = mean + std * _future_draws(looks[following[-1]] - seeds)
    sums, squares = np.cumsum(new, axis=1), np.cumsum(new**2, axis=1)
    old_sum = seeds * mean
    old_squares = (seeds - 1) * std**2 + seeds * mean**2 if seeds else 0.0
    low, high, eq_low, eq_high = (np.full(CHANCE_DRAWS, bound) for bound in bounds)
    decided = np.zeros(CHANCE_DRAWS, dtype=bool)
    chances = []
    for k in following:
        n = looks[k]
        # The n seeds' mean and sd, from the seeds there are (their mean and sd) and the new ones.
        n_mean = (old_sum + sums[:, n - seeds - 1]) / n
        n_std = np.sqrt(np.maximum(old_squares + squares[:, n - seeds - 1] - n * n_mean**2, 0.0) / (n - 1))
        error = n_std / math.sqrt(n)
        t_both = -float(special.stdtrit(n - 1, special.ndtr(-float(z_both[k]))))
        low = np.maximum(low, n_mean - t_both * error)
        high = np.minimum(high, n_mean + t_both * error)
        decided |= (low > 0) | (high < 0)
        if margin > 0:
            t_side = -float(special.stdtrit(n - 1, special.ndtr(-float(z_side[k]))))
            eq_low = np.maximum(eq_low, n_mean - t_side * error)
            eq_high = np.minimum(eq_high, n_mean + t_side * error)
            decided |= (-margin < eq_low) & (eq_high < margin)
        chances.append(float(decided.mean()))
    return tuple(chances)
