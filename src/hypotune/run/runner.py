"""Run a study: plan its trials, skip those finished, execute the rest, record each in MLflow.

The coordinator is the only process that writes to the tracking store: workers send their
per-epoch metrics and results as events. Only FINISHED runs count as done; a run left
RUNNING by a killed process is marked KILLED on the next start and its trial runs again.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import fcntl
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypotune.decide.collect import read_tuned
from hypotune.run.events import ENDS, Epoch, Event, Failed, Finished, Started
from hypotune.run.executors import Executor, Task
from hypotune.run.search import Searches, SearchPlan, SearchResult, plan_searches, trials_awaiting
from hypotune.store.tracker import Tracker, absolute_uri, interrupts_held
from hypotune.study.model import Hypothesis, Study, Trial, plan

if TYPE_CHECKING:
    from hypotune.decide.verdicts import SeedRound

EventCallback = Callable[[Event, Trial], None]


@dataclass
class StudySummary:
    planned: int = 0
    skipped: int = 0  # finished in an earlier run
    finished: int = 0
    diverged: int = 0
    failed: list[str] = field(default_factory=list)  # "key: message"
    parent_run_id: str = ""
    tuning_planned: int = 0  # tuning trials the searches of this preset need in all
    tuning_finished: int = 0  # tuning trials trained in this run (complete or pruned)
    stopped_by: str = ""  # the budget that ended the run with seeds still wanted: "budget" (time), "trials"
    seeds: dict[str, int] = field(default_factory=dict)  # seeds each hypothesis was planned for
    why: dict[str, str] = field(default_factory=dict)  # why each hypothesis got its latest seeds
    given_up: dict[str, str] = field(default_factory=dict)  # hypotheses given no more seeds: why

    @property
    def budget_stopped(self) -> bool:
        return bool(self.stopped_by)


@contextlib.contextmanager
def study_lock(tracker: Tracker, name: str) -> Iterator[None]:
    """One coordinator per study and store, so a RUNNING run of it is surely stale."""
    if not tracker.local:
        yield
        return
    path = tracker.state_dir / f".{name}.lock"
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from hypotune.errors import StudyError

            raise StudyError(f"study '{name}' is already running against {tracker.uri}") from None
        yield  # the OS releases the lock when the process ends, however it ends


@dataclass
class Opening:
    """A task source whose tasks carry their MLflow run, opened as each is handed out (`open`),
    so that a trainable may log to it itself: a command trainable's script does."""

    source: Any  # a TaskSource that keeps the Trial of each task it hands out, by key
    open: Callable[[Task, Trial], str]
    tracking_uri: str

    def next_task(self) -> Task | None:
        task = self.source.next_task()
        if task is None:
            return None
        with interrupts_held():  # a Ctrl-C inside the run's creation would leave SQLite locked
            run_id = self.open(task, self.source.trials[task.key])
        return dataclasses.replace(task, run_id=run_id, tracking_uri=self.tracking_uri)

    def exhausted(self) -> bool:
        return self.source.exhausted()


class StudySource:
    """The tasks of a study run: tuning trials first, then every final trial whose arm is ready.

    An untuned arm is ready at once; a tuned arm once its search has found its best setting.
    Final trials start longest first, so that no worker is left with a long trial at the end
    while the others idle; but every trial of an earlier round of seeds goes first, so that a
    time budget never leaves a hypothesis unlooked-at while another gets more seeds. With a
    seed plan from min to max, a hypothesis whose round of seeds is done is looked at
    (`advance`), and gets its next round while a verdict is open and not given up.

    Under a budget (`deadline`, a time; `max_trials`, the final trials this run may hand out),
    trials go in the order of the predictions each is expected to decide per second of training
    (`priority`), looking ahead to the look where that rate is best, so that the budget is spent
    where a verdict is nearest: a hypothesis whose first look promises a verdict two looks on
    gets those seeds before another hypothesis is started. Before its first look a prediction
    counts as decidable as the seed plan is sized for (`SeedRound.ahead`), so a budget too small
    for every first look completes the cheapest ones per prediction instead of leaving every
    hypothesis a few trials short.
    """

    def __init__(
        self,
        study: Study,
        preset: str,
        search: Searches,
        done: set[str],
        seeds: dict[str, int] | None = None,
        advance: Callable[[], SeedRound] | None = None,
        deadline: float | None = None,
        expected: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_trials: int | None = None,
        ahead: dict[str, tuple[tuple[int, float], ...]] | None = None,
    ) -> None:
        self.study, self.preset, self.search, self.done = study, preset, search, done
        self.seeds = dict(seeds or {})  # planned seeds per hypothesis (default: the preset's min)
        self.advance, self.deadline, self.max_trials = advance, deadline, max_trials
        self.budgeted = deadline is not None or max_trials is not None
        self.started = 0  # final trials handed out by this run (what `max_trials` caps)
        self.clock = clock  # what `deadline` is read against (a simulation passes its own)
        self.trials: dict[str, Trial] = {}  # every trial handed out or already done, by key
        self.queue: list[Trial] = []
        self.in_flight: set[str] = set()  # final trials handed out and not yet finished
        self.skipped = 0  # final trials finished in an earlier run
        self.searches_seen = -1
        self.stopped_by = ""  # "budget" or "trials" once a budget ended the run with trials wanted
        self.looked: dict[str, int] = {}  # the seeds each hypothesis had when last looked at
        self.expected = dict(expected or {})  # per hypothesis: predictions its next look should decide
        # per hypothesis: for each look ahead, its seeds and the predictions expected decided by then
        self.ahead = dict(ahead or {})
        self.best_look: dict[str, tuple[int, float, float]] = {}  # seeds, decisions, seconds
        self.why: dict[str, str] = {}  # per hypothesis: why it got its latest round
        self.given_up: dict[str, str] = {}
        self.handed_out: dict[str, float] = {}  # final trials in flight: when each was handed out
        self.measured: dict[str, float] = {}  # final trials trained here: their seconds
        self.seconds: dict[tuple[str, str], list[float]] = {}  # measured seconds per (hypothesis, arm)
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        tuned = self.search.tuned()
        if len(tuned) == self.searches_seen and not force:
            return
        self.searches_seen = len(tuned)
        for trial in plan(self.study, self.preset, tuned, self.seeds):
            known = self.trials.get(trial.key)
            if known is not None:
                # A trial planned for one hypothesis's round that another's later round needs too
                # serves both: it counts for each (waiting for it, its priority).
                known.arms.extend(arm for arm in trial.arms if arm not in known.arms)
                continue
            self.trials[trial.key] = trial
            if trial.key in self.done:
                self.skipped += 1
            else:
                self.queue.append(trial)
        self.order()

    def order(self) -> None:
        looks = self.study.presets[self.preset].seeds.looks
        # Every hypothesis gets its first look before any gets a later round (a time budget then
        # ends the study with every claim looked at); within a round, the longest trials first.
        if not self.budgeted:
            self.queue.sort(key=lambda t: (bisect.bisect_right(looks, t.config.seed), -self.cost(t)))
            return
        priority = self.priority()
        self.queue.sort(key=lambda t: (-priority(t), -self.cost(t)))

    def cost(self, trial: Trial) -> float:
        return self.study.trainable.cost_of(trial.config.settings)

    def trial_seconds(self, trial: Trial) -> float:
        """A trial's expected seconds: those measured for its arms, else its cost at the measured
        seconds per unit of cost, else its cost (a relative figure, until a trial has finished)."""
        measured = [x for arm in trial.arms for x in self.seconds.get(arm, [])]
        if measured:
            return sum(measured) / len(measured)
        per_cost = [
            seconds / max(self.cost(self.trials[key]), 1e-12) for key, seconds in self.measured.items()
        ]
        return self.cost(trial) * (sum(per_cost) / len(per_cost) if per_cost else 1.0)

    def look_seconds(self) -> dict[str, float]:
        """Per hypothesis: the expected seconds of the trials its next look still waits for."""
        seconds: dict[str, float] = {}
        for trial in self.queue:
            for hypothesis in {h for h, _ in trial.arms}:
                seconds[hypothesis] = seconds.get(hypothesis, 0.0) + self.trial_seconds(trial)
        return seconds

    def seed_seconds(self) -> dict[str, float]:
        """Per hypothesis: the expected seconds of one more seed of every arm, from the final
        trials planned for it so far (their mean per seed)."""
        per_seed: dict[str, dict[int, float]] = {}
        for trial in self.trials.values():
            if trial.tuning:
                continue
            for hypothesis in {h for h, _ in trial.arms}:
                seeds = per_seed.setdefault(hypothesis, {})
                seeds[trial.config.seed] = seeds.get(trial.config.seed, 0.0) + self.trial_seconds(trial)
        return {h: sum(seeds.values()) / len(seeds) for h, seeds in per_seed.items()}

    def priority(self) -> Callable[[Trial], float]:
        """Predictions expected to be decided per second of training, summed over the hypotheses
        a queued trial serves. Each hypothesis's rate is the best over the looks ahead of it: the
        predictions expected decided by that look over the seconds of the trials its present
        round still needs and of the seeds after it. Without those chances (`ahead`), its next
        look's expected decisions over the seconds that look still needs."""
        seconds = self.look_seconds()
        per_seed = self.seed_seconds()
        first = self.study.presets[self.preset].seeds.looks[0]
        planned = self.seeds_planned()
        rate: dict[str, float] = {}
        self.best_look = {}
        for h in self.study.hypotheses:
            queued = seconds.get(h.id, 0.0)
            if queued <= 0:
                continue  # nothing of its round is waiting: no trial to order
            ahead = [(n, e) for n, e in self.ahead.get(h.id, ()) if n >= planned[h.id]]
            if not ahead:
                rate[h.id] = self.expected_decisions(h, planned[h.id] <= first) / queued
                continue
            looks = [(n, e, queued + (n - planned[h.id]) * per_seed.get(h.id, 0.0)) for n, e in ahead]
            best = max(looks, key=lambda look: look[1] / max(look[2], 1e-9))
            self.best_look[h.id] = best
            rate[h.id] = best[1] / max(best[2], 1e-9)
        return lambda trial: sum(rate.get(h, 0.0) for h in {h for h, _ in trial.arms})

    def expected_decisions(self, hypothesis: Hypothesis, first_look: bool) -> float:
        """The predictions a hypothesis's next look is expected to decide: as measured from its
        spread (`expected`), or before its first look one per confirmatory prediction."""
        value = self.expected.get(hypothesis.id, math.nan)
        if math.isfinite(value):
            return value
        return float(len(hypothesis.confirmatory)) if first_look else 0.0  # else: not estimable

    def explain(self, hypothesis: str, seeds: int) -> str:
        """Why a hypothesis got the round to `seeds` seeds, in a few words."""
        unit = " s of training" if self.measured else " cost units"
        if self.budgeted and hypothesis in self.best_look and self.best_look[hypothesis][0] > seeds:
            at, decisions, seconds = self.best_look[hypothesis]
            return (
                f"{seeds} seeds, on the way to {at}: expected to decide {decisions:.2f} open "
                f"prediction{'s' * (decisions != 1)} by {at} seeds, for about {seconds:.0f}{unit}"
            )
        expected = self.expected.get(hypothesis, math.nan)
        if not math.isfinite(expected):
            return f"{seeds} seeds: a verdict is open"
        seconds = self.look_seconds().get(hypothesis, 0.0)
        return (
            f"{seeds} seeds: the look is expected to decide {expected:.2f} open prediction"
            f"{'s' * (expected != 1)}, for about {seconds:.0f}{unit}"
        )

    @property
    def budget_stopped(self) -> bool:
        return bool(self.stopped_by)

    def spent(self) -> str:
        """Which budget is spent: "budget" (the time), "trials" (the cap), or ''."""
        if self.deadline is not None and self.clock() >= self.deadline:
            return "budget"
        if self.max_trials is not None and self.started >= self.max_trials:
            return "trials"
        return ""

    def out_of_budget(self) -> bool:
        spent = self.spent()
        if spent and (self.queue or not self.search.done()):
            self.stopped_by = spent
        return bool(spent)

    def next_task(self) -> Task | None:
        if self.out_of_budget():
            return None
        picked = self.search.next_task()
        if picked is not None:
            task, trial = picked
            self.trials[task.key] = trial
            return task
        self.refresh()
        if self.queue:
            trial = self.queue.pop(0)
            self.started += 1
            self.in_flight.add(trial.key)
            self.handed_out[trial.key] = self.clock()
            return Task(trial.key, trial.config, self.study.trainable.ref)
        return None

    def finished(self, trial: Trial) -> None:
        """A final trial ended (trained or failed): when no trial of some hypothesis is left
        waiting in its round, look at the verdicts and plan the next round where one is open."""
        self.in_flight.discard(trial.key)
        if trial.key in self.handed_out:
            elapsed = self.clock() - self.handed_out.pop(trial.key)
            self.measured[trial.key] = elapsed
            for arm in trial.arms:
                self.seconds.setdefault(arm, []).append(elapsed)
        if self.advance is None:
            return
        searching = [s for s in self.search.searches if s.best is None and not s.error]
        waiting = (
            {h for t in self.queue for h, _ in t.arms}
            | {h for key in self.in_flight for h, _ in self.trials[key].arms}
            | {h for s in searching for h, _ in s.group.arms}  # its seeds are not even planned yet
        )
        minimum = self.study.presets[self.preset].seeds.min
        planned = {h.id: self.seeds.get(h.id, minimum) for h in self.study.hypotheses}
        idle = [h for h in planned if h not in waiting]
        if all(self.looked.get(h) == planned[h] for h in idle):
            return  # every idle hypothesis was already looked at with the seeds it has
        round_ = self.advance()
        wanted = round_.seeds
        self.looked.update({h: planned[h] for h in idle})
        self.given_up.update(round_.given_up)
        self.expected.update(round_.expected)
        self.ahead.update(round_.ahead)
        if any(n > planned.get(h, minimum) for h, n in wanted.items()):
            spent = self.spent()
            if spent:  # a round is wanted, but the budget is spent
                self.stopped_by = spent
                return
            self.seeds = {h: max(n, planned.get(h, minimum)) for h, n in wanted.items()}
            self.search.extend(plan_searches(self.study, self.preset, self.seeds))  # per-seed searches
            self.refresh(force=True)
            for h, n in wanted.items():
                if n > planned.get(h, minimum):
                    self.why[h] = self.explain(h, n)
        elif self.budgeted:
            self.order()  # measured seconds and chances changed: so may the order of what is queued

    def exhausted(self) -> bool:
        if self.out_of_budget():
            return True
        self.refresh()
        return self.search.done() and not self.queue

    def seeds_planned(self) -> dict[str, int]:
        """The seeds each hypothesis is planned for now (the preset's minimum until a round adds some)."""
        minimum = self.study.presets[self.preset].seeds.min
        return {h.id: self.seeds.get(h.id, minimum) for h in self.study.hypotheses}

    def planned(self) -> int:
        """Final trials: those known now, plus a seed set for each search still running."""
        minimum = self.study.presets[self.preset].seeds.min
        running = [s for s in self.search.searches if s.best is None and not s.error]
        return len([t for t in self.trials.values() if not t.tuning]) + trials_awaiting(
            (s.group for s in running), minimum
        )


def run_study(
    study: Study,
    preset: str,
    executor: Executor,
    tracker: Tracker,
    on_event: EventCallback | None = None,
    on_start: Callable[[StudySummary], None] | None = None,
    budget_seconds: float | None = None,
    max_trials: int | None = None,
) -> StudySummary:
    """Tune the arms that declare nuisance settings, then train every trial not yet finished.

    Under a seed plan from min to max, seeds are added in rounds to the hypotheses whose verdicts
    are still open, until each is decided, reaches the maximum, or `budget_seconds` run out or
    `max_trials` final trials have been handed out (tuning trials aside).
    """
    from hypotune.decide.collect import collect
    from hypotune.decide.verdicts import margins_to_record, seed_round

    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    study = study.under(preset)
    with study_lock(tracker, study.name):  # before anything is written to the store
        experiment_id = tracker.experiment(study.name)
        # Every RUNNING run of this study is a dead process's: the lock makes this runner the only
        # one. Runs of the experiment that are not the study's (`train --experiment`) are not ours.
        tracker.reap_study(experiment_id, study.name)
        study_file = str(Path(study.path).resolve()) if study.path else ""
        parent = tracker.open_study_run(experiment_id, study.name, preset, study_file)
        scope = {"study": study.name, "preset": preset}
        adaptive = study.presets[preset].seeds.adaptive

        margins = dict(tracker.margins(study.name, preset))

        def advance() -> SeedRound:
            data = collect(study, preset, tracker)
            fixed = margins_to_record(study, preset, data, margins)
            if fixed:  # a relative margin is fixed once, at the first look, and kept with the study
                tracker.record_margins(parent, fixed)
                margins.update(fixed)
            return seed_round(study, preset, data, margins)

        first = advance() if adaptive else None
        seeds = first.seeds if first else None
        groups = plan_searches(study, preset, seeds)
        search = Searches(
            groups, tracker, experiment_id, f"{study.name}/{preset}", scope, parent, executor.decide
        )
        source = StudySource(
            study,
            preset,
            search,
            tracker.finished_trial_keys(experiment_id),
            seeds=seeds,
            advance=advance if adaptive else None,
            deadline=deadline,
            expected=first.expected if first else None,
            max_trials=max_trials,
            ahead=first.ahead if first else None,
        )
        if first:
            source.given_up.update(first.given_up)
        summary = StudySummary(planned=source.planned(), skipped=source.skipped, parent_run_id=parent,
                               seeds=source.seeds_planned())  # fmt: skip
        summary.tuning_planned = sum(s.group.budget for s in search.searches)
        summary.given_up = dict(source.given_up)
        if on_start:
            on_start(summary)
        recorder = Recorder(tracker, experiment_id, study, preset, parent, summary)

        def open_run(task: Task, trial: Trial) -> str:
            return search.open(task.key, trial) if trial.tuning else recorder.open(trial)

        try:
            for event in executor.run(Opening(source, open_run, absolute_uri(tracker.uri))):
                trial = source.trials[event.key]
                with interrupts_held():
                    if trial.tuning:
                        search.record(event, trial)
                        summary.tuning_finished += isinstance(event, Finished)
                    else:
                        recorder.record(event, trial)
                if not trial.tuning and isinstance(event, ENDS):
                    source.finished(trial)
                    summary.planned = source.planned()
                    summary.seeds = source.seeds_planned()  # a round of seeds added grows the plan
                    summary.why, summary.given_up = dict(source.why), dict(source.given_up)
                    summary.tuning_planned = sum(s.group.budget for s in search.searches)
                if on_event:
                    on_event(event, trial)
        except BaseException:  # Ctrl-C or a crash: what is in flight did not finish
            with contextlib.suppress(Exception):  # the store may be what failed; keep that error
                search.interrupt()
                tracker.fail(parent, "interrupted", status="KILLED")
            with contextlib.suppress(Exception):
                # Every trial run still RUNNING, including one created or finishing when the crash
                # struck; the lock makes every RUNNING run of this study and preset one of ours.
                tracker.reap_study(experiment_id, study.name, preset, "the study run was interrupted")
            raise
        fixed = margins_to_record(study, preset, collect(study, preset, tracker), margins)
        if fixed:  # a fixed plan's first look is its last
            tracker.record_margins(parent, fixed)
        summary.failed += search.errors()
        summary.planned, summary.skipped = source.planned(), source.skipped
        summary.stopped_by = source.stopped_by
        summary.seeds = dict(source.seeds)
        summary.why, summary.given_up = dict(source.why), dict(source.given_up)
        counts = {
            "trials_planned": summary.planned,
            "trials_finished": summary.finished + summary.skipped,
            "trials_diverged": summary.diverged,
            "trials_failed": len(summary.failed),
            "tuning_trials": summary.tuning_finished,
        }
        tracker.close_study_run(parent, source.stopped_by, counts, bool(summary.failed))
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
        return self.tracker.start_trial_run(self.experiment_id, name, self.study.name, self.preset, trial.key,
                                            trial.config.seed, trial.arms, self.parent)  # fmt: skip

    def open(self, trial: Trial) -> str:
        """Open a trial's MLflow run as it is handed out; its id."""
        self.run_ids[trial.key] = self.start(trial, trial.name)
        self.tracker.log_config(self.run_ids[trial.key], trial.config)
        return self.run_ids[trial.key]

    def record(self, event: Event, trial: Trial) -> None:
        key = event.key
        match event:
            case Started():
                pass  # its run was opened as it was handed out
            case Epoch(metrics=metrics, stored=stored):
                if not stored:
                    self.tracker.log_metrics(self.run_ids[key], metrics, step=int(metrics["epoch"]))
            case Finished(result=result):
                self.tracker.finish_result(self.run_ids[key], result)
                del self.run_ids[key]  # only now recorded: a crash in between marks it KILLED
                self.summary.finished += 1
                self.summary.diverged += result.status == "diverged"
            case Failed(message=message):
                self.tracker.fail(self.run_ids.pop(key), message)  # opened when it was handed out
                self.summary.failed.append(f"{key}: {event.last_line}")


@dataclass
class HypothesisStatus:
    id: str
    finished: int = 0
    running: int = 0
    failed: int = 0
    pending: int = 0
    tuning: int = 0  # arm x seed trials waiting for their arm's search to finish


def study_status(study: Study, preset: str, tracker: Tracker) -> list[HypothesisStatus]:
    """Per hypothesis: how many of its arm x seed trials are finished, running, failed, pending."""
    study = study.under(preset)
    experiment_id = tracker.find_experiment(study.name)
    states: dict[str, set[str]] = {}
    tuned: dict[str, dict[str, Any]] = {}
    if experiment_id is not None:
        states = tracker.trial_states(experiment_id)
        tuned = read_tuned(tracker, experiment_id, preset)
    seeds = None
    if study.presets[preset].seeds.adaptive:
        from hypotune.decide.collect import collect
        from hypotune.decide.verdicts import next_seeds

        seeds = next_seeds(
            study, preset, collect(study, preset, tracker), tracker.margins(study.name, preset)
        )
    table = {h.id: HypothesisStatus(h.id) for h in study.hypotheses}
    minimum = study.presets[preset].seeds.min
    for hypothesis in study.hypotheses:
        for arm in hypothesis.arms:
            for seed in range((seeds or {}).get(hypothesis.id, minimum)):
                search = study.tuning_key(hypothesis, arm, preset, seed)
                table[hypothesis.id].tuning += bool(search) and search not in tuned
    for trial in plan(study, preset, tuned, seeds):
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


def run_search(
    group: SearchPlan,
    executor: Executor,
    tracker: Tracker,
    experiment: str = "search",
    on_event: Callable[[Event, Trial], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> SearchResult:
    """One configuration's search on its own (`hypotune search`): the same lock, reaping and
    recording as a study's searches. HypotuneError when no trial of it completed."""
    from hypotune.run.search import SearchSource, search_result

    experiment_id = tracker.experiment(experiment)
    with study_lock(tracker, f"search-{group.key}"):
        tracker.reap_search(experiment_id, group.key)
        search = Searches([group], tracker, experiment_id, "search", {"source": "search"},
                        decide=executor.decide, max_in_flight=getattr(executor, "workers", 1))  # fmt: skip
        source = SearchSource(search)
        done = search.searches[0].counted()
        if done and on_resume:
            on_resume(done)
        opening = Opening(source, lambda task, trial: search.open(task.key, trial), absolute_uri(tracker.uri))
        try:
            for event in executor.run(opening):
                trial = source.trials[event.key]
                with interrupts_held():
                    search.record(event, trial)
                if on_event:
                    on_event(event, trial)
        except BaseException:
            search.interrupt()
            raise
    return search_result(search.searches[0], tracker.uri)
