"""Every prediction kind on planted numbers: the verdict, and the numbers behind it, exactly."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from hypotune import stats
from hypotune.decide import sequential
from hypotune.decide.verdicts import counts, evaluate, next_seeds, seed_round
from hypotune.store.records import TrialRecord
from hypotune.study.file import load_study
from hypotune.study.model import ArmData

from .helpers import TINY_BASE

HEAD = (
    'name = "planted_numbers"\n'
    + TINY_BASE
    + """
[statistics]
margin = 0.05
[presets.quick]
seeds = {seeds}
"""
)


@pytest.fixture(autouse=True)
def gaussian_design():
    """The verdict logic on plain t-intervals, whose numbers these tests compute exactly; the
    default design's intervals are tested in test_sequential.py and at the end of this file."""
    with sequential.designed(sequential.GAUSSIAN_POCOCK):
        yield


def study_of(tmp_path: Path, body: str, seeds: str = "5", head: str = HEAD):
    path = tmp_path / "study.toml"
    path.write_text(head.format(seeds=seeds) + body)
    return load_study(path)


def data_of(study, values: dict[str, list[float]], metric: str = "val_loss", diverged=()):
    """StudyData for the study's first hypothesis: arm -> its metric on seeds 0, 1, ..."""
    hypothesis = study.hypotheses[0]
    data = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    for arm, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            status = "diverged" if (arm, seed) in diverged else "finished"
            metrics = {metric: value, "param_count": 1000.0 if "narrow" not in arm else 90.0}
            data[hypothesis.id, arm].records[seed] = TrialRecord(
                f"{arm}{seed}", "", seed, status, metrics, {}, {}
            )
    return data


def t_bounds(values, alpha):
    result = scipy_stats.ttest_1samp(values, 0.0)
    return result.confidence_interval(1 - alpha), result.pvalue


BETTER = """
[[hypotheses]]
id = "h"
statement = "a beats b"
arms.a = {}
arms.b = { model = { width = 16 } }
prediction = { kind = "better", arm = "a", than = "b" }
"""


def test_better_supported_with_its_interval_p_and_dz(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    gains = [0.10, 0.12, 0.08, 0.11, 0.09]
    data = data_of(study, {"a": [x - g for x, g in zip(b, gains, strict=True)], "b": b})
    (verdict,) = evaluate(study, data, "quick")
    (low, high), p_value = t_bounds(gains, 0.05)
    assert verdict.verdict == "supported" and verdict.seeds == 5
    assert verdict.effect == pytest.approx(0.10)
    assert (verdict.ci_low, verdict.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert verdict.p_value == pytest.approx(p_value) and verdict.p_adjusted == pytest.approx(p_value)
    assert verdict.effect_size == pytest.approx(np.mean(gains) / np.std(gains, ddof=1))
    assert verdict.margin == 0.05 and verdict.confidence == pytest.approx(0.95)
    assert verdict.family == "hypothesis h (1 prediction)" and verdict.stopped == "decided at 5 seeds"


def test_better_refuted_when_the_other_arm_wins(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    data = data_of(study, {"a": [x + 0.1 + 0.01 * i for i, x in enumerate(b)], "b": b})
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "refuted" and verdict.effect == pytest.approx(-0.12)


def test_identical_arms_are_equivalent(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    (verdict,) = evaluate(study, data_of(study, {"a": b, "b": list(b)}), "quick")
    assert verdict.verdict == "equivalent" and (verdict.ci_low, verdict.ci_high) == (0.0, 0.0)


def test_a_small_difference_inside_the_margin_is_equivalent(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    gains = [0.010, 0.012, 0.009, 0.011, 0.010]
    data = data_of(study, {"a": [x - g for x, g in zip(b, gains, strict=True)], "b": b})
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "equivalent" and verdict.ci_low > 0 and verdict.ci_high < 0.05
    assert "smaller than the margin" in verdict.evidence


def test_without_a_margin_a_null_stays_open(tmp_path):
    study = study_of(tmp_path, BETTER, head=HEAD.replace("[statistics]\nmargin = 0.05\n", ""))
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    (verdict,) = evaluate(study, data_of(study, {"a": b, "b": list(b)}), "quick")
    assert verdict.verdict == "inconclusive" and "set a margin" in verdict.evidence


def test_a_relative_margin_is_a_share_of_the_mean(tmp_path):
    study = study_of(tmp_path, BETTER, head=HEAD.replace("margin = 0.05", 'margin = "10%"'))
    b = [0.50, 0.50, 0.50, 0.50, 0.50]
    (verdict,) = evaluate(study, data_of(study, {"a": b, "b": b}), "quick")
    assert verdict.margin == pytest.approx(0.05)


def test_a_missing_metric_is_no_evidence_not_a_refutation(tmp_path):
    # A nan used to give "refuted" with p = 0.
    study = study_of(tmp_path, BETTER)
    nan = math.nan
    (verdict,) = evaluate(study, data_of(study, {"a": [nan] * 5, "b": [0.5] * 5}), "quick")
    assert verdict.verdict == "inconclusive" and verdict.seeds == 0


def test_diverged_runs_count_as_failures(tmp_path):
    study = study_of(tmp_path, BETTER)
    inf = math.inf
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    data = data_of(study, {"a": [inf] * 5, "b": b}, diverged={("a", s) for s in range(5)})
    (verdict,) = evaluate(study, data, "quick")
    # Each diverged seed scores ln 10, a uniform guess over 10 classes
    assert verdict.verdict == "refuted"
    assert verdict.effect == pytest.approx(np.mean(b) - math.log(10))


def test_family_correction_divides_alpha_among_its_predictions(tmp_path):
    # A gain whose p lies between 0.05 / 3 and 0.05: decided alone, not in a family of three.
    gains = [0.03, 0.01, 0.05, 0.00, 0.04]
    p_value = scipy_stats.ttest_1samp(gains, 0.0).pvalue
    assert 0.05 / 3 < p_value < 0.05
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    a = [x - g for x, g in zip(b, gains, strict=True)]
    alone = study_of(tmp_path, BETTER.replace("margin", "x"))
    (verdict,) = evaluate(alone, data_of(alone, {"a": a, "b": b}), "quick")
    assert verdict.verdict == "supported"
    three = BETTER.replace(
        'prediction = { kind = "better", arm = "a", than = "b" }',
        'predictions = [{ kind = "better", arm = "a", than = "b" }, '
        '{ kind = "better", arm = "b", than = "a", exploratory = true }, '
        '{ kind = "better", arm = "a", than = "b" }, { kind = "better", arm = "a", than = "b" }]',
    )
    family = study_of(tmp_path, three)
    verdicts = evaluate(family, data_of(family, {"a": a, "b": b}), "quick")
    assert [v.verdict for v in verdicts] == ["inconclusive", "exploratory", "inconclusive", "inconclusive"]
    (low, high), _ = t_bounds(gains, 0.05 / 3)
    assert (verdicts[0].ci_low, verdicts[0].ci_high) == (pytest.approx(low), pytest.approx(high))
    assert verdicts[0].p_adjusted == pytest.approx(min(1, p_value * 3))
    assert (
        verdicts[0].family == "hypothesis h (3 predictions)" and "Bonferroni over 3" in verdicts[0].correction
    )
    # the exploratory one: its plain 95% interval, in its own direction, never a verdict
    (low, high), _ = t_bounds([-g for g in gains], 0.05)
    assert (verdicts[1].ci_low, verdicts[1].ci_high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(verdicts[1].p_adjusted) and verdicts[1].family == ""


def test_a_study_wide_family_counts_every_prediction(tmp_path):
    two = BETTER + BETTER.replace('id = "h"', 'id = "g"')
    study = study_of(tmp_path, two, head=HEAD.replace("margin = 0.05", 'margin = 0.05\nfamily = "study"'))
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    verdicts = evaluate(study, data_of(study, {"a": [x - 0.1 for x in b], "b": b}), "quick")
    assert verdicts[0].family == "the study (2 predictions)"


BEST = """
[[hypotheses]]
id = "h"
statement = "width 8 is best"
factors = { "model.width" = [8, 12, 16] }
prediction = { kind = "best", arm = "width=8" }
"""


def test_best_supported_against_its_closest_rival(tmp_path):
    study = study_of(tmp_path, BEST)
    base = [0.50, 0.52, 0.48, 0.55, 0.51]
    close = [0.05, 0.06, 0.04, 0.05, 0.06]
    values = {
        "width=8": base,
        "width=12": [x + c for x, c in zip(base, close, strict=True)],
        "width=16": [x + 0.3 + 0.01 * (i % 3) for i, x in enumerate(base)],
    }
    (verdict,) = evaluate(study, data_of(study, values), "quick")
    (low, high), _ = t_bounds(close, 0.05)  # support needs no correction over the rivals
    assert verdict.verdict == "supported" and "vs width=12" in verdict.evidence
    assert (verdict.ci_low, verdict.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_best_refuted_by_a_rival_corrected_over_the_rivals(tmp_path):
    study = study_of(tmp_path, BEST)
    base = [0.50, 0.52, 0.48, 0.55, 0.51]
    ahead = [0.10, 0.08, 0.12, 0.09, 0.11]
    values = {
        "width=8": base,
        "width=12": [x - a for x, a in zip(base, ahead, strict=True)],
        "width=16": [x + 0.3 + 0.01 * (i % 3) for i, x in enumerate(base)],
    }
    (verdict,) = evaluate(study, data_of(study, values), "quick")
    (low, high), _ = t_bounds([-a for a in ahead], 0.05 / 2)
    assert verdict.verdict == "refuted" and "vs width=12" in verdict.evidence
    assert (verdict.ci_low, verdict.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_best_is_not_refuted_by_the_luckiest_of_several_null_rivals(tmp_path):
    # The old rule took the smallest p among the rivals, uncorrected: 4-10% false refutations.
    study = study_of(tmp_path, BEST.replace("[8, 12, 16]", "[8, 12, 16, 20, 24]"), seeds="3")
    rng = np.random.default_rng(5)
    refuted = 0
    runs = 300
    for _ in range(runs):
        values = {arm: list(rng.normal(0.5, 0.05, 3)) for arm in study.hypotheses[0].arms}
        (verdict,) = evaluate(study, data_of(study, values), "quick")
        refuted += verdict.verdict == "refuted"
    assert refuted / runs <= 0.05


SYNERGY = """
[[hypotheses]]
id = "h"
statement = "together beats the sum"
factors = { "model.dropout" = [0.0, 0.1], "model.norm" = ["none", "instance"] }
predictions = [{ kind = "synergy" }, { kind = "diminishing" }]
"""


def load_study_text(body: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return study_of(Path(folder), body)


def test_levels_are_read_in_value_order_by_every_kind(tmp_path):
    # synergy took the first-listed level as its baseline while trend sorted by value: listing
    # [0.1, 0.0] instead of [0.0, 0.1] flipped a synergy verdict.
    base = [1.0, 1.1, 0.9, 1.05, 0.95]
    extra = [0.20, 0.22, 0.18, 0.21, 0.19]
    values = {
        "dropout=0.0, norm=none": base,
        "dropout=0.1, norm=none": [x - 0.1 for x in base],
        "dropout=0.0, norm=instance": [x - 0.3 for x in base],
        "dropout=0.1, norm=instance": [x - 0.4 - e for x, e in zip(base, extra, strict=True)],
    }
    listed = [study_of(tmp_path, SYNERGY), study_of(tmp_path, SYNERGY.replace("[0.0, 0.1]", "[0.1, 0.0]"))]
    verdicts = [evaluate(study, data_of(study, values), "quick") for study in listed]
    assert [v[0].verdict for v in verdicts] == ["supported", "supported"]
    assert verdicts[0][0].effect == pytest.approx(verdicts[1][0].effect)
    assert "baseline dropout=0.0, norm=none" in verdicts[1][0].evidence


def test_synergy_and_diminishing_read_the_contrast_with_opposite_signs(tmp_path):
    study = study_of(tmp_path, SYNERGY)
    base = [1.0, 1.1, 0.9, 1.05, 0.95]
    extra = [0.20, 0.22, 0.18, 0.21, 0.19]  # together, the loss falls by this beyond the sum
    values = {
        "dropout=0.0, norm=none": base,
        "dropout=0.1, norm=none": [x - 0.1 for x in base],
        "dropout=0.0, norm=instance": [x - 0.3 for x in base],
        "dropout=0.1, norm=instance": [x - 0.4 - e for x, e in zip(base, extra, strict=True)],
    }
    synergy, diminishing = evaluate(study, data_of(study, values), "quick")
    (low, high), _ = t_bounds(extra, 0.05 / 2)
    assert synergy.verdict == "supported" and diminishing.verdict == "refuted"
    assert synergy.effect == pytest.approx(0.2) and diminishing.effect == pytest.approx(-0.2)
    assert (synergy.ci_low, synergy.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert (diminishing.ci_low, diminishing.ci_high) == (pytest.approx(-high), pytest.approx(-low))


EFFICIENCY = """
[[hypotheses]]
id = "h"
statement = "narrow reaches 90% of wide"
metric = "val_acc"
arms.narrow = { model = { width = 4 } }
arms.wide = {}
prediction = { kind = "efficiency", arm = "narrow", reference = "wide", performance = 0.9, params = 0.1 }
"""


def test_efficiency_tests_the_excess_over_the_share_in_metric_units(tmp_path):
    # It averaged per-seed ratios, whose mean is biased (3.5-6% false support against 2.5%),
    # and sized dz on the raw ratio (the report printed dz = 719).
    study = study_of(tmp_path, EFFICIENCY)
    wide = [0.90, 0.91, 0.89, 0.90, 0.92]
    narrow = [0.86, 0.87, 0.85, 0.87, 0.88]
    (verdict,) = evaluate(study, data_of(study, {"narrow": narrow, "wide": wide}, "val_acc"), "quick")
    excess = [n - 0.9 * w for n, w in zip(narrow, wide, strict=True)]
    (low, high), _ = t_bounds(excess, 0.05)
    assert verdict.verdict == "supported" and verdict.effect == pytest.approx(np.mean(excess))
    assert (verdict.ci_low, verdict.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert verdict.effect_size == pytest.approx(np.mean(excess) / np.std(excess, ddof=1))
    assert verdict.effect_size < 20
    assert "narrow - 0.9 x wide" in verdict.evidence and "performance ratio 0.958" in verdict.evidence
    assert "parameters 90 vs 1,000 (9.0%, limit 10%)" in verdict.evidence


def test_efficiency_refuted_by_a_broken_parameter_budget(tmp_path):
    study = study_of(tmp_path, EFFICIENCY.replace("params = 0.1", "params = 0.05"))
    wide = [0.90, 0.91, 0.89, 0.90, 0.92]
    (verdict,) = evaluate(study, data_of(study, {"narrow": wide, "wide": wide}, "val_acc"), "quick")
    assert verdict.verdict == "refuted"


def test_efficiency_keeps_a_diverged_seed(tmp_path):
    # val_acc = 0.0 of a diverged seed was dropped as falsy, and a failing arm could pass.
    study = study_of(tmp_path, EFFICIENCY)
    wide = [0.90, 0.91, 0.89, 0.90, 0.92]
    narrow = [0.0, 0.0, 0.0, 0.0, 0.88]
    diverged = {("narrow", s) for s in range(4)}
    data = data_of(study, {"narrow": narrow, "wide": wide}, "val_acc", diverged)
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.seeds == 5 and verdict.verdict == "refuted"


TREND = """
[[hypotheses]]
id = "h"
statement = "loss grows with the subset"
factors = { "data.train_subset" = [10000, 1000, 100] }
prediction = { kind = "trend", factor = "data.train_subset", direction = "decreasing" }
"""


def test_trend_uses_steps_in_value_order_so_geometric_factors_work(tmp_path):
    study = study_of(tmp_path, TREND)
    # the loss falls by 0.3 per tenfold step, a clear monotone effect a raw-unit slope misses
    values = {
        "train_subset=100": [1.6, 1.62, 1.58, 1.61, 1.59],
        "train_subset=1000": [1.3, 1.31, 1.29, 1.32, 1.28],
        "train_subset=10000": [1.0, 1.05, 0.97, 1.03, 0.99],
    }
    (verdict,) = evaluate(study, data_of(study, values), "quick")
    # every step is tested; the one read off is the weakest
    steps = {
        "1000": [a - b for a, b in zip(values["train_subset=100"], values["train_subset=1000"], strict=True)],
        "10000": [
            a - b for a, b in zip(values["train_subset=1000"], values["train_subset=10000"], strict=True)
        ],
    }
    p_values = {k: scipy_stats.ttest_1samp(v, 0.0).pvalue for k, v in steps.items()}
    weakest = max(p_values, key=p_values.get)
    (low, high), _ = t_bounds(steps[weakest], 0.05)
    assert verdict.verdict == "supported" and verdict.effect == pytest.approx(np.mean(steps[weakest]))
    assert (verdict.ci_low, verdict.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert f"to {weakest}" in verdict.evidence and "are monotone" in verdict.evidence


def test_a_v_shaped_trend_is_not_supported(tmp_path):
    # The least-squares slope gave the middle level no weight: down 0.2, then up 0.6 read as a
    # rising trend, supported, beside a note that the means are not monotone.
    study = study_of(
        tmp_path,
        TREND.replace('"decreasing"', '"increasing"').replace("[10000, 1000, 100]", "[100, 1000, 10000]"),
    )
    base = [1.0, 1.02, 0.98, 1.01, 0.99]
    values = {
        "train_subset=100": base,
        "train_subset=1000": [x - 0.2 + 0.01 * (i % 2) for i, x in enumerate(base)],
        "train_subset=10000": [x + 0.4 + 0.01 * (i % 3) for i, x in enumerate(base)],
    }
    (verdict,) = evaluate(study, data_of(study, values), "quick")
    assert verdict.verdict == "refuted" and "train_subset=100 to 1000" in verdict.evidence
    assert "are not monotone" in verdict.evidence


def test_trend_against_the_data_is_refuted(tmp_path):
    study = study_of(tmp_path, TREND.replace('"decreasing"', '"increasing"'))
    values = {
        "train_subset=100": [1.6, 1.62, 1.58, 1.61, 1.59],
        "train_subset=1000": [1.3, 1.31, 1.29, 1.32, 1.28],
        "train_subset=10000": [1.0, 1.05, 0.97, 1.03, 0.99],
    }
    (verdict,) = evaluate(study, data_of(study, values), "quick")
    assert verdict.verdict == "refuted"


REACHES = """
[[hypotheses]]
id = "h"
statement = "reaches 0.9"
metric = "val_acc"
arms.a = {}
prediction = { kind = "reaches", arm = "a", value = 0.9 }
"""


@pytest.mark.parametrize(
    ("values", "verdict"),
    [([0.93, 0.94, 0.92, 0.93, 0.94], "supported"), ([0.85, 0.86, 0.84, 0.85, 0.86], "refuted"),
     ([0.90, 0.91, 0.89, 0.90, 0.90], "inconclusive")],
)  # fmt: skip
def test_reaches_has_no_equivalence(tmp_path, values, verdict):
    study = study_of(tmp_path, REACHES)
    (result,) = evaluate(study, data_of(study, {"a": values}, "val_acc"), "quick")
    assert result.verdict == verdict and math.isnan(result.margin)
    assert result.effect == pytest.approx(np.mean(values) - 0.9)


def test_an_open_verdict_sizes_seeds_from_the_margin_and_never_asks_for_what_it_has(tmp_path):
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }")
    b = [0.50, 0.52, 0.48]
    (verdict,) = evaluate(study, data_of(study, {"a": [0.52, 0.47, 0.50], "b": b}), "quick")
    assert verdict.verdict == "inconclusive" and verdict.seeds == 3
    nominal = sequential.look_levels((3, 5, 8, 13, 20), 0.05)[-1]
    std = np.std([-0.02, 0.05, -0.02], ddof=1)
    expected = max(5, stats.seeds_for(0.05 / std, nominal) or 0)
    assert verdict.seeds_needed == expected and verdict.seeds_needed > 3
    assert verdict.stopped == "open at 3 of up to 20 seeds: running the study again adds seeds"


def test_next_seeds_grows_only_open_hypotheses(tmp_path):
    two = BETTER + BETTER.replace('id = "h"', 'id = "g"')
    study = study_of(tmp_path, two, seeds="{ min = 3, max = 20 }")
    data = data_of(study, {"a": [0.52, 0.47, 0.50], "b": [0.50, 0.52, 0.48]})  # h: open
    for arm, values in (("a", [0.2, 0.21, 0.19]), ("b", [0.2, 0.21, 0.19])):  # g: identical, equivalent
        for seed, value in enumerate(values):
            data["g", arm].records[seed] = TrialRecord("", "", seed, "finished", {"val_loss": value}, {}, {})
    assert next_seeds(study, "quick", data) == {"h": 5, "g": 3}
    del data["h", "a"].records[2]  # a look not yet complete is finished first
    assert next_seeds(study, "quick", data)["h"] == 3


def test_the_p_value_agrees_with_the_verdict_over_all_looks(tmp_path):
    # The adjusted p came from the last look only, while the verdict comes from the intersection
    # of all looks' intervals: a prediction was reported supported with p_adj 0.092.
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }", head=HEAD.replace("margin = 0.05", ""))
    rng = np.random.default_rng(3)
    for _ in range(200):
        b = list(rng.normal(0.5, 0.05, 8))
        a = list(np.array(b) - rng.normal(0.04, 0.05, 8))
        (verdict,) = evaluate(study, data_of(study, {"a": a, "b": b}), "quick")
        decided = verdict.verdict in ("supported", "refuted")
        assert decided == (verdict.p_adjusted < 0.05), (verdict.verdict, verdict.p_adjusted)


def test_seeds_on_which_both_arms_diverged_are_left_out(tmp_path):
    # Both at the failure score compare as exactly zero: no information, pulled towards "no difference".
    study = study_of(tmp_path, BETTER)
    a, b = [0.40, 0.41, 9.0, 0.39, 0.42], [0.50, 0.52, 9.0, 0.48, 0.51]
    (verdict,) = evaluate(study, data_of(study, {"a": a, "b": b}, diverged={("a", 2), ("b", 2)}), "quick")
    assert verdict.seeds == 4 and verdict.effect == pytest.approx(np.mean([0.10, 0.11, 0.09, 0.09]))


def test_a_relative_margin_is_fixed_at_the_first_look_without_diverged_runs(tmp_path):
    # It was a share of the mean of every run at every look: failure scores inflated it, and
    # each new seed moved it.
    study = study_of(
        tmp_path, BETTER.replace("margin", "x") + 'margin = "10%"\n', seeds="{ min = 3, max = 20 }"
    )
    a = [0.50, 0.52, 0.48, 0.90, 0.20]
    b = [0.50, 0.51, 0.49, 0.90, 0.20]
    first = evaluate(study, data_of(study, {"a": a[:3], "b": b[:3]}), "quick")[0]
    later = evaluate(study, data_of(study, {"a": a, "b": b}, diverged={("a", 3), ("b", 4)}), "quick")[0]
    assert first.margin == pytest.approx(0.1 * 0.5) and later.margin == first.margin
    assert "10% of the median 0.5 at the first look (3 seeds)" in later.evidence


def test_counts_in_a_fixed_order(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    verdicts = evaluate(study, data_of(study, {"a": b, "b": b}), "quick")
    assert counts(verdicts) == {
        "supported": 0,
        "refuted": 0,
        "equivalent": 1,
        "inconclusive": 0,
        "exploratory": 0,
    }


def test_the_same_difference_on_every_seed_is_not_decisive(tmp_path):
    # p = 0 from a zero spread made such a comparison "supported".
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    (verdict,) = evaluate(study, data_of(study, {"a": [x - 0.003 for x in b], "b": b}), "quick")
    assert verdict.verdict == "inconclusive" and "the same number on every seed" in verdict.evidence


def test_a_recorded_margin_is_the_one_read_whatever_the_data_say_later(tmp_path):
    from hypotune.decide.verdicts import margins_to_record

    head = HEAD.replace("margin = 0.05", 'margin = "5%"')
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }", head=head)
    early = data_of(study, {"a": [1.0, 1.0], "b": [1.0, 1.0]})
    assert margins_to_record(study, "quick", early, {}) == {}  # the first look is not complete yet
    data = data_of(study, {"a": [0.4, 0.5, 0.6], "b": [0.5, 0.6, 0.4]})
    fixed = margins_to_record(study, "quick", data, {})
    assert fixed == {"h": (pytest.approx(0.025), "5% of the median 0.5 at the first look (3 seeds)")}
    assert margins_to_record(study, "quick", data, fixed) == {}  # recorded once
    recorded = {"h": (0.123, "5% of the median 2.46 at the first look (3 seeds)")}
    (verdict,) = evaluate(study, data, "quick", margins=recorded)
    assert verdict.margin == 0.123 and "median 2.46 at the first look (3 seeds), recorded" in verdict.evidence


def test_the_default_design_widens_an_interval_toward_a_skewed_tail(tmp_path):
    study = study_of(tmp_path, BETTER)
    b = [0.50, 0.52, 0.48, 0.55, 0.51]
    gains = [0.01, 0.012, 0.011, 0.013, 0.30]  # one seed far out: a skewed sample
    data = data_of(study, {"a": [x - g for x, g in zip(b, gains, strict=True)], "b": b})
    (gaussian,) = evaluate(study, data, "quick")
    with sequential.designed(sequential.Design()):
        (robust,) = evaluate(study, data, "quick")
    assert robust.ci_high - robust.effect > gaussian.ci_high - gaussian.effect
    assert robust.ci_high - robust.effect > robust.effect - robust.ci_low  # stretched toward the tail


# Differences 0.2, -0.2, 0, 0.2, -0.2: sd 0.2 against a margin 0.05, at the second look (5 seeds)
NOISY = {"a": [0.3, 0.7, 0.5, 0.3, 0.7], "b": [0.5] * 5}


def test_a_prediction_that_would_need_far_more_seeds_than_the_maximum_is_given_up(tmp_path):
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 8 }")
    data = data_of(study, NOISY)
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "inconclusive" and verdict.seeds_needed > 2.5 * 8
    assert verdict.given_up and verdict.seeds_to_decide == verdict.seeds_needed  # the effect seen is 0
    assert verdict.stopped.startswith(f"open: would need about {verdict.seeds_needed} seeds, more than 2.5 x")
    round_ = seed_round(study, "quick", data)
    assert round_.seeds == {"h": 5}  # no next look
    assert round_.given_up == {"h": f"would need about {verdict.seeds_needed} seeds"}


def test_a_first_look_is_never_given_up_on_its_few_seeds(tmp_path):
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 8 }")
    data = data_of(study, {arm: values[:3] for arm, values in NOISY.items()})
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.seeds_to_decide > 2.5 * 8 and not verdict.given_up
    assert next_seeds(study, "quick", data) == {"h": 5}


def test_a_large_effect_seen_is_not_given_up_for_a_small_margin(tmp_path):
    """Sized for a margin of 0.005 against an sd of 0.07 it would need over 1000 seeds, but an
    effect of 0.1 decides within a few more."""
    head = HEAD.replace("margin = 0.05", "margin = 0.005")
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 8 }", head=head)
    data = data_of(study, {"a": [0.40, 0.35, 0.45], "b": [0.50, 0.52, 0.48]})
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "inconclusive" and verdict.seeds_needed is None  # over 1000
    assert verdict.seeds_to_decide <= 8 and not verdict.given_up
    assert next_seeds(study, "quick", data) == {"h": 5}


def test_futility_is_a_study_setting_and_zero_turns_it_off(tmp_path):
    head = HEAD.replace("margin = 0.05", "margin = 0.05\nfutility = {futility}")
    for futility, wanted in (("0", 8), ("1000", 8), ("2.5", 5)):
        study = study_of(
            tmp_path, BETTER, seeds="{ min = 3, max = 8 }", head=head.replace("{futility}", futility)
        )
        assert next_seeds(study, "quick", data_of(study, NOISY)) == {"h": wanted}, futility


def test_an_open_prediction_that_can_still_decide_is_not_given_up(tmp_path):
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }")
    data = data_of(study, {"a": [0.50, 0.49, 0.51], "b": [0.50, 0.50, 0.50]})  # just short of equivalent
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "inconclusive" and not verdict.given_up
    round_ = seed_round(study, "quick", data)
    assert round_.seeds == {"h": 5} and 0.5 < round_.expected["h"] <= 1 and not round_.given_up


@pytest.mark.parametrize("shift", [0.0, 0.03, 0.06])
def test_the_chance_of_deciding_at_the_next_look_matches_a_simulation_of_the_rule(tmp_path, shift):
    """The chance that orders looks under a budget, against the verdicts the next look really
    reads when the new seeds are drawn as the first ones look (Gaussian, their mean and sd)."""
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }")
    base = np.array([0.50, 0.52, 0.48])
    a = base - shift + np.array([0.02, -0.03, 0.01])
    data = data_of(study, {"a": list(a), "b": list(base)})
    (verdict,) = evaluate(study, data, "quick")
    assert verdict.verdict == "inconclusive"
    rng = np.random.default_rng(0)
    mean, std = verdict.effect, float(np.std(base - a, ddof=1))
    decided, runs = 0, 400
    for _ in range(runs):
        more = mean + std * rng.standard_normal(2)  # seeds 3 and 4: the look at 5
        grown = data_of(study, {"a": [*a, *(0.5 - more)], "b": [*base, 0.5, 0.5]})
        (after,) = evaluate(study, grown, "quick")
        assert after.seeds == 5
        decided += after.verdict != "inconclusive"
    simulated = decided / runs
    error = math.sqrt(max(simulated * (1 - simulated), 0.01) / runs)
    # The chance reads the next look's interval alone, and the simulated sd varies: close, not exact.
    assert abs(verdict.next_chance - simulated) < 0.1 + 3 * error, (verdict.next_chance, simulated)


@pytest.mark.parametrize("shift", [0.02, 0.05])
def test_the_chance_of_deciding_by_a_later_look_matches_a_simulation_of_the_rule(tmp_path, shift):
    """The chances that look ahead (by the look at 8 seeds, from 3, across the look at 5), against
    the verdicts the real rule reads at 8 seeds when the new seeds are drawn as the first ones
    look: the intervals of every look met, so decided by 8 is decided at 5 or at 8."""
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 8 }")
    assert study.presets["quick"].seeds.looks == (3, 5, 8)
    base = np.array([0.50, 0.52, 0.48])
    a = base - shift + np.array([0.02, -0.03, 0.01])
    (verdict,) = evaluate(study, data_of(study, {"a": list(a), "b": list(base)}), "quick")
    assert verdict.verdict == "inconclusive" and len(verdict.chances) == 2
    assert verdict.chances[0] == verdict.next_chance and verdict.chances[0] <= verdict.chances[1]
    rng = np.random.default_rng(1)
    mean, std = verdict.effect, float(np.std(base - a, ddof=1))
    decided, runs = 0, 300
    for _ in range(runs):
        more = mean + std * rng.standard_normal(5)  # seeds 3 to 7
        grown = data_of(study, {"a": [*a, *(0.5 - more)], "b": [*base, *[0.5] * 5]})
        (after,) = evaluate(study, grown, "quick")
        assert after.seeds == 8
        decided += after.verdict != "inconclusive"
    simulated = decided / runs
    error = math.sqrt(max(simulated * (1 - simulated), 0.01) / runs)
    assert abs(verdict.chances[1] - simulated) < 0.1 + 3 * error, (verdict.chances[1], simulated)


def test_before_its_first_look_each_prediction_counts_as_decidable_as_the_plan_is_sized_for(tmp_path):
    body = BETTER + BETTER.replace('id = "h"', 'id = "two"').replace(
        'prediction = { kind = "better", arm = "a", than = "b" }',
        'predictions = [{ kind = "better", arm = "a", than = "b" },'
        ' { kind = "better", arm = "b", than = "a" }]',
    )
    study = study_of(tmp_path, body, seeds="{ min = 3, max = 13 }")
    data = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    with sequential.designed(sequential.Design()):  # strict at 3 seeds: hardly a verdict there
        round_ = seed_round(study, "quick", data)
    one, two = round_.ahead["h"], round_.ahead["two"]
    assert [n for n, _ in one] == [3, 5, 8, 13] == [n for n, _ in two]
    chances = [e for _, e in one]
    assert chances == sorted(chances) and chances[0] < 0.01 and abs(chances[-1] - 0.8) < 0.05
    assert two[-1][1] > 1.5  # two predictions, each at a stricter level: a little under 2 x 0.8


def test_a_hypothesis_a_budget_left_without_seeds_says_so(tmp_path):
    study = study_of(tmp_path, BETTER, seeds="{ min = 3, max = 20 }")
    data = data_of(study, {"a": [0.52, 0.47]})  # b never trained
    (capped,) = evaluate(study, data, "quick", stopped_by="trials")
    assert (
        capped.seeds == 0
        and capped.stopped == "open with no seeds yet: the trial cap (--max-trials) was reached"
    )
    (fresh,) = evaluate(study, data, "quick")
    assert fresh.stopped == "open with no seeds yet: running the study trains them"
