"""The built-in trainable's settings: their checks, defaults, key and file form."""

import functools

import pytest

from hypotune import config as engine
from hypotune.config import RunConfig, read_toml, to_toml
from hypotune.errors import ConfigError
from hypotune.fashion.config import DataConfig, ModelConfig, Settings, TrainConfig

run_config_from_dict = functools.partial(engine.run_config_from_dict, Settings)


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown setting 'model.dpeth' \(did you mean 'depth'\?\)"):
        run_config_from_dict({"model": {"dpeth": 6}})


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown setting 'modle'"):
        run_config_from_dict({"modle": {}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": {"depth": "six"}}, "model.depth must be an integer"),
        ({"model": {"depth": True}}, "model.depth must be an integer"),
        ({"train": {"lr": "fast"}}, "train.lr must be a number"),
        ({"data": {"flip": 1}}, "data.flip must be true or false"),
        ({"model": {"pool_after": 4}}, "model.pool_after must be a list"),
        ({"model": {"width": [8, "x"]}}, "model.width must be"),
        ({"train": {"epochs": 0}}, "train.epochs must be >= 1"),
        ({"train": {"optimizer": "adamax"}}, "train.optimizer is 'adamax'; valid: adam, adamw, sgd"),
        ({"model": {"dropout": 1.0}}, r"model.dropout must be in \[0, 1\)"),
        ({"model": {"depth": 3, "width": [8, 8]}}, "model.width lists 2 widths for 3 layers"),
        ({"model": {"depth": 3, "pool_after": [4]}}, "model.pool_after names layers"),
        ({"data": {"val_size": 0}}, "data.val_size must be > 0 unless"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(values)


def test_width_accepts_a_number_or_one_per_layer():
    assert ModelConfig(depth=3, width=16).widths == (16, 16, 16)
    config = run_config_from_dict({"model": {"depth": 3, "width": [8, 16, 32], "pool_after": []}})
    assert config.model.widths == (8, 16, 32)


def test_ints_are_accepted_for_floats():
    assert run_config_from_dict({"train": {"lr": 1}}).train.lr == 1.0


def test_key_is_stable_and_sensitive():
    base = RunConfig(Settings())
    assert base.key() == RunConfig(Settings()).key()
    assert base.replace({"seed": 1}).key() != base.key()
    assert base.replace({"train": {"epochs": 4}}).key() != base.key()
    assert base.replace({"data": {"split_seed": 1}}).key() != base.key()


def test_replace_merges_nested_overrides():
    config = RunConfig(Settings()).replace({"model": {"depth": 6, "pool_after": [2, 4]}, "seed": 3})
    assert (config.model.depth, config.model.width, config.seed) == (6, 32, 3)


def test_toml_round_trip(tmp_path):
    config = RunConfig(
        Settings(
            data=DataConfig(flip=True),
            model=ModelConfig(depth=3, width=(8, 16, 16), pool_after=(1,)),
            train=TrainConfig(lr=0.003),
        ),
        seed=7,
    )
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert run_config_from_dict(read_toml(path)) == config


def test_read_toml_reports_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\ndepth = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="no such file"):
        read_toml(tmp_path / "missing.toml")


def test_the_configuration_doc_lists_every_setting():
    from pathlib import Path

    from hypotune.config import Runtime, sections

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for cls in (*sections(Settings).values(), Runtime):
        for name in cls.__dataclass_fields__:
            assert f"| `{name}` |" in doc, name
