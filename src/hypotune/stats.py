"""Statistics over seeds: pure functions on numbers, no tracking, no training.

Values come per seed ({seed: value}); comparisons pair the seeds two arms share. Everything is
computed on a "goodness" scale where higher is better, so that one sign convention serves
losses and accuracies alike. A diverged run has an infinite loss: paired tests then fall back
to an exact sign-flip permutation test, which needs only the order of the differences.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
POWER = 0.8

MAX_SEEDS = 1000  # past this, "more seeds" is no practical advice
EXACT_FLIPS = 14  # up to this many seeds the sign-flip test enumerates every flip

PerSeed = Mapping[int, float]


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds of some per-seed quantity, with its 95% CI and a two-sided p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    effect_size: float  # standardized (Cohen's dz); nan when undefined
    test: str  # "paired t", "one-sample t", "sign-flip permutation", or "none"


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


def estimate(values: Sequence[float], null: float = 0.0) -> Estimate:
    """Is the mean of these per-seed values different from `null`?"""
    data = np.asarray(list(values), dtype=float) - null
    n = len(data)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, math.nan, "none")
    if not np.all(np.isfinite(data)):
        return _sign_flip(data, null)
    summary = summarize(data)
    mean = summary.mean + null
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, n, math.nan, "one-sample t")
    if summary.std == 0:  # the same difference on every seed: nothing to weigh it against
        effect = math.copysign(math.inf, summary.mean) if summary.mean else 0.0
        return Estimate(mean, mean, mean, 0.0 if summary.mean else 1.0, n, effect, "one-sample t")
    p_value = float(scipy_stats.ttest_1samp(data, 0.0).pvalue)
    return Estimate(
        mean,
        summary.ci_low + null,
        summary.ci_high + null,
        p_value,
        n,
        summary.mean / summary.std,
        "one-sample t",
    )


def _sign_flip(data: np.ndarray, null: float) -> Estimate:
    """Exact permutation test of a zero mean by flipping signs; infinities keep their order."""
    finite = data[np.isfinite(data)]
    scale = (np.max(np.abs(finite)) if len(finite) else 1.0) or 1.0
    ranked = np.where(np.isfinite(data), data, np.sign(data) * scale * 10)
    if len(ranked) <= EXACT_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(ranked))))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(20_000, len(ranked)))
    flipped = np.abs((signs * ranked).mean(axis=1))
    p_value = float(np.mean(flipped >= abs(ranked.mean()) - 1e-12))
    mean = float(np.mean(data)) + null
    return Estimate(mean, math.nan, math.nan, p_value, len(data), math.nan, "sign-flip permutation")


def paired(a: PerSeed, b: PerSeed) -> Estimate:
    """Mean of a - b over the seeds both arms have."""
    seeds = sorted(set(a) & set(b))
    differences = [_difference(a[s], b[s]) for s in seeds]
    result = estimate(differences)
    return result if result.test != "one-sample t" else _rename(result, "paired t")


def _difference(x: float, y: float) -> float:
    if math.isinf(x) and math.isinf(y) and (x > 0) == (y > 0):
        return 0.0  # both diverged: a tie
    return x - y


def _rename(result: Estimate, test: str) -> Estimate:
    return Estimate(
        result.mean, result.ci_low, result.ci_high, result.p_value, result.n, result.effect_size, test
    )


def interaction(cells: Mapping[tuple[int, int], PerSeed]) -> Estimate:
    """The 2x2 interaction contrast g11 - g10 - g01 + g00 per seed (goodness scale).

    Positive: the two changes together do better than the sum of their single effects
    (synergy); negative: they do worse (diminishing returns).
    """
    seeds = sorted(set.intersection(*(set(cells[c]) for c in ((0, 0), (0, 1), (1, 0), (1, 1)))))
    contrasts = [
        _difference(_difference(cells[1, 1][s], cells[1, 0][s]), _difference(cells[0, 1][s], cells[0, 0][s]))
        for s in seeds
    ]
    return estimate(contrasts)


def slope(levels: Sequence[float], per_level: Sequence[PerSeed]) -> Estimate:
    """The least-squares slope of a metric against a factor's levels, per seed, then averaged."""
    seeds = sorted(set.intersection(*(set(values) for values in per_level)))
    x = np.asarray(levels, dtype=float)
    slopes = []
    for seed in seeds:
        y = np.asarray([values[seed] for values in per_level], dtype=float)
        if not np.all(np.isfinite(y)):
            y = np.where(np.isfinite(y), y, np.nanmax(np.where(np.isfinite(y), y, np.nan)) * 10)
        slopes.append(float(np.polyfit(x, y, 1)[0]))
    return estimate(slopes)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; nan stays nan and does not count as a test."""
    from statsmodels.stats.multitest import multipletests

    index = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if index:
        corrected = multipletests([p_values[i] for i in index], method="holm")[1]
        for i, p in zip(index, corrected, strict=True):
            adjusted[i] = float(p)
    return adjusted


def seeds_needed(effect_size: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Seeds a paired t-test needs to detect this standardized effect with the given power.

    None when the effect is zero, undefined, or so small that over MAX_SEEDS would be needed.
    """
    import warnings

    from statsmodels.stats.power import TTestPower

    if not math.isfinite(effect_size) or abs(effect_size) < 1e-6:
        return None
    analysis = TTestPower()
    size = abs(effect_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at_two = analysis.power(effect_size=size, nobs=2, alpha=alpha, alternative="two-sided")
        # The noncentral t overflows (nan) only for huge effects; power grows with the effect.
        if math.isnan(at_two) or at_two >= power:
            return 2  # the solver cannot go below the smallest sample
        n = analysis.solve_power(effect_size=size, alpha=alpha, power=power, alternative="two-sided")
    n = float(np.atleast_1d(n)[0])
    if not math.isfinite(n) or n > MAX_SEEDS:
        return None
    return max(2, math.ceil(n))
