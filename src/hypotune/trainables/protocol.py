"""The trainable protocol: what the engine needs to know of one kind of training.

A trainable trains one configuration on one seed. It declares its settings (a frozen dataclass
of `hypotune.config.setting`s, optionally grouped in tables) and a function

    train(settings, seed, log) -> Result | {metric: value}

that calls `log({...})` once per epoch with that epoch's metrics (and "epoch": its number); `log`
returns True when a tuning search wants the trial to stop there. Everything else is optional:
a cost estimate that orders the work, a check that fails impossible settings before anything
runs, a check of the data before a study starts, and which settings set the budget or the split,
so the audit can name them. The engine (run, decide, report, store) reaches a trainable only
through this package; a worker imports it by its reference, "module:attribute" (see load).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypotune.config import Runtime
from hypotune.errors import ConfigError

STATUSES = ("finished", "diverged", "pruned")  # how a training may end


@dataclass
class Result:
    """How one training ended: its final metrics, and what to keep of it.

    `status` is "finished", "diverged" (a loss went non-finite: a result that counts as a failure)
    or "pruned" (a tuning search stopped it). `tags` say how it ran (threads, device, precision):
    the audit flags comparisons whose runs differ in them. `artifacts` are files kept beside the
    run, by name ("model.pt": its bytes); a tuning trial keeps none. `stored` says the metrics are
    in the run already (a command logged them there itself).
    """

    metrics: dict[str, float]
    status: str = "finished"
    epochs: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    stored: bool = False


class Log:
    """What a trainable reports through: `log(metrics)` once per epoch; True means stop there.

    `report(metrics, stored)` receives each epoch's metrics ("epoch" among them) where the engine
    records them. `runtime` says how to run (threads, device, where the data lies); `tuning` is True for a
    trial of a tuning search, which must not look at the test set and keeps no artifacts.
    `run_id` is the MLflow run the trial is recorded in, in the store at `tracking_uri`: a
    trainable may log more to it (a command trainable's script logs everything there).
    """

    def __init__(
        self,
        report: Callable[[dict[str, float], bool], None],
        runtime: Runtime,
        tuning: bool = False,
        should_stop: Callable[[int], bool] | None = None,
        run_id: str = "",
        tracking_uri: str = "",
    ) -> None:
        self.report, self.runtime, self.tuning = report, runtime, tuning
        self.should_stop = should_stop
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self.epochs = 0

    def __call__(self, metrics: Mapping[str, float], stored: bool = False) -> bool:
        """Report one epoch; `stored`: its metrics are in the run already (the trainable logged them)."""
        self.epochs += 1
        values = {name: float(value) for name, value in metrics.items()}
        values.setdefault("epoch", float(self.epochs))
        self.report(values, stored)
        return bool(self.tuning and self.should_stop and self.should_stop(int(values["epoch"])))


@dataclass(frozen=True, repr=False)
class Trainable:
    """One kind of training the engine can run, test hypotheses on and tune."""

    name: str
    settings: type  # a frozen dataclass; names "seed" and "settings" are the engine's
    train: Callable[[Any, int, Log], Result | Mapping[str, float]]
    ref: str = ""  # "module:attribute" a worker imports it by
    metrics: Mapping[str, bool] = field(default_factory=lambda: {"val_loss": True})  # lower is better?
    deciding: tuple[str, ...] = ()  # metrics a verdict may use (never a test set's); () = all
    failure: Mapping[str, float] = field(default_factory=dict)  # a diverged run's score per metric
    epochs: Callable[[Any], int] | None = None  # the epochs a settings trains for (bars, pruning)
    cost: Callable[[Any], float] | None = None  # relative compute of a settings: longest first
    check: Callable[[Any], str] | None = None  # fails impossible settings early; says what it builds
    prepare: Callable[[Runtime], str] | None = None  # fails missing data early; says what it found
    recount: Callable[[Any], dict[str, float]] | None = None  # metrics the settings alone fix
    budget: tuple[str, ...] = ()  # settings that set the training budget (the audit names them)
    split: tuple[str, ...] = ()  # settings that set the data split
    biased: str = ""  # a true/false setting meaning "validated on the test set"
    split_seed: str = ""  # the setting that seeds the data split: a study's seed sets it (vary_split)
    presets: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # budgets for `train --preset`
    space: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # `hypotune search`'s default
    preload: tuple[str, ...] = ()  # modules a local worker imports once, before any trial (torch)
    doc: str = ""  # what it trains, in one line
    # What the report may say of it; a panel, column or sentence appears only where it is declared
    # or logged.
    units: Mapping[str, str] = field(default_factory=dict)  # metric -> its unit ("cross-entropy")
    size: str = ""  # a metric of the model's size (its parameter count): the report's Pareto view
    varies: tuple[str, ...] = ()  # what a seed varies, in words ("weight initialisation", ...)
    fixed: tuple[str, ...] = ()  # what stays the same across seeds ("the test set")

    def __repr__(self) -> str:
        return f"Trainable({self.name!r}, ref={self.ref!r})"

    def __call__(self, settings: Any, seed: int, log: Log) -> Result | Mapping[str, float]:
        """A decorated training function stays callable as it was."""
        return self.train(settings, seed, log)

    @property
    def deciding_metrics(self) -> tuple[str, ...]:
        return self.deciding or tuple(self.metrics)

    def run(self, settings: Any, seed: int, log: Log) -> Result:
        """Train once through `log`, the result checked and its epochs counted when not given."""
        result = result_of(self.train(settings, seed, log))
        result.epochs = result.epochs or log.epochs
        return result

    def label(self, metric: str) -> str:
        """A metric as an axis or column names it: its name, and its unit where declared."""
        unit = self.units.get(metric) or self.units.get(quantity(metric))
        return f"{metric} ({unit})" if unit else metric

    def epochs_of(self, settings: Any) -> int | None:
        return self.epochs(settings) if self.epochs else None

    def cost_of(self, settings: Any) -> float:
        if self.cost is None:
            return 0.0
        try:
            return float(self.cost(settings))
        except Exception:  # an impossible configuration fails fast in its worker instead
            return 0.0

    def describe(self, settings: Any) -> str:
        """Check the settings (a ConfigError when impossible) and say what they build."""
        return self.check(settings) if self.check else ""

    def ready(self, runtime: Runtime) -> str:
        """Check the data is there before anything starts, and say what was found."""
        return self.prepare(runtime) if self.prepare else ""


SPLITS = ("best_val_", "val_", "train_", "test_")  # metric name prefixes that say which data it is on


def quantity(metric: str) -> str:
    """What a metric measures, whichever data it is on: "loss" for "val_loss" and "train_loss"."""
    return next((metric[len(p) :] for p in SPLITS if metric.startswith(p)), metric)


def counterpart(metric: str, split: str) -> str:
    """The same quantity on another split: "val_loss" and "best_val_loss" are "test_loss" on
    "test" and "train_loss" on "train"; "" when the metric names no validation split."""
    return f"{split}_{quantity(metric)}" if metric.startswith(SPLITS[:2]) else ""


def artifact_parts(name: str) -> tuple[str, ...]:
    """The parts of an artifact's relative path ("model/MLmodel"); a name that could leave the
    run's folder (absolute, '..', empty parts) is refused."""
    parts = tuple(name.replace("\\", "/").split("/"))
    if name.startswith(("/", "\\")) or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"artifact name '{name}' must be a relative path inside the run")
    return parts


def result_of(returned: Result | Mapping[str, float]) -> Result:
    """A train function's return value as a Result (a bare mapping is a finished run's metrics)."""
    if isinstance(returned, Result):
        if returned.status not in STATUSES:
            valid = ", ".join(STATUSES)
            raise ConfigError(f"a trainable returned status '{returned.status}'; valid: {valid}")
        for name, content in returned.artifacts.items():
            artifact_parts(name)
            if not isinstance(content, bytes):
                raise ConfigError(f"artifact '{name}' must be bytes, got {type(content).__name__}")
        return returned
    if not isinstance(returned, Mapping):
        raise ConfigError(f"a trainable must return a Result or a mapping of metrics, got {returned!r}")
    return Result({name: float(value) for name, value in returned.items()})
