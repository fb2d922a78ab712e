"""From the tracking store to the numbers of a study: which runs belong to which arm, and
the searches behind tuned arms. Reads the store only; never trains. `verdicts` decides.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hypotune import stats
from hypotune.searches import read_tuned
from hypotune.study import Hypothesis, Study, plan
from hypotune.tracking import STOPPED_TAG, TAG, Tracker, read_metric, tag_filter
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
    most = {h.id: study.presets[preset].seeds.max for h in study.hypotheses}  # any round's seeds
    planned = {t.key: t.arms for t in plan(study, preset, tuned, most)}
    query = tag_filter({f"{TAG}kind": "trial"}, status="FINISHED")
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


def arm_summaries(
    hypothesis: Hypothesis, data: StudyData, metric: str | None = None
) -> dict[str, stats.Summary]:
    metric = metric or hypothesis.metric
    return {
        arm: stats.summarize(list(data[hypothesis.id, arm].values(metric).values()))
        for arm in hypothesis.arms
    }


def stopped_by_budget(tracker: Tracker, study: Study, preset: str) -> bool:
    """Whether the last run of this preset stopped adding seeds because its time budget ran out."""
    experiment = tracker.client.get_experiment_by_name(study.name)
    if experiment is None:
        return False
    query = tag_filter({f"{TAG}kind": "study", f"{TAG}preset": preset})
    runs = tracker.runs(experiment.experiment_id, query)
    return any(run.data.tags.get(STOPPED_TAG) == "budget" for run in runs)


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
    seed: int | None = None  # the seed this search chose for, when searches are repeated per seed

    def best_trial(self) -> TuningTrialRecord | None:
        return next((t for t in self.trials if self.best and t.params == self.best), None)


def collect_searches(
    study: Study, preset: str, tracker: Tracker
) -> dict[tuple[str, str], list[SearchRecord]]:
    """The searches behind every tuned arm, by (hypothesis id, arm): one, or one per seed."""
    experiment = tracker.client.get_experiment_by_name(study.name)
    if experiment is None:
        return {}
    ours = {f"{TAG}preset": preset, f"{TAG}study": study.name}
    searches: dict[str, SearchRecord] = {}
    space_tag = f"{TAG}space"
    for run in tracker.runs(experiment.experiment_id, tag_filter({f"{TAG}kind": "search"} | ours)):
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
            seed=int(tags[f"{TAG}tuning_seed"]) if f"{TAG}tuning_seed" in tags else None,
        )
    query = tag_filter({f"{TAG}kind": "tuning_trial"} | ours, status="FINISHED")
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
    by_arm: dict[tuple[str, str], list[SearchRecord]] = {}
    for search in sorted(searches.values(), key=lambda s: -1 if s.seed is None else s.seed):
        search.trials.sort(key=lambda t: t.number)
        for arm in search.arms:
            by_arm.setdefault(arm, []).append(search)
    return by_arm


def _param_value(dimension: Dimension, text: str) -> Any:
    if dimension.choices:
        return next((c for c in dimension.choices if str(c) == text), text)
    try:
        return int(text) if dimension.integer else float(text)
    except ValueError:
        return math.nan
