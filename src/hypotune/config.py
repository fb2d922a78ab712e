"""Settings as typed, frozen dataclasses: defaults, then a TOML file, then overrides.

A trainable declares its settings as a frozen dataclass of `setting`s, optionally grouped in
tables (the built-in CNN has [data], [model], [train]). A `RunConfig` pairs those settings with
a seed: it fully determines one training, and its hash is the trial key. Execution settings
that do not change what is trained (threads, device, where the data lies) live in `Runtime`,
outside the key. Nothing here knows any particular trainable.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypotune.errors import ConfigError

MAX_SEED = 2**32 - 1  # the largest seed every generator a run seeds accepts


def setting(default: Any, help: str, keyed: bool = True) -> Any:
    """A config field with its one-line meaning (shown by `--help` and in the docs).

    `keyed=False`: the setting changes only what is watched during training (the curves), never
    the trained model or its final metrics, so it is left out of the trial key and a trial
    trained under another value of it is the same trial."""
    return field(default=default, metadata={"help": help, "keyed": keyed})


def keyed_dict(settings: Any) -> Any:
    """`dataclasses.asdict` of settings, without the fields declared `keyed=False`."""
    if not dataclasses.is_dataclass(settings):
        return settings
    return {
        f.name: keyed_dict(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if f.metadata.get("keyed", True)
    }


def unkeyed_names(cls: type, prefix: str = "") -> set[str]:
    """The dotted names of a settings class's `keyed=False` settings ("data.epoch_val_size")."""
    names: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if not f.metadata.get("keyed", True):
            names.add(name)
        elif dataclasses.is_dataclass(hints.get(f.name)):
            names |= unkeyed_names(hints[f.name], f"{name}.")
    return names


@dataclass(frozen=True)
class RunConfig:
    """One trial: a trainable's settings and the seed. Its hash is the trial key.

    The settings are the trainable's frozen dataclass; tables of it read through
    (`config.model.depth` for the built-in CNN).
    """

    settings: Any
    seed: int = setting(0, "seed of initialisation, data order, dropout masks and augmentation")

    def __post_init__(self) -> None:
        check(0 <= self.seed <= MAX_SEED, "seed", f"must be between 0 and {MAX_SEED}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "settings":  # pickling and copying look these up
            raise AttributeError(name)
        return getattr(self.settings, name)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.settings), "seed": self.seed}

    def keyed(self) -> dict[str, Any]:
        """`to_dict` without the settings declared `keyed=False`: what the trial and search keys hash."""
        return {**keyed_dict(self.settings), "seed": self.seed}

    def key(self) -> str:
        """The trial key: a hash of everything that determines the trained model."""
        text = json.dumps(self.keyed(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with nested overrides applied, e.g. {"model": {"depth": 6}, "seed": 1}."""
        return run_config_from_dict(type(self.settings), merge(self.to_dict(), overrides))


@dataclass(frozen=True)
class Runtime:
    """How a run executes; never changes the result on CPU, so it is not part of the key."""

    threads: int = setting(1, "torch threads per training process")
    # cpu by default, for the API and the command line alike: every seed of a study then runs on
    # one device at one precision (a GPU trains in bfloat16), whichever machine resumes it.
    device: str = setting("cpu", "cpu, cuda, or auto (cuda when present)")
    data_dir: str = setting("", "folder holding the trainable's data ('' = where it looks by default)")

    def __post_init__(self) -> None:
        check(1 <= self.threads <= 256, "threads", "must be between 1 and 256")
        choice("device", self.device, ("cpu", "cuda", "auto"))


# MLflow's SQL store saves +-inf as the largest double; read anything that large back as inf.
INF_THRESHOLD = 1e308


def read_metric(value: float) -> float:
    """A metric's value as it was logged, from the value a store gives back."""
    return math.copysign(math.inf, value) if abs(value) >= INF_THRESHOLD else value


DIRECTIONS = {"minimize": True, "maximize": False}


def directions(metrics: Mapping[str, str | bool] | None) -> dict[str, bool]:
    """Metrics declared "minimize" or "maximize" (or lower-is-better booleans), as booleans."""
    if metrics is not None and not (isinstance(metrics, Mapping) and metrics):
        raise ConfigError(f'metrics must be a table of name = "minimize" or "maximize", got {metrics!r}')
    found = {}
    for metric, direction in (metrics or {"val_loss": "minimize"}).items():
        if isinstance(direction, bool):
            found[metric] = direction
        elif direction in DIRECTIONS:
            found[metric] = DIRECTIONS[direction]
        else:
            raise ConfigError(f"metric '{metric}' is '{direction}'; valid: minimize, maximize")
    return found


def check(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(f"{key} {problem}")


def choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    check(value in valid, key, f"is '{value}'; valid: {', '.join(valid)}")


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


def sections(cls: type) -> dict[str, type]:
    """The tables of a settings class: its fields that are settings classes themselves."""
    return {name: hint for name, hint in field_types(cls).items() if dataclasses.is_dataclass(hint)}


def leaves(cls: type) -> dict[str, Any]:
    """Every setting of a settings class by dotted name ('model.depth'), with its type."""
    found: dict[str, Any] = {}
    for name, hint in field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            found.update({f"{name}.{key}": inner for key, inner in leaves(hint).items()})
        else:
            found[name] = hint
    return found


def helps(cls: type) -> dict[str, str]:
    """Each setting's one-line help by dotted name, as `setting` declared it ('' when it did not)."""
    found: dict[str, str] = {}
    for item in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field_types(cls)[item.name]):
            found.update({f"{item.name}.{k}": v for k, v in helps(field_types(cls)[item.name]).items()})
        else:
            found[item.name] = item.metadata.get("help", "")
    return found


def settings_from_dict(cls: type, values: Any, where: str = "", extra: tuple[str, ...] = ()) -> Any:
    """Build a settings class from nested plain data, naming any bad key and suggesting the
    closest; `extra` are names the caller takes out first (the seed), listed as valid."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table of settings, got {values!r}")
    hints = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        at = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(unknown_key_message(at, [*hints, *extra]))
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = settings_from_dict(hints[key], value, at)
        else:
            kwargs[key] = coerce(at, value, hints[key])
    return cls(**kwargs)


def check_overrides(cls: type, values: Any, where: str) -> None:
    """Check a partial table of settings (an arm's, a preset's): known names and right types.
    Whether they fit together is checked once they are layered over the base."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table of settings")
    hints = field_types(cls)
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(unknown_key_message(f"{where}.{key}", hints))
        if dataclasses.is_dataclass(hints[key]):
            check_overrides(hints[key], value, f"{where}.{key}")
        else:
            coerce(f"{where}.{key}", value, hints[key])


def run_config_from_dict(cls: type, values: dict[str, Any]) -> RunConfig:
    """A RunConfig of the settings class `cls` from nested plain data (with an optional seed)."""
    values = dict(values)
    seed = coerce("seed", values.pop("seed", 0), int)
    return RunConfig(settings_from_dict(cls, values, extra=("seed",)), seed)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'depth': 6}} -> {'model.depth': 6}: nested settings by dotted name."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


def setting_type(cls: type, key: str, where: str = "", bare: bool = False) -> Any:
    """The type of a dotted setting of the settings class `cls` ('model.depth'), the one place a
    setting's name is resolved; with `bare`, also 'seed' and a setting's unique bare name
    ('depth'). An unknown name is a ConfigError that lists the valid ones and suggests the closest."""
    if bare and key == "seed":
        return int
    table = leaves(cls)
    if bare and key not in table:
        key = full_name(cls, key)
    if key not in table:
        message = unknown_key_message(key, table)
        raise ConfigError(f"{where}: {message}" if where else message)
    return table[key]


def full_name(cls: type, name: str) -> str:
    """The dotted name of a setting written bare ('depth' -> 'model.depth'); bare names that two
    tables share must be written in full."""
    if name in leaves(cls) or "." in name:
        return name
    owners = [key for key in leaves(cls) if key.rsplit(".", 1)[-1] == name]
    if len(owners) == 1:
        return owners[0]
    if owners:
        raise ConfigError(f"'{name}' is ambiguous: write one of {', '.join(owners)}")
    raise ConfigError(unknown_key_message(name, [k.rsplit(".", 1)[-1] for k in leaves(cls)]))


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML, loadable again with `--config`."""
    return toml_text(config.to_dict()) + "\n"


def toml_text(values: dict[str, Any]) -> str:
    """Nested settings as TOML, for a trainable with tables or without: its top-level values
    first, then a table per nested one: {"seed": 0, "train": {"lr": 0.003}} ->
    'seed = 0\n\n[train]\nlr = 0.003'."""
    tables = {name: table for name, table in values.items() if isinstance(table, dict)}
    lines = "\n".join(f"{name} = {toml_value(value)}" for name, value in values.items() if name not in tables)
    return "\n\n".join(part for part in (lines, toml_tables(tables)) if part)


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
