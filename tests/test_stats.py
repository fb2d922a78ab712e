import math

import numpy as np
import pytest

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


def test_paired_pairs_only_shared_seeds_and_matches_scipy():
    from scipy.stats import ttest_rel

    a = {0: 0.50, 1: 0.52, 2: 0.47, 3: 0.55, 9: 100.0}
    b = {0: 0.45, 1: 0.50, 2: 0.46, 3: 0.49}
    result = stats.paired(a, b)
    expected = ttest_rel([0.50, 0.52, 0.47, 0.55], [0.45, 0.50, 0.46, 0.49])
    assert result.n == 4 and result.test == "paired t"
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.mean == pytest.approx(0.035) and result.ci_low < 0.035 < result.ci_high


def test_diverged_runs_use_the_sign_flip_test():
    a = {s: -math.inf for s in range(5)}  # goodness of a diverged arm
    b = {s: -0.4 - 0.01 * s for s in range(5)}
    result = stats.paired(a, b)
    assert result.test == "sign-flip permutation"
    assert result.p_value == pytest.approx(2 / 32)  # the smallest two-sided p with 5 seeds
    assert result.mean < 0


def test_identical_arms_give_no_evidence():
    a = {s: 0.3 for s in range(4)}
    result = stats.paired(a, dict(a))
    assert (result.mean, result.p_value, result.effect_size) == (0.0, 1.0, 0.0)


def test_interaction_recovers_a_planted_contrast():
    rng = np.random.default_rng(1)
    cells = {cell: {} for cell in ((0, 0), (0, 1), (1, 0), (1, 1))}
    for seed in range(8):
        base = rng.normal(0, 0.05)  # a seed effect shared by all four cells
        for (i, j), values in cells.items():
            values[seed] = base + 0.10 * i + 0.20 * j + 0.15 * i * j + rng.normal(0, 0.01)
    result = stats.interaction(cells)
    assert result.mean == pytest.approx(0.15, abs=0.03) and result.p_value < 0.001


def test_slope_of_a_linear_trend():
    per_level = [{s: 1.0 + 0.5 * x + 0.01 * s for s in range(3)} for x in (0.1, 0.3, 0.5)]
    result = stats.slope([0.1, 0.3, 0.5], per_level)
    assert result.mean == pytest.approx(0.5)


def test_holm_matches_the_textbook():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.01, math.nan])
    assert adjusted[0] == pytest.approx(0.01) and math.isnan(adjusted[1])


def test_seeds_needed_follows_the_power_of_a_paired_t_test():
    assert 9 <= stats.seeds_needed(1.0) <= 11  # dz = 1 needs about 10 pairs for 80% power
    assert stats.seeds_needed(0.3) > stats.seeds_needed(0.6)
    assert stats.seeds_needed(0.0) is None and stats.seeds_needed(math.nan) is None
    assert stats.seeds_needed(50.0) == 2  # two seeds already have the power
    assert stats.seeds_needed(0.001) is None  # millions of seeds: no practical advice


def test_false_positive_rate_on_null_data_is_near_alpha():
    rng = np.random.default_rng(7)
    rejections = 0
    trials = 400
    for _ in range(trials):
        a = {s: rng.normal() for s in range(5)}
        b = {s: rng.normal() for s in range(5)}
        rejections += stats.paired(a, b).p_value < stats.ALPHA
    assert 0.02 < rejections / trials < 0.09
