"""The one writer to MLflow: runs, params, per-epoch metrics, results, artifacts; resume lookups."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hypotune.config import RunConfig, Runtime, to_toml
from hypotune.errors import TrackingError

STORE_DIR = Path("runs")
TAG = "hypotune."  # prefix of every tag hypotune sets
# MLflow's SQL store saves +inf as the largest double; read anything that large back as inf.
INF_THRESHOLD = 1e308


def default_uri(store_dir: Path = STORE_DIR) -> str:
    return f"sqlite:///{(store_dir / 'mlflow.db').resolve()}"


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
    """Every resolved setting as a 'section.name' param."""
    params = {"seed": str(config.seed)}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for name, value in values.items():
                text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
                params[f"{section}.{name}"] = text
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


STOPPED_TAG = f"{TAG}stopped"  # on a study's parent run: "budget" when its time budget ended it


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


def read_metric(value: float) -> float:
    return math.inf if value >= INF_THRESHOLD else value


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

    def __init__(self, uri: str | None = None, store_dir: Path = STORE_DIR) -> None:
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
        if uri is None:
            try:
                store_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise TrackingError(
                    f"cannot create the store folder {store_dir}/: {error.strerror}"
                ) from None
            uri = default_uri(store_dir)
        if self.local:
            check_writable(Path(uri.removeprefix("sqlite:///")))
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

    def log_config(self, run_id: str, config: RunConfig, runtime: Runtime | None = None) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flat_params(config, runtime).items()]
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
        weights: bytes | None = None,
        ran_with: dict[str, str] | None = None,
    ) -> None:
        """Record the final result; only then is the run FINISHED and the trial done.

        `weights` is a `torch.save`d state dict; load it with `torch.load(..., weights_only=True)`.
        `ran_with` (threads, device, precision) becomes tags: outside the trial key, but the audit
        flags a comparison whose runs differ in it.
        """
        self.log_metrics(run_id, metrics, step=int(metrics.get("epochs_run", 0)))
        if weights is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.pt"
                path.write_bytes(weights)
                self.client.log_artifact(run_id, str(path))
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
        message: str = "process ended before the run finished",
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
