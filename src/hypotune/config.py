"""Typed, frozen run configuration: defaults, then a TOML file, then overrides.

A `RunConfig` fully determines one training (data split, model, budget, seed); its hash is
the trial key. Execution settings that do not change what is trained (threads, device, where
the data lies) live in `Runtime`, outside the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypotune.errors import ConfigError

MAX_SEED = 2**32 - 1  # the largest seed every generator a run seeds accepts


def setting(default: Any, help: str) -> Any:
    """A config field with its one-line meaning (shown by `--help` and in the docs)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataConfig:
    val_size: int = setting(10_000, "images carved from the training set for validation (stratified)")
    split_seed: int = setting(0, "seed of the train/validation split (vary_split studies: the trial seed)")
    train_subset: int = setting(0, "training images used, stratified subset (0 = the whole split)")
    test_size: int = setting(0, "test images for the final evaluation, stratified subset (0 = all 10,000)")
    validate_on_test: bool = setting(
        False, "course protocol: validate on the official test set (biased; logged as such)"
    )
    normalize: str = setting("scale", "pixel scaling: 'scale' (x/255) or 'standardize'")
    flip: bool = setting(False, "augment with random horizontal flips")
    translate: int = setting(0, "augment with random shifts of up to this many pixels")
    eval_flip: bool = setting(
        False, "evaluate each image and its mirror image, averaging the predicted probabilities"
    )

    def __post_init__(self) -> None:
        _check(self.val_size >= 0, "data.val_size", "must be >= 0")
        _check(self.train_subset >= 0, "data.train_subset", "must be >= 0")
        _check(self.test_size >= 0, "data.test_size", "must be >= 0")
        _check(0 <= self.split_seed <= MAX_SEED, "data.split_seed", f"must be between 0 and {MAX_SEED}")
        _choice("data.normalize", self.normalize, ("scale", "standardize"))
        _check(0 <= self.translate <= 8, "data.translate", "must be between 0 and 8 pixels")
        _check(
            self.validate_on_test or self.val_size > 0,
            "data.val_size",
            "must be > 0 unless data.validate_on_test is set",
        )


@dataclass(frozen=True)
class ModelConfig:
    depth: int = setting(10, "number of convolutional layers")
    width: int | tuple[int, ...] = setting(32, "filters per conv layer: one number, or one per layer")
    kernel_size: int = setting(3, "convolution kernel size (odd; 'same' padding)")
    norm: str = setting("none", "normalization: none, batch, instance, layer, group")
    groups: int = setting(8, "group count for norm = group; must divide every width")
    activation: str = setting("relu", "activation: relu, gelu, silu, leaky_relu, elu, tanh")
    dropout: float = setting(0.0, "dropout rate inside each conv block (0 = none)")
    dropout_kind: str = setting("spatial", "'spatial' (Dropout2d, whole channels) or 'element'")
    block_order: str = setting(
        "conv-norm-act-dropout-pool", "order of operations inside a block, joined by '-'"
    )
    pool: str = setting("max", "pooling kind: max or avg")
    pool_size: int = setting(3, "pooling window and stride")
    pools: int = setting(2, "poolings spread evenly over the layers (when pool_after is empty)")
    pool_after: tuple[int, ...] = setting((), "1-based conv layers followed by pooling (overrides pools)")
    residual: bool = setting(False, "add skip connections around each conv block")
    head: str = setting("flatten", "classifier head: 'flatten' or 'gap' (global average pool)")
    head_hidden: tuple[int, ...] = setting((32,), "hidden dense layers of the head")
    head_dropout: float = setting(0.0, "element-wise dropout before each dense layer of the head")

    def __post_init__(self) -> None:
        _check(1 <= self.depth <= 64, "model.depth", "must be between 1 and 64")
        if isinstance(self.width, tuple):
            _check(
                len(self.width) == self.depth,
                "model.width",
                f"lists {len(self.width)} widths for {self.depth} layers",
            )
        _check(all(1 <= w <= 4096 for w in self.widths), "model.width", "must be between 1 and 4096")
        odd = self.kernel_size % 2 == 1
        _check(odd and 1 <= self.kernel_size <= 27, "model.kernel_size", "must be odd, from 1 to 27")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _check(0.0 <= self.head_dropout < 1.0, "model.head_dropout", "must be in [0, 1)")
        _choice("model.dropout_kind", self.dropout_kind, ("spatial", "element"))
        _choice("model.head", self.head, ("flatten", "gap"))
        _check(self.pool_size >= 1, "model.pool_size", "must be >= 1")
        hidden_ok = all(1 <= h <= 65_536 for h in self.head_hidden)
        _check(hidden_ok, "model.head_hidden", "sizes must be from 1 to 65536")
        if not self.pool_after:
            _check(0 <= self.pools <= self.depth, "model.pools", f"must be between 0 and depth {self.depth}")
        bad = [i for i in self.pool_after if not 1 <= i <= self.depth]
        _check(not bad, "model.pool_after", f"names layers {bad} outside 1..{self.depth}")
        # Names (norm, activation, pool, block_order) are checked against the layer registries
        # when the model is built; `hypotune.model.check_model` runs that without building.

    @property
    def pool_layers(self) -> tuple[int, ...]:
        """The layers followed by pooling: pool_after, or `pools` spread evenly (10 layers: 4, 8)."""
        if self.pool_after:
            return tuple(sorted(set(self.pool_after)))
        return tuple(math.ceil(self.depth * i / (self.pools + 0.5)) for i in range(1, self.pools + 1))

    @property
    def widths(self) -> tuple[int, ...]:
        return self.width if isinstance(self.width, tuple) else (self.width,) * self.depth


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(3, "training epochs")
    steps_per_epoch: int = setting(100, "batches per epoch (0 = one full pass over the training split)")
    batch_size: int = setting(64, "images per batch")
    optimizer: str = setting("adam", "adam, adamw or sgd (with Nesterov momentum)")
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(1e-5, "weight decay (L2 for adam/sgd, decoupled for adamw)")
    momentum: float = setting(0.9, "momentum for sgd")
    schedule: str = setting("plateau", "constant, cosine, onecycle or plateau (on validation loss)")
    plateau_factor: float = setting(0.1, "plateau: multiply the learning rate by this")
    plateau_patience: int = setting(10, "plateau: epochs without improvement before a cut")
    label_smoothing: float = setting(0.0, "label smoothing of the training loss")
    early_stopping: int = setting(0, "stop after this many epochs without a better val loss (0 = off)")

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.steps_per_epoch >= 0, "train.steps_per_epoch", "must be >= 0")
        _check(1 <= self.batch_size <= 65_536, "train.batch_size", "must be between 1 and 65536")
        _choice("train.optimizer", self.optimizer, ("adam", "adamw", "sgd"))
        _choice("train.schedule", self.schedule, ("constant", "cosine", "onecycle", "plateau"))
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)")
        _check(0 < self.plateau_factor < 1, "train.plateau_factor", "must be in (0, 1)")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)")
        _check(self.early_stopping >= 0, "train.early_stopping", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = setting(0, "seed of initialisation, data order, dropout masks and augmentation")

    def __post_init__(self) -> None:
        _check(0 <= self.seed <= MAX_SEED, "seed", f"must be between 0 and {MAX_SEED}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """The trial key: a hash of everything that determines the trained model."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with nested overrides applied, e.g. {"model": {"depth": 6}, "seed": 1}."""
        return run_config_from_dict(merge(self.to_dict(), overrides))


@dataclass(frozen=True)
class Runtime:
    """How a run executes; never changes the result on CPU, so it is not part of the key."""

    threads: int = setting(1, "torch threads per training process")
    device: str = setting("cpu", "cpu, cuda, or auto (cuda when present)")
    data_dir: str = setting("", "directory holding the Fashion-MNIST IDX files ('' = search)")

    def __post_init__(self) -> None:
        _check(1 <= self.threads <= 256, "threads", "must be between 1 and 256")
        _choice("device", self.device, ("cpu", "cuda", "auto"))


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _check(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(f"{key} {problem}")


def _choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    _check(value in valid, key, f"is '{value}'; valid: {', '.join(valid)}")


def unknown_key_message(key: str, valid: typing.Iterable[str]) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1) or difflib.get_close_matches(
        key.rsplit(".", 1)[-1], valid, n=1
    )
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown setting '{key}'{hint}; valid: {', '.join(valid)}"


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a field's type, converting lists to tuples and ints to floats."""
    if isinstance(hint, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of integers, got {value!r}")
        return tuple(coerce(f"{key}[{i}]", v, int) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint}")


def parse_text(key: str, text: str, hint: Any) -> Any:
    """Turn a command-line string into a value of the field's type."""
    if isinstance(hint, types.UnionType):
        hint = tuple[int, ...] if "," in text else typing.get_args(hint)[0]
    try:
        if typing.get_origin(hint) is tuple:
            return tuple(int(part) for part in text.split(",") if part.strip())
        if hint is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        return hint(text)
    except ValueError:
        raise ConfigError(f"{key} must be {_type_name(hint)}, got '{text}'") from None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "a list of integers"
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[hint]


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def section_from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table of settings, got {values!r}")
    hints = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(unknown_key_message(f"{where}.{key}", hints))
        kwargs[key] = coerce(f"{where}.{key}", value, hints[key])
    return cls(**kwargs)


def run_config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from nested plain data, naming any bad key."""
    parts: dict[str, Any] = {}
    for key, value in values.items():
        if key == "seed":
            parts["seed"] = coerce("seed", value, int)
        elif key in SECTIONS:
            parts[key] = section_from_dict(SECTIONS[key], value, key)
        else:
            raise ConfigError(unknown_key_message(key, [*SECTIONS, "seed"]))
    return RunConfig(**parts)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a TOML file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror or error})") from None


def dotted_to_nested(key: str, value: Any) -> dict[str, Any]:
    """'model.depth', 6 -> {'model': {'depth': 6}}."""
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def setting_type(key: str, where: str = "", bare: bool = False) -> Any:
    """The type of a dotted setting ('model.depth'), the one place a setting's name is resolved;
    with `bare`, also 'seed' and a setting's unique bare name ('depth'). An unknown name is a
    ConfigError that lists the valid ones and suggests the closest."""
    if bare and key == "seed":
        return int
    if bare and "." not in key:
        key = f"{flag_owner(key)}.{key}"
    section, _, name = key.partition(".")
    hints = field_types(SECTIONS[section]) if section in SECTIONS else {}
    if name not in hints:
        valid = [f"{s}.{n}" for s, cls in SECTIONS.items() for n in field_types(cls)]
        message = unknown_key_message(key, valid)
        raise ConfigError(f"{where}: {message}" if where else message)
    return hints[name]


def flag_owner(name: str) -> str:
    """The section ('data', 'model', 'train') that owns a setting name; names are unique."""
    for section, cls in SECTIONS.items():
        if name in field_types(cls):
            return section
    raise ConfigError(unknown_key_message(name, all_setting_names()))


def all_setting_names() -> list[str]:
    return [name for cls in SECTIONS.values() for name in field_types(cls)]


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML, loadable again with `--config`."""
    sections = {name: values for name, values in config.to_dict().items() if name != "seed"}
    return f"seed = {config.seed}\n\n{toml_tables(sections)}\n"


def toml_tables(tables: dict[str, dict[str, Any]]) -> str:
    """Nested settings as TOML tables: {"train": {"lr": 0.003}} -> '[train]\\nlr = 0.003'."""
    return "\n\n".join(
        f"[{section}]\n" + "\n".join(f"{key} = {toml_value(value)}" for key, value in values.items())
        for section, values in tables.items()
    )


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)
