"""Seed plans and their looks: the per-look level, intervals over looks, seeds needed."""

import math

import numpy as np
import pytest

from hypotune import stats
from hypotune.decide import sequential
from hypotune.study.model import SeedPlan


def test_seed_plan_looks():
    assert SeedPlan(3, 20).looks == (3, 5, 8, 13, 20)
    assert SeedPlan(5, 5).looks == (5,) and not SeedPlan(5, 5).adaptive
    assert SeedPlan(3, 4).looks == (3, 4)
    assert SeedPlan(3, 20).next_look(5) == 8 and SeedPlan(3, 20).next_look(20) == 20


def test_the_gaussian_design_with_one_look_is_the_plain_t_interval():
    with sequential.designed(sequential.GAUSSIAN_POCOCK):
        (level,) = sequential.look_levels((5,), 0.05)
    assert level == pytest.approx(0.05)


def _misses(draws: np.ndarray, centre: float, looks: tuple[int, ...], alpha: float) -> float:
    """How often some look's interval misses the true mean, with other random numbers than the
    calibration's."""
    z = sequential.calibration(looks, sequential.DESIGN).z(alpha)
    missed = np.zeros(len(draws), dtype=bool)
    for k, n in enumerate(looks):
        below, above = stats.look_statistics(draws[:, :n], centre)
        missed |= np.maximum(below, above) > z[k]
    return float(missed.mean())


@pytest.mark.parametrize(
    "shape", ["gaussian", "t3", "lognormal 1", "lognormal -1", "lognormal 0.5", "gamma 2"]
)
def test_repeated_looks_cover_together_on_skewed_and_heavy_tailed_seeds(shape):
    looks = (3, 5, 8, 13, 20)
    rng = np.random.default_rng(123)
    size = (20_000, 20)
    if shape == "gaussian":
        draws, centre = rng.standard_normal(size), 0.0
    elif shape == "t3":
        draws, centre = rng.standard_t(3, size), 0.0
    elif shape == "gamma 2":  # not one of the calibration's shapes
        draws, centre = rng.gamma(2.0, size=size), 2.0
    else:
        sigma = float(shape.split()[1])
        draws, centre = (
            np.sign(sigma) * np.exp(abs(sigma) * rng.standard_normal(size)),
            np.sign(sigma) * math.exp(sigma**2 / 2),
        )
    error = math.sqrt(0.05 * 0.95 / len(draws))
    assert _misses(draws, centre, looks, 0.05) < 0.05 + 3 * error


def test_the_boundary_is_strict_early_and_spends_late():
    levels = sequential.look_levels((3, 5, 8, 13, 20), 0.05)
    assert list(levels) == sorted(levels) and levels[0] < 1e-4 and 0.01 < levels[-1] < 0.05


def test_one_sided_bounds_are_never_wider_than_the_two_sided_ones():
    table = sequential.calibration((3, 5, 8), sequential.DESIGN)
    assert np.all(table.z_one_sided(0.05) <= table.z(0.05) + 1e-12)


def test_look_statistics_and_bounds_agree():
    values = [0.1, 0.12, 0.5, 0.11, 0.13]  # one seed far out to the right
    for z in (1.0, 2.0, 3.0):
        low, high = stats.robust_bounds(values, z)
        for null, inside in (
            (low - 1e-6, False),
            (low + 1e-6, True),
            (high - 1e-6, True),
            (high + 1e-6, False),
        ):
            below, above = stats.look_statistics(np.array([values]), null)
            assert (max(below[0], above[0]) <= z) == inside


def test_the_skew_correction_stretches_the_interval_towards_the_tail():
    values = [0.1, 0.12, 0.5, 0.11, 0.13]
    plain = stats.robust_bounds(values, 2.0, skew_corrected=False)
    corrected = stats.robust_bounds(values, 2.0)
    assert corrected[1] > plain[1] and corrected[0] == pytest.approx(plain[0])


def test_sequential_interval_intersects_the_looks():
    per_seed = {s: v for s, v in enumerate([0.3, 0.1, 0.2, 0.4, 0.25, 0.35, 0.15, 0.3])}
    looks = (3, 5, 8)
    z = sequential.calibration(looks, sequential.DESIGN).z(0.05)
    result = sequential.sequential_interval(per_seed, looks, 0.05)
    at = [stats.robust_bounds(list(per_seed.values())[:n], z[k]) for k, n in enumerate(looks)]
    assert result.low == pytest.approx(max(low for low, _ in at))
    assert result.high == pytest.approx(min(high for _, high in at))
    assert result.n == 8 and result.mean == pytest.approx(np.mean(list(per_seed.values())))
    assert result.level == 0.05 and result.alpha == pytest.approx(sequential.look_levels(looks, 0.05)[-1])


def test_sequential_interval_uses_only_completed_looks():
    per_seed = {s: 0.1 * s for s in range(7)}  # looks 3, 5, 8: the last is not complete
    result = sequential.sequential_interval(per_seed, (3, 5, 8), 0.05)
    assert result.n == 5


def test_seeds_needed_is_sized_from_the_margin_not_the_effect():
    looks = (3, 5, 8, 13, 20)
    last = sequential.look_levels(looks, 0.05)[-1]
    assert sequential.seeds_needed(1.0, 0.5, looks, 0.05) == stats.seeds_for(0.5, last)
    assert sequential.seeds_needed(1.0, math.nan, looks, 0.05) is None
    assert sequential.seeds_needed(0.0, 0.5, looks, 0.05) is None
