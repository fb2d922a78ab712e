import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from hypotune import stats


def test_summary_ci_uses_the_t_distribution():
    summary = stats.summarize([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert (summary.mean, summary.std, summary.n) == (2.0, 1.0, 3)
    assert summary.ci_low == pytest.approx(2 - half) and summary.ci_high == pytest.approx(2 + half)


def test_summary_of_diverged_and_empty():
    assert math.isinf(stats.summarize([0.5, math.inf]).mean)
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)
    assert math.isnan(stats.summarize([1.0]).ci_low)


def test_t_interval_matches_scipy_at_any_level():
    values = [0.05, 0.02, 0.01, 0.06]
    result = stats.t_interval(values, alpha=0.01)
    expected = scipy_stats.ttest_1samp(values, 0.0)
    low, high = expected.confidence_interval(0.99)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert result.effect_size == pytest.approx(np.mean(values) / np.std(values, ddof=1))


def test_t_interval_against_a_null_value():
    result = stats.t_interval([0.95, 0.97, 0.96], null=0.9)
    assert result.p_value == pytest.approx(scipy_stats.ttest_1samp([0.95, 0.97, 0.96], 0.9).pvalue)


def test_the_same_difference_on_every_seed_bounds_nothing():
    # A constant nonzero difference (as a quantized accuracy gives) has no spread to weigh it:
    # the old p = 0 called it decisive.
    result = stats.t_interval([0.003, 0.003, 0.003])
    assert math.isnan(result.low) and math.isnan(result.p_value) and not result.bounded


def test_identical_arms_give_a_point_at_zero():
    result = stats.t_interval([0.0, 0.0, 0.0, 0.0])
    assert (result.low, result.high, result.p_value, result.std) == (0.0, 0.0, 1.0, 0.0)


def test_a_missing_value_takes_no_part():
    result = stats.t_interval([0.1, math.nan, 0.2, 0.15])
    assert result.n == 3 and result.mean == pytest.approx(0.15)


def test_paired_differences_pair_only_shared_seeds():
    a = {0: 0.50, 1: 0.52, 2: 0.47, 9: 100.0}
    b = {0: 0.45, 1: 0.50, 2: 0.46}
    assert stats.paired_differences(a, b) == pytest.approx({0: 0.05, 1: 0.02, 2: 0.01})


def test_interaction_recovers_a_planted_contrast():
    rng = np.random.default_rng(1)
    cells = {cell: {} for cell in ((0, 0), (0, 1), (1, 0), (1, 1))}
    for seed in range(8):
        base = rng.normal(0, 0.05)  # a seed effect shared by all four cells
        for (i, j), values in cells.items():
            values[seed] = base + 0.10 * i + 0.20 * j + 0.15 * i * j + rng.normal(0, 0.01)
    contrasts = stats.interaction_contrasts(cells)
    result = stats.t_interval(list(contrasts.values()))
    assert result.mean == pytest.approx(0.15, abs=0.03) and result.p_value < 0.001


def test_slope_of_a_linear_trend():
    per_level = [{s: 1.0 + 0.5 * x + 0.01 * s for s in range(3)} for x in (0.1, 0.3, 0.5)]
    assert stats.slopes([0.1, 0.3, 0.5], per_level) == pytest.approx({0: 0.5, 1: 0.5, 2: 0.5})


def test_a_ratio_with_a_zero_denominator_is_missing():
    assert math.isnan(stats.ratios({0: 0.5}, {0: 0.0})[0])
    assert stats.ratios({0: 0.5, 1: 0.8}, {0: 1.0, 1: 0.8}) == {0: 0.5, 1: 1.0}


def test_power_and_seeds_for_a_paired_t_test():
    from statsmodels.stats.power import TTestPower

    assert stats.power(1.0, 10, 0.05) == pytest.approx(TTestPower().power(1.0, 10, 0.05), abs=1e-6)
    assert 9 <= stats.seeds_for(1.0, 0.05) <= 11  # dz = 1 needs about 10 pairs for 80% power
    assert stats.seeds_for(0.3, 0.05) > stats.seeds_for(0.6, 0.05)
    assert stats.seeds_for(0.0, 0.05) is None and stats.seeds_for(math.nan, 0.05) is None
    assert stats.seeds_for(0.001, 0.05) is None  # millions of seeds: no practical advice


@pytest.mark.parametrize("effect_size", [6.0, 10.0, 20.0])
def test_power_of_huge_effects_is_never_nan(effect_size):
    # The noncentral t is not computed far in its tail; with 2 seeds at a strict level the power
    # of dz 6..20 is well below 1, and the seeds asked for must reflect it.
    value = stats.power(effect_size, 2, 0.0026)
    assert 0 < value < 1 and not math.isnan(value)
    assert stats.seeds_for(effect_size, 0.0026) >= 3


@pytest.mark.parametrize(
    ("estimate", "low", "high", "shown"),
    [
        (8.64e-05, -0.007063, 0.007236, ("0.0001", "-0.0071", "0.0072")),  # as the issue saw it
        (0.0123, 0.0101, 0.0145, ("0.0123", "0.0101", "0.0145")),
        (1234.5, 1000.0, 1500.0, ("1230", "1000", "1500")),  # a spread of 250: tens
        (-1e-5, -0.002, 0.002, ("0.0000", "-0.0020", "0.0020")),  # never "-0.0000"
        (0.5, math.nan, math.nan, ("0.5", "n/a", "n/a")),  # no interval: fmt's way
    ],
)
def test_an_estimate_is_shown_at_the_precision_its_interval_supports(estimate, low, high, shown):
    from hypotune.stats import fmt_interval

    assert fmt_interval(estimate, low, high) == shown
