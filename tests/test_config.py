"""Settings of any trainable: tables or none, parsing with did-you-mean, the key, TOML form."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest

from hypotune.config import (
    RunConfig,
    check_overrides,
    flatten,
    full_name,
    helps,
    leaves,
    read_toml,
    run_config_from_dict,
    setting,
    setting_type,
    to_toml,
)
from hypotune.errors import ConfigError


@dataclass(frozen=True)
class Optimizer:
    lr: float = setting(0.1, "step size")
    steps: int = setting(10, "steps")


@dataclass(frozen=True)
class Data:
    steps: int = setting(0, "a name the other table has too")
    sizes: tuple[int, ...] = setting((1, 2), "sizes")


@dataclass(frozen=True)
class Nested:
    optimizer: Optimizer = field(default_factory=Optimizer)
    data: Data = field(default_factory=Data)
    name: str = setting("toy", "a setting outside any table")


def test_leaves_and_helps_name_every_setting_by_its_dotted_name():
    assert leaves(Nested) == {
        "optimizer.lr": float, "optimizer.steps": int, "data.steps": int, "data.sizes": tuple[int, ...],
        "name": str,
    }  # fmt: skip
    assert helps(Nested)["optimizer.lr"] == "step size"
    assert helps(Nested)["name"] == "a setting outside any table"


def test_a_bare_name_resolves_when_unique_and_is_refused_when_two_tables_share_it():
    assert full_name(Nested, "lr") == "optimizer.lr" and setting_type(Nested, "lr", bare=True) is float
    assert setting_type(Nested, "seed", bare=True) is int
    with pytest.raises(ConfigError, match="'steps' is ambiguous: write one of optimizer.steps, data.steps"):
        full_name(Nested, "steps")
    with pytest.raises(
        ConfigError, match=r"where: unknown setting 'optimizer.rl' \(did you mean 'optimizer.lr"
    ):
        setting_type(Nested, "optimizer.rl", "where")


def test_plain_data_becomes_settings_or_names_the_bad_key():
    config = run_config_from_dict(Nested, {"optimizer": {"lr": 1}, "data": {"sizes": [3]}, "seed": 2})
    assert config == RunConfig(Nested(Optimizer(lr=1.0), Data(sizes=(3,))), 2)
    assert isinstance(config.optimizer.lr, float)  # tables read through the config
    with pytest.raises(ConfigError, match=r"unknown setting 'optimizer.stpes' \(did you mean 'steps'\?\)"):
        run_config_from_dict(Nested, {"optimizer": {"stpes": 1}})
    with pytest.raises(ConfigError, match=r"unknown setting 'sede' \(did you mean 'seed'\?\)"):
        run_config_from_dict(Nested, {"sede": 1})
    with pytest.raises(ConfigError, match="optimizer must be a table of settings"):
        run_config_from_dict(Nested, {"optimizer": 3})
    with pytest.raises(ConfigError, match="seed must be between 0 and"):
        run_config_from_dict(Nested, {"seed": -1})


def test_partial_overrides_are_checked_for_names_and_types_only():
    check_overrides(Nested, {"optimizer": {"lr": 0.5}}, "arm")
    with pytest.raises(ConfigError, match="arm.optimizer.lr must be a number"):
        check_overrides(Nested, {"optimizer": {"lr": "fast"}}, "arm")
    with pytest.raises(ConfigError, match="unknown setting 'arm.nmae'"):
        check_overrides(Nested, {"nmae": "x"}, "arm")


def test_the_key_covers_settings_and_seed_and_survives_a_round_trip(tmp_path):
    config = run_config_from_dict(Nested, {"name": "a", "optimizer": {"lr": 0.3}, "seed": 5})
    assert config.key() == run_config_from_dict(Nested, config.to_dict()).key()
    assert config.replace({"seed": 6}).key() != config.key()
    assert config.replace({"optimizer": {"steps": 11}}).key() != config.key()
    assert pickle.loads(pickle.dumps(config)) == config  # configs travel to worker processes
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert run_config_from_dict(Nested, read_toml(path)) == config
    assert to_toml(config).startswith('name = "a"\nseed = 5\n\n[optimizer]')


def test_flatten_gives_dotted_names():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
