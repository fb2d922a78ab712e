"""From the tracking store to verdicts: which runs belong to which arm, and what they show.

Reads the store only; never trains. Effects are reported as improvements in the metric's own
units: positive means the arm the prediction favours did better.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hypotune import stats
from hypotune.search import read_tuned
from hypotune.study import Hypothesis, Prediction, Study, plan
from hypotune.tracking import TAG, Tracker, read_metric
from hypotune.tuning import Dimension


@dataclass
class TrialRecord:
    run_id: str
    key: str
    seed: int
    status: str  # "finished" or "diverged"
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    start_time: int = 0


@dataclass
class ArmData:
    hypothesis: str
    arm: str
    records: dict[int, TrialRecord] = field(default_factory=dict)  # by seed

    def values(self, metric: str) -> dict[int, float]:
        return {seed: r.metrics.get(metric, math.nan) for seed, r in self.records.items()}


StudyData = dict[tuple[str, str], ArmData]


def collect(study: Study, preset: str, tracker: Tracker) -> StudyData:
    """Every finished trial of the study under `preset`, filed under each arm it serves."""
    data: StudyData = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    experiment = tracker.client.get_experiment_by_name(study.name)
    if experiment is None:
        return data
    tuned = read_tuned(tracker, experiment.experiment_id, preset)
    # A run serves the arms its tags name under this preset, and every arm the study file now
    # resolves to its key: a trial is shared by key, whichever preset or arm trained it first
    # (two presets with the same budget; a tuned arm whose best setting another arm uses as is).
    planned = {t.key: t.arms for t in plan(study, preset, tuned)}
    query = f"attributes.status = 'FINISHED' and tags.`{TAG}kind` = 'trial'"
    for run in tracker.runs(experiment.experiment_id, query):
        tags = run.data.tags
        own = tags.get(f"{TAG}preset") == preset
        arms = [tuple(a) for a in json.loads(tags.get(f"{TAG}arms", "[]"))] if own else []
        arms += planned.get(tags.get(f"{TAG}key", ""), [])
        if not arms:
            continue
        record = TrialRecord(
            run_id=run.info.run_id,
            key=tags.get(f"{TAG}key", ""),
            seed=int(tags.get(f"{TAG}seed", run.data.params.get("seed", 0))),
            status=tags.get(f"{TAG}status", "finished"),
            metrics={k: read_metric(v) for k, v in run.data.metrics.items()},
            params=dict(run.data.params),
            tags=dict(tags),
            start_time=run.info.start_time or 0,
        )
        for hypothesis_id, arm in dict.fromkeys(arms):
            slot = data.get((hypothesis_id, arm))
            if slot is None:
                continue
            current = slot.records.get(record.seed)
            # Prefer a run of the study file's current definition, then the newest.
            rank = (record.key in planned, record.start_time)
            if current is None or rank > (current.key in planned, current.start_time):
                slot.records[record.seed] = record
    return data


@dataclass
class Verdict:
    hypothesis: str
    prediction: str  # in words
    kind: str
    metric: str
    verdict: str  # "supported", "refuted" or "inconclusive"
    effect: float  # improvement in favour of the prediction, in metric units (ratio for efficiency)
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    seeds: int
    seeds_needed: int | None
    evidence: str = ""
    test: str = ""


@dataclass
class _Raw:
    """A prediction's evidence before the multiple-testing correction."""

    estimate: stats.Estimate
    label: str  # what the effect measures, for the evidence line
    forced: str = ""  # a verdict settled without a test (e.g. a parameter budget broken)
    note: str = ""
    scale: float = 1.0  # +1: positive estimate supports; -1: negative supports
    threshold: float = 0.0  # the effect must exceed this to support the prediction


def goodness(values: dict[int, float], lower_is_better: bool) -> dict[int, float]:
    return {s: -v if lower_is_better else v for s, v in values.items()}


def evaluate(study: Study, data: StudyData, alpha: float = stats.ALPHA) -> list[Verdict]:
    """A verdict for every prediction of the study, Holm-corrected across all of them."""
    raws: list[tuple[Hypothesis, Prediction, _Raw]] = []
    for hypothesis in study.hypotheses:
        for prediction in hypothesis.predictions:
            raws.append((hypothesis, prediction, raw_evidence(hypothesis, prediction, data)))
    adjusted = stats.holm([r.estimate.p_value if not r.forced else math.nan for _, _, r in raws])
    return [decide(h, p, r, p_adj, alpha) for (h, p, r), p_adj in zip(raws, adjusted, strict=True)]


def raw_evidence(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> _Raw:
    lower = hypothesis.lower_is_better

    def arm_values(arm: str) -> dict[int, float]:
        return goodness(data[hypothesis.id, arm].values(hypothesis.metric), lower)

    kind = prediction.kind
    if kind == "better":
        return _Raw(
            stats.paired(arm_values(prediction.arm), arm_values(prediction.than)),
            f"{prediction.arm} vs {prediction.than}",
        )
    if kind == "best":
        rivals = [a for a in (prediction.among or hypothesis.arms) if a != prediction.arm]
        comparisons = {rival: stats.paired(arm_values(prediction.arm), arm_values(rival)) for rival in rivals}
        against = {r: c for r, c in comparisons.items() if c.mean < 0}
        if against:  # the strongest rival that did better
            rival = min(against, key=lambda r: (against[r].p_value, against[r].mean))
        else:  # every rival did worse: the claim stands or falls with the closest one
            rival = max(comparisons, key=lambda r: (comparisons[r].p_value, -comparisons[r].mean))
        return _Raw(comparisons[rival], f"{prediction.arm} vs {rival}")
    if kind in ("synergy", "diminishing"):
        cells = {}
        first, second = hypothesis.factors
        for i, (label_a, _) in enumerate(first.levels):
            for j, (label_b, _) in enumerate(second.levels):
                arm = f"{first.name.rsplit('.', 1)[-1]}={label_a}, {second.name.rsplit('.', 1)[-1]}={label_b}"
                cells[i, j] = arm_values(arm)
        return _Raw(
            stats.interaction(cells),
            "interaction (together minus the sum of single effects)",
            scale=1.0 if kind == "synergy" else -1.0,
        )
    if kind == "efficiency":
        return efficiency_evidence(hypothesis, prediction, data)
    if kind == "reaches":
        values = data[hypothesis.id, prediction.arm].values(hypothesis.metric)
        margins = [v - prediction.value for v in values.values()]
        return _Raw(
            stats.estimate(margins),
            f"{prediction.arm} against {prediction.value:g}",
            scale=-1.0 if lower else 1.0,
        )
    return trend_evidence(hypothesis, prediction, data)


def efficiency_evidence(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> _Raw:
    arm, reference = data[hypothesis.id, prediction.arm], data[hypothesis.id, prediction.reference]
    a_values, b_values = arm.values(hypothesis.metric), reference.values(hypothesis.metric)
    seeds = sorted(set(a_values) & set(b_values))
    # performance ratio on each seed: arm over reference, inverted for losses
    ratios = [
        (b_values[s] / a_values[s]) if hypothesis.lower_is_better else (a_values[s] / b_values[s])
        for s in seeds
        if a_values[s] and b_values[s]
    ]
    estimate = stats.estimate(ratios, null=prediction.performance)
    params_a = next((r.metrics.get("param_count") for r in arm.records.values()), None)
    params_b = next((r.metrics.get("param_count") for r in reference.records.values()), None)
    label = (
        f"{prediction.arm} / {prediction.reference} performance ratio (needs >= {prediction.performance:g})"
    )
    if params_a and params_b:
        share = params_a / params_b
        note = f"parameters {params_a:,.0f} vs {params_b:,.0f} ({share:.1%}, limit {prediction.params:.0%})"
        forced = "refuted" if share > prediction.params else ""
        return _Raw(estimate, label, forced=forced, note=note, threshold=prediction.performance)
    return _Raw(estimate, label, threshold=prediction.performance)


def trend_evidence(hypothesis: Hypothesis, prediction: Prediction, data: StudyData) -> _Raw:
    factor = next(f for f in hypothesis.factors if f.name == prediction.factor)
    short = factor.name.rsplit(".", 1)[-1]
    arms = [f"{short}={label}" for label, _ in factor.levels]
    try:
        levels = [float(label) for label, _ in factor.levels]
    except ValueError:
        levels = list(range(len(arms)))  # named levels: their order in the file
    per_level = [data[hypothesis.id, arm].values(hypothesis.metric) for arm in arms]
    estimate = stats.slope(levels, per_level)
    means = [stats.summarize(list(v.values())).mean for v in per_level]
    rising = all(b >= a for a, b in zip(means, means[1:], strict=False))
    falling = all(b <= a for a, b in zip(means, means[1:], strict=False))
    monotone = rising if prediction.direction == "increasing" else falling
    scale = 1.0 if prediction.direction == "increasing" else -1.0
    note = "arm means " + ("are" if monotone else "are not") + f" monotone in {short}"
    raw = _Raw(estimate, f"slope of {hypothesis.metric} per unit of {short}", note=note, scale=scale)
    if not monotone and estimate.mean * scale > 0:
        raw.forced = "inconclusive"  # the slope agrees but the means do not move monotonically
    return raw


def decide(
    hypothesis: Hypothesis, prediction: Prediction, raw: _Raw, p_adjusted: float, alpha: float
) -> Verdict:
    estimate = raw.estimate
    sign = raw.scale
    effect, low, high = estimate.mean * sign, estimate.ci_low * sign, estimate.ci_high * sign
    if sign < 0:
        low, high = high, low
    needed = None
    if raw.forced:
        verdict = raw.forced
    elif estimate.n < 2 or math.isnan(p_adjusted):
        verdict = "inconclusive"
    elif p_adjusted < alpha:
        verdict = "supported" if effect > raw.threshold else "refuted"
    else:
        verdict = "inconclusive"
    if verdict == "inconclusive":
        needed = stats.seeds_needed(estimate.effect_size)
    evidence = _evidence_line(hypothesis, prediction, raw, effect, low, high, p_adjusted, verdict, needed)
    return Verdict(
        hypothesis.id,
        prediction.describe(),
        prediction.kind,
        hypothesis.metric,
        verdict,
        effect,
        low,
        high,
        estimate.p_value,
        p_adjusted,
        estimate.n,
        needed,
        evidence,
        estimate.test,
    )


def _evidence_line(
    hypothesis: Hypothesis,
    prediction: Prediction,
    raw: _Raw,
    effect: float,
    low: float,
    high: float,
    p_adjusted: float,
    verdict: str,
    needed: int | None,
) -> str:
    estimate = raw.estimate
    if estimate.n == 0:
        return "no finished trials yet"
    what = {"efficiency": "mean", "reaches": f"margin in {hypothesis.metric}"}.get(
        prediction.kind, f"improvement in {hypothesis.metric}"
    )
    ci = f" (95% CI {_num(low)} to {_num(high)})" if math.isfinite(low) and math.isfinite(high) else ""
    text = f"{raw.label}: {what} {_num(effect)}{ci}, {estimate.test} over {estimate.n} seeds"
    if not math.isnan(estimate.p_value):
        text += f", p = {estimate.p_value:.3g}, Holm p = {_num(p_adjusted, 3)}"
    if raw.note:
        text += f"; {raw.note}"
    if verdict == "inconclusive" and not raw.forced:
        if estimate.n < 2:
            text += "; a test needs at least 2 seeds"
        elif needed:
            text += f"; about {needed} seeds would likely decide it"
        else:
            text += "; no measurable effect: more seeds are unlikely to decide it"
    return text


def _num(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def arm_summaries(
    hypothesis: Hypothesis, data: StudyData, metric: str | None = None
) -> dict[str, stats.Summary]:
    metric = metric or hypothesis.metric
    return {
        arm: stats.summarize(list(data[hypothesis.id, arm].values(metric).values()))
        for arm in hypothesis.arms
    }


@dataclass
class TuningTrialRecord:
    number: int
    params: dict[str, Any]  # dotted setting -> value, for the tuned settings
    value: float  # the search metric: final, or at the epoch it was pruned
    status: str  # "finished", "pruned" or "diverged"


@dataclass
class SearchRecord:
    """One arm's search as the store holds it."""

    key: str
    arms: list[tuple[str, str]]
    space: list[Dimension]
    metric: str
    budget: int
    finished: bool
    best: dict[str, Any]  # dotted setting -> value; empty until finished
    edges: list[str]  # best values at an end of their range
    trials: list[TuningTrialRecord] = field(default_factory=list)

    def best_trial(self) -> TuningTrialRecord | None:
        return next((t for t in self.trials if self.best and t.params == self.best), None)


def collect_searches(study: Study, preset: str, tracker: Tracker) -> dict[tuple[str, str], SearchRecord]:
    """The search behind every tuned arm, by (hypothesis id, arm)."""
    experiment = tracker.client.get_experiment_by_name(study.name)
    if experiment is None:
        return {}
    preset_filter = f"tags.`{TAG}preset` = '{preset}' and tags.`{TAG}study` = '{study.name}'"
    searches: dict[str, SearchRecord] = {}
    space_tag = f"{TAG}space"
    for run in tracker.runs(experiment.experiment_id, f"tags.`{TAG}kind` = 'search' and {preset_filter}"):
        tags = run.data.tags
        searches[tags[f"{TAG}key"]] = SearchRecord(
            key=tags[f"{TAG}key"],
            arms=[tuple(a) for a in json.loads(tags.get(f"{TAG}arms", "[]"))],
            space=[Dimension(**d | {"choices": tuple(d["choices"])}) for d in json.loads(tags[space_tag])],
            metric=tags.get(f"{TAG}metric", "val_loss"),
            budget=int(tags.get(f"{TAG}budget", 0)),
            finished=run.info.status == "FINISHED",
            best=json.loads(tags.get(f"{TAG}best", "{}")),
            edges=[e for e in tags.get(f"{TAG}edge", "").split("; ") if e],
        )
    query = f"tags.`{TAG}kind` = 'tuning_trial' and {preset_filter} and attributes.status = 'FINISHED'"
    for run in tracker.runs(experiment.experiment_id, query):
        search = searches.get(run.data.tags.get(f"{TAG}tuning_key", ""))
        if search is None:
            continue
        params = {d.name: _param_value(d, run.data.params.get(d.name, "")) for d in search.space}
        search.trials.append(
            TuningTrialRecord(
                number=int(run.data.tags.get(f"{TAG}trial_number", 0)),
                params=params,
                value=read_metric(run.data.metrics.get(search.metric, math.nan)),
                status=run.data.tags.get(f"{TAG}status", "finished"),
            )
        )
    by_arm = {}
    for search in searches.values():
        search.trials.sort(key=lambda t: t.number)
        for arm in search.arms:
            by_arm[arm] = search
    return by_arm


def _param_value(dimension: Dimension, text: str) -> Any:
    if dimension.choices:
        return next((c for c in dimension.choices if str(c) == text), text)
    try:
        return int(text) if dimension.integer else float(text)
    except ValueError:
        return math.nan
