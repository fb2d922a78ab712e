"""A trainable from a plain training function: `@trainable` (or `from_function`) reads
the settings from the type of its first parameter, `train(settings, seed, log)`, and the metrics'
directions from the arguments, so a user's function needs no subclass.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from hypotune.config import directions
from hypotune.errors import ConfigError
from hypotune.trainables.protocol import Trainable


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
