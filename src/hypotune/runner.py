"""Run a study: plan its trials, skip those finished, execute the rest, record each in MLflow.

The coordinator is the only process that writes to the tracking store: workers send their
per-epoch metrics and results as events. Only FINISHED runs count as done; a run left
RUNNING by a killed process is marked KILLED on the next start and its trial runs again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypotune.executors import Event, Executor
from hypotune.study import Study, Trial, plan
from hypotune.tracking import TAG, Tracker

EventCallback = Callable[[Event, Trial], None]


@dataclass
class StudySummary:
    planned: int = 0
    skipped: int = 0  # finished in an earlier run
    finished: int = 0
    diverged: int = 0
    failed: list[str] = field(default_factory=list)  # "key: message"
    parent_run_id: str = ""


def trial_tags(study: Study, preset: str, trial: Trial) -> dict[str, str]:
    return {
        f"{TAG}key": trial.key,
        f"{TAG}study": study.name,
        f"{TAG}preset": preset,
        f"{TAG}seed": str(trial.config.seed),
        f"{TAG}hypotheses": ",".join(sorted({h for h, _ in trial.arms})),
        f"{TAG}arms": json.dumps(trial.arms),
        f"{TAG}kind": "trial",
    }


def finished_keys(tracker: Tracker, experiment_id: str) -> set[str]:
    runs = tracker.runs(experiment_id, f"attributes.status = 'FINISHED' and tags.`{TAG}kind` = 'trial'")
    return {run.data.tags.get(f"{TAG}key", "") for run in runs}


@contextlib.contextmanager
def study_lock(tracker: Tracker, name: str) -> Iterator[None]:
    """One coordinator per study and store, so a RUNNING run of it is surely stale."""
    if not tracker.local:
        yield
        return
    path = Path(tracker.uri.removeprefix("sqlite:///")).parent / f".{name}.lock"
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from hypotune.errors import StudyError

            raise StudyError(f"study '{name}' is already running against {tracker.uri}") from None
        yield  # the OS releases the lock when the process ends, however it ends


def parent_run(tracker: Tracker, experiment_id: str, study: Study, preset: str) -> str:
    """The study's parent run for this preset, reopened when resuming."""
    filter_string = f"tags.`{TAG}kind` = 'study' and tags.`{TAG}preset` = '{preset}'"
    existing = tracker.runs(experiment_id, filter_string)
    if existing:
        run_id = existing[0].info.run_id
        tracker.client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {f"{TAG}kind": "study", f"{TAG}study": study.name, f"{TAG}preset": preset}
    if study.path:
        tags[f"{TAG}study_file"] = str(Path(study.path).resolve())
    return tracker.start_run(experiment_id, f"{study.name} ({preset})", tags)


def run_study(
    study: Study,
    preset: str,
    executor: Executor,
    tracker: Tracker,
    on_event: EventCallback | None = None,
    on_start: Callable[[StudySummary], None] | None = None,
) -> StudySummary:
    """Train every trial of `study` under `preset` not already finished in the store."""
    trials = plan(study, preset)
    summary = StudySummary(planned=len(trials))
    experiment_id = tracker.experiment(study.name)
    with study_lock(tracker, study.name):
        tracker.reap_stale(experiment_id)
        done = finished_keys(tracker, experiment_id)
        pending = [t for t in trials if t.key not in done]
        summary.skipped = len(trials) - len(pending)
        summary.parent_run_id = parent = parent_run(tracker, experiment_id, study, preset)
        if on_start:
            on_start(summary)
        by_key = {t.key: t for t in pending}
        recorder = Recorder(tracker, experiment_id, study, preset, parent, summary)
        try:
            for event in executor.run([(t.key, t.config) for t in pending]):
                recorder.record(event, by_key[event[1]])
                if on_event:
                    on_event(event, by_key[event[1]])
        except BaseException:  # Ctrl-C or a crash: what is in flight did not finish
            with contextlib.suppress(Exception):  # the store may be what failed; keep that error
                for run_id in recorder.run_ids.values():
                    tracker.fail(run_id, "the study run was interrupted", status="KILLED")
                tracker.fail(parent, "interrupted", status="KILLED")
            raise
        tracker.log_metrics(
            parent,
            {
                "trials_planned": summary.planned,
                "trials_finished": summary.finished + summary.skipped,
                "trials_diverged": summary.diverged,
                "trials_failed": len(summary.failed),
            },
        )
        tracker.client.set_terminated(parent, "FAILED" if summary.failed else "FINISHED")
    return summary


@dataclass
class Recorder:
    """Writes executor events to MLflow as child runs of the study's parent run."""

    tracker: Tracker
    experiment_id: str
    study: Study
    preset: str
    parent: str
    summary: StudySummary
    run_ids: dict[str, str] = field(default_factory=dict)  # trial key -> its run, while in flight

    def start(self, trial: Trial, name: str) -> str:
        tags = trial_tags(self.study, self.preset, trial)
        return self.tracker.start_run(self.experiment_id, name, tags, self.parent)

    def record(self, event: Event, trial: Trial) -> None:
        kind, key, payload = event
        if kind == "started":
            self.run_ids[key] = self.start(trial, f"{trial.arms[0][1]} s{trial.config.seed}")
            self.tracker.log_config(self.run_ids[key], trial.config)
        elif kind == "epoch":
            self.tracker.log_metrics(self.run_ids[key], payload, step=int(payload["epoch"]))
        elif kind == "finished":
            result, weights = payload
            self.tracker.finish(self.run_ids.pop(key), result.status, result.metrics, weights)
            self.summary.finished += 1
            self.summary.diverged += result.status == "diverged"
        elif kind == "failed":
            run_id = self.run_ids.pop(key, None) or self.start(trial, trial.arms[0][1])
            self.tracker.fail(run_id, str(payload))
            self.summary.failed.append(f"{key}: {str(payload).strip().splitlines()[-1]}")


@dataclass
class HypothesisStatus:
    id: str
    finished: int = 0
    running: int = 0
    failed: int = 0
    pending: int = 0


def study_status(study: Study, preset: str, tracker: Tracker) -> list[HypothesisStatus]:
    """Per hypothesis: how many of its arm x seed trials are finished, running, failed, pending."""
    experiment = tracker.client.get_experiment_by_name(study.name)
    states: dict[str, set[str]] = {}
    if experiment is not None:
        for run in tracker.runs(experiment.experiment_id, f"tags.`{TAG}kind` = 'trial'"):
            states.setdefault(run.data.tags.get(f"{TAG}key", ""), set()).add(run.info.status)
    table = {h.id: HypothesisStatus(h.id) for h in study.hypotheses}
    for trial in plan(study, preset):
        seen = states.get(trial.key, set())
        state = (
            "finished"
            if "FINISHED" in seen
            else "running"
            if "RUNNING" in seen
            else "failed"
            if seen
            else "pending"
        )
        for hypothesis_id in {h for h, _ in trial.arms}:
            counts: Any = table[hypothesis_id]
            setattr(counts, state, getattr(counts, state) + 1)
    return list(table.values())
