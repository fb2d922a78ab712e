"""One study's decisions under one preset: read its runs and searches from the store,
decide every prediction (decide.verdicts) and audit the result (decide.audit). The report, the
API and `hypotune analyze` all start from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypotune.decide.audit import audit
from hypotune.decide.collect import SearchRecord, collect, collect_searches
from hypotune.decide.verdicts import Verdict, evaluate, next_seeds
from hypotune.store.tracker import Tracker
from hypotune.study.model import Study, StudyData
from hypotune.study.tuning import overrides_from_params


@dataclass
class Decisions:
    """What the store says of a study under one preset: its runs by arm, its searches, the
    verdicts and the audit's findings."""

    data: StudyData
    searches: dict[tuple[str, str], list[SearchRecord]]
    verdicts: list[Verdict]
    findings: dict[str, list[str]]


def decide_study(study: Study, preset: str, tracker: Tracker) -> Decisions:
    """Read the study's runs and searches from the store, decide every prediction, audit it."""
    study = study.under(preset)
    data = collect(study, preset, tracker)
    searches = collect_searches(study, preset, tracker)
    tuned = {s.key: overrides_from_params(s.best) for own in searches.values() for s in own if s.finished}
    margins = tracker.margins(study.name, preset)
    verdicts = evaluate(study, data, preset, tracker.stopped_by(study.name, preset), margins)
    seeds = next_seeds(study, preset, data, margins) if study.presets[preset].seeds.adaptive else None
    return Decisions(data, searches, verdicts, audit(study, preset, data, tuned, seeds))
