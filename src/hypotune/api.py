"""hypotune from Python: what the command line does, as functions that return records and
pandas DataFrames, and render in a notebook.

    import hypotune
    study = hypotune.load_study("fashion_mnist_synergy")
    hypotune.run_study(study, "quick", workers=2, budget="8m")
    analysis = hypotune.analyze(study, "quick")
    analysis.verdicts            # a DataFrame, one row per prediction
    hypotune.write_report(study, "quick")

Every function takes `tracking_uri` (default: the SQLite store under ./runs/, or
MLFLOW_TRACKING_URI when set). Nothing here prints; progress comes back through callbacks.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypotune.config import RunConfig, Runtime, flatten, merge, run_config_from_dict
from hypotune.errors import ConfigError, HypotuneError
from hypotune.run.events import Epoch as Epoch  # the events `on_event` callbacks get, re-exported
from hypotune.run.events import Event
from hypotune.run.events import Failed as Failed
from hypotune.run.events import Finished as Finished
from hypotune.run.events import Started as Started
from hypotune.run.search import SearchPlan, SearchResult
from hypotune.study.tuning import DEFAULT_SEARCH_TRIALS
from hypotune.trainables.load import DEFAULT, importable, load
from hypotune.trainables.protocol import Log, Trainable

if TYPE_CHECKING:  # imported when used: `import hypotune` stays light, torch loads on demand
    import pandas

    from hypotune.decide.verdicts import Verdict
    from hypotune.report.build import Report
    from hypotune.run.executors import Executor
    from hypotune.run.runner import HypothesisStatus, StudySummary
    from hypotune.store.tracker import Tracker
    from hypotune.study.model import Study, StudyData

EventCallback = Callable[[Event, Any], None]  # (event, trial)


def _tracker(tracking_uri: str | None, existing: bool = False) -> Tracker:
    from hypotune.store.tracker import Tracker

    uri = tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI")
    return Tracker(uri, existing=existing)


def _trainable(trainable: Trainable | str | None) -> Trainable:
    """A trainable given as itself, a built-in name or a "module:attribute" reference."""
    return trainable if isinstance(trainable, Trainable) else load(trainable or DEFAULT)


def _study(study: Study | str | Path) -> Study:
    from hypotune.study.model import Study

    return study if isinstance(study, Study) else load_study(study)


def store_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI a call with this `tracking_uri` uses (the default store is made if needed)."""
    return _tracker(tracking_uri).uri


def seconds(budget: float | str | None) -> float | None:
    """A time budget as seconds: a number, or '90s', '30m', '2h'."""
    if budget is None or isinstance(budget, int | float):
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"a time budget must be a positive number of seconds, got {budget}")
        return budget
    text = str(budget).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise ConfigError(f"'{budget}' is not a duration: use e.g. 90s, 30m or 2h") from None
    return seconds(value)


def load_study(study: str | Path, trainable: Trainable | str | None = None) -> Study:
    """A study file, or a built-in study by name (`hypotune.built_in_studies()`), fully checked.
    Its settings are `trainable`'s (a Trainable, a built-in name or "module:attribute"; default:
    the one the file names, else the built-in CNN on Fashion-MNIST)."""
    from hypotune.study.file import load_study as parse

    return parse(study, _trainable(trainable) if trainable else None)


def built_in_studies() -> dict[str, Path]:
    """The studies that ship with hypotune, by name."""
    from hypotune.study.file import built_in_studies as found

    return found()


def trial_count(study: Study, preset: str) -> int:
    """The trials a study plans under a preset before any seed is added: what a progress bar
    counts first (a tuned arm's trials join once its search has chosen)."""
    from hypotune.study.model import plan

    return len(plan(study.under(preset), preset))


def validate(path: str | Path, *, trainable: Trainable | str | None = None) -> list[str]:
    """Check a study file, a runs file or a run config without running anything; lines that say
    what it is and what each preset would train. Raises on the first thing wrong with it."""
    from hypotune.config import read_toml, run_config_from_dict
    from hypotune.run.search import plan_searches, trials_awaiting
    from hypotune.study.file import parse_study, study_path

    path = study_path(path)
    raw = read_toml(path)  # once: the file may be a pipe (/dev/stdin)
    if "runs" in raw:
        from hypotune.decide.runs_file import load_runs_file

        study, spec = load_runs_file(path, raw)
        return [
            f"{path}: runs file '{study.name}' is valid ({len(study.hypotheses)} hypotheses)",
            f"  it reads experiment '{spec.experiment}', arms by {', '.join(spec.params)}",
        ]
    chosen = _trainable(trainable) if trainable else None
    if not {"hypotheses", "trainable", "name"} & set(raw):
        chosen = chosen or load()
        config = run_config_from_dict(chosen.settings, raw)
        about = chosen.describe(config.settings)
        return [f"{path}: a valid run config" + (f" ({about})" if about else "")]
    study = parse_study(raw, path, chosen)
    lines = [f"{path}: study '{study.name}' is valid"]
    for name, preset in study.presets.items():
        narrowed = study.under(name)
        searches = plan_searches(narrowed, name)
        trials = trial_count(study, name) + trials_awaiting(searches, preset.seeds.min)
        first = " at first" if preset.seeds.adaptive else ""
        line = f"  preset {name}: {trials} trials{first}, {preset.seeds.describe()}, "
        line += f"{len(narrowed.hypotheses)} hypotheses"
        if searches:
            line += f"; first {sum(g.budget for g in searches)} tuning trials ({len(searches)} arms searched)"
        lines.append(line)
    return lines


def prepare_data(data_dir: str = "", *, trainable: Trainable | str | None = None) -> str:
    """Get and check a trainable's data (default: the built-in CNN's Fashion-MNIST): where it is."""
    return _trainable(trainable).ready(Runtime(data_dir=data_dir))


def ui_experiment(target: str | None, *, tracking_uri: str | None = None) -> str | None:
    """The id of the experiment the MLflow UI opens on: the one `target` (a study file, a
    built-in study's name, a runs file or an experiment's name) records into; without a target,
    the store's only experiment with runs besides Default, or None (the list) when there are
    none or several. The store is only read."""
    tracker = _tracker(tracking_uri, existing=True)
    if target is None:
        return tracker.only_experiment_with_runs()
    name = experiment_of(target)
    found = tracker.find_experiment(name)
    if found is None:
        names = ", ".join(tracker.experiment_names())
        raise HypotuneError(f"no experiment named '{name}' in {tracker.uri} (it has: {names or 'none'}); "
                            "a study's appears once it has run")  # fmt: skip
    return found


def experiment_of(target: str) -> str:
    """The experiment a study file, a built-in study's name or a runs file records into (read
    from the file alone, without loading its trainable: that would load torch); any other word
    is an experiment's name."""
    from hypotune.config import read_toml
    from hypotune.study.file import built_in_studies, study_path

    path = Path(target)
    if not path.is_file() and target not in built_in_studies():
        if path.suffix == ".toml":
            raise HypotuneError(f"{target}: no such file")
        return target
    path = study_path(target)
    raw = read_toml(path)
    if "runs" in raw:
        runs = raw["runs"]
        experiment = runs.get("experiment") if isinstance(runs, dict) else None
        if isinstance(experiment, str) and experiment:
            return experiment
        from hypotune.decide.runs_file import load_runs_file

        return load_runs_file(path, raw)[1].experiment  # raises what is wrong with it
    name = raw.get("name")
    if isinstance(name, str) and name:
        return name
    return load_study(path).name  # raises what is wrong with it


def fmt(value: float | None) -> str:
    """A number as hypotune shows it everywhere: 4 significant digits, n/a for missing."""
    from hypotune.stats import fmt as shown

    return shown(value)


@dataclass
class StudyRun:
    """What one `run_study` call did."""

    study: str
    preset: str
    tracking_uri: str
    summary: StudySummary

    @property
    def failed(self) -> list[str]:
        return self.summary.failed

    @property
    def stopped(self) -> str:
        """Which budget ended the run with seeds still wanted, in words ('' when none did)."""
        from hypotune.decide.verdicts import STOPPED_BY

        return STOPPED_BY.get(self.summary.stopped_by, "")

    def _repr_html_(self) -> str:
        s = self.summary
        done = (
            f"{s.finished} trials trained, {s.skipped} already done, {s.diverged} diverged, "
            f"{len(s.failed)} failed"
        )
        budget = f"; {self.stopped} with verdicts open" if self.stopped else ""
        where = f"{self.study} ({self.preset}) in {self.tracking_uri}"
        return f"<p><b>{html.escape(where)}</b>: {html.escape(done + budget)}</p>"


def executor_for(
    kind: str = "local",
    *,
    workers: int | None = None,
    threads: int = 1,
    device: str = Runtime.device,
    data_dir: str = "",
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    preload: tuple[str, ...] = (),
) -> Executor:
    """Where trials run: "local" (a pool of worker processes on this machine) or "ray".
    `preload`: modules local workers import once before their first trial (a trainable's)."""
    from hypotune.run.executors import LocalExecutor, RayExecutor, check_main_is_guarded

    runtime = Runtime(threads=threads, device=device, data_dir=data_dir)
    if kind == "ray":
        return RayExecutor(runtime, address, cpus_per_trial, gpus_per_trial)
    if kind != "local":
        raise ConfigError(f"executor is '{kind}'; valid: local, ray")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise HypotuneError("workers must be at least 1")
    check_main_is_guarded()  # before anything is written: an unguarded script would leave dead runs
    return LocalExecutor(workers, runtime, preload=preload)


def run_study(
    study: Study | str | Path,
    preset: str | None = None,
    *,
    workers: int | None = None,
    executor: str | Executor = "local",
    threads: int = 1,
    device: str = Runtime.device,
    data_dir: str = "",
    tracking_uri: str | None = None,
    budget: float | str | None = None,
    max_trials: int | None = None,
    on_event: EventCallback | None = None,
    on_start: Callable[[StudySummary], None] | None = None,
) -> StudyRun:
    """Train every trial the preset plans that the store does not hold yet, adding seeds in
    rounds where verdicts are open, until they are decided, the seed maximum, the time budget
    or `max_trials` trials trained by this call (tuning trials aside). Under a budget, trials go
    where a verdict is nearest per second of training.
    Resumable: run it again after an interruption and it goes on. `executor` is "local", "ray"
    or an executor object (see `executor_for`)."""
    from hypotune.run import runner

    study = _study(study)
    preset = study.preset(preset).name
    study = study.under(preset)
    importable(study.trainable)
    if isinstance(executor, str):
        executor = executor_for(executor, workers=workers, threads=threads, device=device, data_dir=data_dir,
                                preload=study.trainable.preload)  # fmt: skip
    if max_trials is not None and (
        isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1
    ):
        raise ConfigError(f"a trial cap must be a positive whole number, got {max_trials!r}")
    # Missing or corrupt data fails before anything starts.
    study.trainable.ready(Runtime(threads=threads, device=device, data_dir=data_dir))
    tracker = _tracker(tracking_uri)
    summary = runner.run_study(study, preset, executor, tracker, on_event=on_event, on_start=on_start,
                               budget_seconds=seconds(budget), max_trials=max_trials)  # fmt: skip
    return StudyRun(study.name, preset, tracker.uri, summary)


@dataclass
class Analysis:
    """A study's verdicts and the runs behind them, read from the store (nothing is trained)."""

    study: Study
    preset: str
    tracking_uri: str
    verdict_list: list[Verdict]
    findings: dict[str, list[str]]
    data: StudyData = field(repr=False)
    _tracker: Tracker = field(repr=False)

    @property
    def counts(self) -> dict[str, int]:
        """How many predictions ended supported, refuted, equivalent, inconclusive, exploratory."""
        from hypotune.decide.verdicts import counts

        return counts(self.verdict_list)

    @property
    def verdicts(self) -> pandas.DataFrame:
        """One row per prediction: verdict, effect and corrected interval, p, seeds, family."""
        import pandas

        from hypotune.decide.verdicts import FIELDS

        return pandas.DataFrame([{name: getattr(v, name) for name in FIELDS} for v in self.verdict_list])

    @property
    def runs(self) -> pandas.DataFrame:
        """One row per arm and seed: the run behind it, its status and final metrics."""
        import pandas

        rows = []
        for (hypothesis, arm), slot in self.data.items():
            for seed, record in sorted(slot.records.items()):
                rows.append(
                    {
                        "hypothesis": hypothesis,
                        "arm": arm,
                        "seed": seed,
                        "run_id": record.run_id,
                        "key": record.key,
                        "status": record.status,
                    }
                    | record.metrics
                )
        return pandas.DataFrame(rows)

    def history(self, metrics: tuple[str, ...] = ()) -> pandas.DataFrame:
        """Per-epoch metrics of every run above (the trainable's declared metrics by default), long
        form: hypothesis, arm, seed, run_id, epoch, metric, value."""
        import pandas

        metrics = metrics or tuple(self.study.trainable.metrics)

        records = [(k, seed, r) for k, slot in self.data.items() for seed, r in sorted(slot.records.items())]
        history = self._tracker.history(sorted({r.run_id for _, _, r in records}), metrics)
        rows = [
            {"hypothesis": hypothesis, "arm": arm, "seed": seed, "run_id": record.run_id, "epoch": step,
             "metric": metric, "value": value}
            for (hypothesis, arm), seed, record in records
            for metric in metrics
            for step, value in history[record.run_id][metric]
        ]  # fmt: skip
        return pandas.DataFrame(
            rows, columns=["hypothesis", "arm", "seed", "run_id", "epoch", "metric", "value"]
        )

    def _repr_html_(self) -> str:
        from hypotune.report.build import counts_line

        columns = ["hypothesis", "prediction", "verdict", "effect", "ci_low", "ci_high", "seeds", "family"]
        table = self.verdicts[columns].to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="")
        title = html.escape(f"{self.study.name} ({self.preset}): {counts_line(self.verdict_list)}")
        return f"<p><b>{title}</b></p>{table}"


def analyze(
    study: Study | str | Path, preset: str | None = None, *, tracking_uri: str | None = None
) -> Analysis:
    """Verdicts for every prediction of the preset, with the audit's findings, from the store."""
    from hypotune.decide.decision import decide_study

    study = _study(study)
    preset = study.preset(preset).name
    study = study.under(preset)
    tracker = _tracker(tracking_uri)
    decisions = decide_study(study, preset, tracker)
    return Analysis(
        study, preset, tracker.uri, decisions.verdicts, decisions.findings, decisions.data, tracker
    )


def write_report(
    study: Study | str | Path,
    preset: str | None = None,
    out: str | Path | None = None,
    *,
    tracking_uri: str | None = None,
) -> Report:
    """report.md, a self-contained index.html, verdicts.json and verdicts.csv in `out`
    (default report/STUDY-PRESET), also kept on the study's MLflow run. Returns the Report
    (paths, verdicts, findings)."""
    from hypotune.report.build import build_report

    study = _study(study)
    preset = study.preset(preset).name
    folder = Path(out) if out is not None else Path("report") / f"{study.name}-{preset}"
    return build_report(study, preset, _tracker(tracking_uri), folder)


def analyze_runs(
    runs_file: str | Path, out: str | Path | None = None, *, tracking_uri: str | None = None
) -> Report:
    """Verdicts on runs made elsewhere: the finished runs of the MLflow experiment a runs file
    names, filed under its arms by their logged params, decided and audited as a study's are.
    Writes the same report to `out` (default report/NAME-runs) and returns it; the store is
    only read."""
    from hypotune.decide.runs_file import PRESET, decide_runs
    from hypotune.report.build import build_report

    tracker = _tracker(tracking_uri, existing=True)
    study, decisions = decide_runs(runs_file, tracker)
    folder = Path(out) if out is not None else Path("report") / f"{study.name}-{PRESET}"
    return build_report(study, PRESET, tracker, folder, decisions)


def study_status(
    study: Study | str | Path, preset: str | None = None, *, tracking_uri: str | None = None
) -> list[HypothesisStatus]:
    """Per hypothesis: trials finished, running, failed, pending and awaiting tuning."""
    from hypotune.run import runner

    study = _study(study)
    return runner.study_status(study, study.preset(preset).name, _tracker(tracking_uri))


def run_config(
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    *,
    trainable: Trainable | str | None = None,
    **settings: Any,
) -> RunConfig:
    """A run's settings: a RunConfig, a nested dict, or a TOML file, then `settings` over it as
    dotted names with `.` written `__` (model__depth=6) or nested dicts (model={"depth": 6}).
    The settings are `trainable`'s (a Trainable, a built-in name or "module:attribute"; default
    the built-in CNN, or the RunConfig's own)."""
    from hypotune.config import dotted_to_nested, read_toml

    if isinstance(config, RunConfig) and trainable is None:
        cls = type(config.settings)
    else:
        cls = _trainable(trainable).settings

    if isinstance(config, RunConfig):
        layered = config.to_dict()
    elif isinstance(config, str | Path):
        layered = read_toml(config)
    else:
        layered = dict(config or {})
    for name, value in settings.items():
        layered = merge(layered, dotted_to_nested(name.replace("__", "."), value))
    return run_config_from_dict(cls, layered)


@dataclass
class TrainStart:
    run_id: str
    about: str  # what the settings build, in the trainable's words ("123,456 parameters")
    data: str  # what data it found, in its words


@dataclass
class TrainResult:
    """One training run as recorded: its MLflow run, status, final metrics and per-epoch history."""

    run_id: str
    status: str  # "finished" or "diverged"
    metrics: dict[str, float]
    epochs: list[dict[str, float]] = field(default_factory=list, repr=False)
    tracking_uri: str = ""

    @property
    def history(self) -> pandas.DataFrame:
        import pandas

        return pandas.DataFrame(self.epochs)

    def _repr_html_(self) -> str:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items() if k.startswith(("val_", "test_")))
        return (
            f"<p><b>run {html.escape(self.run_id)}</b> ({html.escape(self.status)}): {html.escape(shown)}</p>"
        )


def train(
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    *,
    seed: int | None = None,
    threads: int | None = None,
    device: str = Runtime.device,
    data_dir: str = "",
    tracking_uri: str | None = None,
    experiment: str = "train",
    keep_weights: bool = True,
    trainable: Trainable | str | None = None,
    on_start: Callable[[TrainStart], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train one configuration (see `run_config`) on one seed, in this process, and record it as
    an MLflow run with its artifacts (unless `keep_weights` is False). A run that fails or is
    interrupted is marked FAILED or KILLED, never left RUNNING."""
    from hypotune.store.tracker import absolute_uri, interrupts_held

    chosen = _trainable(trainable)
    config = run_config(config, trainable=chosen, **settings)
    if seed is not None:
        config = config.replace({"seed": seed})
    runtime = Runtime(threads=threads or os.cpu_count() or 1, device=device, data_dir=data_dir)
    about = chosen.describe(config.settings)  # impossible settings fail here, before any I/O
    found = chosen.ready(runtime)
    tracker = _tracker(tracking_uri)
    experiment_id = tracker.experiment(experiment)
    biased = chosen.biased and flatten(config.to_dict()).get(chosen.biased) is True
    warning = "validated on the test set (course protocol)" if biased else ""
    run_id = tracker.start_train_run(experiment_id, config.key(), config.seed, warning)
    epochs: list[dict[str, float]] = []

    def logged(metrics: dict[str, float], stored: bool) -> None:
        if not stored:
            with interrupts_held():
                tracker.log_metrics(run_id, metrics, step=int(metrics["epoch"]))
        epochs.append(metrics)
        if on_epoch:
            on_epoch(metrics)

    try:
        tracker.log_config(run_id, config, runtime)
        if on_start:
            on_start(TrainStart(run_id, about, found))
        log = Log(logged, runtime, run_id=run_id, tracking_uri=absolute_uri(tracker.uri))
        result = chosen.run(config.settings, config.seed, log)
    except KeyboardInterrupt:
        tracker.fail(run_id, "interrupted", status="KILLED")
        raise
    except Exception as error:  # a bug, or the store or disk failing: never leave it RUNNING
        with contextlib.suppress(Exception):
            tracker.fail(run_id, f"{type(error).__name__}: {error}")
        raise
    try:
        with interrupts_held():
            tracker.finish_result(run_id, result, keep_artifacts=keep_weights)
    except Exception as error:  # a full disk while saving the weights: never leave it RUNNING
        with contextlib.suppress(Exception):
            tracker.fail(run_id, f"recording the result failed: {error}")
        raise
    return TrainResult(run_id, result.status, result.metrics, epochs, tracker.uri)


def plan_search(
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    *,
    space: dict[str, dict[str, Any]] | None = None,
    trials: int | None = None,
    metric: str | None = None,
    pruning: bool | None = None,
    label: str = "config",
    overrides: dict[str, Any] | None = None,
    trainable: Trainable | str | None = None,
    **settings: Any,
) -> SearchPlan:
    """One configuration's search: its settings (as `run_config` takes them; a TOML file may
    hold a [tuning] table), `overrides` (nested) over them, and the tuning arguments over the
    file's. `space` maps dotted settings to {low, high, scale} or {choices}; the default is the
    trainable's own default space."""
    from hypotune.config import read_toml
    from hypotune.study.tuning import TUNING_SEED_BASE, parse_tuning, tuning_key

    chosen = _trainable(trainable)

    if isinstance(config, str | Path):
        raw = read_toml(config)
    else:
        raw = config.to_dict() if isinstance(config, RunConfig) else dict(config or {})
    written = raw.get("tuning", {})  # the file's [tuning] table; the arguments go over it
    if not isinstance(written, dict):
        raise ConfigError(f"{config}: tuning must be a table")
    raw = {name: value for name, value in raw.items() if name != "tuning"}
    trials = trials if trials is not None else written.get("trials", DEFAULT_SEARCH_TRIALS)
    if isinstance(trials, int) and not isinstance(trials, bool) and trials < 1:
        raise ConfigError(f"a search needs at least 1 trial, got {trials}")
    default_space = {"space": dict(chosen.space)} if chosen.space else {}
    given = {"space": space or None, "metric": metric or None, "pruning": pruning}
    tuning = default_space | written | {name: value for name, value in given.items() if value is not None}
    tuning |= {"trials": {"search": trials}}
    spec = parse_tuning(tuning, "tuning", {"search"}, chosen)
    resolved = run_config(merge(raw, overrides or {}), trainable=chosen, **settings)
    chosen.describe(resolved.settings)
    for end in spec.range_ends():  # each end of each range must be a valid setting
        resolved.replace(end)
    key = tuning_key(resolved.keyed(), spec)
    first = resolved.replace({"seed": TUNING_SEED_BASE})
    return SearchPlan(key, spec, spec.budget("search"), first, [("search", label)], trainable=chosen)


def search_group(*args: Any, **kwargs: Any) -> SearchPlan:
    """The former name of `plan_search`, kept so that existing notebooks run."""
    import warnings

    warnings.warn("hypotune.search_group is now hypotune.plan_search", DeprecationWarning, stacklevel=2)
    return plan_search(*args, **kwargs)


def search(
    group: SearchPlan,
    *,
    workers: int | None = None,
    threads: int = 1,
    data_dir: str = "",
    tracking_uri: str | None = None,
    experiment: str = "search",
    on_event: EventCallback | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> SearchResult:
    """Tune one configuration's nuisance settings (see `plan_search`) with Optuna; resumable."""
    from hypotune.run import runner

    importable(group.trainable)
    executor = executor_for("local", workers=workers, threads=threads, data_dir=data_dir,
                            preload=group.trainable.preload)  # fmt: skip
    group.trainable.ready(Runtime(threads=threads, data_dir=data_dir))  # missing data fails first
    tracker = _tracker(tracking_uri)
    return runner.run_search(group, executor, tracker, experiment, on_event=on_event, on_resume=on_resume)
