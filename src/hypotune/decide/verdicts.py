"""Predictions to verdicts: every verdict is read off an interval of the effect.

Each prediction turns its arms into one number per seed, in favour of the prediction (a paired
difference, an interaction contrast, a slope per step, a ratio, a margin to a value). A
t-interval of their mean at a corrected level decides:

- **equivalent**: the whole interval lies inside +-margin (the smallest effect of interest);
- **supported**: the interval lies above zero (above the threshold of a threshold claim);
- **refuted**: the interval lies below zero;
- **inconclusive**: none of these yet.

If every interval covers its true effect, every verdict is right. The intervals of one family
(by default one hypothesis) are Bonferroni-corrected, and repeated over the looks of a seed
plan at a calibrated level (`sequential`), so that they all cover together with probability
1 - alpha however many seeds are added and whenever the loop stops. That bounds the family-wise
rate of false decisions by alpha. Exploratory predictions get a plain 95% interval and no verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hypotune import stats
from hypotune.decide import sequential
from hypotune.stats import fmt
from hypotune.study.model import Hypothesis, Prediction, Study, StudyData
from hypotune.study.predictions import KINDS, Evidence, collect_evidence, describe

DECIDED = ("supported", "refuted", "equivalent")


@dataclass
class Verdict:
    hypothesis: str
    prediction: str  # in words
    kind: str
    metric: str
    verdict: str  # one of DECIDED, "inconclusive", or "exploratory"
    effect: float  # in favour of the prediction, in metric units
    ci_low: float  # the corrected interval the verdict is read off
    ci_high: float
    p_value: float  # repeated over the looks, unadjusted for the family, two-sided, of no effect
    p_adjusted: float  # p scaled by the correction: below alpha exactly when the interval excludes it
    seeds: int
    seeds_needed: int | None
    evidence: str = ""
    test: str = ""
    effect_size: float = math.nan  # Cohen's dz of the per-seed numbers
    margin: float = math.nan  # the smallest effect of interest, resolved in metric units
    confidence: float = math.nan  # of the interval: it covers with this probability, all looks together
    family: str = ""  # which family, and its size
    correction: str = ""  # how the interval was widened for the family and the looks
    stopped: str = ""  # where the seed loop stands for this prediction
    margin_basis: str = ""  # how a relative margin was fixed ("5% of the median 0.41 at the first look")
    next_chance: float = math.nan  # open: the chance the next look decides it, if it is as it seems
    # open: the chance that each look after this one decides it by then (the first is next_chance);
    # it orders looks under a budget, and is not a column of verdicts.json or .csv
    chances: tuple[float, ...] = field(default=(), repr=False, metadata={"public": False})
    # open: the fewer of the seeds sized for the margin and for the effect seen (inf: more than any
    # plan has; nan: no spread to size from). Futility reads it.
    seeds_to_decide: float = math.nan
    given_up: bool = False  # open, and given no more seeds: it needs too many more (futility)


# What a verdict says to scripts (verdicts.json and .csv, the API's table): every field but those
# that only steer the seed loop.
FIELDS = tuple(f.name for f in dataclasses.fields(Verdict) if f.metadata.get("public", True))

Margins = Mapping[str, tuple[float, str]]  # hypothesis -> a relative margin fixed earlier, and how


def evaluate(
    study: Study,
    data: StudyData,
    preset: str,
    stopped_by: str = "",
    margins: Margins | None = None,
    existing: bool = False,
) -> list[Verdict]:
    """A verdict for every prediction of the study under `preset` (whose seed plan sets the looks).

    `margins` are relative margins recorded with the study when its first look completed
    (`margins_to_record`); a hypothesis without one has its margin fixed from the data here.
    `stopped_by`: the budget that ended the latest run with seeds wanted ("budget", "trials").
    `existing`: the runs were made elsewhere (`hypotune analyze`), so no seed can be added here.
    """
    plan = study.preset(preset).seeds
    alpha = study.statistics.alpha
    families = _families(study)
    verdicts = []
    for hypothesis in study.hypotheses:
        family, size = families[hypothesis.id]
        if margins and hypothesis.id in margins and study.margin(hypothesis) is not None:
            margin, basis = margins[hypothesis.id]
            basis += ", recorded with the study"
        else:
            margin, basis, _ = fixed_margin(study, hypothesis, data, plan.min)
        own = [
            decide(
                hypothesis, p, collect_evidence(hypothesis, p, data), margin, plan, alpha, family, size, basis
            )
            for p in hypothesis.predictions
        ]
        if not existing:
            for verdict in own:
                verdict.given_up = futile(verdict, plan, study.statistics.futility)
        stopped = _existing_reason(own) if existing else _stop_reason(own, plan, stopped_by)
        for verdict in own:
            verdict.stopped = f"decided at {verdict.seeds} seeds" if verdict.verdict in DECIDED else stopped
            if verdict.given_up:
                verdict.stopped = (
                    f"open: would need {seeds_wording(verdict.seeds_to_decide)}, more than "
                    f"{study.statistics.futility:g} x the maximum of {plan.max}, so it was given no seeds "
                    f"after {verdict.seeds} (statistics.futility)"
                )
        verdicts += own
    return verdicts


def futile(verdict: Verdict, plan: sequential.SeedPlan, futility: float) -> bool:
    """Whether an open prediction should get no more seeds: sized from the spread seen, for the
    margin and for the effect seen alike, it would need more than `futility` times the plan's
    maximum (0: never give up).

    Stopping early never makes a verdict false (the looks' coverage holds whenever they stop); it
    only gives up the little chance of deciding that is left, for seeds that can decide elsewhere.
    """
    return bool(
        futility
        and plan.adaptive
        and verdict.verdict == "inconclusive"
        and plan.min < verdict.seeds < plan.max  # a first look's few seeds say too little of the spread
        and verdict.seeds_to_decide > futility * plan.max
    )


def seeds_wording(count: float) -> str:
    """'about 33 seeds', or where no plan would do, 'more than 1000 seeds'."""
    return f"about {count:.0f} seeds" if math.isfinite(count) else f"more than {stats.MAX_SEEDS} seeds"


def _families(study: Study) -> dict[str, tuple[str, int]]:
    confirmatory = {h.id: len(h.confirmatory) for h in study.hypotheses}
    if study.statistics.family == "study":
        total = sum(confirmatory.values())
        return {h: ("the study", total) for h in confirmatory}
    return {h: (f"hypothesis {h}", count) for h, count in confirmatory.items()}


def fixed_margin(
    study: Study, hypothesis: Hypothesis, data: StudyData, first_look: int
) -> tuple[float, str, bool]:
    """The hypothesis's margin in metric units, how it was fixed, and whether that is final.

    A relative margin ("5%") is a share of the median of the hypothesis's finished, undiverged
    runs on the seeds of the first look, and of nothing later: a margin that moved with the data
    it judges (a failure score inflating the mean, one more seed) would move the verdict too.
    It is final once every arm has finished the first look's seeds.
    """
    spec = study.margin(hypothesis)
    if spec is None:
        return math.nan, "", True
    if not spec.relative:
        return spec.value, "", True
    values = [
        record.metrics.get(hypothesis.metric, math.nan)
        for arm in hypothesis.arms
        for seed, record in data[hypothesis.id, arm].records.items()
        if seed < first_look and record.status != "diverged"
    ]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, "", False
    median = float(np.median(finite))
    complete = complete_seeds(hypothesis, data) >= first_look
    when = f"the first look ({first_look} seeds)" if complete else "the first look, still incomplete"
    return spec.resolve(median), f"{spec.value * 100:.3g}% of the median {fmt(median)} at {when}", complete


def margins_to_record(
    study: Study, preset: str, data: StudyData, recorded: Margins
) -> dict[str, tuple[float, str]]:
    """The relative margins that the data has just fixed (their first look complete) and that the
    study has not recorded yet: record them with the study, and pass them to `evaluate` after."""
    first_look = study.preset(preset).seeds.min
    fixed = {}
    for hypothesis in study.hypotheses:
        spec = study.margin(hypothesis)
        if spec is None or not spec.relative or hypothesis.id in recorded:
            continue
        value, basis, final = fixed_margin(study, hypothesis, data, first_look)
        if final and math.isfinite(value):
            fixed[hypothesis.id] = (value, basis)
    return fixed


def _existing_reason(verdicts: list[Verdict]) -> str:
    """Where runs made elsewhere leave an open prediction: how many runs per arm would decide it."""
    open_ = [v for v in verdicts if v.verdict == "inconclusive"]
    if not open_:
        return "decided"
    seeds = max(v.seeds for v in open_)
    needed = max((v.seeds_needed for v in open_ if v.seeds_needed), default=None)
    more = f"about {needed} runs per arm" if needed else "more runs per arm"
    there = "the 1 run per arm there is" if seeds == 1 else f"the {seeds} runs per arm there are"
    return f"open with {there}: {more} would likely decide it (sized for the margin)"


# What each budget that can end a study run says, as an open verdict's reason.
STOPPED_BY = {"budget": "the time budget ran out", "trials": "the trial cap (--max-trials) was reached"}


def _stop_reason(verdicts: list[Verdict], plan: sequential.SeedPlan, stopped_by: str) -> str:
    confirmatory = [v for v in verdicts if v.verdict != "exploratory"]
    if all(v.verdict in DECIDED for v in confirmatory):
        return "decided"
    seeds = max((v.seeds for v in confirmatory), default=0)
    if seeds == 0 and confirmatory:  # no seed that every arm has finished: a budget came first
        reason = (
            STOPPED_BY.get(stopped_by, "a budget ran out") if stopped_by else "running the study trains them"
        )
        return f"open with no seeds yet: {reason}"
    if seeds >= plan.max:
        return f"open at the maximum of {plan.max} seeds"
    if all(v.given_up for v in confirmatory if v.verdict not in DECIDED):
        return f"open at {seeds} seeds: given up, as it would need too many (statistics.futility)"
    if stopped_by:
        return f"open at {seeds} seeds: {STOPPED_BY.get(stopped_by, 'a budget ran out')}"
    if not plan.adaptive:
        return f"open at the preset's {plan.min} seeds"
    return f"open at {seeds} of up to {plan.max} seeds: running the study again adds seeds"


def classify(
    interval: stats.Interval, margin: float, threshold: float = 0.0, equivalence: bool = True
) -> str:
    """Where an interval lies: inside +-margin, above or below the threshold, or across it."""
    if not interval.bounded:
        return "inconclusive"
    low, high = interval.low - threshold, interval.high - threshold
    # Equivalence is read off the one-sided bounds where the interval has them (TOST).
    eq_low = interval.eq_low if math.isfinite(interval.eq_low) else interval.low
    eq_high = interval.eq_high if math.isfinite(interval.eq_high) else interval.high
    if equivalence and margin > 0 and -margin < eq_low - threshold and eq_high - threshold < margin:
        return "equivalent"
    if low > 0:
        return "supported"
    if high < 0:
        return "refuted"
    return "inconclusive"


def decide(
    hypothesis: Hypothesis,
    prediction: Prediction,
    evidence: Evidence,
    margin: float,
    plan: sequential.SeedPlan,
    alpha: float,
    family: str,
    size: int,
    margin_basis: str = "",
) -> Verdict:
    looks = plan.looks
    level = alpha / max(size, 1)
    equivalence = not KINDS[prediction.kind].threshold
    verdict, interval, label = _read(prediction, evidence, margin, looks, level, alpha)
    note = evidence.note
    if interval.n >= 2 and interval.std == 0 and not interval.bounded:
        note = "; ".join(filter(None, [note, "the same number on every seed: no spread to weigh it"]))
    # The interval covers with 1 - its family level (all looks together); the p-value is the
    # repeated one (the smallest level at which some look's interval excludes the null), so
    # p_adjusted < alpha exactly when the interval the verdict is read off does.
    read_at = interval.level if math.isfinite(interval.level) else interval.alpha
    confidence = 1 - read_at
    p_adjusted = min(1.0, interval.p_value * alpha / read_at) if not prediction.exploratory else math.nan
    needed = None
    chance = to_decide = math.nan
    chances: tuple[float, ...] = ()
    if verdict == "inconclusive":
        boundary = margin if equivalence else math.nan
        needed = sequential.seeds_needed(interval.std, boundary, looks, level)
        if needed is not None:
            needed = max(needed, plan.next_look(interval.n))
        if not prediction.exploratory and not evidence.forced:
            chances = sequential.look_chances(interval, looks, level, boundary)
            chance = chances[0] if chances else math.nan
            to_decide = _seeds_to_decide(interval, boundary, looks, level)
    correction = "none (exploratory)" if prediction.exploratory else _correction(size, looks, evidence)
    result = Verdict(
        hypothesis=hypothesis.id,
        prediction=describe(prediction),
        kind=prediction.kind,
        metric=hypothesis.metric,
        verdict=verdict,
        effect=interval.mean,
        ci_low=interval.low,
        ci_high=interval.high,
        p_value=interval.p_value,
        p_adjusted=p_adjusted,
        seeds=interval.n,
        seeds_needed=needed,
        test=evidence.test,
        effect_size=interval.effect_size,
        margin=margin if equivalence else math.nan,
        confidence=confidence,
        family="" if prediction.exploratory else f"{family} ({size} prediction{'s' * (size != 1)})",
        correction=correction,
        margin_basis=margin_basis if equivalence and math.isfinite(margin) else "",
        next_chance=chance,
        chances=chances,
        seeds_to_decide=to_decide,
    )
    result.evidence = evidence_line(result, label, note, equivalence)
    return result


def _read(
    prediction: Prediction,
    evidence: Evidence,
    margin: float,
    looks: tuple[int, ...],
    level: float,
    alpha: float,
) -> tuple[str, stats.Interval, str]:
    """The verdict, the interval it is read off, and what that interval compares."""
    threshold = evidence.threshold
    if prediction.exploratory:
        return (
            "exploratory",
            stats.t_interval(list(evidence.per_seed.values()), alpha, threshold),
            evidence.label,
        )
    if evidence.rivals is not None:
        verdict, interval, rival = _decide_best(evidence.rivals, margin, looks, level)
        return evidence.forced or verdict, interval, f"{evidence.label} {rival}"
    interval = sequential.sequential_interval(evidence.per_seed, looks, level, threshold)
    verdict = classify(interval, margin, threshold, not KINDS[prediction.kind].threshold)
    if interval.n < looks[0]:
        verdict = "inconclusive"
    return evidence.forced or verdict, interval, evidence.label


def _seeds_to_decide(interval: stats.Interval, margin: float, looks: tuple[int, ...], level: float) -> float:
    """About how many seeds an open prediction needs: the fewer of those sized for the margin
    (a true effect one margin from the boundary) and those sized for the effect seen; inf when
    neither would do within any plan, nan without a spread to size from."""
    if not (interval.std > 0 and math.isfinite(interval.mean)):
        return math.nan
    sizes = [abs(interval.mean)] + ([margin] if margin > 0 else [])
    counts = [sequential.seeds_needed(interval.std, size, looks, level) for size in sizes]
    return float(min(math.inf if n is None else n for n in counts))


def _correction(size: int, looks: tuple[int, ...], evidence: Evidence) -> str:
    parts = [f"Bonferroni over {size}" if size > 1 else "one prediction in its family"]
    if evidence.rivals is not None and len(evidence.rivals) > 1:
        parts.append(f"refuting or tying over {len(evidence.rivals)} rivals")
    if len(looks) > 1:
        parts.append(f"repeated over looks at {', '.join(map(str, looks))} seeds")
    return "; ".join(parts)


def _decide_best(
    rivals: dict[str, dict[int, float]], margin: float, looks: tuple[int, ...], level: float
) -> tuple[str, stats.Interval, str]:
    """Best of several: supported when it beats every rival (each at the prediction's level: an
    intersection-union test needs no correction), refuted or tied when some rival beats or ties
    it (those intervals corrected over the rivals, as any one of them suffices)."""
    strict = {r: sequential.sequential_interval(v, looks, level / len(rivals)) for r, v in rivals.items()}
    loose = {r: sequential.sequential_interval(v, looks, level) for r, v in rivals.items()}
    states = {r: classify(i, margin) for r, i in strict.items()}
    if any(i.n < looks[0] for i in loose.values()):
        closest = min(loose, key=lambda r: loose[r].mean if math.isfinite(loose[r].mean) else math.inf)
        return "inconclusive", loose[closest], closest
    for outcome in ("refuted", "equivalent"):
        hits = [r for r, state in states.items() if state == outcome]
        if hits:
            rival = min(hits, key=lambda r: strict[r].mean)
            return outcome, strict[rival], rival
    closest = min(loose, key=lambda r: loose[r].mean)
    if all(classify(i, margin) == "supported" for i in loose.values()):
        weakest = max(loose, key=lambda r: loose[r].p_value)  # an intersection-union test's p
        return "supported", loose[weakest], weakest
    return "inconclusive", loose[closest], closest


def evidence_line(verdict: Verdict, label: str, note: str, equivalence: bool) -> str:
    if verdict.seeds == 0:
        return "no finished trials yet"
    what = KINDS[verdict.kind].effect.format(metric=verdict.metric)
    interval = ""
    effect, low, high = stats.fmt_interval(verdict.effect, verdict.ci_low, verdict.ci_high)
    if math.isfinite(verdict.ci_low) and math.isfinite(verdict.ci_high):
        interval = f" ({verdict.confidence:.1%} CI {low} to {high})"
    text = f"{label}: {what} {effect}{interval}, {verdict.test} over {verdict.seeds} seeds"
    if math.isfinite(verdict.effect_size):
        text += f", dz = {fmt(verdict.effect_size, 3)}"
    if not math.isnan(verdict.p_value):
        text += f", p = {verdict.p_value:.3g}"
        if not math.isnan(verdict.p_adjusted):
            text += f" (adjusted {fmt(verdict.p_adjusted, 3)})"
    if equivalence:
        text += f", margin {fmt(verdict.margin)}" if math.isfinite(verdict.margin) else ", no margin set"
        if verdict.margin_basis:
            text += f" ({verdict.margin_basis})"
    if note:
        text += f"; {note}"
    if verdict.verdict == "equivalent" and verdict.ci_low > 0:
        text += "; a real difference, but smaller than the margin"
    if verdict.verdict == "inconclusive":
        if verdict.seeds < 2:
            text += "; a verdict needs at least 2 seeds"
        elif verdict.seeds_needed:
            text += f"; about {verdict.seeds_needed} seeds would likely decide it (sized for the margin)"
        elif equivalence and not math.isfinite(verdict.margin):
            text += "; set a margin to let it decide a null and to size the seeds it needs"
    return text


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many verdicts of each kind, in a fixed order."""
    order = (*DECIDED, "inconclusive", "exploratory")
    return {name: sum(v.verdict == name for v in verdicts) for name in order}


@dataclass
class SeedRound:
    """What the seed loop does next, per hypothesis, and why."""

    seeds: dict[str, int]  # how many seeds each hypothesis should have
    # Hypotheses given their next look: the predictions that look is expected to decide (the sum of
    # each open prediction's chance, if its effect and spread are what they seem). It orders the
    # looks under a budget; nan where a chance cannot be told yet (a first look).
    expected: dict[str, float]
    given_up: dict[str, str]  # hypotheses with open predictions given no more seeds: why
    # Hypotheses with seeds to come: for each look still ahead, its seeds and the predictions
    # expected to be decided by then (open ones' chances summed; before the first look, each
    # prediction as decidable as the seed plan is sized for, `sequential.prior_chances`).
    ahead: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)


def next_seeds(study: Study, preset: str, data: StudyData, margins: Margins | None = None) -> dict[str, int]:
    """How many seeds each hypothesis should have (`seed_round`)."""
    return seed_round(study, preset, data, margins).seeds


def seed_round(study: Study, preset: str, data: StudyData, margins: Margins | None = None) -> SeedRound:
    """Each hypothesis's seeds: its current look until that is complete, then the next look while
    a confirmatory prediction is open and not given up (`futile`), up to the preset's maximum."""
    plan = study.presets[preset].seeds
    verdicts = evaluate(study, data, preset, margins=margins)
    live = [v for v in verdicts if v.verdict == "inconclusive" and not v.given_up]
    round_ = SeedRound({}, {}, {})
    for hypothesis in study.hypotheses:
        complete = complete_seeds(hypothesis, data)
        current = max((n for n in plan.looks if n <= complete), default=0)
        own = [v for v in live if v.hypothesis == hypothesis.id]
        if current == 0:
            round_.seeds[hypothesis.id] = plan.looks[0]
            round_.expected[hypothesis.id] = math.nan
            count = len(hypothesis.confirmatory)
            prior = sequential.prior_chances(plan.looks, study.statistics.alpha / max(count, 1))
            round_.ahead[hypothesis.id] = tuple((n, count * p) for n, p in prior)
        elif own and current < plan.max:
            round_.seeds[hypothesis.id] = plan.next_look(current)
            chances = [v.next_chance for v in own]
            round_.expected[hypothesis.id] = sum(chances) if all(map(math.isfinite, chances)) else math.nan
            later = [n for n in plan.looks if n > current]
            if all(len(v.chances) == len(later) for v in own):
                by_look = [sum(v.chances[k] for v in own) for k in range(len(later))]
                round_.ahead[hypothesis.id] = tuple(zip(later, by_look, strict=True))
        else:
            round_.seeds[hypothesis.id] = current
            gave_up = [v for v in verdicts if v.hypothesis == hypothesis.id and v.given_up]
            if gave_up and not own:
                needed = min(v.seeds_to_decide for v in gave_up)
                round_.given_up[hypothesis.id] = f"would need {seeds_wording(needed)}"
    return round_


def complete_seeds(hypothesis: Hypothesis, data: StudyData) -> int:
    """The number n such that every arm has finished seeds 0 .. n-1."""
    n = 0
    while all(n in data[hypothesis.id, arm].records for arm in hypothesis.arms):
        n += 1
    return n
