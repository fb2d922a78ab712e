"""The trainable protocol: what the engine needs to know of one kind of training.

A trainable trains one configuration on one seed. It declares its settings (a frozen dataclass
of `hypotune.config.setting`s, optionally grouped in tables) and a function

    train(settings, seed, log) -> Result | {metric: value}

that calls `log({...})` once per epoch with that epoch's metrics (and "epoch": its number); `log`
returns True when a tuning search wants the trial to stop there. Everything else is optional:
a cost estimate that orders the work, a check that fails impossible settings before anything
runs, a check of the data before a study starts, and which settings set the budget or the split,
so the audit can name them. The engine (study, plan, coordinator, executors, worker, store,
search, analysis, report) reaches a trainable only through this module; a worker imports it by
its reference, "module:attribute".
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypotune.config import Runtime, directions
from hypotune.errors import ConfigError
from hypotune.events import STATUSES, Epoch, Event, Result

BUILT_IN = {"fashion_mnist": "hypotune.fashion:TRAINABLE"}  # name -> reference
DEFAULT = "fashion_mnist"


class Log:
    """What a trainable reports through: `log(metrics)` once per epoch; True means stop there.

    `runtime` says how to run (threads, device, where the data lies); `tuning` is True for a
    trial of a tuning search, which must not look at the test set and keeps no artifacts.
    `run_id` is the MLflow run the trial is recorded in, in the store at `tracking_uri`: a
    trainable may log more to it (a command trainable's script logs everything there).
    """

    def __init__(
        self,
        key: str,
        emit: Callable[[Event], None],
        runtime: Runtime,
        tuning: bool = False,
        should_stop: Callable[[int], bool] | None = None,
        run_id: str = "",
        tracking_uri: str = "",
    ) -> None:
        self.key, self.emit, self.runtime, self.tuning = key, emit, runtime, tuning
        self.should_stop = should_stop
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self.epochs = 0

    def __call__(self, metrics: Mapping[str, float], stored: bool = False) -> bool:
        """Report one epoch; `stored`: its metrics are in the run already (the trainable logged them)."""
        self.epochs += 1
        values = {name: float(value) for name, value in metrics.items()}
        values.setdefault("epoch", float(self.epochs))
        self.emit(Epoch(self.key, values, stored))
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


def trainable(
    settings: type | None = None,
    *,
    name: str = "",
    metrics: Mapping[str, str | bool] | None = None,
    deciding: tuple[str, ...] = (),
    **fields: Any,
) -> Callable[[Callable[..., Any]], Trainable]:
    """Make a training function `train(settings, seed, log)` a Trainable:

        @hypotune.trainable(metrics={"val_loss": "minimize", "val_acc": "maximize"})
        def train(settings: Settings, seed: int, log) -> dict[str, float]: ...

    `settings` is its settings dataclass (default: the type of its first parameter); `metrics`
    the metrics it reports, each "minimize" or "maximize" (default: val_loss, minimized); the
    other `Trainable` fields (epochs, cost, check, budget, ...) may be given too. The function
    stays callable as before.
    """

    def wrap(function: Callable[..., Any]) -> Trainable:
        return from_function(function, settings, name=name, metrics=metrics, deciding=deciding, **fields)

    return wrap


def from_function(
    function: Callable[..., Any],
    settings: type | None = None,
    *,
    name: str = "",
    metrics: Mapping[str, str | bool] | None = None,
    ref: str = "",
    **fields: Any,
) -> Trainable:
    """A Trainable around a plain training function, its settings read from its first parameter."""
    settings = settings or _first_parameter_type(function)
    if not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
        raise ConfigError(
            f"trainable '{function.__name__}' needs its settings as a dataclass: annotate its first "
            "parameter with one (def train(settings: Settings, seed, log)) or pass settings="
        )
    taken = {"seed", "settings"} & {f.name for f in dataclasses.fields(settings)}
    if taken:
        raise ConfigError(f"trainable '{function.__name__}': a setting may not be named {sorted(taken)[0]}")
    return Trainable(
        name or function.__name__, settings, function, ref=ref, metrics=directions(metrics), **fields
    )


def _first_parameter_type(function: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve: reported as missing
        return None
    parameters = list(inspect.signature(function).parameters)
    return hints.get(parameters[0]) if parameters else None


def load(name: str = DEFAULT) -> Trainable:
    """A trainable by built-in name ("fashion_mnist") or reference: "package.module:attribute", or
    "/path/to/file.py:attribute" (a Trainable or a training function), or "/path/to/file.toml:table"
    (a command trainable, `hypotune.scripts`: read afresh each time, as the file may change)."""
    ref = BUILT_IN.get(name, name)
    path, _, table = ref.rpartition(":")
    if path.endswith(".toml") and table:
        from hypotune.scripts import from_toml

        return Trainable(**from_toml(Path(path), table))
    return _load(ref)


@functools.cache
def _load(ref: str) -> Trainable:
    module_name, _, attribute = ref.rpartition(":")
    if not module_name or not attribute:
        known = ", ".join(BUILT_IN)
        raise ConfigError(
            f"trainable '{ref}' is neither built in ({known}) nor 'module:attribute', 'file.py:attribute'"
            " or a [trainable] table with a command"
        )
    module = _module(ref, module_name)
    found = getattr(module, attribute, None)
    if callable(found) and not isinstance(found, Trainable) and not isinstance(found, type):
        return from_function(found, ref=ref)
    if not isinstance(found, Trainable):
        raise ConfigError(
            f"trainable '{ref}': {module_name} has no Trainable or training function named '{attribute}'"
        )
    return found if found.ref == ref else _with_ref(found, ref)


def _module(ref: str, module_name: str) -> Any:
    """The module a reference names: imported by name, or executed from its file (its folder
    goes on the import path, as when it runs as a script, so it may import what lies beside it)."""
    if not module_name.endswith(".py"):
        try:
            return importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(f"trainable '{ref}': cannot import {module_name} ({error})") from None
    path = Path(module_name)
    if not path.is_file():
        raise ConfigError(f"trainable '{ref}': no such file {path}")
    unique = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"hypotune_user_{path.stem}_{unique}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.resolve().parent) not in sys.path:
        sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigError(
            f"trainable '{ref}': {path.name} failed to load: {type(error).__name__}: {error}"
        ) from None
    return module


def resolve_ref(text: str, folder: Path) -> str:
    """A study file's `trainable = "..."`, made absolute: a file (`train.py:fit`, or a command's
    `train.toml:trainable`) or a module with a file of its name (`train:fit` and train.py) beside
    the study is that file."""
    if text in BUILT_IN:
        return text
    module_name, sep, attribute = text.rpartition(":")
    if not sep:
        return text  # not a reference: `load` says why
    named_file = module_name.endswith((".py", ".toml"))
    beside = folder / (module_name if named_file else f"{module_name.replace('.', '/')}.py")
    if beside.is_file():
        return f"{beside.resolve()}:{attribute}"
    if not named_file and not _findable(module_name):
        stems = sorted(p.stem for p in folder.glob("*.py"))
        close = difflib.get_close_matches(module_name, stems, n=1)
        hint = f"; did you mean {close[0]}:{attribute} ({close[0]}.py)?" if close else ""
        wanted = beside.relative_to(folder)
        raise ConfigError(
            f"trainable '{text}': cannot import {module_name}: no {wanted} in {folder.resolve()} "
            f"and no module {module_name!r} on the Python path{hint}"
        )
    return text


def _findable(module_name: str) -> bool:
    """Whether `module_name` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or an empty name
        return False


def importable(trainable: Trainable) -> Trainable:
    """The trainable, once it is sure that worker processes can load it by its reference."""
    where = "define it at the top level of a module on the path and set ref = 'module:attribute'"
    if not trainable.ref or trainable.ref.startswith("__main__:"):
        raise ConfigError(f"trainable '{trainable.name}' cannot reach worker processes: {where}")
    load(trainable.ref)
    return trainable


def _with_ref(trainable: Trainable, ref: str) -> Trainable:
    return dataclasses.replace(trainable, ref=ref)


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
