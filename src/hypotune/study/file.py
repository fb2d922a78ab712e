"""Study files: read a TOML study, check every part of it, and build a `Study`.

A study file is data: nothing in it is executed. It may name a trainable (`trainable =
"train.py:fit"`), whose module is imported, so that every setting it names resolves through
that trainable's settings; everything else resolves through hypotune's registries. Every
problem names its place in the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import itertools
import math
import re
from pathlib import Path
from typing import Any

from hypotune.config import (
    check_overrides,
    coerce,
    dotted_to_nested,
    field_types,
    flatten,
    merge,
    read_toml,
    setting_type,
    unknown_key_message,
)
from hypotune.errors import ConfigError, StudyError
from hypotune.study.model import (
    FAMILIES,
    Factor,
    Hypothesis,
    Margin,
    Prediction,
    Preset,
    Reference,
    SeedPlan,
    Statistics,
    Study,
)
from hypotune.study.predictions import KINDS
from hypotune.study.tuning import TuningSpec, parse_tuning
from hypotune.trainables.load import DEFAULT, load, resolve_ref
from hypotune.trainables.protocol import Trainable

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
STUDY_KEYS = {
    "name", "description", "dataset", "base", "presets", "hypotheses", "reference", "tuning", "statistics",
    "vary_split", "trainable",
}  # fmt: skip
STATISTICS_KEYS = {"alpha", "family", "margin", "futility"}
MAX_SEEDS = 1000
REFERENCE_KEYS = {"claim", "hypothesis", "arm", "metric", "value"}
PRESET_KEYS = {"seeds", "description", "hypotheses"}  # and the trainable's settings
HYPOTHESIS_KEYS = {
    "id", "statement", "base", "arms", "factors", "metric", "prediction", "predictions", "tuning", "margin",
}  # fmt: skip


BUILT_IN = "studies"  # the package folder of the studies hypotune ships


def built_in_studies() -> dict[str, Path]:
    """The studies that ship with hypotune, by name."""
    folder = importlib.resources.files("hypotune") / BUILT_IN
    return {
        Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")
    }


def study_path(name_or_path: str | Path) -> Path:
    """A study file's path: the path itself, or a built-in study named without a path or suffix."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    built_in = built_in_studies()
    if path.name in built_in:
        return built_in[path.name]
    names = ", ".join(sorted(built_in))
    close = difflib.get_close_matches(path.name, built_in, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise StudyError(f"{path}: no such file, and no built-in study of that name (built in: {names}){hint}")


def load_study(path: str | Path, trainable: Trainable | None = None) -> Study:
    """Read and fully validate a study file, or a built-in study by name; every problem names
    its place in the file. Its settings are `trainable`'s (default: the built-in CNN)."""
    path = study_path(path)
    return parse_study(read_toml(path), path, trainable)


def parse_study(raw: dict[str, Any], path: str | Path, trainable: Trainable | None = None) -> Study:
    """A study from a study file's parsed TOML, checked as `load_study` checks it. Its trainable
    is `trainable` when given, else the one the file names (`trainable = "train.py:fit"`, beside
    the file or importable), else the built-in CNN."""
    try:
        return _parse_study(raw, str(path), trainable or _named_trainable(raw, Path(path)))
    except ConfigError as error:
        raise StudyError(f"{path}: {error}") from None


def _named_trainable(raw: dict[str, Any], path: Path) -> Trainable:
    """The trainable a study file names (`trainable = "train.py:fit"`) or declares (a [trainable]
    table with a command), else the built-in one."""
    named = raw.get("trainable", DEFAULT)
    if isinstance(named, dict):
        from hypotune.trainables.command import from_table

        try:
            return Trainable(**from_table(named, path))
        except ConfigError as error:
            raise ConfigError(f"[trainable] {error}") from None
    if not isinstance(named, str) or not named:
        what = "a name, 'module:function' or a table with a command"
        raise ConfigError(f"trainable must be {what}, got {named!r}")
    return load(resolve_ref(named, path.parent))


def _parse_study(raw: dict[str, Any], path: str, t: Trainable) -> Study:
    if "runs" in raw:
        raise ConfigError("a runs file ([runs]) describes runs already made: `hypotune analyze` reads it")
    _known_keys(raw, STUDY_KEYS, "")
    name = _name(raw, "name", "", "name")
    dataset = raw.get("dataset", "")  # a label for the reader: the trainable reads its own data
    if not isinstance(dataset, str):
        raise ConfigError(f"dataset must be a name for the data (a string), got {dataset!r}")
    base = _settings(t, raw.get("base", {}), "base")
    presets = _parse_presets(t, raw.get("presets"))
    hypotheses_raw = raw.get("hypotheses")
    if not isinstance(hypotheses_raw, list) or not hypotheses_raw:
        raise ConfigError("hypotheses: a study needs at least one [[hypotheses]] entry")
    tuning = raw.get("tuning")
    if tuning is not None and not isinstance(tuning, dict):
        raise ConfigError("tuning must be a table ([tuning])")
    hypotheses = tuple(
        _parse_hypothesis(t, h, f"hypotheses[{i}]", tuning, set(presets))
        for i, h in enumerate(hypotheses_raw)
    )
    ids = [h.id for h in hypotheses]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ConfigError(f"hypotheses: id '{duplicate}' is used twice")
    for preset in presets.values():
        unknown = [h for h in preset.hypotheses if h not in ids]
        if unknown:
            raise ConfigError(
                f"presets.{preset.name}.hypotheses names '{unknown[0]}', which is not a hypothesis; "
                f"hypotheses: {', '.join(ids)}"
            )
    reference = _parse_reference(t, raw.get("reference", []), {h.id: h for h in hypotheses})
    statistics = _parse_statistics(raw.get("statistics", {}))
    vary_split = raw.get("vary_split", True)
    if not isinstance(vary_split, bool):
        raise ConfigError(f"vary_split must be true or false, got {vary_split!r}")
    description = _string(raw, "description", "")
    study = Study(name, description, base, presets, hypotheses, path, reference, statistics, vary_split, t,
                  dataset)  # fmt: skip
    for index, hypothesis in enumerate(hypotheses):
        for arm in hypothesis.arms:
            for preset in (name for name, p in presets.items() if p.runs(hypothesis.id)):
                where = f"hypotheses[{index}] ({hypothesis.id}).arms.{arm} under preset '{preset}'"
                for tuned in _range_ends(hypothesis, preset):
                    try:
                        t.describe(study.arm_config(hypothesis, arm, preset, 0, tuned).settings)
                    except ConfigError as error:
                        at = f" with tuned {tuned}" if tuned else ""
                        raise ConfigError(f"{where}{at}: {error}") from None
    return study


def _range_ends(hypothesis: Hypothesis, preset: str) -> list[dict[str, Any]]:
    """The arm's settings to check: as written, and at each end of every tuned range."""
    return [{}] + (hypothesis.tuning.range_ends() if hypothesis.tuned_in(preset) else [])


def _parse_reference(t: Trainable, raw: Any, hypotheses: dict[str, Hypothesis]) -> tuple[Reference, ...]:
    if not isinstance(raw, list):
        raise ConfigError("reference must be a list of tables ([[reference]])")
    entries = []
    for index, entry in enumerate(raw):
        where = f"reference[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        _known_keys(entry, REFERENCE_KEYS, where)
        missing = sorted(REFERENCE_KEYS - set(entry))
        if missing:
            raise ConfigError(f"{where} needs {', '.join(missing)}")
        hypothesis = hypotheses.get(entry["hypothesis"])
        if hypothesis is None:
            raise ConfigError(
                f"{where}.hypothesis names '{entry['hypothesis']}', which is not a hypothesis here"
            )
        _known_arm(entry["arm"], hypothesis, f"{where}.arm")
        if entry["metric"] not in t.metrics:
            raise ConfigError(f"{where}.metric is '{entry['metric']}'; valid: {', '.join(t.metrics)}")
        value = coerce(f"{where}.value", entry["value"], float)
        entries.append(Reference(str(entry["claim"]), hypothesis.id, entry["arm"], entry["metric"], value))
    return tuple(entries)


def _parse_statistics(raw: Any) -> Statistics:
    if not isinstance(raw, dict):
        raise ConfigError("statistics must be a table ([statistics])")
    _known_keys(raw, STATISTICS_KEYS, "statistics")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ConfigError(f"statistics.alpha must be a number between 0 and 0.5, got {alpha!r}")
    family = raw.get("family", "hypothesis")
    if family not in FAMILIES:
        raise ConfigError(f"statistics.family is {family!r}; valid: {', '.join(FAMILIES)}")
    margin = _parse_margin(raw["margin"], "statistics.margin") if "margin" in raw else None
    futility = raw.get("futility", Statistics.futility)
    if (
        isinstance(futility, bool)
        or not isinstance(futility, (int, float))
        or not (futility == 0 or futility >= 1)
    ):
        raise ConfigError(
            f"statistics.futility must be 0 (never give up) or a number of at least 1 (times the "
            f"preset's maximum seeds), got {futility!r}"
        )
    return Statistics(float(alpha), family, margin, float(futility))


def _parse_margin(raw: Any, where: str) -> Margin:
    """A number in the metric's units, or a percentage of its mean ("2%")."""
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1]) / 100
        except ValueError:
            value = math.nan
        relative = True
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value, relative = float(raw), False
    else:
        value, relative = math.nan, False
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{where} must be a positive number in the metric's units (0.02) or a percentage "
            f'of its mean ("2%"), got {raw!r}'
        )
    return Margin(value, relative)


def _parse_seeds(raw: Any, where: str) -> SeedPlan:
    """`seeds = 5`, or `seeds = { min = 3, max = 20 }` to add seeds while verdicts are open."""

    def count(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEEDS:
            raise ConfigError(f"{name} must be an integer from 1 to {MAX_SEEDS}, got {value!r}")
        return value

    if isinstance(raw, dict):
        _known_keys(raw, {"min", "max"}, where)
        low = count(raw.get("min", 3), f"{where}.min")
        high = count(raw.get("max", low), f"{where}.max")
        if high < low:
            raise ConfigError(f"{where}.max ({high}) is below min ({low})")
        return SeedPlan(low, high)
    seeds = count(raw, where)
    return SeedPlan(seeds, seeds)


def _parse_presets(t: Trainable, raw: Any) -> dict[str, Preset]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("presets: a study needs at least one preset, e.g. [presets.quick]")
    presets = {}
    for name, values in raw.items():
        where = f"presets.{name}"
        _name({"name": name}, "name", where, "a preset name")
        if not isinstance(values, dict):
            raise ConfigError(f"{where} must be a table")
        _known_keys(values, PRESET_KEYS | set(field_types(t.settings)), where)
        seeds = _parse_seeds(values.get("seeds", 1), f"{where}.seeds")
        overrides = _settings(t, {k: v for k, v in values.items() if k not in PRESET_KEYS}, where)
        chosen = values.get("hypotheses", [])
        if not isinstance(chosen, list) or not all(isinstance(h, str) for h in chosen):
            raise ConfigError(f"{where}.hypotheses must be a list of hypothesis ids")
        presets[name] = Preset(name, seeds, overrides, _string(values, "description", where), tuple(chosen))
    return presets


def _parse_hypothesis(
    t: Trainable, raw: Any, where: str, study_tuning: dict | None, presets: set[str]
) -> Hypothesis:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    _known_keys(raw, HYPOTHESIS_KEYS, where)
    hid = _name(raw, "id", where, "id")
    where = f"{where} ({hid})"
    tuning = _hypothesis_tuning(t, raw.get("tuning"), study_tuning, where, presets)
    shared = _settings(t, raw.get("base", {}), f"{where}.base")
    if ("arms" in raw) == ("factors" in raw):
        raise ConfigError(
            f"{where}: give either arms or factors, not {'both' if 'arms' in raw else 'neither'}"
        )
    factors: tuple[Factor, ...] = ()
    if "arms" in raw:
        arms_raw = raw["arms"]
        if not isinstance(arms_raw, dict) or not arms_raw:
            raise ConfigError(f"{where}.arms must be a table of named arms")
        arms = {name: merge(shared, _settings(t, v, f"{where}.arms.{name}")) for name, v in arms_raw.items()}
    else:
        factors = _parse_factors(t, raw["factors"], f"{where}.factors")
        arms = {}
        for combination in itertools.product(*(f.levels for f in factors)):
            label = ", ".join(
                f"{f.name.rsplit('.', 1)[-1]}={lv[0]}" for f, lv in zip(factors, combination, strict=True)
            )
            overrides = shared
            for _, level_overrides in combination:
                overrides = merge(overrides, level_overrides)
            arms[label] = overrides
    for name in arms:
        if not name.strip():
            raise ConfigError(f"{where}: an arm or factor level needs a name, got {name!r}")
    metric = raw.get("metric", t.deciding_metrics[0])
    if metric not in t.metrics:
        raise ConfigError(f"{where}.metric is '{metric}'; valid: {', '.join(t.metrics)}")
    if metric not in t.deciding_metrics:
        raise ConfigError(
            f"{where}.metric '{metric}' may be reported, never decide: use one of "
            f"{', '.join(t.deciding_metrics)}"
        )
    if ("prediction" in raw) == ("predictions" in raw):
        raise ConfigError(f"{where}: give prediction (one table) or predictions (a list), exactly one")
    listed = raw.get("predictions") or [raw.get("prediction")]
    if not isinstance(listed, list):
        raise ConfigError(f"{where}.predictions must be a list of tables")
    margin = _parse_margin(raw["margin"], f"{where}.margin") if "margin" in raw else None
    hypothesis = Hypothesis(
        hid, _string(raw, "statement", where), arms, metric, (), factors,
        lower_is_better=t.metrics[metric], failure=t.failure.get(metric, math.nan), size=t.size,
    )  # fmt: skip
    predictions = tuple(
        _parse_prediction(p, hypothesis, f"{where}.prediction" + (f"s[{i}]" if "predictions" in raw else ""))
        for i, p in enumerate(listed)
    )
    if len(arms) < 2 and any(p.kind != "reaches" for p in predictions):
        raise ConfigError(
            f"{where}.arms: a hypothesis compares at least two arms (one only to test a 'reaches')"
        )
    if tuning is not None:
        compared = _compared_settings(arms)
        for dimension in tuning.space:
            if dimension.name in compared:
                raise ConfigError(
                    f"{where}.tuning: {dimension.name} is what this hypothesis compares; "
                    "a setting cannot be both an arm's and tuned"
                )
    return dataclasses.replace(hypothesis, predictions=predictions, tuning=tuning, margin=margin)


def _hypothesis_tuning(
    t: Trainable, raw: Any, study_tuning: dict | None, where: str, presets: set[str]
) -> TuningSpec | None:
    """The study's [tuning] with the hypothesis's own table merged over it; false opts out."""
    if raw is False or (raw is None and study_tuning is None):
        return None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{where}.tuning must be a table, or false to tune nothing here")
    merged = merge(study_tuning or {}, raw or {})
    return parse_tuning(merged, f"{where}.tuning" if raw else "tuning", presets, t)


def _compared_settings(arms: dict[str, dict[str, Any]]) -> set[str]:
    """Dotted settings whose value differs between arms (set in one, unset in another counts)."""
    flat = [flatten(overrides) for overrides in arms.values()]
    names = {name for values in flat for name in values}
    return {name for name in names if len({repr(values.get(name, "<unset>")) for values in flat}) > 1}


def _parse_factors(t: Trainable, raw: Any, where: str) -> tuple[Factor, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where} must be a table of factors")
    factors = []
    for name, values in raw.items():
        if isinstance(values, list):  # a setting and its values: "model.dropout" = [0, 0.1]
            if len(values) < 2:
                raise ConfigError(f"{where}.{name} needs at least two values")
            setting_type(t.settings, name, f"{where}.{name}")
            levels = tuple(
                (_label(v), _settings(t, dotted_to_nested(name, v), f"{where}.{name}")) for v in values
            )
        elif isinstance(values, dict):  # named levels, each a bundle of settings
            if len(values) < 2:
                raise ConfigError(f"{where}.{name} needs at least two levels")
            levels = tuple((lv, _settings(t, v, f"{where}.{name}.{lv}")) for lv, v in values.items())
        else:
            raise ConfigError(f"{where}.{name} must be a list of values or a table of named levels")
        factors.append(Factor(name, levels))
    return tuple(factors)


def _parse_prediction(raw: Any, hypothesis: Hypothesis, where: str) -> Prediction:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind is {kind!r}; valid: {', '.join(KINDS)}")
    fields = KINDS[kind].fields
    _known_keys(raw, {"kind", "exploratory", *fields}, where)
    if not isinstance(raw.get("exploratory", False), bool):
        raise ConfigError(f"{where}.exploratory must be true or false")
    missing = [name for name, required in fields.items() if required and name not in raw]
    if missing:
        raise ConfigError(f"{where}: a '{kind}' prediction needs {', '.join(missing)}")
    values = dict(raw)
    for name in ("arm", "than", "reference", "factor", "direction"):
        if name in values and not (isinstance(values[name], str) and values[name]):
            raise ConfigError(f"{where}.{name} must be a non-empty string, got {values[name]!r}")
    if "among" in values:
        among = values["among"]
        if not isinstance(among, list) or not all(isinstance(arm, str) for arm in among):
            raise ConfigError(f"{where}.among must be a list of arm names, got {among!r}")
        values["among"] = tuple(among)
    for name in ("performance", "params"):
        if name in values and not (isinstance(values[name], (int, float)) and 0 < values[name] <= 1):
            raise ConfigError(f"{where}.{name} must be a fraction in (0, 1], got {values[name]!r}")
    if "value" in values:
        value = values["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}.value must be a finite number, got {value!r}")
        if hypothesis.metric.endswith("_acc") and not 0 < value < 1:
            raise ConfigError(
                f"{where}.value: {hypothesis.metric} is a fraction (0.93 for 93%), got {value!r}"
            )
    if "params" in values and not hypothesis.size:
        raise ConfigError(
            f"{where}.params limits the model's size, but the trainable declares no size metric (size=...)"
        )
    prediction = Prediction(**values)
    for name in ("arm", "than", "reference"):
        _known_arm(getattr(prediction, name), hypothesis, f"{where}.{name}")
    for arm in prediction.among:
        _known_arm(arm, hypothesis, f"{where}.among")
    if prediction.among and prediction.arm not in prediction.among:
        raise ConfigError(f"{where}.among must include the arm '{prediction.arm}'")
    if prediction.among and len(set(prediction.among)) < 2:
        raise ConfigError(f"{where}: 'best' needs at least one rival for '{prediction.arm}' to beat")
    KINDS[kind].check(prediction, hypothesis, where)
    return prediction


def _known_arm(arm: str, hypothesis: Hypothesis, where: str) -> None:
    if arm and arm not in hypothesis.arms:
        raise ConfigError(f"{where} names arm '{arm}', which is not one of: {', '.join(hypothesis.arms)}")


def _known_keys(raw: dict[str, Any], valid: set[str], where: str) -> None:
    for key in raw:
        if key not in valid:
            raise ConfigError(unknown_key_message(f"{where}.{key}".lstrip("."), valid))


def _string(raw: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = raw.get(key, "")
    if (required and not value) or not isinstance(value, str):
        raise ConfigError(f"{where + '.' if where else ''}{key} must be a non-empty string")
    return value


def _name(raw: dict[str, Any], key: str, where: str, what: str) -> str:
    """A study name, preset name or hypothesis id: it names files and is quoted in store filters,
    so it holds only letters, digits, '_', '-' and '.', and starts with a letter or digit."""
    value = _string(raw, key, where, required=True)
    if not STUDY_NAME.fullmatch(value):
        place = f"{where}: " if where else ""
        raise ConfigError(f"{place}{what} '{value}' may hold only letters, digits, '_', '-' and '.'")
    return value


def _settings(t: Trainable, raw: Any, where: str) -> dict[str, Any]:
    """Check a table of overrides of the trainable's settings: known names and the right types;
    whether they fit together is checked once they are layered over the base."""
    if not isinstance(raw, dict):
        tables = ", ".join(f"[{name}]" for name in field_types(t.settings))
        raise ConfigError(f"{where} must be a table of settings ({tables})")
    check_overrides(t.settings, raw, where)
    return raw


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "-".join(map(str, value))
    return str(value)
