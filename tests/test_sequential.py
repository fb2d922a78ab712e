"""Seed plans and their looks: the per-look level, intervals over looks, seeds needed."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from hypotune import sequential, stats


def test_seed_plan_looks():
    assert sequential.SeedPlan(3, 20).looks == (3, 5, 8, 13, 20)
    assert sequential.SeedPlan(5, 5).looks == (5,) and not sequential.SeedPlan(5, 5).adaptive
    assert sequential.SeedPlan(3, 4).looks == (3, 4)
    assert sequential.SeedPlan(3, 20).next_look(5) == 8 and sequential.SeedPlan(3, 20).next_look(20) == 20


def test_one_look_uses_the_plain_level():
    assert sequential.nominal_alpha((5,), 0.05) == 0.05


def test_repeated_looks_cover_together_at_the_stated_level():
    looks = (3, 5, 8, 13, 20)
    nominal = sequential.nominal_alpha(looks, 0.05)
    assert 0.008 < nominal < 0.02  # stricter than 0.05, far less strict than 0.05 / 5 looks... per look
    # An independent check with other random numbers: how often does any look's interval miss?
    rng = np.random.default_rng(123)
    draws = rng.standard_normal((20_000, 20))
    misses = np.zeros(len(draws), dtype=bool)
    for n in looks:
        sample = draws[:, :n]
        t_stat = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / math.sqrt(n))
        misses |= np.abs(t_stat) > scipy_stats.t.ppf(1 - nominal / 2, n - 1)
    error = math.sqrt(0.05 * 0.95 / len(draws))
    assert abs(misses.mean() - 0.05) < 3 * error


def test_sequential_interval_intersects_the_looks():
    per_seed = {s: v for s, v in enumerate([0.3, 0.1, 0.2, 0.4, 0.25, 0.35, 0.15, 0.3])}
    looks = (3, 5, 8)
    nominal = sequential.nominal_alpha(looks, 0.05)
    result = sequential.sequential_interval(per_seed, looks, 0.05)
    at = [stats.t_interval(list(per_seed.values())[:n], nominal) for n in looks]
    assert result.low == pytest.approx(max(i.low for i in at))
    assert result.high == pytest.approx(min(i.high for i in at))
    assert result.n == 8 and result.mean == pytest.approx(at[-1].mean) and result.alpha == nominal


def test_sequential_interval_uses_only_completed_looks():
    per_seed = {s: 0.1 * s for s in range(7)}  # looks 3, 5, 8: the last is not complete
    result = sequential.sequential_interval(per_seed, (3, 5, 8), 0.05)
    assert result.n == 5


def test_seeds_needed_is_sized_from_the_margin_not_the_effect():
    looks = (3, 5, 8, 13, 20)
    nominal = sequential.nominal_alpha(looks, 0.05)
    assert sequential.seeds_needed(1.0, 0.5, looks, 0.05) == stats.seeds_for(0.5, nominal)
    assert sequential.seeds_needed(1.0, math.nan, looks, 0.05) is None
    assert sequential.seeds_needed(0.0, 0.5, looks, 0.05) is None
