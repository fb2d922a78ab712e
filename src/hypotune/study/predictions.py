"""The kinds of prediction, one registry entry each: the fields a study gives it, how a study
file's entry is checked, how it reads in words, and its evidence (one number per seed in favour
of the prediction, from the runs of its arms). A new kind is one entry here and one test."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hypotune import stats
from hypotune.errors import ConfigError
from hypotune.study.model import Factor, Hypothesis, Prediction

if TYPE_CHECKING:
    from hypotune.study.model import StudyData


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


def _diverged(hypothesis: Hypothesis, data: StudyData, arm: str) -> set[int]:
    return {
        seed
        for seed, record in data[hypothesis.id, arm].records.items()
        if record.status == "diverged" or math.isinf(record.metrics.get(hypothesis.metric, math.nan))
    }


def informative(
    hypothesis: Hypothesis, data: StudyData, arms: list[str], per_seed: dict[int, float]
) -> dict[int, float]:
    """`per_seed` less the seeds on which every one of `arms` diverged: all of them at the
    failure score compare as exactly zero, which says nothing about the difference and would
    pull the interval towards "no difference"."""
    failed = set.intersection(*(_diverged(hypothesis, data, arm) for arm in arms))
    return {s: v for s, v in per_seed.items() if s not in failed}


def _goodness(hypothesis: Hypothesis, data: StudyData, arm: str) -> dict[int, float]:
    sign = -1.0 if hypothesis.lower_is_better else 1.0
    return {s: sign * v for s, v in raw_values(hypothesis, data, arm).items()}


def _better(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    a, b = _goodness(hypothesis, data, prediction.arm), _goodness(hypothesis, data, prediction.than)
    differences = informative(
        hypothesis, data, [prediction.arm, prediction.than], stats.paired_differences(a, b)
    )
    return Evidence(differences, f"{prediction.arm} vs {prediction.than}", "paired t")


def _best(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    rivals = [a for a in (prediction.among or hypothesis.arms) if a != prediction.arm]
    own = _goodness(hypothesis, data, prediction.arm)
    advantages = {
        r: informative(
            hypothesis,
            data,
            [prediction.arm, r],
            stats.paired_differences(own, _goodness(hypothesis, data, r)),
        )
        for r in rivals
    }
    return Evidence({}, f"{prediction.arm} vs", "paired t per rival", rivals=advantages)


def ordered_levels(factor: Factor) -> list[str]:
    """A factor's level labels in the one order every kind reads them in: by value where every
    level is a number, else as the file lists them. The first is the baseline (of a synergy's
    cells), and a trend's steps go from each level to the next."""
    labels = [label for label, _ in factor.levels]
    with contextlib.suppress(ValueError):
        labels.sort(key=float)
    return labels


def cells(hypothesis: Hypothesis) -> dict[tuple[int, int], str]:
    """The arm in each cell of a 2x2 factorial: (level of the first factor, of the second), with
    level 0 the baseline of `ordered_levels`."""
    first, second = hypothesis.factors
    short = [f.name.rsplit(".", 1)[-1] for f in (first, second)]
    return {
        (i, j): f"{short[0]}={label_a}, {short[1]}={label_b}"
        for i, label_a in enumerate(ordered_levels(first))
        for j, label_b in enumerate(ordered_levels(second))
    }


def _interaction(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    values = {cell: _goodness(hypothesis, data, arm) for cell, arm in cells(hypothesis).items()}
    contrasts = informative(
        hypothesis, data, list(cells(hypothesis).values()), stats.interaction_contrasts(values)
    )
    if prediction.kind == "diminishing":
        contrasts = {s: -v for s, v in contrasts.items()}
    what = "together minus the sum of single effects"
    if prediction.kind == "diminishing":
        what = "the sum of single effects minus together"
    baseline = cells(hypothesis)[0, 0]
    return Evidence(
        contrasts, f"interaction ({what}; baseline {baseline})", "one-sample t of the per-seed contrast"
    )


def _efficiency(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    # "arm reaches k of the reference's performance" is arm >= k * reference for an accuracy and
    # reference >= k * arm for a loss: per seed, the excess of one over the other, in the
    # metric's units. Its mean tests the claim without the bias of a mean of ratios, and its
    # spread sizes the effect on the same scale.
    k = prediction.performance
    arm = raw_values(hypothesis, data, prediction.arm)
    reference = raw_values(hypothesis, data, prediction.reference)
    seeds = sorted(set(arm) & set(reference))
    if hypothesis.lower_is_better:
        excess = {s: reference[s] - k * arm[s] for s in seeds}
        label = f"{prediction.reference} - {k:g} x {prediction.arm}"
    else:
        excess = {s: arm[s] - k * reference[s] for s in seeds}
        label = f"{prediction.arm} - {k:g} x {prediction.reference}"
    excess = informative(hypothesis, data, [prediction.arm, prediction.reference], excess)
    ratios = stats.ratios(reference, arm) if hypothesis.lower_is_better else stats.ratios(arm, reference)
    finite = [v for v in ratios.values() if math.isfinite(v)]
    notes = (
        [f"performance ratio {sum(finite) / len(finite):.3f} on average (needs >= {k:g})"] if finite else []
    )
    evidence = Evidence(excess, f"{label} ({hypothesis.metric})", "one-sample t of the per-seed excess")
    params = [
        next((r.metrics.get(hypothesis.size) for r in data[hypothesis.id, name].records.values()), None)
        if hypothesis.size
        else None
        for name in (prediction.arm, prediction.reference)
    ]
    if params[0] and params[1]:
        share = params[0] / params[1]
        notes.append(
            f"parameters {params[0]:,.0f} vs {params[1]:,.0f} ({share:.1%}, limit {prediction.params:.0%})"
        )
        evidence.forced = "refuted" if share > prediction.params else ""
    evidence.note = "; ".join(notes)
    return evidence


def _reaches(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    sign = -1.0 if hypothesis.lower_is_better else 1.0
    values = raw_values(hypothesis, data, prediction.arm)
    margins = {s: sign * (v - prediction.value) for s, v in values.items()}
    return Evidence(margins, f"{prediction.arm} against {prediction.value:g}", "one-sample t")


def trend_steps(hypothesis: Hypothesis, prediction: Prediction) -> list[str]:
    """The factor's arms in `ordered_levels` order: the steps of a trend."""
    factor = next(f for f in hypothesis.factors if f.name == prediction.factor)
    short = factor.name.rsplit(".", 1)[-1]
    return [f"{short}={label}" for label in ordered_levels(factor)]


def _trend(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> Evidence:
    # A trend is every step going the predicted way: each step from one level to the next is a
    # series of its own, and the claim is decided like `best` (supported when every step is,
    # refuted or flat when some step is). A least-squares slope would give a middle level no
    # weight, and call a V shape a trend.
    arms = trend_steps(hypothesis, prediction)
    sign = 1.0 if prediction.direction == "increasing" else -1.0
    per_level = [raw_values(hypothesis, data, arm) for arm in arms]
    steps = {}
    for (low, low_values), (high, high_values) in itertools.pairwise(zip(arms, per_level, strict=True)):
        change = {
            s: sign * (high_values[s] - low_values[s]) for s in sorted(set(low_values) & set(high_values))
        }
        steps[f"{low} to {high.split('=', 1)[-1]}"] = informative(hypothesis, data, [low, high], change)
    means = [stats.summarize(list(v.values())).mean for v in per_level]
    rising = all(b >= a for a, b in itertools.pairwise(means))
    falling = all(b <= a for a, b in itertools.pairwise(means))
    monotone = rising if prediction.direction == "increasing" else falling
    short = prediction.factor.rsplit(".", 1)[-1]
    note = "arm means " + ("are" if monotone else "are not") + f" monotone in {short}"
    return Evidence({}, "the step", "paired t per step", note=note, rivals=steps)


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
