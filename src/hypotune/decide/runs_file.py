"""Verdicts on runs you already have: an MLflow experiment logged by any code, and a runs file.

A runs file is a study file whose `[runs]` table says where the runs are and how to read them,
in place of a trainable:

    name = "notebook"
    [runs]
    experiment = "course-notebook"   # the MLflow experiment that holds the runs
    seed = "seed"                    # the param that is each run's seed ("tags.NAME": a tag; "": none)
    metrics = { val_loss = "minimize", val_acc = "maximize" }
    budget = ["epochs"]              # logged params that set the training budget (the audit names them)
    size = "param_count"             # a logged metric of the model's size (optional: the Pareto view)
    [runs.params]                    # the params that define arms; a run that logged none has this value
    dropout = 0.0
    norm = "none"

    [[hypotheses]]                   # as in any study; arms and factors name the params above
    ...

A run belongs to an arm when every declared param it logged (or its default) equals the arm's.
Nothing is trained and nothing is written to the store.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import itertools
import math
from pathlib import Path
from typing import Any

from hypotune.config import directions, flatten, parse_text, read_toml, unknown_key_message
from hypotune.decide.audit import audit
from hypotune.decide.decision import Decisions
from hypotune.decide.verdicts import evaluate
from hypotune.errors import ConfigError, HypotuneError, StudyError
from hypotune.store.records import TrialRecord
from hypotune.store.tracker import Tracker
from hypotune.study.model import ArmData, Preset, SeedPlan, Study, StudyData
from hypotune.trainables.protocol import Trainable

KEYS = {"experiment", "seed", "metrics", "deciding", "budget", "params", "size"}  # of [runs]
FILE_KEYS = {"name", "description", "runs", "base", "hypotheses", "reference", "statistics"}
PRESET = "runs"  # the one preset of a runs file: the runs as they are
KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclasses.dataclass(frozen=True)
class RunsSpec:
    """How to read the runs of one experiment as arms and seeds."""

    experiment: str
    seed: str  # "seed" (a param), "tags.seed" (a tag) or "" (none: paired in the order they started)
    params: tuple[str, ...]  # the params that define arms


def load_runs_file(path: str | Path, raw: dict[str, Any] | None = None) -> tuple[Study, RunsSpec]:
    """The study a runs file describes (its trainable only names settings and metrics) and how
    to read its runs; `raw` is the file's TOML when read already."""
    from hypotune.study.file import parse_study
    from hypotune.trainables.command import names_list, settings_class

    raw = read_toml(path) if raw is None else raw
    runs = raw.get("runs")
    try:
        if not isinstance(runs, dict):
            raise ConfigError("a runs file needs a [runs] table: experiment, seed, metrics, [runs.params]")
        for key in runs:
            if key not in KEYS:
                raise ConfigError("[runs] " + unknown_key_message(key, KEYS))
        experiment, seed = runs.get("experiment"), runs.get("seed", "seed")
        if not isinstance(experiment, str) or not experiment:
            raise ConfigError("[runs] experiment must name the MLflow experiment that holds the runs")
        if not isinstance(seed, str):
            raise ConfigError('[runs] seed must name a param ("seed"), a tag ("tags.seed"), or be ""')
        if not runs.get("params"):
            raise ConfigError("[runs.params] must name the params that define arms, each with its default")
        settings = settings_class(runs["params"])
        metrics = directions(runs.get("metrics"))
        trainable = Trainable(
            name=f"runs of {experiment}",
            settings=settings,
            train=_not_trainable,
            metrics=metrics,
            deciding=names_list(runs, "deciding", []),
            budget=names_list(runs, "budget", []),
            size=str(runs.get("size", "")),
            doc=f"the finished runs of the MLflow experiment {experiment!r}",
        )
        for name in trainable.deciding:
            if name not in metrics:
                raise ConfigError(f"[runs] deciding names {name!r}; the metrics are {', '.join(metrics)}")
    except ConfigError as error:
        raise StudyError(f"{path}: {error}") from None
    for key in raw:
        if key in ("presets", "tuning", "trainable"):
            raise StudyError(f"{path}: a runs file has no {key}: its runs are what was trained, as it was")
        if key not in FILE_KEYS:
            raise StudyError(f"{path}: " + unknown_key_message(key, FILE_KEYS))
    study_raw = {k: v for k, v in raw.items() if k != "runs"} | {"presets": {PRESET: {"seeds": 1}}}
    study = parse_study(study_raw, path, trainable)
    spec = RunsSpec(experiment, seed, tuple(f.name for f in dataclasses.fields(settings)))
    return study, spec


def _not_trainable(settings: Any, seed: int, log: Any) -> Any:
    raise HypotuneError("a runs file describes runs already made: analyse them with `hypotune analyze`")


Notes = dict[str, collections.Counter[str]]  # per hypothesis: what filing found ("N runs ..."), how often


def collect_runs(
    study: Study, spec: RunsSpec, records: list[TrialRecord]
) -> tuple[Study, StudyData, dict[str, list[str]]]:
    """File each run under every arm whose settings it has, by its seed; the study's one preset
    then has as many seeds as the fullest arm. Also what the filing found, per hypothesis: runs
    left out, seeds missing or shared."""
    data: StudyData = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    notes: Notes = {h.id: collections.Counter() for h in study.hypotheses}
    hypotheses = {h.id: h for h in study.hypotheses}
    varied = {h.id: {name for arm in h.arms.values() for name in flatten(arm)} for h in study.hypotheses}
    wanted = {
        (h.id, arm): dataclasses.asdict(study.arm_config(h, arm, PRESET, 0).settings)
        for h in study.hypotheses
        for arm in h.arms
    }
    for record in records:  # oldest first: a later run of the same arm and seed replaces it
        settings, problem, defaulted = _settings_of(study.trainable.settings, record)
        if problem:
            for counter in notes.values():
                counter[f"N runs left out: {problem}"] += 1
            continue
        for (hypothesis_id, arm), values in wanted.items():
            if settings != values:
                continue
            slot, note = data[hypothesis_id, arm], notes[hypothesis_id]
            metric = hypotheses[hypothesis_id].metric
            if metric not in record.metrics:
                note[f"arm '{arm}': N runs logged no {metric}: left out"] += 1
                continue
            seed = _seed_number(_seed_text(spec, record)) if spec.seed else None
            if seed is None:
                seed = next(n for n in itertools.count() if n not in slot.records)
                if spec.seed:
                    note[f"arm '{arm}': N runs have no integer {spec.seed}: numbered as they started"] += 1
            elif seed in slot.records:
                note[f"arm '{arm}': N runs replaced by a later run with the same seed"] += 1
            slot.records[seed] = dataclasses.replace(record, seed=seed)
            for name in set(defaulted) & set(varied[hypothesis_id]):  # joined an arm by a default
                default = settings[name]
                note[f"arm '{arm}': N runs logged no {name}: filed at its default {default!r}"] += 1
    most = max((len(slot.records) for slot in data.values()), default=1)
    preset = Preset(PRESET, SeedPlan(max(most, 1), max(most, 1)), {}, "The runs as they were logged.")
    found = {h: [text.replace("N runs", f"{n} runs", 1) for text, n in c.items()] for h, c in notes.items()}
    return dataclasses.replace(study, presets={PRESET: preset}), data, found


def _settings_of(cls: type, record: TrialRecord) -> tuple[dict[str, Any], str, list[str]]:
    """A run's declared params, typed as the runs file declares them (its defaults where it logged
    none); or what keeps one from being read as its type; and the params it took as defaults."""
    values, defaulted = {}, []
    for field in dataclasses.fields(cls):
        text = record.params.get(field.name)
        if text is None:
            values[field.name] = field.default
            defaulted.append(field.name)
            continue
        try:
            value = parse_text(field.name, text, float if field.type is int else field.type)
        except ConfigError:
            return {}, f"their {field.name} ({text!r}) is not {KINDS[field.type]}", []
        if field.type is int:
            if not float(value).is_integer():
                return {}, f"their {field.name} ({text!r}) is not {KINDS[int]}", []
            value = int(value)
        values[field.name] = value
    return values, "", defaulted


def _seed_text(spec: RunsSpec, record: TrialRecord) -> str | None:
    if spec.seed.startswith("tags."):
        return record.tags.get(spec.seed.removeprefix("tags."))
    return record.params.get(spec.seed)


def _seed_number(text: str | None) -> int | None:
    """A logged seed as an integer ("3" or "3.0"); None when there is none, or it is not one."""
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def findings_of(study: Study, spec: RunsSpec, data: StudyData) -> dict[str, list[str]]:
    """What the audit of runs made elsewhere adds: single runs, no seed, and validation metrics
    that equal test metrics (validated on the test set)."""
    found: dict[str, list[str]] = {}
    for hypothesis in study.hypotheses:
        own = found.setdefault(hypothesis.id, [])
        slots = [data[hypothesis.id, arm] for arm in hypothesis.arms]
        if any(len(slot.records) == 1 for slot in slots):
            single = ", ".join(slot.arm for slot in slots if len(slot.records) == 1)
            own.append(f"a single run for arm {single}: one seed cannot tell an effect from seed noise")
        if not spec.seed:
            own.append("no seed logged: runs are paired across arms in the order they started")
        for slot in slots:
            leaks = [r for r in slot.records.values() if _validated_on_test(r.metrics)]
            if leaks:
                own.append(
                    f"arm '{slot.arm}': validation metrics equal the test metrics in {len(leaks)} of"
                    f" {len(slot.records)} runs: validated on the test set? then the test is not held out"
                )
    return found


def _validated_on_test(metrics: dict[str, float]) -> bool:
    """Some val_X equals test_X exactly: the validation set was the test set."""
    return any(
        name.startswith("val_") and math.isfinite(value) and metrics.get("test_" + name[4:]) == value
        for name, value in metrics.items()
    )


def check_logged(study: Study, spec: RunsSpec, records: list[TrialRecord], path: str | Path) -> list[str]:
    """Every metric the runs file declares is logged by some run: a metric a hypothesis decides on
    that no run logged is an error (a typo far more often than a metric never recorded, and it
    would leave the hypothesis without runs); any other is a finding."""
    if not records:
        return []
    logged = sorted({name for record in records for name in record.metrics})
    used = {h.metric for h in study.hypotheses}
    missing = []
    for metric in study.trainable.metrics:
        if metric in logged:
            continue
        close = difflib.get_close_matches(metric, logged, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        what = f"[runs] metrics names {metric!r}, which no finished run of {spec.experiment!r} logged{hint}"
        if metric in used:
            raise StudyError(f"{path}: {what} (logged: {', '.join(logged) or 'none'})")
        missing.append(what)
    return missing


def decide_runs(path: str | Path, tracker: Tracker) -> tuple[Study, Decisions]:
    """The study a runs file describes, and its verdicts and audit on the experiment's runs."""
    study, spec = load_runs_file(path)
    experiment_id = tracker.find_experiment(spec.experiment)
    if experiment_id is None:
        raise HypotuneError(f"{path}: no experiment named {spec.experiment!r} in {tracker.uri}")
    records = tracker.finished_runs(experiment_id)
    missing = check_logged(study, spec, records, path)
    study, data, notes = collect_runs(study, spec, records)
    if not any(slot.records for slot in data.values()):
        raise HypotuneError(
            f"{path}: no finished run of {spec.experiment!r} has the params of any arm"
            f" ({', '.join(spec.params)}); check [runs.params] and the arms"
        )
    findings = audit(study, PRESET, data, own_runs=False)
    for hypothesis_id, more in findings_of(study, spec, data).items():
        own = findings[hypothesis_id] + more + notes[hypothesis_id] + missing
        findings[hypothesis_id] = list(dict.fromkeys(own))
    return study, Decisions(data, {}, evaluate(study, data, PRESET, existing=True), findings)
