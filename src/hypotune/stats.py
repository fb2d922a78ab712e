"""Statistics over seeds: pure functions on numbers, no tracking, no training.

Values come per seed ({seed: value}). A comparison turns two or more arms into one number per
seed (a paired difference, an interaction contrast, a slope, a ratio), and every verdict is
read off a t-interval of the mean of those numbers. Everything is on a "goodness" scale where
higher is better, so one sign convention serves losses and accuracies alike. The analysis
replaces a diverged run's infinite loss by a failure score before it gets here, so the numbers
are finite; a seed whose value is missing (nan) takes no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # past this, "more seeds" is no practical advice

PerSeed = Mapping[int, float]


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Interval:
    """A t-interval of the mean of per-seed numbers, at a stated two-sided level."""

    mean: float
    low: float  # nan when the seeds cannot bound the mean (fewer than 2, or no spread)
    high: float
    p_value: float  # two-sided p of a zero mean (relative to `null`), unadjusted
    n: int
    std: float
    alpha: float  # 1 - confidence of [low, high] (of the last look's, for a sequential interval)
    level: float = math.nan  # a sequential interval's family level: all its looks cover at 1 - level
    eq_low: float = math.nan  # one-sided bounds, each at 1 - level: equivalence is read off these
    eq_high: float = math.nan

    @property
    def effect_size(self) -> float:
        """Cohen's dz: the mean over the standard deviation of the per-seed numbers."""
        if self.n < 2 or not self.std:
            return math.nan
        return self.mean / self.std

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, standard deviation and a t-based confidence interval over seeds."""
    data = np.asarray(list(values), dtype=float)
    n = len(data)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)
    if not np.all(np.isfinite(data)):
        mean = float(np.mean(data)) if np.all(np.isinf(data) == np.isinf(data[0])) else math.inf
        return Summary(mean, math.nan, math.nan, math.nan, n)
    mean = float(data.mean())
    if n == 1:
        return Summary(mean, math.nan, math.nan, math.nan, 1)
    std = float(data.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n)


def t_interval(values: Sequence[float], alpha: float = ALPHA, null: float = 0.0) -> Interval:
    """The (1 - alpha) t-interval of the mean of `values`, and the two-sided p of mean == null.

    No spread at all is a special case the t-distribution cannot weigh: the same number on
    every seed. When that number is the null (two arms that train identically) the interval
    is that point; otherwise the seeds say nothing about how far the mean may move, and the
    interval is left unbounded (nan).
    """
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, math.nan, alpha)
    mean = float(data.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n, math.nan, alpha)
    std = float(data.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):
        if abs(mean - null) <= 1e-12 * max(1.0, abs(mean)):
            return Interval(mean, mean, mean, 1.0, n, 0.0, alpha)
        return Interval(mean, math.nan, math.nan, math.nan, n, 0.0, alpha)
    error = std / math.sqrt(n)
    half = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * error
    p_value = float(2 * scipy_stats.t.sf(abs(mean - null) / error, n - 1))
    return Interval(mean, mean - half, mean + half, p_value, n, std, alpha)


def look_statistics(samples: np.ndarray, null: float = 0.0, skew_corrected: bool = True):
    """How far the interval of each row of `samples` (a row a sample, a column a seed) lies past
    `null`, as standard normal quantiles: (from below, from above). Its interval at z excludes
    `null` from below (lies wholly above it) exactly when the first number exceeds z, and from
    above when the second does; `robust_bounds` is that interval.

    The interval is the hull of two: the t-interval, and the t-interval corrected for the sample's
    skewness by Hall's transformation of the t-statistic (Hall 1992, "On the removal of skewness
    by transformation"). Skewed seeds bunch on one side of their mean and hide their tail; the
    correction stretches the interval toward the tail, the t-interval keeps it honest for heavy
    symmetric tails, and the hull excludes a value only where both do. Rows with no spread give nan.
    """
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    n = samples.shape[1]
    if n < 2:
        nothing = np.full(len(samples), np.nan)
        return nothing, nothing
    mean = samples.mean(axis=1)
    std = samples.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_stat = (mean - null) / (std / math.sqrt(n))
        from_t = _z_of_t(t_stat, n)
        if not skew_corrected:
            return from_t, -from_t
        from_hall = _z_of_t(_hall(t_stat, _skewness(samples, mean, std), n), n)
    return np.minimum(from_t, from_hall), -np.maximum(from_t, from_hall)


def robust_bounds(values: Sequence[float], z: float, skew_corrected: bool = True) -> tuple[float, float]:
    """The interval at z of `look_statistics`: the hull of the t-interval and the skew-corrected
    one, both at the t quantile with the tail of a standard normal's z."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    mean, std = float(data.mean()), float(data.std(ddof=1))
    error = std / math.sqrt(n)
    critical = -float(special.stdtrit(n - 1, special.ndtr(-z)))  # the t quantile with z's tail
    low, high = mean - critical * error, mean + critical * error
    skew = float(_skewness(data[None, :], np.array([mean]), np.array([std]))[0])
    if skew_corrected and abs(skew) > 1e-9:
        # Hall's cubic is increasing in t: the corrected interval is where it lies within +-critical.
        root = math.sqrt(n)
        step = skew / (3 * root)

        def inverse(y: float) -> float:
            return (float(np.cbrt(1 + 3 * step * (y - step / 2))) - 1) / step

        low, high = min(low, mean - error * inverse(critical)), max(high, mean - error * inverse(-critical))
    return low, high


def _hall(t_stat: np.ndarray, skew: np.ndarray, n: int) -> np.ndarray:
    step = skew / (3 * math.sqrt(n))
    return t_stat + step * t_stat**2 + step**2 * t_stat**3 / 3 + step / 2


def _z_of_t(t_stat: np.ndarray, n: int) -> np.ndarray:
    """The standard normal quantile with the same tail as t_stat on n - 1 degrees of freedom (each
    side from its own tail, so that far tails keep their precision)."""
    # scipy.special's functions: the distributions' methods cost more than the sums here
    return -np.sign(t_stat) * special.ndtri(special.stdtr(n - 1, -np.abs(t_stat)))


def _skewness(samples: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The adjusted sample skewness of each row (0 with fewer than 3 seeds, which cannot show it)."""
    n = samples.shape[1]
    if n < 3:
        return np.zeros(len(samples))
    third = ((samples - mean[:, None]) ** 3).sum(axis=1) * n / ((n - 1) * (n - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(third / std**3)


def paired_differences(a: PerSeed, b: PerSeed) -> dict[int, float]:
    """a - b on every seed both arms have."""
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


def interaction_contrasts(cells: Mapping[tuple[int, int], PerSeed]) -> dict[int, float]:
    """The 2x2 interaction contrast g11 - g10 - g01 + g00 per seed (goodness scale).

    Positive: the two changes together do better than the sum of their single effects
    (synergy); negative: they do worse (diminishing returns).
    """
    corners = ((0, 0), (0, 1), (1, 0), (1, 1))
    seeds = sorted(set.intersection(*(set(cells[c]) for c in corners)))
    return {s: cells[1, 1][s] - cells[1, 0][s] - cells[0, 1][s] + cells[0, 0][s] for s in seeds}


def slopes(levels: Sequence[float], per_level: Sequence[PerSeed]) -> dict[int, float]:
    """The least-squares slope of a metric against a factor's levels, on every seed all levels have."""
    seeds = sorted(set.intersection(*(set(values) for values in per_level)))
    x = np.asarray(levels, dtype=float)
    return {s: float(np.polyfit(x, [values[s] for values in per_level], 1)[0]) for s in seeds}


def ratios(numerator: PerSeed, denominator: PerSeed) -> dict[int, float]:
    """numerator / denominator per shared seed; a zero denominator makes that seed's ratio nan."""
    return {
        s: numerator[s] / denominator[s] if denominator[s] else math.nan
        for s in sorted(set(numerator) & set(denominator))
    }


def power(effect_size: float, n: int, alpha: float) -> float:
    """Power of a two-sided one-sample t-test with `n` seeds to reject a zero mean at `alpha`."""
    if n < 2:
        return 0.0
    df = n - 1
    critical = -float(special.stdtrit(df, alpha / 2))
    shift = abs(effect_size) * math.sqrt(n)
    upper = 1 - float(special.nctdtr(df, shift, critical))
    lower = float(special.nctdtr(df, shift, -critical))
    # Far in a tail the noncentral t may come back nan: the wrong-side tail is then negligible,
    # and the right side falls back to the normal approximation.
    if math.isnan(upper):
        upper = float(scipy_stats.norm.sf(critical - shift))
    return upper + (0.0 if math.isnan(lower) else lower)


def seeds_for(effect_size: float, alpha: float, target: float = POWER) -> int | None:
    """The fewest seeds with which a t-test at `alpha` detects this standardized effect with
    probability `target`; None when more than MAX_SEEDS would be needed or the effect is zero."""
    if not math.isfinite(effect_size) or abs(effect_size) < 1e-9:
        return None
    low, high = 2, MAX_SEEDS
    if power(effect_size, high, alpha) < target:
        return None
    while low < high:  # power grows with n
        middle = (low + high) // 2
        if power(effect_size, middle, alpha) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def decimals(spread: float, significant: int = 2) -> int | None:
    """Decimal places that show `spread` (an interval's half-width) to `significant` digits: the
    precision an estimate with that uncertainty supports (negative: rounded to tens, hundreds);
    None where the spread is zero or not finite, or so small that fmt's digits say more."""
    if not math.isfinite(spread) or spread <= 0:
        return None
    places = significant - 1 - math.floor(math.log10(spread))
    return places if places <= 10 else None


def fmt_at(value: float, places: int | None) -> str:
    """`value` at `places` decimals (see `decimals`); fmt's way where places is None or the value
    is missing or infinite."""
    if places is None or value is None or not math.isfinite(value):
        return fmt(value)
    rounded = round(value, places)
    if rounded == 0:
        rounded = 0.0  # no "-0.00"
    return f"{rounded:,.{max(places, 0)}f}" if abs(rounded) >= 10_000 else f"{rounded:.{max(places, 0)}f}"


def fmt_interval(estimate: float, low: float, high: float) -> tuple[str, str, str]:
    """An estimate and its interval, all three at the precision the interval's half-width supports
    (2 significant digits of it): `8.64e-05 [-0.007063, 0.007236]` reads `0.0001 [-0.0071, 0.0072]`.
    The one rule for effects in the terminal, the report and verdicts.csv."""
    places = decimals((high - low) / 2) if math.isfinite(low) and math.isfinite(high) else None
    return fmt_at(estimate, places), fmt_at(low, places), fmt_at(high, places)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a person, the one way hypotune shows numbers: 4 significant digits, whole
    numbers with thousands separators, n/a for missing, inf for infinite."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer() and abs(value) >= 10**digits:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"
