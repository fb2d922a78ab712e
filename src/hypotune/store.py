"""The store: the only module that knows MLflow's runs, tags, filters and read-back.

`Tracker` writes (runs, params, per-epoch metrics, results, artifacts) and reads back what
hypotune recorded as records: trial runs, search runs and their tuning trials, a study's run.
The tag schema, `hypotune.<name>` on every run, is written here and nowhere else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypotune.config import RunConfig, Runtime, flatten, read_metric, to_toml
from hypotune.errors import TrackingError
from hypotune.trainables import artifact_parts

STORE_DIR = Path("runs")
TAG = "hypotune."  # prefix of every tag hypotune sets


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
    from hypotune import __version__

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
STOPPED_TAG = f"{TAG}stopped"  # on a study's parent run: "budget" when its time budget ended it
MARGIN_TAG = f"{TAG}margin."  # + hypothesis id, on a study's parent run: its fixed relative margin


def tag(name: str) -> str:
    """The full name of one of hypotune's tags: tag('key') -> 'hypotune.key'."""
    return f"{TAG}{name}"


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
        raise TrackingError(f"the store {database} is read-only: give write access or another --tracking-uri")
    try:  # SQLite also writes a journal beside the file: the folder must take new files
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise TrackingError(
            f"cannot write in the store folder {folder}/ ({error.strerror}): give write access or "
            "another --tracking-uri"
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
            raise TrackingError(f"no MLflow store at {database}: give --tracking-uri sqlite:///PATH")
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
        tags = {**tags, f"{TAG}code_version": code_version()}
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

        tags = {f"{TAG}status": status} | {f"{TAG}{name}": value for name, value in (ran_with or {}).items()}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, "FINISHED")
        self.last_logged.pop(run_id, None)

    def log_report(self, study: str, preset: str, folder: Path) -> str | None:
        """Keep a report folder as the `report` artifact of the study's run for this preset, when
        that run exists (a study run made it); the run id, or None."""
        experiment = self.client.get_experiment_by_name(study)
        if experiment is None:
            return None
        query = tag_filter({f"{TAG}kind": "study", f"{TAG}preset": preset})
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

    def open_study_run(self, experiment_id: str, study: str, preset: str, study_file: str = "") -> str:
        """The study's run for this preset (the parent of its trial runs), reopened when resuming."""
        existing = self.runs(experiment_id, tag_filter({tag("kind"): "study", tag("preset"): preset}))
        if existing:
            run = existing[0]
            self.client.update_run(run.info.run_id, status="RUNNING")
            for stale in (tag("error"), tag("status")):  # from an interrupted run; this one goes on
                if stale in run.data.tags:
                    self.client.delete_tag(run.info.run_id, stale)
            return run.info.run_id
        tags = {tag("kind"): "study", tag("study"): study, tag("preset"): preset}
        if study_file:
            tags[tag("study_file")] = study_file
        return self.start_run(experiment_id, f"{study} ({preset})", tags)

    def close_study_run(
        self, run_id: str, budget_stopped: bool, metrics: dict[str, float], failed: bool
    ) -> None:
        self.client.set_tag(run_id, STOPPED_TAG, "budget" if budget_stopped else "")
        self.log_metrics(run_id, metrics)
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def budget_stopped(self, study: str, preset: str) -> bool:
        """Whether the last run of this preset stopped adding seeds because its time budget ran out."""
        experiment_id = self.find_experiment(study)
        if experiment_id is None:
            return False
        runs = self.runs(experiment_id, tag_filter({tag("kind"): "study", tag("preset"): preset}))
        return any(run.data.tags.get(STOPPED_TAG) == "budget" for run in runs)

    def record_margins(self, run_id: str, margins: dict[str, tuple[float, str]]) -> None:
        """Record relative margins with the study's run, once each: a margin fixed at the first
        look is the one every later verdict of the study reads."""
        for hypothesis, (value, basis) in margins.items():
            self.client.set_tag(run_id, MARGIN_TAG + hypothesis, json.dumps({"value": value, "basis": basis}))

    def margins(self, study: str, preset: str) -> dict[str, tuple[float, str]]:
        """The margins recorded with the study's run for this preset, by hypothesis."""
        experiment_id = self.find_experiment(study)
        if experiment_id is None:
            return {}
        found: dict[str, tuple[float, str]] = {}
        for run in self.runs(experiment_id, tag_filter({tag("kind"): "study", tag("preset"): preset})):
            for name, text in run.data.tags.items():
                if name.startswith(MARGIN_TAG):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(text)
                        found.setdefault(
                            name[len(MARGIN_TAG) :], (float(entry["value"]), str(entry["basis"]))
                        )
        return found

    def reap_study(self, experiment_id: str, study: str, preset: str = "", message: str = STALE) -> list[str]:
        """Mark the study's RUNNING runs (of one preset, if given) KILLED: under the study's lock
        they were left by a dead process. Other runs of the experiment are not touched."""
        tags = {tag("study"): study} | ({tag("preset"): preset} if preset else {})
        return self.reap_stale(experiment_id, also=tag_filter(tags), message=message)

    def start_trial_run(
        self, experiment_id: str, name: str, study: str, preset: str, key: str, seed: int,
        arms: list[tuple[str, str]], parent_id: str,
    ) -> str:  # fmt: skip
        tags = {
            tag("key"): key,
            tag("study"): study,
            tag("preset"): preset,
            tag("seed"): str(seed),
            tag("hypotheses"): ",".join(sorted({h for h, _ in arms})),
            tag("arms"): json.dumps(arms),
            tag("kind"): "trial",
        }
        return self.start_run(experiment_id, name, tags, parent_id)

    def start_train_run(self, experiment_id: str, key: str, seed: int, warning: str = "") -> str:
        """A run of `hypotune train`: one configuration, outside any study."""
        tags = {tag("key"): key, tag("seed"): str(seed), tag("kind"): "train"}
        if warning:
            tags[tag("warning")] = warning
        return self.start_run(experiment_id, f"train-{key[:8]}", tags)

    def finished_trial_keys(self, experiment_id: str) -> set[str]:
        """The keys of every finished trial run: what a resumed study does not train again."""
        runs = self.runs(experiment_id, tag_filter({tag("kind"): "trial"}, status="FINISHED"))
        return {run.data.tags.get(tag("key"), "") for run in runs}

    def trial_states(self, experiment_id: str) -> dict[str, set[str]]:
        """Trial key -> the statuses of its runs (FINISHED, RUNNING, FAILED, KILLED)."""
        states: dict[str, set[str]] = {}
        for run in self.runs(experiment_id, tag_filter({tag("kind"): "trial"})):
            states.setdefault(run.data.tags.get(tag("key"), ""), set()).add(run.info.status)
        return states

    def finished_trials(self, experiment_id: str) -> list[TrialRecord]:
        """Every finished trial run, read back."""
        filter_string = tag_filter({tag("kind"): "trial"}, status="FINISHED")
        return [self._record(run) for run in self.runs(experiment_id, filter_string)]

    def finished_runs(self, experiment_id: str) -> list[TrialRecord]:
        """Every finished run of an experiment, whoever logged it (`hypotune analyze`), oldest first;
        a run hypotune did not log has no key and seed 0 unless it logged a `seed` param."""
        runs = self.runs(experiment_id, "attributes.status = 'FINISHED'")
        return sorted((self._record(run) for run in runs), key=lambda record: record.start_time)

    def _record(self, run: Any) -> TrialRecord:
        tags = run.data.tags
        seed = tags.get(tag("seed"), run.data.params.get("seed", "0"))
        return TrialRecord(
            run_id=run.info.run_id,
            key=tags.get(tag("key"), ""),
            seed=int(seed) if seed.lstrip("-").isdigit() else 0,
            status=tags.get(tag("status"), "finished"),
            metrics={k: read_metric(v) for k, v in run.data.metrics.items()},
            params=dict(run.data.params),
            tags=dict(tags),
            start_time=run.info.start_time or 0,
            preset=tags.get(tag("preset"), ""),
            arms=[tuple(a) for a in json.loads(tags.get(tag("arms"), "[]"))],
        )

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
        query = tag_filter({tag("kind"): "search", tag("preset"): preset}, status="FINISHED")
        tuned = {}
        for run in self.runs(experiment_id, query):
            best = run.data.tags.get(tag("best"))
            if best:
                tuned[run.data.tags[tag("key")]] = json.loads(best)
        return tuned

    def open_search_run(
        self, experiment_id: str, name: str, key: str, arms: list[tuple[str, str]],
        space: list[dict[str, Any]], metric: str, budget: int, seed: int | None, scope: dict[str, str],
        parent_id: str | None,
    ) -> tuple[str, bool]:  # fmt: skip
        """An arm's search run, reopened when resuming (with its budget updated); (run id, new).
        `scope` (e.g. study and preset) is tagged on every run of the search."""
        tags = {tag(name): value for name, value in scope.items()}
        existing = self.runs(experiment_id, tag_filter({tag("kind"): "search", tag("key"): key} | tags))
        if existing:  # the budget may have grown since: the search goes on from where it was
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, tag("budget"), str(budget))
            return run_id, False
        own = {
            tag("kind"): "search",
            tag("key"): key,
            tag("arms"): json.dumps(arms),
            tag("hypotheses"): ",".join(sorted({h for h, _ in arms})),
            tag("space"): json.dumps(space),
            tag("metric"): metric,
            tag("budget"): str(budget),
        } | ({} if seed is None else {tag("tuning_seed"): str(seed)})
        return self.start_run(experiment_id, name, tags | own, parent_id), True

    def start_tuning_trial_run(
        self, experiment_id: str, name: str, key: str, search_key: str, number: int, seed: int,
        arms: list[tuple[str, str]], scope: dict[str, str], search_run_id: str,
    ) -> str:  # fmt: skip
        tags = {tag(name): value for name, value in scope.items()}
        own = {
            tag("kind"): "tuning_trial",
            tag("key"): key,
            tag("tuning_key"): search_key,
            tag("trial_number"): str(number),
            tag("seed"): str(seed),
            tag("arms"): json.dumps(arms),
        }
        return self.start_run(experiment_id, name, tags | own, search_run_id)

    def finish_search_run(
        self, run_id: str, best: dict[str, Any], edges: list[str], metrics: dict[str, float], step: int = 0
    ) -> None:
        """The best setting where MLflow users look: each numeric one as a metric `best.NAME` (at
        the step of the trials counted, so a search resumed with a larger budget adds a point
        rather than changing a param, which MLflow forbids), every one as a tag `best.NAME`."""
        self.client.set_tag(run_id, tag("best"), json.dumps(best))
        if edges:
            self.client.set_tag(run_id, tag("edge"), "; ".join(edges))
        numeric = {
            f"best.{name}": float(value)
            for name, value in best.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        self.log_metrics(run_id, metrics | numeric, step=step)
        for name, value in best.items():
            self.client.set_tag(run_id, f"best.{name}", str(value))
        self.client.set_terminated(run_id, "FINISHED")

    def reap_search(self, experiment_id: str, search_key: str, scope: dict[str, str] | None = None,
                    message: str = STALE) -> list[str]:  # fmt: skip
        """Mark a search's RUNNING tuning trial runs KILLED."""
        tags = {tag("tuning_key"): search_key} | {tag(name): value for name, value in (scope or {}).items()}
        return self.reap_stale(experiment_id, also=tag_filter(tags), message=message)

    def search_runs(self, experiment_id: str, study: str, preset: str) -> list[SearchRunRecord]:
        """The study's search runs for this preset, each with its finished tuning trials."""
        ours = {tag("preset"): preset, tag("study"): study}
        searches: dict[str, SearchRunRecord] = {}
        for run in self.runs(experiment_id, tag_filter({tag("kind"): "search"} | ours)):
            tags = run.data.tags
            searches[tags[tag("key")]] = SearchRunRecord(
                key=tags[tag("key")],
                arms=[tuple(a) for a in json.loads(tags.get(tag("arms"), "[]"))],
                space=json.loads(tags[tag("space")]),
                metric=tags.get(tag("metric"), "val_loss"),
                budget=int(tags.get(tag("budget"), 0)),
                finished=run.info.status == "FINISHED",
                best=json.loads(tags.get(tag("best"), "{}")),
                edges=[e for e in tags.get(tag("edge"), "").split("; ") if e],
                seed=int(tags[tag("tuning_seed")]) if tag("tuning_seed") in tags else None,
            )
        query = tag_filter({tag("kind"): "tuning_trial"} | ours, status="FINISHED")
        for run in self.runs(experiment_id, query):
            search = searches.get(run.data.tags.get(tag("tuning_key"), ""))
            if search is not None:
                search.trials.append(
                    TuningRunRecord(
                        number=int(run.data.tags.get(tag("trial_number"), 0)),
                        params=dict(run.data.params),
                        metrics={k: read_metric(v) for k, v in run.data.metrics.items()},
                        status=run.data.tags.get(tag("status"), "finished"),
                    )
                )
        for search in searches.values():
            search.trials.sort(key=lambda t: t.number)
        return list(searches.values())

    def fail(self, run_id: str, message: str, status: str = "FAILED") -> None:
        self.client.set_tag(run_id, f"{TAG}status", status.lower())
        self.client.set_tag(run_id, f"{TAG}error", message[:5000])
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
