"""The kinds of prediction, one registry entry each: the fields a study gives it, how a study
file's entry is checked, how it reads in words, and its evidence (one number per seed in favour
of the prediction, from the runs of its arms). A new kind is one entry here and one test."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hypotune import stats
from hypotune.errors import ConfigError
from hypotune.study import Hypothesis, Prediction

if TYPE_CHECKING:
    from hypotune.analysis import StudyData


@dataclass
class Evidence:
    """A prediction's per-seed numbers, before any interval."""

    per_seed: dict[int, float]  # in favour of the prediction
    label: str  # what the numbers measure, for the evidence line
    test: str
    threshold: float = 0.0  # the interval must clear this (efficiency: the performance share)
    forced: str = ""  # a verdict settled without a test (a parameter budget broken)
    note: str = ""
    rivals: dict[str, dict[int, float]] | None = None  # best: advantage over each rival


def failure_score(hypothesis: Hypothesis, data: StudyData) -> float:
    """What a diverged run scores: chance level, or the worst finished run if that is worse."""
    finished = [
        r.metrics.get(hypothesis.metric, math.nan)
        for arm in hypothesis.arms
        for r in data[hypothesis.id, arm].records.values()
        if r.status != "diverged"
    ]
    finite = [v for v in finished if math.isfinite(v)]
    scores = [v for v in (hypothesis.failure, *finite) if math.isfinite(v)] or [math.nan]
    return max(scores) if hypothesis.lower_is_better else min(scores)


def raw_values(hypothesis: Hypothesis, data: StudyData, arm: str) -> dict[int, float]:
    """The metric per seed, a diverged run at its failure score; a missing metric is nan."""
    failed = None
    values = {}
    for seed, record in data[hypothesis.id, arm].records.items():
        value = record.metrics.get(hypothesis.metric, math.nan)
        if record.status == "diverged" or math.isinf(value):
            failed = failure_score(hypothesis, data) if failed is None else failed
            value = failed
        values[seed] = value
    return values


def _goodness(hypothesis: Hypothesis, data: StudyData, arm: str) -> dict[int, float]:
    sign = -1.0 if hypothesis.lower_is_better else 1.0
    return {s: sign * v for s, v in raw_values(hypothesis, data, arm).items()}


def _better(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    a, b = _goodness(hypothesis, data, prediction.arm), _goodness(hypothesis, data, prediction.than)
    return Evidence(stats.paired_differences(a, b), f"{prediction.arm} vs {prediction.than}", "paired t")


def _best(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    rivals = [a for a in (prediction.among or hypothesis.arms) if a != prediction.arm]
    own = _goodness(hypothesis, data, prediction.arm)
    advantages = {r: stats.paired_differences(own, _goodness(hypothesis, data, r)) for r in rivals}
    return Evidence({}, f"{prediction.arm} vs", "paired t per rival", rivals=advantages)


def cells(hypothesis: Hypothesis) -> dict[tuple[int, int], str]:
    """The arm in each cell of a 2x2 factorial: (level of the first factor, of the second)."""
    first, second = hypothesis.factors
    short = [f.name.rsplit(".", 1)[-1] for f in (first, second)]
    return {
        (i, j): f"{short[0]}={label_a}, {short[1]}={label_b}"
        for i, (label_a, _) in enumerate(first.levels)
        for j, (label_b, _) in enumerate(second.levels)
    }


def _interaction(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    values = {cell: _goodness(hypothesis, data, arm) for cell, arm in cells(hypothesis).items()}
    contrasts = stats.interaction_contrasts(values)
    if prediction.kind == "diminishing":
        contrasts = {s: -v for s, v in contrasts.items()}
    what = "together minus the sum of single effects"
    if prediction.kind == "diminishing":
        what = "the sum of single effects minus together"
    return Evidence(contrasts, f"interaction ({what})", "one-sample t of the per-seed contrast")


def _efficiency(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    arm = raw_values(hypothesis, data, prediction.arm)
    reference = raw_values(hypothesis, data, prediction.reference)
    # performance ratio on each seed: arm over reference, inverted for losses
    shares = stats.ratios(reference, arm) if hypothesis.lower_is_better else stats.ratios(arm, reference)
    label = (
        f"{prediction.arm} / {prediction.reference} performance ratio (needs >= {prediction.performance:g})"
    )
    evidence = Evidence(shares, label, "one-sample t of the per-seed ratio", threshold=prediction.performance)
    params = [
        next((r.metrics.get("param_count") for r in data[hypothesis.id, name].records.values()), None)
        for name in (prediction.arm, prediction.reference)
    ]
    if params[0] and params[1]:
        share = params[0] / params[1]
        evidence.note = (
            f"parameters {params[0]:,.0f} vs {params[1]:,.0f} ({share:.1%}, limit {prediction.params:.0%})"
        )
        evidence.forced = "refuted" if share > prediction.params else ""
    return evidence


def _reaches(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    sign = -1.0 if hypothesis.lower_is_better else 1.0
    values = raw_values(hypothesis, data, prediction.arm)
    margins = {s: sign * (v - prediction.value) for s, v in values.items()}
    return Evidence(margins, f"{prediction.arm} against {prediction.value:g}", "one-sample t")


def trend_steps(hypothesis: Hypothesis, prediction: Prediction) -> list[str]:
    """The factor's arms in order of their values (file order for named levels): the steps of a trend."""
    factor = next(f for f in hypothesis.factors if f.name == prediction.factor)
    short = factor.name.rsplit(".", 1)[-1]
    labels = [label for label, _ in factor.levels]
    with contextlib.suppress(ValueError):  # named levels keep the order of the file
        labels.sort(key=float)
    return [f"{short}={label}" for label in labels]


def _trend(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    # The slope against the rank of each level, not its raw value: a factor whose values grow
    # geometrically (1e-4, 1e-3, 1e-2) then has even steps, as on its natural scale.
    arms = trend_steps(hypothesis, prediction)
    per_level = [raw_values(hypothesis, data, arm) for arm in arms]
    per_seed = stats.slopes(range(len(arms)), per_level)
    if prediction.direction == "decreasing":
        per_seed = {s: -v for s, v in per_seed.items()}
    means = [stats.summarize(list(v.values())).mean for v in per_level]
    rising = all(b >= a for a, b in zip(means, means[1:], strict=False))
    falling = all(b <= a for a, b in zip(means, means[1:], strict=False))
    monotone = rising if prediction.direction == "increasing" else falling
    short = prediction.factor.rsplit(".", 1)[-1]
    note = "arm means " + ("are" if monotone else "are not") + f" monotone in {short}"
    label = f"slope of {hypothesis.metric} over the steps of {short} ({' < '.join(arms)})"
    return Evidence(per_seed, label, "one-sample t of the per-seed slope", note=note)


def _describe_interaction(prediction: Prediction) -> str:
    if prediction.kind == "synergy":
        return "combined effect exceeds the sum"
    return "combined effect falls short of the sum"


def _check_interaction(prediction: Prediction, hypothesis: Hypothesis, where: str) -> None:
    shape = "x".join(str(len(f.levels)) for f in hypothesis.factors) or f"{len(hypothesis.arms)} arms"
    if len(hypothesis.factors) != 2 or shape != "2x2":
        raise ConfigError(
            f"{where}: '{prediction.kind}' needs a 2x2 factorial (two factors of two levels), got {shape}"
        )


def _check_trend(prediction: Prediction, hypothesis: Hypothesis, where: str) -> None:
    names = [f.name for f in hypothesis.factors]
    if prediction.factor not in names:
        raise ConfigError(f"{where}.factor '{prediction.factor}' is not a factor here; factors: {names}")
    if len(hypothesis.factors) != 1:
        raise ConfigError(f"{where}: 'trend' needs a one-factor sweep")
    if prediction.direction not in ("increasing", "decreasing"):
        raise ConfigError(f"{where}.direction is {prediction.direction!r}; valid: increasing, decreasing")


def _no_check(prediction: Prediction, hypothesis: Hypothesis, where: str) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """One kind of prediction."""

    fields: dict[str, bool]  # the fields a study file gives it: name -> required
    describe: Callable[[Prediction], str]  # the prediction in words
    evidence: Callable[[Hypothesis, Prediction, StudyData], Evidence]
    effect: str = "improvement in {metric}"  # what its effect measures, in the evidence line
    threshold: bool = False  # a claim about a level (a share, a value): never "equivalent"
    check: Callable[[Prediction, Hypothesis, str], None] = _no_check  # beyond the fields' own checks


KINDS: dict[str, Kind] = {
    "better": Kind(
        {"arm": True, "than": True}, lambda p: f"{p.arm} beats {p.than}", _better,
    ),
    "best": Kind(
        {"arm": True, "among": False},
        lambda p: f"{p.arm} is best" + (f" of {', '.join(p.among)}" if p.among else ""),
        _best,
    ),
    "synergy": Kind({}, _describe_interaction, _interaction, check=_check_interaction),
    "diminishing": Kind({}, _describe_interaction, _interaction, check=_check_interaction),
    "efficiency": Kind(
        {"arm": True, "reference": True, "performance": True, "params": True},
        lambda p: f"{p.arm} reaches {p.performance:.0%} of {p.reference} "
        f"with <= {p.params:.0%} of its parameters",
        _efficiency,
        effect="mean",
        threshold=True,
    ),
    "trend": Kind(
        {"factor": True, "direction": True},
        lambda p: f"{p.direction} with {p.factor}",
        _trend,
        effect="change in {metric} per step, the predicted way",
        check=_check_trend,
    ),
    "reaches": Kind(
        {"arm": True, "value": True},
        lambda p: f"{p.arm} reaches {p.value:g}",
        _reaches,
        effect="margin in {metric}",
        threshold=True,
    ),
}  # fmt: skip


def describe(prediction: Prediction) -> str:
    """The prediction in words: "wide beats narrow"."""
    return KINDS[prediction.kind].describe(prediction)


def collect_evidence(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    return KINDS[prediction.kind].evidence(hypothesis, prediction, data)
