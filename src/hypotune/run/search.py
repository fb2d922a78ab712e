"""Each tuned arm's search over its nuisance settings, run with Optuna from the coordinator.

Optuna decides (TPE, seeded per arm) and prunes (median rule on per-epoch validation
metrics); the executor trains; the coordinator records every tuning trial as an MLflow run
nested under its arm's search run. Optuna's journal lives beside the MLflow store, so an
interrupted search resumes from its finished trials. Only validation data decides: tuning
trials never evaluate the test split.
"""

from __future__ import annotations

import hashlib
import html
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypotune.config import RunConfig, flatten, toml_text
from hypotune.errors import HypotuneError
from hypotune.run.events import Epoch, Event, Failed, Finished, Started
from hypotune.run.executors import Task
from hypotune.store.tracker import Tracker
from hypotune.study.model import Study, Trial, arm_label
from hypotune.study.tuning import TUNING_SEED_BASE, TuningSpec, overrides_from_params
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Trainable

JOURNAL = "optuna.journal"


@dataclass
class SearchPlan:
    """One search: an arm's settings (shared by every hypothesis arm that resolves to them)."""

    key: str  # the tuning key
    spec: TuningSpec
    budget: int  # tuning trials to finish (complete or pruned)
    config: RunConfig  # the arm as written; the tuned settings at their base values
    arms: list[tuple[str, str]] = field(default_factory=list)  # (hypothesis id, arm name)
    seed: int | None = None  # the seed whose search this is, when searches are repeated per seed
    trainable: Trainable = field(default_factory=load)  # what trains its trials

    @property
    def label(self) -> str:
        return arm_label(self.arms[0][1] if self.arms else self.config.key()[:8], self.seed)


def plan_searches(study: Study, preset: str, seeds: dict[str, int] | None = None) -> list[SearchPlan]:
    """The searches a preset needs, one per distinct tuned arm, in file order.

    A spec with `per_seed` has one search per arm and seed, for the seeds each hypothesis has
    (`seeds`, else the preset's minimum); search N trains on seed and split TUNING_SEED_BASE + N,
    so that no final trial is evaluated on the split its setting was chosen on.
    """
    groups: dict[str, SearchPlan] = {}
    minimum = study.presets[preset].seeds.min
    for hypothesis in study.hypotheses:
        spec = hypothesis.tuning
        if spec is None or not hypothesis.tuned_in(preset):
            continue
        own = range((seeds or {}).get(hypothesis.id, minimum)) if spec.per_seed else [None]
        for seed in own:
            for arm in hypothesis.arms:
                key = study.tuning_key(hypothesis, arm, preset, seed or 0)
                config = study.arm_config(hypothesis, arm, preset, TUNING_SEED_BASE + (seed or 0))
                group = groups.setdefault(
                    key,
                    SearchPlan(key, spec, spec.budget(preset), config, seed=seed, trainable=study.trainable),
                )
                group.arms.append((hypothesis.id, arm))
    return list(groups.values())


def trials_awaiting(plans: Iterable[SearchPlan], minimum: int) -> int:
    """The final trials that searches still to finish stand for, before their best setting is
    known: the preset's minimum of seeds for a search, one seed for a search per seed."""
    return sum(minimum if plan.seed is None else 1 for plan in plans)


def open_journal(tracker: Tracker) -> Any:
    """Optuna's storage: a journal file beside the MLflow store (or under ./runs/ with a server)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    tracker.state_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(tracker.state_dir / JOURNAL)))


def sampler_seed(spec: TuningSpec, key: str) -> int:
    """Each arm's sampler gets its own seed, fixed by the spec's seed and the arm."""
    return int(hashlib.sha256(f"{spec.seed}:{key}".encode()).hexdigest()[:8], 16)


@dataclass
class OpenSearch:
    """A search in progress: its Optuna study and its trials in flight."""

    group: SearchPlan
    study: Any  # optuna.Study
    run_id: str  # the arm's search run in MLflow
    in_flight: dict[str, Any] = field(default_factory=dict)  # task key -> optuna.Trial
    trial_runs: dict[str, str] = field(default_factory=dict)  # task key -> MLflow run
    failures: int = 0
    best: dict[str, Any] | None = None  # dotted setting -> value, once finished
    error: str = ""

    def counted(self) -> int:
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return sum(t.state in states for t in self.study.get_trials(deepcopy=False))

    def needs_more(self) -> bool:
        return (
            not self.error and self.best is None and self.counted() + len(self.in_flight) < self.group.budget
        )


class NoSearches:
    """The searches of a study that tunes nothing: for driving a StudySource without a store
    (tests, and the simulated studies of bench/decisions.py)."""

    searches: list = []

    def tuned(self) -> dict:
        return {}

    def extend(self, groups: list) -> None:
        pass

    def next_task(self) -> None:
        return None

    def done(self) -> bool:
        return True


class Searches:
    """Every search of one run: hands out tuning trials, records what comes back."""

    def __init__(
        self,
        groups: list[SearchPlan],
        tracker: Tracker,
        experiment_id: str,
        namespace: str,
        scope: dict[str, str],
        parent_run_id: str | None = None,
        decide: Callable[[str, int, bool], None] = lambda key, epoch, stop: None,
        # Trials in flight per search. At 1 a search asks only after its last answer, so the same
        # study gives the same search whatever the timing; parallelism comes from the other arms.
        max_in_flight: int = 1,
    ) -> None:
        self.storage: Any = None  # Optuna's journal, created only when something is tuned
        self.tracker = tracker
        self.experiment_id = experiment_id
        self.namespace = namespace  # Optuna study names are "<namespace>:<tuning key>"
        self.scope = scope  # e.g. study and preset: tags every run of this search carries
        self.parent_run_id = parent_run_id
        self.decide = decide  # answers a tuning trial's epoch: stop (pruned) or go on
        self.max_in_flight = max_in_flight
        self.searches: list[OpenSearch] = []
        self.turn = 0  # round-robin position, so every search advances
        self.extend(groups)

    def extend(self, groups: list[SearchPlan]) -> None:
        """Open the searches not open yet (a round of seeds brings new per-seed searches)."""
        known = {search.group.key for search in self.searches}
        for group in groups:
            if group.key not in known:
                known.add(group.key)
                self.searches.append(self._open(group))

    def _open(self, group: SearchPlan) -> OpenSearch:
        import optuna
        from optuna.trial import TrialState

        if self.storage is None:
            self.storage = open_journal(self.tracker)
        spec = group.spec
        sampler = optuna.samplers.TPESampler(
            seed=sampler_seed(spec, group.key),
            constant_liar=True,  # trials in flight count as mediocre, so parallel asks spread out
            n_startup_trials=max(2, min(10, group.budget // 3)),
        )
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=max(2, group.budget // 4), n_warmup_steps=1)
            if spec.pruning
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(
            study_name=f"{self.namespace}:{group.key}",
            storage=self.storage,
            sampler=sampler,
            pruner=pruner,
            direction=spec.direction,
            load_if_exists=True,
        )
        trials = study.get_trials(deepcopy=False)
        for trial in trials:  # left RUNNING by a killed coordinator (one coordinator per store)
            if trial.state == TrialState.RUNNING:
                study.tell(trial.number, state=TrialState.FAIL)
        if not trials:
            base = self._base_params(group)
            if base:  # the arm's own setting is always one of the trials: the untuned point
                study.enqueue_trial(base)
        opened = OpenSearch(group, study, self._search_run(group))
        if opened.counted() >= group.budget:
            self._finish(opened)
        return opened

    def _base_params(self, group: SearchPlan) -> dict[str, Any]:
        params = {}
        values = flatten(group.config.to_dict())
        for dimension in group.spec.space:
            value = values[dimension.name]
            inside = (
                value in dimension.choices if dimension.choices else dimension.low <= value <= dimension.high
            )
            if not inside:
                return {}
            params[dimension.name] = value
        return params

    def _search_run(self, group: SearchPlan) -> str:
        """The arm's search run, reopened when resuming."""
        space = [d.__dict__ for d in group.spec.space]
        run_id, new = self.tracker.open_search_run(
            self.experiment_id, f"tune {group.label}", key=group.key, arms=group.arms, space=space,
            metric=group.spec.metric, budget=group.budget, seed=group.seed, scope=self.scope,
            parent_id=self.parent_run_id,
        )  # fmt: skip
        if new:  # the searched settings as their ranges; the best lands as metrics best.NAME
            searched = {
                d.name: "searched: " + d.describe().removeprefix(d.name + " ") for d in group.spec.space
            }
            self.tracker.log_config(run_id, group.config, searched=searched)
        return run_id

    # ---- the task source side -------------------------------------------------------
    def next_task(self) -> tuple[Task, Trial] | None:
        """The next tuning trial of some search that needs one, round-robin; None if none."""
        for offset in range(len(self.searches)):
            search = self.searches[(self.turn + offset) % len(self.searches)]
            if search.needs_more() and len(search.in_flight) < self.max_in_flight:
                self.turn = (self.turn + offset + 1) % len(self.searches)
                return self._ask(search)
        return None

    def _ask(self, search: OpenSearch) -> tuple[Task, Trial]:
        space = {d.name: d.distribution() for d in search.group.spec.space}
        trial = search.study.ask(space)
        key = f"{search.group.key}-{trial.number}"
        search.in_flight[key] = trial
        config = search.group.config.replace(overrides_from_params(trial.params))
        task = Task(key, config, search.group.trainable.ref, tuning=True)
        return task, Trial(config, key, list(search.group.arms), tuning=True)

    def done(self) -> bool:
        return all(s.best is not None or s.error for s in self.searches)

    def tuned(self) -> dict[str, dict[str, Any]]:
        return {s.group.key: overrides_from_params(s.best) for s in self.searches if s.best is not None}

    def errors(self) -> list[str]:
        return [f"search of {s.group.label}: {s.error}" for s in self.searches if s.error]

    def owns(self, key: str) -> bool:
        return any(key in s.in_flight for s in self.searches)

    # ---- the event side -------------------------------------------------------------
    def open(self, key: str, trial: Trial) -> str:
        """Open the MLflow run of a tuning trial as it is handed out; its id."""
        search = next(s for s in self.searches if key in s.in_flight)
        run_id = self.tracker.start_tuning_trial_run(
            self.experiment_id, trial.name, key=key, search_key=search.group.key,
            number=search.in_flight[key].number, seed=trial.config.seed, arms=search.group.arms,
            scope=self.scope, search_run_id=search.run_id,
        )  # fmt: skip
        search.trial_runs[key] = run_id
        self.tracker.log_config(run_id, trial.config)
        return run_id

    def record(self, event: Event, trial: Trial) -> None:
        key = event.key
        search = next(s for s in self.searches if key in s.in_flight)
        optuna_trial = search.in_flight[key]
        match event:
            case Started():
                pass  # its run was opened as it was handed out
            case Epoch(metrics=metrics, stored=stored):
                epoch = int(metrics["epoch"])
                if not stored:
                    self.tracker.log_metrics(search.trial_runs[key], metrics, step=epoch)
                value = metrics.get(search.group.spec.metric)
                if value is not None:
                    optuna_trial.report(value, epoch)
                epochs = search.group.trainable.epochs_of(trial.config.settings)
                last = epochs is not None and epoch >= epochs
                self.decide(key, epoch, value is not None and not last and optuna_trial.should_prune())
            case Finished(result=result):
                self._finished(search, key, result)
            case Failed(message=message):
                self._failed(search, key, message)

    def _finished(self, search: OpenSearch, key: str, result: Any) -> None:
        from optuna.trial import TrialState

        optuna_trial = search.in_flight.pop(key)
        if result.status == "pruned":
            search.study.tell(optuna_trial, state=TrialState.PRUNED)
        else:  # a diverged trial is a real answer: infinitely bad
            value = result.metrics.get(search.group.spec.metric, math.nan)
            if math.isnan(value):
                value = math.inf if search.group.spec.direction == "minimize" else -math.inf
            search.study.tell(optuna_trial, value)
        run_id = search.trial_runs.pop(key)
        self.tracker.finish(run_id, result.status, result.metrics, step=result.epochs, stored=result.stored)
        self._finish_if_complete(search)

    def _failed(self, search: OpenSearch, key: str, message: str) -> None:
        from optuna.trial import TrialState

        optuna_trial = search.in_flight.pop(key)
        search.study.tell(optuna_trial, state=TrialState.FAIL)
        self.tracker.fail(search.trial_runs.pop(key), message)  # opened when it was handed out
        search.failures += 1
        if search.failures > max(3, search.group.budget):  # failing for a reason no setting fixes
            search.error = f"{search.failures} tuning trials failed; last: {message.strip().splitlines()[-1]}"
            self.tracker.fail(search.run_id, search.error)
        self._finish_if_complete(search)

    def _finish_if_complete(self, search: OpenSearch) -> None:
        idle = search.best is None and not search.error and not search.in_flight
        if idle and search.counted() >= search.group.budget:
            self._finish(search)

    def _finish(self, search: OpenSearch) -> None:
        """Record the best setting on the arm's search run; its seeds can now be trained."""
        try:
            best = search.study.best_trial
        except ValueError:  # every trial was pruned or failed
            search.error = "no tuning trial completed"
            self.tracker.fail(search.run_id, search.error)
            return
        search.best = dict(best.params)
        states = [t.state.name.lower() for t in search.study.get_trials(deepcopy=False)]
        edges = edge_warnings(search.group.spec, search.best)
        counted = {"finished": "complete", "pruned": "pruned", "failed": "fail"}  # ours: Optuna's state
        metrics = {f"trials_{name}": float(states.count(state)) for name, state in counted.items()}
        self.tracker.finish_search_run(
            search.run_id, search.best, edges, metrics | {"best_value": float(best.value)}, step=len(states)
        )

    def interrupt(self) -> None:
        """Ctrl-C or a crash: trials in flight did not finish; the next run retries them."""
        for search in self.searches:
            if search.best is None and not search.error:
                self.tracker.fail(search.run_id, "interrupted", status="KILLED")
            # every trial run of this search still RUNNING, including one created or finishing
            # at the moment of the interrupt, which the in-flight table does not hold
            self.tracker.reap_search(
                self.experiment_id, search.group.key, self.scope, "the search was interrupted"
            )


def edge_warnings(spec: TuningSpec, best: dict[str, Any]) -> list[str]:
    """One line per setting whose best value lies at an end of its range."""
    lines = []
    for dimension in spec.space:
        side = dimension.edge(best[dimension.name]) if dimension.name in best else ""
        if side:
            end = dimension.low if side == "low" else dimension.high
            lines.append(
                f"best {dimension.name} = {best[dimension.name]:.3g} is at the {side} end of its range "
                f"({dimension.describe()}); widen the range past {end:g}"
            )
    return lines


@dataclass
class SearchResult:
    """A finished search: its best setting and every trial, as recorded in MLflow."""

    run_id: str
    metric: str
    best: dict[str, Any]  # dotted setting -> value
    best_value: float
    trials: int  # complete or pruned
    warnings: list[str]  # best values at an end of their range
    tracking_uri: str = ""

    def as_toml(self) -> str:
        """The best setting as TOML (in tables where the settings have them), to paste into a
        config or study file."""
        return toml_text(overrides_from_params(self.best))

    def _repr_html_(self) -> str:
        best = ", ".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in self.best.items()
        )
        found = f"best of {self.trials} trials: {self.metric} {self.best_value:.4f} with {best}"
        return f"<p>{html.escape(found)}</p>"


def search_result(search: OpenSearch, tracking_uri: str) -> SearchResult:
    """What a finished search found; HypotuneError when no trial of it completed."""
    if search.best is None:
        raise HypotuneError(f"search found no setting: {search.error}")
    return SearchResult(
        search.run_id,
        search.group.spec.metric,
        dict(search.best),
        search.study.best_trial.value,
        search.counted(),
        edge_warnings(search.group.spec, search.best),
        tracking_uri,
    )


class SearchSource:
    """The tuning trials of a search run on its own (`hypotune search`), as an executor's source."""

    def __init__(self, search: Searches) -> None:
        self.search = search
        self.trials: dict[str, Trial] = {}

    def next_task(self) -> Task | None:
        picked = self.search.next_task()
        if picked is None:
            return None
        task, trial = picked
        self.trials[task.key] = trial
        return task

    def exhausted(self) -> bool:
        return self.search.done()
