"""Command trainables: an existing training script, run as a command, trains one trial.

A study declares it as a table instead of a name:

    [trainable]
    command = ["python", "train.py", "--lr", "{lr}", "--seed", "{seed}"]
    metrics = { val_loss = "minimize", val_acc = "maximize" }
    timeout = 600             # seconds; past it the script is stopped and the trial failed
    epochs = "epochs"         # the setting that counts epochs (progress, pruning); optional
    [trainable.settings]      # every setting and its default: its type is the default's
    lr = 0.01
    epochs = 5

hypotune opens the trial's MLflow run and starts the command in the study's folder with
MLFLOW_RUN_ID and MLFLOW_TRACKING_URI set, so a script that logs with plain `mlflow.log_metric`
logs into that run unchanged; its final metrics are read back from the run. While it runs, each
step it has logged every declared metric at is reported as an epoch: a tuning search can prune
a script that logs its metrics with `step=epoch`. The script runs in its own process group,
which is ended with it, when the trial is stopped, and when the worker or hypotune is ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import keyword
import math
import os
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypotune.config import directions, read_metric, read_toml, setting, unknown_key_message
from hypotune.errors import CommandFailed, ConfigError
from hypotune.trainables.protocol import Result

KEYS = {
    "command",
    "settings",
    "metrics",
    "timeout",
    "epochs",
    "budget",
    "deciding",
    "doc",
    "size",
    "units",
    "varies",
    "fixed",
}
TYPES = (bool, int, float, str)
POLL_SECONDS = 0.5  # how often a running script's run is read for new epochs
STOP_GRACE_SECONDS = 2.0  # between asking a script to stop (SIGTERM) and killing it
TAIL_LINES = 20  # of its stderr kept in a failed trial's message
TAIL_WIDTH = 500  # characters kept of each of those lines
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # set to the runtime's threads unless set
PYTHONS = ("python", "python3")  # a command starting with one of these runs with sys.executable
RUNNING: set[subprocess.Popen[bytes]] = set()  # the scripts this process has started and not ended


@dataclasses.dataclass(frozen=True)
class Command:
    """What a command trainable runs, and where."""

    argv: tuple[str, ...]  # with "{setting}" and "{seed}" placeholders
    folder: Path  # where it runs: the folder of the file that declares it
    metrics: tuple[str, ...]  # what it must log
    timeout: float  # seconds; 0 = none
    per_epoch: tuple[str, ...] = ()  # logged at a step, these make it an epoch (default: metrics)

    def arguments(self, settings: Any, seed: int) -> list[str]:
        """The command line of one trial; "python" is the Python that runs hypotune, so the script
        sees the packages hypotune sees (mlflow among them)."""
        values = dataclasses.asdict(settings) | {"seed": seed}
        argv = [part.format_map(values) for part in self.argv]
        return [sys.executable, *argv[1:]] if argv[0] in PYTHONS else argv


def from_toml(path: Path, table_name: str) -> dict[str, Any]:
    """The fields of the command trainable (`hypotune.Trainable(**fields)`) declared in the table
    `table_name` of the TOML file at `path`."""
    raw = read_toml(path).get(table_name)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: no [{table_name}] table with a command")
    try:
        return from_table(raw, path, table_name)
    except ConfigError as error:
        raise ConfigError(f"{path}: [{table_name}] {error}") from None


def from_table(raw: Mapping[str, Any], path: Path, table_name: str = "trainable") -> dict[str, Any]:
    """The fields of the command trainable a `[trainable]` table declares, in a file at `path`."""
    for key in raw:
        if key not in KEYS:
            raise ConfigError(unknown_key_message(key, KEYS))
    argv = raw.get("command")
    if not (isinstance(argv, list) and argv and all(isinstance(part, str) and part for part in argv)):
        example = '["python", "train.py", "--lr", "{lr}"]'
        raise ConfigError(f"command must be a list of non-empty strings, e.g. {example}")
    settings = settings_class(raw.get("settings", {}))
    names = [f.name for f in dataclasses.fields(settings)]
    check_placeholders(argv, names)
    metrics = directions(raw.get("metrics", {"val_loss": "minimize"}))
    timeout = raw.get("timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout < math.inf:
        raise ConfigError(f"timeout must be a number of seconds (0 = none), got {timeout!r}")
    epochs = raw.get("epochs", "")
    if not isinstance(epochs, str):
        raise ConfigError(f'epochs must name the setting that counts epochs, e.g. "epochs"; got {epochs!r}')
    if epochs and epochs not in names:
        raise ConfigError(f"epochs = {epochs!r}: " + unknown_key_message(epochs, names))
    if epochs and settings.__dataclass_fields__[epochs].type is not int:
        raise ConfigError(f"epochs = {epochs!r}: the setting that counts epochs must be an integer")
    budget = names_list(raw, "budget", [epochs] if epochs else [])
    deciding = names_list(raw, "deciding", [])
    for name in budget:
        if name not in names:
            raise ConfigError("budget: " + unknown_key_message(name, names))
    for name in deciding:
        if name not in metrics:
            raise ConfigError(f"deciding names metric {name!r}; the metrics are {', '.join(metrics)}")
    size = raw.get("size", "")
    if not isinstance(size, str):
        raise ConfigError(f'size must name the metric of the model size, e.g. "param_count"; got {size!r}')
    units = raw.get("units", {})
    if not (isinstance(units, dict) and all(isinstance(unit, str) for unit in units.values())):
        example = '{ mse = "squared error" }'
        raise ConfigError(f'units must be a table of metric = "unit", e.g. {example}; got {units!r}')
    # Epochs are the steps at which the deciding metrics are logged: a test metric logged once at
    # the end must not hold every epoch back.
    command = Command(tuple(argv), Path(path).resolve().parent, tuple(metrics), float(timeout), deciding)

    def train(settings: Any, seed: int, log: Any) -> Any:
        return run_command(command, settings, seed, log)

    return dict(
        name=" ".join(argv[:2]),
        settings=settings,
        train=train,
        ref=f"{Path(path).resolve()}:{table_name}",
        metrics=metrics,
        deciding=deciding,
        epochs=(lambda s: getattr(s, epochs)) if epochs else None,
        budget=budget,
        preload=("mlflow.tracking",),
        units=units,
        size=size,
        varies=names_list(raw, "varies", []),
        fixed=names_list(raw, "fixed", []),
        doc=str(raw.get("doc", "")) or f"the command {' '.join(argv)}",
    )


def names_list(raw: Mapping[str, Any], key: str, default: list[str]) -> tuple[str, ...]:
    value = raw.get(key, default)
    if not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
        raise ConfigError(f'{key} must be a list of names, e.g. ["epochs"]; got {value!r}')
    return tuple(value)


def settings_class(raw: Any) -> type:
    """A frozen dataclass of the declared settings, each typed by its default."""
    if not isinstance(raw, dict):
        raise ConfigError("settings must be a table of name = default value")
    fields = []
    for name, default in raw.items():
        if not name.isidentifier() or keyword.iskeyword(name) or name in ("seed", "settings"):
            raise ConfigError(
                f"setting {name!r}: a name must be an identifier, not a Python keyword, seed or settings"
            )
        if not isinstance(default, TYPES):
            kinds = "a number, a string or true/false"
            raise ConfigError(f"setting {name!r}: its default must be {kinds}, got {default!r}")
        kind = type(default).__name__
        fields.append((name, type(default), setting(default, f"a setting of the command ({kind})")))
    return dataclasses.make_dataclass("CommandSettings", fields, frozen=True)


def check_placeholders(argv: list[str], names: list[str]) -> None:
    for part in argv:
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as error:
            raise ConfigError(f"command part {part!r}: {error} (write {{{{ and }}}} for braces)") from None
        for _, field_name, spec, conversion in parsed:
            if field_name is None:
                continue
            valid = [*names, "seed"]
            if field_name in valid and (spec or conversion):
                plain = "{" + field_name + "}"
                raise ConfigError(f"command part {part!r}: write {plain}, without a format or conversion")
            if field_name not in valid:
                unknown = unknown_key_message(field_name, valid)
                raise ConfigError(f"command part {part!r}: {unknown} (write {{{{ and }}}} for braces)")


def run_command(command: Command, settings: Any, seed: int, log: Any) -> Result:
    """Run the script for one trial in its MLflow run; its metrics read back from that run."""
    from mlflow.tracking import MlflowClient

    if not log.run_id:
        raise ConfigError("a command trainable logs into an MLflow run: run it with hypotune (train, study)")
    client = MlflowClient(tracking_uri=log.tracking_uri)
    argv = command.arguments(settings, seed)
    env = os.environ | {
        "MLFLOW_RUN_ID": log.run_id,
        "MLFLOW_TRACKING_URI": log.tracking_uri,
        "MLFLOW_EXPERIMENT_ID": client.get_run(log.run_id).info.experiment_id,
    }
    for name in THREAD_VARIABLES:  # one worker's share of the cores, as the built-in trainable has
        env.setdefault(name, str(log.runtime.threads))
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = start(argv, command.folder, env, stdout, stderr)
        deadline = time.monotonic() + command.timeout if command.timeout else math.inf
        watch = Epochs(client, log, command.per_epoch or command.metrics)
        try:
            while process.poll() is None:
                if watch.report(final=False):  # the search stops it: `finally` ends the script
                    return Result(latest(client, log.run_id), "pruned", watch.reported, stored=True)
                if time.monotonic() > deadline:
                    raise CommandFailed(
                        f"the command ran past its timeout of {command.timeout:g} s" + tail(stderr, stdout)
                    )
                time.sleep(POLL_SECONDS)
        finally:
            stop(process)
        if process.returncode != 0:
            how = f"was killed by signal {-process.returncode}" if process.returncode < 0 else \
                f"exited with status {process.returncode}"  # fmt: skip
            raise CommandFailed(f"the command {how}" + tail(stderr, stdout))
        watch.report(final=True)
        metrics = latest(client, log.run_id)
        missing = [name for name in command.metrics if name not in metrics]
        if missing:
            raise CommandFailed(
                f"the command logged no {', '.join(missing)} to its run (mlflow.log_metric into the run"
                " that MLFLOW_RUN_ID names)" + tail(stderr, stdout)
            )
        diverged = any(not math.isfinite(metrics[name]) for name in command.metrics)  # inf read back
        output = f"$ {' '.join(argv)}\n".encode() + read_back(stdout) + read_back(stderr)
        return Result(
            metrics, "diverged" if diverged else "finished", watch.reported,
            artifacts={"command-output.txt": output}, stored=True,
        )  # fmt: skip


def start(
    argv: list[str], folder: Path, env: dict[str, str], stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    """The script, started in its own process group (so that it is ended with whatever it starts)."""
    try:
        process = subprocess.Popen(
            argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip
    except FileNotFoundError:
        raise ConfigError(f"cannot run the command: no program {argv[0]!r} (in {folder})") from None
    except PermissionError:
        raise ConfigError(f"cannot run the command: {argv[0]!r} is not executable") from None
    RUNNING.add(process)
    return process


def die_with_parent() -> None:
    """In the script's process, before it starts: be killed when the process that started it dies,
    however it dies (kill -9 included)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the script's process group: asked first (SIGTERM), then killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_SECONDS)
        os.killpg(process.pid, signal.SIGKILL)  # and anything it left behind in its group
    process.wait()
    RUNNING.discard(process)


def stop_all() -> None:
    """End every script this process started: it is about to exit."""
    for process in list(RUNNING):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        RUNNING.discard(process)


class Epochs:
    """Reports each step a running script has logged every declared metric at, as an epoch."""

    def __init__(self, client: Any, log: Any, metrics: tuple[str, ...]) -> None:
        self.client, self.log, self.metrics = client, log, metrics
        self.steps: set[int] = set()  # steps already reported
        self.reported = 0

    def report(self, final: bool) -> bool:
        """Report new complete steps; True when the search wants the trial stopped."""
        values: dict[int, dict[str, float]] = {}
        for name in self.metrics:
            for metric in self.client.get_metric_history(self.log.run_id, name):
                values.setdefault(metric.step, {})[name] = metric.value
        complete = sorted(step for step, logged in values.items() if len(logged) == len(self.metrics))
        for step in complete:
            if step in self.steps:
                continue
            self.steps.add(step)
            self.reported += 1
            if self.log(values[step] | {"epoch": float(self.reported)}, stored=True) and not final:
                return True
        return False


def latest(client: Any, run_id: str) -> dict[str, float]:
    """Each metric's value at its last step, as MLflow shows it."""
    return {name: read_metric(value) for name, value in client.get_run(run_id).data.metrics.items()}


def read_back(handle: Any, limit: int = 1 << 20) -> bytes:
    """The last `limit` bytes of a captured stream."""
    handle.flush()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - limit))
    return handle.read()


def tail(stderr: Any, stdout: Any) -> str:
    """The last lines of the script's stderr (else its stdout), for a failed trial's message."""
    for stream, name in ((stderr, "stderr"), (stdout, "output")):
        lines = read_back(stream, 64 * 1024).decode(errors="replace").strip().splitlines()[-TAIL_LINES:]
        if lines:
            return f"; its {name} ends:\n" + "\n".join(line[:TAIL_WIDTH] for line in lines)
    return " (it printed nothing)"
