"""Confound checks: do the arms of a hypothesis differ only in what the hypothesis declares?

Works on what the store logged, not on what the study file says, so it also catches runs
trained by other code, under another preset, or edited by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypotune.config import (
    coerce,
    dotted_to_nested,
    flatten,
    leaves,
    merge,
    parse_text,
    settings_from_dict,
    unkeyed_names,
)
from hypotune.errors import ConfigError
from hypotune.store.records import TrialRecord
from hypotune.study.model import Hypothesis, Study, StudyData, plan
from hypotune.trainables.protocol import Trainable

RAN_WITH = ("threads", "device", "precision")  # tags of each run, from the process that trained it


def declared_keys(hypothesis: Hypothesis, preset: str) -> set[str]:
    """Dotted settings the hypothesis's arms are allowed to differ in: its own and tuned ones."""
    keys: set[str] = set()
    if hypothesis.tuned_in(preset):
        keys.update(d.name for d in hypothesis.tuning.space)
    for overrides in hypothesis.arms.values():
        keys.update(flatten(overrides))
    return keys


def audit(
    study: Study,
    preset: str,
    data: StudyData,
    tuned: dict[str, dict[str, Any]] | None = None,
    seeds: dict[str, int] | None = None,
    own_runs: bool = True,
) -> dict[str, list[str]]:
    """Findings per hypothesis id; an empty list means the comparison is clean.

    `seeds` gives a hypothesis more seeds than its preset's minimum, as in `plan`. `own_runs` is
    False for runs hypotune did not train (`hypotune analyze`): they have no trial key to check.
    """
    seeds = seeds or {}
    planned = {t.key for t in plan(study, preset, tuned, seeds)} if own_runs else None
    minimum = study.presets[preset].seeds.min
    return {
        h.id: audit_hypothesis(study.trainable, h, preset, data, planned, seeds.get(h.id, minimum))
        for h in study.hypotheses
    }


def audit_hypothesis(
    trainable: Trainable,
    hypothesis: Hypothesis,
    preset: str,
    data: StudyData,
    planned: set[str] | None,
    seeds: int,
) -> list[str]:
    records = [(arm, r) for arm in hypothesis.arms for r in data[hypothesis.id, arm].records.values()]
    findings: list[str] = []
    for arm in hypothesis.arms:
        have = len(data[hypothesis.id, arm].records)
        if have < seeds:
            findings.append(f"incomplete: arm '{arm}' has {have} of {seeds} seeds finished")
    if not records:
        return findings
    declared = declared_keys(hypothesis, preset)
    for group, names in (("budget", trainable.budget), ("data split", trainable.split)):
        for name in names:
            if name in declared:
                continue  # what the hypothesis compares is never its own confound
            get = _param(name)
            if _differs(records, get):
                findings.append(
                    f"{group} differs between arms: {name} = {_show(_values_by_arm(records, get))}"
                )
    for name, what in (("preset", "preset"), ("code_version", "code version")):
        # A run of the planned config counts as this preset's, whichever preset trained it.
        def tagged(r: TrialRecord, t: str = name) -> str | None:
            return preset if t == "preset" and planned is not None and r.key in planned else r.tag(t)

        if _differs(records, tagged):
            findings.append(f"{what} differs between arms: {_show(_values_by_arm(records, tagged))}")
    # A setting outside the key changes only what is watched during training, never the model.
    watched = unkeyed_names(trainable.settings) if dataclasses.is_dataclass(trainable.settings) else set()
    all_params = set().union(*(r.params for _, r in records)) - {"seed"} - watched
    for name in sorted(all_params - declared - set(trainable.budget) - set(trainable.split)):
        if name.startswith("runtime."):
            continue  # threads and device do not change what is trained
        get = _param(name)
        if _differs(records, get):
            findings.append(
                f"undeclared difference between arms: {name} = {_show(_values_by_arm(records, get))}"
            )
    ran = {
        name: _values_by_arm(records, _tag(name))
        for name in RAN_WITH
        if len({r.tag(name) for _, r in records} - {None}) > 1
    }
    if ran:  # any two runs, not just arms at one seed: every run feeds an interval
        findings.append(
            "runs differ in how they ran ("
            + "; ".join(f"{name} {_show(values)}" for name, values in ran.items())
            + "): floating-point results differ slightly between these, so rerun with one setting"
        )
    if trainable.biased and any(r.params.get(trainable.biased) == "True" for _, r in records):
        findings.append("validated on the test set (course protocol): test metrics are not held out")
    for arm, record in records:
        problem = _check_recount(trainable, record)
        if problem:
            findings.append(f"arm '{arm}' seed {record.seed}: {problem}")
        if planned is not None and record.key not in planned:
            findings.append(
                f"arm '{arm}' seed {record.seed}: trained from a definition other than the study file's"
            )
    return list(dict.fromkeys(findings))


def _tag(name: str) -> Callable[[TrialRecord], str | None]:
    return lambda record: record.tag(name)


def _param(name: str) -> Callable[[TrialRecord], str | None]:
    return lambda record: record.params.get(name)


def _differs(records: list[tuple[str, TrialRecord]], get: Callable[[TrialRecord], str | None]) -> bool:
    """Whether runs of different arms at the same seed disagree. Verdicts pair arms seed by seed,
    so a setting that follows the seed alone (the split, when each seed draws its own) is fair."""
    by_seed: dict[int, set[str | None]] = {}
    for _, record in records:
        by_seed.setdefault(record.seed, set()).add(get(record))
    return any(len(values) > 1 for values in by_seed.values())


def _values_by_arm(records: list[tuple[str, TrialRecord]], get: Any) -> dict[str, str]:
    """Each arm's distinct values, in the order first seen, joined by '|'."""
    seen: dict[str, list[Any]] = {}
    for arm, record in records:
        own = seen.setdefault(arm, [])
        if get(record) not in own:
            own.append(get(record))
    return {arm: own[0] if len(own) == 1 else "|".join(map(str, own)) for arm, own in seen.items()}


def _show(values: dict[str, str]) -> str:
    return ", ".join(f"{value} ({arm})" for arm, value in values.items())


def settings_from_params(trainable: Trainable, params: dict[str, str]) -> Any:
    """The settings a run logged, rebuilt from its string params (defaults where one is missing)."""
    nested: dict[str, Any] = {}
    for name, hint in leaves(trainable.settings).items():
        text = params.get(name)
        if text is not None:
            nested = merge(nested, dotted_to_nested(name, coerce(name, parse_text(name, text, hint), hint)))
    return settings_from_dict(trainable.settings, nested)


def _check_recount(trainable: Trainable, record: TrialRecord) -> str:
    """Whether what the settings alone fix (the built-in CNN's parameter count) is what was logged."""
    if trainable.recount is None:
        return ""
    try:
        expected = trainable.recount(settings_from_params(trainable, record.params))
    except ConfigError as error:
        return f"the logged config cannot be rebuilt ({error})"
    for name, value in expected.items():
        logged = record.metrics.get(name)
        if logged is None:
            return f"no {name} was logged"
        if logged != value:
            return f"logged {name} {logged:,.0f} but its config gives {value:,.0f}"
    return ""
