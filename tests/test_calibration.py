"""A reduced, fixed-seed run of bench/calibration.py: simulated studies through the real
decision code must keep the family-wise false-decision rate at 5% and decide large effects."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "calibration.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("calibration", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["better", "three_better", "synergy"])
def test_false_decisions_stay_at_alpha_under_the_null_with_seeds_added_in_rounds(calibration, kind):
    studies = 200
    rate = calibration.run(kind, 0.0, studies, 3, 20, seed=11, presets=("adaptive",))["adaptive"]["false"]
    # 5% plus three Monte Carlo standard errors of a 5% rate over this many studies
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / studies), rate


def test_a_large_effect_is_decided_with_few_seeds(calibration):
    result = calibration.run("better", 2.0, 100, 3, 20, seed=12)
    adaptive = result["adaptive"]
    assert adaptive["decided"] >= 0.95 and adaptive["false"] == 0
    # strict first looks (under skew, 3 seeds show little): a 2 sd effect takes about 13 of 20 seeds
    assert adaptive["trials"] <= 0.75 * result["fixed"]["trials"]
