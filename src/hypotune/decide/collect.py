"""From the tracking store to the numbers of a study: which runs belong to which arm, and
the searches behind tuned arms. Reads the store only; never trains. `verdicts` decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hypotune import stats
from hypotune.store.tracker import Tracker
from hypotune.study.model import ArmData, Hypothesis, Study, StudyData, plan
from hypotune.study.tuning import Dimension, overrides_from_params


def collect(study: Study, preset: str, tracker: Tracker) -> StudyData:
    """Every finished trial of the study under `preset`, filed under each arm it serves."""
    data: StudyData = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    experiment_id = tracker.find_experiment(study.name)
    if experiment_id is None:
        return data
    tuned = read_tuned(tracker, experiment_id, preset)
    # A run serves the arms its tags name under this preset, and every arm the study file now
    # resolves to its key: a trial is shared by key, whichever preset or arm trained it first
    # (two presets with the same budget; a tuned arm whose best setting another arm uses as is).
    most = {h.id: study.presets[preset].seeds.max for h in study.hypotheses}  # any round's seeds
    planned = {t.key: t.arms for t in plan(study, preset, tuned, most)}
    for record in tracker.finished_trials(experiment_id):
        arms = list(record.arms) if record.preset == preset else []
        arms += planned.get(record.key, [])
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
    experiment_id = tracker.find_experiment(study.name)
    if experiment_id is None:
        return {}
    searches = []
    for run in tracker.search_runs(experiment_id, study.name, preset):
        space = [Dimension(**d | {"choices": tuple(d["choices"])}) for d in run.space]
        trials = [
            TuningTrialRecord(
                number=t.number,
                params={d.name: _param_value(d, t.params.get(d.name, "")) for d in space},
                value=t.metrics.get(run.metric, math.nan),
                status=t.status,
            )
            for t in run.trials
        ]
        searches.append(SearchRecord(run.key, run.arms, space, run.metric, run.budget, run.finished, run.best,
                                     run.edges, trials, run.seed))  # fmt: skip
    by_arm: dict[tuple[str, str], list[SearchRecord]] = {}
    for search in sorted(searches, key=lambda s: -1 if s.seed is None else s.seed):
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


def read_tuned(tracker: Tracker, experiment_id: str, preset: str) -> dict[str, dict[str, Any]]:
    """Best settings of the finished searches in the store: tuning key -> overrides."""
    return {key: overrides_from_params(best) for key, best in tracker.tuned(experiment_id, preset).items()}
