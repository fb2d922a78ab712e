"""The tracker: the only module that talks to MLflow (runs, params, per-epoch metrics,
results, artifacts, filters and read-back).

`Tracker` writes and reads back what hypotune recorded as records (store.records): trial runs,
search runs and their tuning trials, a study's run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hypotune.config import RunConfig, Runtime, flatten, read_metric, to_toml
from hypotune.errors import TrackingError
from hypotune.store.records import (
    SearchRunRecord,
    TrialRecord,
    search_run_record,
    trial_record,
    tuning_run_record,
)
from hypotune.store.tags import (
    ARMS,
    BEST,
    BEST_SETTING_PREFIX,
    BUDGET,
    CODE_VERSION,
    EDGE,
    ERROR,
    HYPOTHESES,
    KEY,
    KIND,
    KIND_SEARCH,
    KIND_STUDY,
    KIND_TRAIN,
    KIND_TRIAL,
    KIND_TUNING_TRIAL,
    MARGIN_PREFIX,
    METRIC,
    PRESET,
    SEED,
    SPACE,
    STATUS,
    STOPPED,
    STUDY,
    STUDY_FILE,
    TRIAL_NUMBER,
    TUNING_KEY,
    TUNING_SEED,
    WARNING,
    tag,
)
from hypotune.trainables.protocol import Result, artifact_parts

STORE_DIR = Path("runs")


def default_uri(store_dir: Path = STORE_DIR) -> str:
    return f"sqlite:///{(store_dir / 'mlflow.db').resolve()}"


def absolute_uri(uri: str) -> str:
    """The URI with a SQLite store's path made absolute: it is handed to processes (a command
    trainable's script) that may run in another folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    __version__ = importlib.metadata.version("hypotune")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}"


def flat_params(config: RunConfig, runtime: Runtime | None = None) -> dict[str, str]:
    """Every resolved setting as a param by its dotted name ('model.depth')."""
    params = {"seed": str(config.seed)}
    for name, value in flatten(config.to_dict()).items():
        params[name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if runtime:
        params |= {"runtime.threads": str(runtime.threads), "runtime.device": runtime.device}
    return params


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered, if not with a health page: reachable
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"cannot reach the tracking server {uri}: {reason}") from None


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Run a block of store writes whole: a Ctrl-C that arrives inside takes effect at its end.

    Ctrl-C raised inside a SQLite write can leave the transaction open and the database locked
    for the rest of the process; then not even the interrupted runs could be marked KILLED.
    """
    # Only the main thread may set handlers; one not set from Python reads as None: leave it be.
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # now handled as it would have been


STALE = "process ended before the run finished"  # why a RUNNING run left by a dead process is KILLED


def tag_filter(tags: dict[str, str], status: str = "") -> str:
    """An MLflow filter matching runs that carry every one of `tags` (and `status`, if given).

    Every filter hypotune sends is built here. MLflow's filter syntax has no reliable escape
    for a quote inside a value, so the names that reach a filter (study, preset) are restricted
    to letters, digits, '_', '-' and '.' when a study is read, and a value that could still
    break out of its quotes is refused here rather than sent.
    """
    clauses = [f"attributes.status = '{status}'"] if status else []
    for name, value in tags.items():
        if any(c in value for c in "'\"\\`"):
            raise ValueError(f"a store filter cannot quote {value!r}")
        clauses.append(f"tags.`{name}` = '{value}'")
    return " and ".join(clauses)


def check_writable(database: Path) -> None:
    """Fail at once, in one line, on a store this process cannot write: MLflow would retry a
    read-only SQLite file for about two minutes before failing."""
    folder = database.parent
    if database.exists() and not os.access(database, os.W_OK):
        raise TrackingError(
            f"the store {database} is read-only: give write access or use another tracking URI"
        )
    try:  # SQLite also writes a journal beside the file: the folder must take new files
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise TrackingError(
            f"cannot write in the store folder {folder}/ ({error.strerror}): give write access or "
            "use another tracking URI"
        ) from None


class Tracker:
    """Writes to one MLflow store: the embedded SQLite one under ./runs/, or a server."""

    def __init__(self, uri: str | None = None, store_dir: Path = STORE_DIR, existing: bool = False) -> None:
        """`existing`: only open a store that is there (a reader's): a SQLite file that is not is
        an error, where opening it would create an empty store."""
        from mlflow.tracking import MlflowClient

        # MLflow configures its loggers on import; its schema-migration chatter is noise here.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # It logs a traceback for any exception inside a DB session (Ctrl-C included) and then
        # re-raises it; what it re-raises reaches the CLI, which prints one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        # SQLAlchemy likewise logs "Error closing cursor" with a traceback when Ctrl-C lands
        # while a query's rows are being read; the interrupt itself still propagates.
        logging.getLogger("sqlalchemy").setLevel(logging.CRITICAL)

        self.local = uri is None or uri.startswith("sqlite:")
        database = Path(uri.removeprefix("sqlite:///")) if uri else store_dir / "mlflow.db"
        if existing and self.local and not database.is_file():
            raise TrackingError(
                f"no MLflow store at {database}: use the tracking URI of one (sqlite:///PATH)"
            )
        if uri is None:
            try:
                store_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise TrackingError(
                    f"cannot create the store folder {store_dir}/: {error.strerror}"
                ) from None
            uri = default_uri(store_dir)
        if self.local:
            check_writable(database.resolve())
        self.uri = uri
        # The coordinator's own files (study locks, tuning journals) live beside a local store;
        # with a server they stay on the coordinator's machine, under ./runs/.
        self.state_dir = Path(uri.removeprefix("sqlite:///")).parent if self.local else store_dir
        self.artifact_root = (store_dir / "artifacts").resolve().as_uri() if self.local else None
        if uri.startswith(("http://", "https://")):
            check_reachable(uri)
        self.last_logged: dict[str, dict[str, float]] = {}  # per run: latest value of each metric
        try:
            with self._store_lock():
                self.client = MlflowClient(tracking_uri=uri)
                if self.local:
                    self.client.search_experiments(max_results=1)  # opens the store: creates, migrates
        except Exception as error:  # MLflow raises many kinds for a bad URI
            raise TrackingError(f"cannot open tracking store {uri}: {error}") from None

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """A local store is created and migrated under a file lock: two first-ever starts at once
        would otherwise race in MLflow's schema migration ("expected to match one row")."""
        if not self.local:
            yield
            return
        import fcntl

        with (self.state_dir / ".store.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def experiment(self, name: str) -> str:
        """The id of the named experiment, created on first use."""
        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            location = f"{self.artifact_root}/{name}" if self.artifact_root else None
            return self.client.create_experiment(name, artifact_location=location)
        except Exception as error:
            # Two processes creating the same experiment at once: the one that lost finds it.
            with contextlib.suppress(Exception):
                found = self.client.get_experiment_by_name(name)
                if found is not None:
                    return found.experiment_id
            raise TrackingError(f"tracking store {self.uri}: {error}") from None

    def start_run(
        self, experiment_id: str, name: str, tags: dict[str, str], parent_id: str | None = None
    ) -> str:
        tags = {**tags, CODE_VERSION: code_version()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def log_config(
        self,
        run_id: str,
        config: RunConfig,
        runtime: Runtime | None = None,
        searched: dict[str, str] | None = None,
    ) -> None:
        """The config as params; a `searched` setting (a search run's) is logged as the range it is
        searched over, not the value the file gives it, which no trial of the search trained at."""
        from mlflow.entities import Param

        params = [Param(k, (searched or {}).get(k, v)) for k, v in flat_params(config, runtime).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(run_id, params=params[start : start + 100])
        self.client.log_text(run_id, to_toml(config), "config.toml")

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Log a batch of metrics at `step`, skipping values identical to the latest logged."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        last = self.last_logged.setdefault(run_id, {})
        fresh = {k: float(v) for k, v in metrics.items() if k != "epoch" and last.get(k) != float(v)}
        if fresh:
            self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in fresh.items()])
            last.update(fresh)

    def finish_result(self, run_id: str, result: Result, keep_artifacts: bool = True) -> None:
        """Record how a trial ended, as its trainable returned it (see `finish`)."""
        artifacts = result.artifacts if keep_artifacts else {}
        self.finish(
            run_id, result.status, result.metrics, artifacts, result.tags, result.epochs, result.stored
        )

    def finish(
        self,
        run_id: str,
        status: str,
        metrics: dict[str, float],
        artifacts: dict[str, bytes] | None = None,
        ran_with: dict[str, str] | None = None,
        step: int | None = None,
        stored: bool = False,
    ) -> None:
        """Record the final result; only then is the run FINISHED and the trial done.

        `artifacts` are files to keep with the run, by name (the built-in trainable keeps its
        weights as "model.pt", loadable with `torch.load(..., weights_only=True)`). `ran_with`
        (threads, device, precision) becomes tags: outside the trial key, but the audit flags a
        comparison whose runs differ in it. `step` is the epochs it trained. `stored`: the
        metrics are in the run already (a command logged them), so they are not logged twice.
        """
        if not stored:  # at the last epoch's step: MLflow shows a metric's value at its highest step
            self.log_metrics(run_id, metrics, step=step or 0)
        if artifacts:
            with tempfile.TemporaryDirectory() as folder:
                for name, content in artifacts.items():
                    path = Path(folder, *artifact_parts(name))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                self.client.log_artifacts(run_id, folder)
        from mlflow.entities import RunTag

        tags = {STATUS: status} | {tag(name): value for name, value in (ran_with or {}).items()}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, "FINISHED")
        self.last_logged.pop(run_id, None)

    def log_report(self, study: str, preset: str, folder: Path) -> str | None:
        """Keep a report folder as the `report` artifact of the study's run for this preset, when
        that run exists (a study run made it); the run id, or None."""
        experiment = self.client.get_experiment_by_name(study)
        if experiment is None:
            return None
        query = tag_filter({KIND: KIND_STUDY, PRESET: preset})
        runs = self.runs(experiment.experiment_id, query)
        if not runs:
            return None
        run_id = runs[0].info.run_id
        self.client.log_artifacts(run_id, str(folder), artifact_path="report")
        return run_id

    # ---- what hypotune records, by kind of run -----------------------------------------
    def find_experiment(self, name: str) -> str | None:
        """The id of the named experiment, or None: reading never creates one."""
        found = self.client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id

    def experiment_names(self) -> list[str]:
        """The names of the store's experiments, besides MLflow's Default."""
        return [e.name for e in self.client.search_experiments() if e.name != "Default"]

    def only_experiment_with_runs(self) -> str | None:
        """The id of the one experiment with runs besides Default; None when none or several."""
        with_runs = []
        for experiment in self.client.search_experiments():
            ident = experiment.experiment_id
            if experiment.name != "Default" and self.client.search_runs([ident], max_results=1):
                with_runs.append(ident)
                if len(with_runs) > 1:
                    return None
        return with_runs[0] if with_runs else None

    def open_study_run(self, experiment_id: str, study: str, preset: str, study_file: str = "") -> str:
        """The study's run for this preset (the parent of its trial runs), reopened when resuming."""
        existing = self.runs(experiment_id, tag_filter({KIND: KIND_STUDY, PRESET: preset}))
        if existing:
            run = existing[0]
            self.client.update_run(run.info.run_id, status="RUNNING")
            for stale in (ERROR, STATUS):  # from an interrupted run; this one goes on
                if stale in run.data.tags:
                    self.client.delete_tag(run.info.run_id, stale)
            return run.info.run_id
        tags = {KIND: KIND_STUDY, STUDY: study, PRESET: preset}
        if study_file:
            tags[STUDY_FILE] = study_file
        return self.start_run(experiment_id, f"{study} ({preset})", tags)

    def close_study_run(self, run_id: str, stopped_by: str, metrics: dict[str, float], failed: bool) -> None:
        """End a study's run; `stopped_by` names the budget that ended it with seeds still wanted
        ("budget": the time, "trials": the trial cap), or is ''."""
        self.client.set_tag(run_id, STOPPED, stopped_by)
        self.log_metrics(run_id, metrics)
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def stopped_by(self, study: str, preset: str) -> str:
        """Which budget stopped the latest run of this preset that a budget stopped: "budget" (its
        time budget ran out), "trials" (its trial cap), or '' when none did."""
        experiment_id = self.find_experiment(study)
        if experiment_id is None:
            return ""
        runs = self.runs(experiment_id, tag_filter({KIND: KIND_STUDY, PRESET: preset}))
        stopped = [run for run in runs if run.data.tags.get(STOPPED) in ("budget", "trials")]
        latest = max(stopped, key=lambda run: run.info.start_time or 0, default=None)
        return latest.data.tags[STOPPED] if latest else ""

    def record_margins(self, run_id: str, margins: dict[str, tuple[float, str]]) -> None:
        """Record relative margins with the study's run, once each: a margin fixed at the first
        look is the one every later verdict of the study reads."""
        for hypothesis, (value, basis) in margins.items():
            margin = json.dumps({"value": value, "basis": basis})
            self.client.set_tag(run_id, MARGIN_PREFIX + hypothesis, margin)

    def margins(self, study: str, preset: str) -> dict[str, tuple[float, str]]:
        """The margins recorded with the study's run for this preset, by hypothesis."""
        experiment_id = self.find_experiment(study)
        if experiment_id is None:
            return {}
        found: dict[str, tuple[float, str]] = {}
        for run in self.runs(experiment_id, tag_filter({KIND: KIND_STUDY, PRESET: preset})):
            for name, text in run.data.tags.items():
                if name.startswith(MARGIN_PREFIX):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(text)
                        found.setdefault(
                            name[len(MARGIN_PREFIX) :], (float(entry["value"]), str(entry["basis"]))
                        )
        return found

    def reap_study(self, experiment_id: str, study: str, preset: str = "", message: str = STALE) -> list[str]:
        """Mark the study's RUNNING runs (of one preset, if given) KILLED: under the study's lock
        they were left by a dead process. Other runs of the experiment are not touched."""
        tags = {STUDY: study} | ({PRESET: preset} if preset else {})
        return self.reap_stale(experiment_id, also=tag_filter(tags), message=message)

    def start_trial_run(
        self, experiment_id: str, name: str, study: str, preset: str, key: str, seed: int,
        arms: list[tuple[str, str]], parent_id: str,
    ) -> str:  # fmt: skip
        tags = {
            KEY: key,
            STUDY: study,
            PRESET: preset,
            SEED: str(seed),
            HYPOTHESES: ",".join(sorted({h for h, _ in arms})),
            ARMS: json.dumps(arms),
            KIND: KIND_TRIAL,
        }
        return self.start_run(experiment_id, name, tags, parent_id)

    def start_train_run(self, experiment_id: str, key: str, seed: int, warning: str = "") -> str:
        """A run of `hypotune train`: one configuration, outside any study."""
        tags = {KEY: key, SEED: str(seed), KIND: KIND_TRAIN}
        if warning:
            tags[WARNING] = warning
        return self.start_run(experiment_id, f"train-{key[:8]}", tags)

    def finished_trial_keys(self, experiment_id: str) -> set[str]:
        """The keys of every finished trial run: what a resumed study does not train again."""
        runs = self.runs(experiment_id, tag_filter({KIND: KIND_TRIAL}, status="FINISHED"))
        return {run.data.tags.get(KEY, "") for run in runs}

    def trial_states(self, experiment_id: str) -> dict[str, set[str]]:
        """Trial key -> the statuses of its runs (FINISHED, RUNNING, FAILED, KILLED)."""
        states: dict[str, set[str]] = {}
        for run in self.runs(experiment_id, tag_filter({KIND: KIND_TRIAL})):
            states.setdefault(run.data.tags.get(KEY, ""), set()).add(run.info.status)
        return states

    def finished_trials(self, experiment_id: str) -> list[TrialRecord]:
        """Every finished trial run, read back."""
        filter_string = tag_filter({KIND: KIND_TRIAL}, status="FINISHED")
        return [trial_record(run) for run in self.runs(experiment_id, filter_string)]

    def finished_runs(self, experiment_id: str) -> list[TrialRecord]:
        """Every finished run of an experiment, whoever logged it (`hypotune analyze`), oldest first;
        a run hypotune did not log has no key and seed 0 unless it logged a `seed` param."""
        runs = self.runs(experiment_id, "attributes.status = 'FINISHED'")
        return sorted((trial_record(run) for run in runs), key=lambda record: record.start_time)

    def history(
        self, run_ids: Iterable[str], metrics: Iterable[str]
    ) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """Per-epoch values of `metrics` for each run: run id -> metric -> [(epoch, value)]."""
        return {
            run_id: {
                metric: sorted(
                    (m.step, read_metric(m.value)) for m in self.client.get_metric_history(run_id, metric)
                )
                for metric in metrics
            }
            for run_id in run_ids
        }

    # ---- searches ------------------------------------------------------------------------
    def tuned(self, experiment_id: str, preset: str) -> dict[str, dict[str, Any]]:
        """Best settings of the finished searches: tuning key -> dotted setting -> value."""
        query = tag_filter({KIND: KIND_SEARCH, PRESET: preset}, status="FINISHED")
        tuned = {}
        for run in self.runs(experiment_id, query):
            best = run.data.tags.get(BEST)
            if best:
                tuned[run.data.tags[KEY]] = json.loads(best)
        return tuned

    def open_search_run(
        self, experiment_id: str, name: str, *, key: str, arms: list[tuple[str, str]],
        space: list[dict[str, Any]], metric: str, budget: int, seed: int | None, scope: dict[str, str],
        parent_id: str | None,
    ) -> tuple[str, bool]:  # fmt: skip
        """An arm's search run, reopened when resuming (with its budget updated); (run id, new).
        `scope` (e.g. study and preset) is tagged on every run of the search."""
        tags = {tag(name): value for name, value in scope.items()}
        existing = self.runs(experiment_id, tag_filter({KIND: KIND_SEARCH, KEY: key} | tags))
        if existing:  # the budget may have grown since: the search goes on from where it was
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, BUDGET, str(budget))
            return run_id, False
        own = {
            KIND: KIND_SEARCH,
            KEY: key,
            ARMS: json.dumps(arms),
            HYPOTHESES: ",".join(sorted({h for h, _ in arms})),
            SPACE: json.dumps(space),
            METRIC: metric,
            BUDGET: str(budget),
        } | ({} if seed is None else {TUNING_SEED: str(seed)})
        return self.start_run(experiment_id, name, tags | own, parent_id), True

    def start_tuning_trial_run(
        self, experiment_id: str, name: str, *, key: str, search_key: str, number: int, seed: int,
        arms: list[tuple[str, str]], scope: dict[str, str], search_run_id: str,
    ) -> str:  # fmt: skip
        """A tuning trial's run, under its search's run; its id."""
        tags = {tag(name): value for name, value in scope.items()}
        own = {
            KIND: KIND_TUNING_TRIAL,
            KEY: key,
            TUNING_KEY: search_key,
            TRIAL_NUMBER: str(number),
            SEED: str(seed),
            ARMS: json.dumps(arms),
        }
        return self.start_run(experiment_id, name, tags | own, search_run_id)

    def finish_search_run(
        self, run_id: str, best: dict[str, Any], edges: list[str], metrics: dict[str, float], step: int = 0
    ) -> None:
        """The best setting where MLflow users look: each numeric one as a metric `best.NAME` (at
        the step of the trials counted, so a search resumed with a larger budget adds a point
        rather than changing a param, which MLflow forbids), every one as a tag `best.NAME`."""
        self.client.set_tag(run_id, BEST, json.dumps(best))
        if edges:
            self.client.set_tag(run_id, EDGE, "; ".join(edges))
        numeric = {
            BEST_SETTING_PREFIX + name: float(value)
            for name, value in best.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        self.log_metrics(run_id, metrics | numeric, step=step)
        for name, value in best.items():
            self.client.set_tag(run_id, BEST_SETTING_PREFIX + name, str(value))
        self.client.set_terminated(run_id, "FINISHED")

    def reap_search(self, experiment_id: str, search_key: str, scope: dict[str, str] | None = None,
                    message: str = STALE) -> list[str]:  # fmt: skip
        """Mark a search's RUNNING tuning trial runs KILLED."""
        tags = {TUNING_KEY: search_key} | {tag(name): value for name, value in (scope or {}).items()}
        return self.reap_stale(experiment_id, also=tag_filter(tags), message=message)

    def search_runs(self, experiment_id: str, study: str, preset: str) -> list[SearchRunRecord]:
        """The study's search runs for this preset, each with its finished tuning trials."""
        ours = {PRESET: preset, STUDY: study}
        searches: dict[str, SearchRunRecord] = {}
        for run in self.runs(experiment_id, tag_filter({KIND: KIND_SEARCH} | ours)):
            record = search_run_record(run)
            searches[record.key] = record
        query = tag_filter({KIND: KIND_TUNING_TRIAL} | ours, status="FINISHED")
        for run in self.runs(experiment_id, query):
            search = searches.get(run.data.tags.get(TUNING_KEY, ""))
            if search is not None:
                search.trials.append(tuning_run_record(run))
        for search in searches.values():
            search.trials.sort(key=lambda t: t.number)
        return list(searches.values())

    def fail(self, run_id: str, message: str, status: str = "FAILED") -> None:
        self.client.set_tag(run_id, STATUS, status.lower())
        self.client.set_tag(run_id, ERROR, message[:5000])
        self.client.set_terminated(run_id, status)

    def runs(self, experiment_id: str, filter_string: str = "") -> list[Any]:
        """All runs of an experiment matching an MLflow filter, following pages."""
        found, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def reap_stale(
        self,
        experiment_id: str,
        keep: Iterable[str] = (),
        also: str = "",
        message: str = STALE,
    ) -> list[str]:
        """Mark RUNNING runs not in `keep` (left by a killed process) as KILLED.

        `also` narrows the runs to those matching an extra filter (one search's runs).
        """
        keep = set(keep)
        query = tag_filter({}, status="RUNNING") + (f" and {also}" if also else "")
        stale = [run.info.run_id for run in self.runs(experiment_id, query) if run.info.run_id not in keep]
        for run_id in stale:
            self.fail(run_id, message, status="KILLED")
        return stale
