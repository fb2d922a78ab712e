"""Nuisance hyperparameters: which settings each arm tunes for itself, in what ranges, how long.

A hypothesis compares arms (the scientific settings). A setting like the learning rate is a
nuisance: each arm has its own best value, and comparing arms at one shared value favours
whichever arm that value happens to suit. A tuning spec names such settings with a range and
scale; every arm is then searched on its own (Optuna, on validation data only) before its
seeds are trained at its best setting. With `per_seed = true` the search is repeated for every
seed, each on its own split and sampler seed, and seed N trains at the best of search N: the
seeds then sample the noise of tuning too, at the price of one search per arm and seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from hypotune.config import coerce, dotted_to_nested, merge, setting_type, unknown_key_message
from hypotune.errors import ConfigError
from hypotune.trainables.protocol import Trainable

# `hypotune search` without a [tuning] table: the learning rate, over 20 trials.
DEFAULT_SEARCH_TRIALS = 20

TUNING_KEYS = {"space", "trials", "metric", "pruning", "seed", "per_seed"}
DIMENSION_KEYS = {"low", "high", "scale", "choices"}
# Tuning trials train on their own seeds, far from the 0..N-1 the verdicts use, so the runs a
# verdict rests on are fresh draws at the chosen setting, not the draw that won the search.
TUNING_SEED_BASE = 10_000
EDGE_FRACTION = 0.1  # a best value this close to an end of its range (on its scale) is at the edge


@dataclass(frozen=True)
class Dimension:
    """One nuisance setting and the values it may take."""

    name: str  # dotted setting, e.g. "train.lr"
    low: float = 0.0  # numeric range, inclusive
    high: float = 0.0
    log: bool = False  # search on a log scale
    integer: bool = False  # the setting is an integer
    choices: tuple[Any, ...] = ()  # categorical values instead of a range

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices:
            return CategoricalDistribution(self.choices)
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def position(self, value: Any) -> float:
        """Where `value` sits in the range, 0 (low) to 1 (high), on the search scale."""
        if self.choices:
            return math.nan
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def edge(self, value: Any) -> str:
        """'low' or 'high' when `value` is at that end of the range (widen it), else ''."""
        position = self.position(value)
        if math.isnan(position):
            return ""
        return "low" if position <= EDGE_FRACTION else "high" if position >= 1 - EDGE_FRACTION else ""

    def describe(self) -> str:
        if self.choices:
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} {'log-' if self.log else ''}uniform {self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class TuningSpec:
    space: tuple[Dimension, ...]
    trials: tuple[tuple[str, int], ...]  # (preset, tuning trials per arm); a preset not listed: 0
    metric: str = "val_loss"  # what the search optimises, on the validation split
    pruning: bool = True  # stop trials whose per-epoch metric trails the median of earlier ones
    seed: int = 0  # seed of the sampler (mixed with each arm's key)
    per_seed: bool = False  # one search per arm and seed, so the seeds sample tuning noise too
    lower_is_better: bool = True  # of the metric, as its trainable declares it

    def budget(self, preset: str) -> int:
        return dict(self.trials).get(preset, 0)

    @property
    def direction(self) -> str:
        return "minimize" if self.lower_is_better else "maximize"

    def range_ends(self) -> list[dict[str, Any]]:
        """Nested overrides at each end of every range (each choice), to check an arm builds there."""
        ends = []
        for dimension in self.space:
            for value in dimension.choices or (dimension.low, dimension.high):
                ends.append(dotted_to_nested(dimension.name, int(value) if dimension.integer else value))
        return ends

    def identity(self) -> dict[str, Any]:
        """What makes two searches the same search (the trial budget may grow between runs)."""
        identity = {
            "space": [d.__dict__ for d in self.space],
            "metric": self.metric,
            "pruning": self.pruning,
            "seed": self.seed,
        }
        return identity | ({"per_seed": True} if self.per_seed else {})  # keys of shared searches unchanged


def tuning_key(config_dict: dict[str, Any], spec: TuningSpec) -> str:
    """A search's identity: the arm's settings outside the tuned ones, and the spec; with
    `per_seed`, the seed too (each seed of an arm has its own search)."""
    fixed = json.loads(json.dumps(config_dict, default=list))
    for dimension in spec.space:
        *tables, name = dimension.name.split(".")
        table = fixed
        for part in tables:
            table = table[part]
        table.pop(name, None)
    if not spec.per_seed:
        fixed.pop("seed", None)
    text = json.dumps({"config": fixed, "tuning": spec.identity()}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_tuning(raw: Any, where: str, presets: set[str], trainable: Trainable) -> TuningSpec:
    """A [tuning] table: space = { "train.lr" = { low, high, scale } }, trials = { preset = N }.
    The space names `trainable`'s settings; only its deciding metrics (never a test set's) may
    be optimised."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with space and trials")
    for key in raw:
        if key not in TUNING_KEYS:
            raise ConfigError(unknown_key_message(f"{where}.{key}", TUNING_KEYS))
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(
            f'{where}.space needs at least one setting, e.g. "train.lr" = {{ low = 1e-4, ... }}'
        )
    space = tuple(
        parse_dimension(trainable.settings, name, value, f"{where}.space.{name}")
        for name, value in space_raw.items()
    )
    trials_raw = raw.get("trials", {})
    if not isinstance(trials_raw, dict):
        raise ConfigError(f"{where}.trials must be a table of preset = trials per arm")
    trials = []
    for preset, count in trials_raw.items():
        if preset not in presets:
            raise ConfigError(
                f"{where}.trials names preset '{preset}'; presets: {', '.join(sorted(presets))}"
            )
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
            raise ConfigError(f"{where}.trials.{preset} must be an integer from 0 to 10000, got {count!r}")
        trials.append((preset, count))
    deciding = trainable.deciding_metrics
    metric = raw.get("metric", deciding[0])
    if metric not in deciding:
        raise ConfigError(f"{where}.metric is {metric!r}; valid: {', '.join(deciding)} (never test)")
    pruning = raw.get("pruning", True)
    if not isinstance(pruning, bool):
        raise ConfigError(f"{where}.pruning must be true or false, got {pruning!r}")
    seed = coerce(f"{where}.seed", raw.get("seed", 0), int)
    per_seed = raw.get("per_seed", False)
    if not isinstance(per_seed, bool):
        raise ConfigError(f"{where}.per_seed must be true or false, got {per_seed!r}")
    return TuningSpec(space, tuple(trials), metric, pruning, seed, per_seed, trainable.metrics[metric])


def parse_dimension(settings: type, name: str, raw: Any, where: str) -> Dimension:
    hint = setting_type(settings, name, where)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where} must be a table: {{ low = ..., high = ..., scale = 'log' }} or {{ choices = [...] }}"
        )
    for key in raw:
        if key not in DIMENSION_KEYS:
            raise ConfigError(unknown_key_message(f"{where}.{key}", DIMENSION_KEYS))
    if "choices" in raw:
        choices = raw["choices"]
        if set(raw) != {"choices"} or not isinstance(choices, list) or len(choices) < 2:
            raise ConfigError(f"{where}: choices must be a list of at least two values, on their own")
        values = tuple(coerce(f"{where}.choices", c, hint) for c in choices)
        if any(isinstance(value, tuple) for value in values):
            raise ConfigError(f"{where}: {name} is a list setting; choices must be single values")
        return Dimension(name, choices=values)
    if hint not in (int, float):
        raise ConfigError(f"{where}: {name} is not numeric; give choices = [...] instead of a range")
    if "low" not in raw or "high" not in raw:
        raise ConfigError(f"{where} needs low and high")
    low, high = (coerce(f"{where}.{end}", raw[end], hint) for end in ("low", "high"))
    scale = raw.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise ConfigError(f"{where}.scale is {scale!r}; valid: linear, log")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if scale == "log" and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    return Dimension(name, float(low), float(high), scale == "log", hint is int)


def overrides_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """{'train.lr': 0.003} -> {'train': {'lr': 0.003}}; a name without tables stays as it is."""
    nested: dict[str, Any] = {}
    for name, value in params.items():
        nested = merge(nested, dotted_to_nested(name, value))
    return nested
