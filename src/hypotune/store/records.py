"""What the store gives back: one record per kind of run hypotune writes (a trial, a tuning
trial, a search), decoded from MLflow's runs in store.tracker; nothing above the store sees a
tag or an MLflow entity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypotune.config import read_metric
from hypotune.store.tags import (
    ARMS,
    BEST,
    BUDGET,
    EDGE,
    KEY,
    METRIC,
    PRESET,
    SEED,
    SPACE,
    STATUS,
    TRIAL_NUMBER,
    TUNING_SEED,
    tag,
)


@dataclass
class TrialRecord:
    """A finished trial run as the store holds it."""

    run_id: str
    key: str
    seed: int
    status: str  # "finished" or "diverged"
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    start_time: int = 0
    preset: str = ""  # the preset that trained it
    arms: list[tuple[str, str]] = field(default_factory=list)  # (hypothesis, arm) it was trained for

    def tag(self, name: str) -> str | None:
        """One of hypotune's tags on the run: record.tag('code_version')."""
        return self.tags.get(tag(name))


@dataclass
class TuningRunRecord:
    number: int
    params: dict[str, str]  # dotted setting -> value as logged (text)
    metrics: dict[str, float]
    status: str  # "finished", "pruned" or "diverged"


@dataclass
class SearchRunRecord:
    """An arm's search run as the store holds it, with its finished tuning trials."""

    key: str
    arms: list[tuple[str, str]]
    space: list[dict[str, Any]]  # the dimensions as recorded
    metric: str
    budget: int
    finished: bool
    best: dict[str, Any]  # dotted setting -> value; empty until finished
    edges: list[str]  # best values at an end of their range
    seed: int | None  # the seed this search chose for, when searches are repeated per seed
    trials: list[TuningRunRecord] = field(default_factory=list)


# Decoders: an MLflow run (mlflow.entities.Run) to its record; the tracker itself reads only the
# single tags its own queries need (a trial's key, a search's best, a study run's margins).


def trial_record(run: Any) -> TrialRecord:
    """A trial run, or any finished run of an experiment: a run hypotune did not log has no key
    and seed 0 unless it logged a `seed` param."""
    tags = run.data.tags
    seed = tags.get(SEED, run.data.params.get("seed", "0"))
    return TrialRecord(
        run_id=run.info.run_id,
        key=tags.get(KEY, ""),
        seed=int(seed) if seed.lstrip("-").isdigit() else 0,
        status=tags.get(STATUS, "finished"),
        metrics=_metrics(run),
        params=dict(run.data.params),
        tags=dict(tags),
        start_time=run.info.start_time or 0,
        preset=tags.get(PRESET, ""),
        arms=_arms(tags),
    )


def search_run_record(run: Any) -> SearchRunRecord:
    """A search's parent run, without its tuning trials."""
    tags = run.data.tags
    return SearchRunRecord(
        key=tags[KEY],
        arms=_arms(tags),
        space=json.loads(tags[SPACE]),
        metric=tags.get(METRIC, "val_loss"),
        budget=int(tags.get(BUDGET, 0)),
        finished=run.info.status == "FINISHED",
        best=json.loads(tags.get(BEST, "{}")),
        edges=[e for e in tags.get(EDGE, "").split("; ") if e],
        seed=int(tags[TUNING_SEED]) if TUNING_SEED in tags else None,
    )


def tuning_run_record(run: Any) -> TuningRunRecord:
    """One finished trial of a search."""
    return TuningRunRecord(
        number=int(run.data.tags.get(TRIAL_NUMBER, 0)),
        params=dict(run.data.params),
        metrics=_metrics(run),
        status=run.data.tags.get(STATUS, "finished"),
    )


def _metrics(run: Any) -> dict[str, float]:
    return {name: read_metric(value) for name, value in run.data.metrics.items()}


def _arms(tags: dict[str, str]) -> list[tuple[str, str]]:
    return [tuple(arm) for arm in json.loads(tags.get(ARMS, "[]"))]
