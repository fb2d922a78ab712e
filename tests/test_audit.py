"""The confound audit on planted data: one test per check, each asserting the exact findings.

The runs are built in memory as `collect` reads them back from the store (params flattened as
`Tracker.log_config` logs them, hypotune's tags, a param_count metric), so nothing trains and no
store is opened.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from hypotune.config import Runtime
from hypotune.decide.audit import audit
from hypotune.decide.collect import collect
from hypotune.fashion.model import build_model, param_count
from hypotune.store.records import TrialRecord
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker, flat_params
from hypotune.study.file import load_study
from hypotune.study.model import ArmData, Study, StudyData

from .helpers import STUDIES, TINY_BASE

SEEDS = (0, 1)  # every preset below runs two seeds
VERSION = "0.1.0+gabc1234"
OTHER = "trained from a definition other than the study file's"

STUDY = (
    """
name = "audited"
"""
    + TINY_BASE
    + """
[presets.quick]
seeds = 2
train = { epochs = 2, steps_per_epoch = 8, batch_size = 32 }

# The same budget under another name, as a tuned and an untuned preset have.
[presets.again]
seeds = 2
train = { epochs = 2, steps_per_epoch = 8, batch_size = 32 }

[[hypotheses]]
id = "width"
statement = "Wider is better"
arms.narrow = {}
arms.wide = { model = { width = 16 } }
prediction = { kind = "better", arm = "wide", than = "narrow" }

[[hypotheses]]
id = "subset"
statement = "More training images, lower validation loss"
factors = { "data.train_subset" = [1000, 5000, 20000] }
prediction = { kind = "trend", factor = "data.train_subset", direction = "decreasing" }

[[hypotheses]]
id = "epochs"
statement = "Training longer helps"
arms.short = {}
arms.long = { train = { epochs = 4 } }
prediction = { kind = "better", arm = "long", than = "short" }

[[hypotheses]]
id = "course"
statement = "Wider is better, validated as the course did"
base = { data = { validate_on_test = true } }
arms.narrow = {}
arms.wide = { model = { width = 16 } }
prediction = { kind = "better", arm = "wide", than = "narrow" }

[[hypotheses]]
id = "optimizer"
statement = "Adam beats SGD, each at its own learning rate"
tuning = { space = { "train.lr" = { low = 1e-4, high = 1.0, scale = "log" } }, trials = { quick = 4 } }
arms.adam = {}
arms.sgd = { train = { optimizer = "sgd" } }
prediction = { kind = "better", arm = "adam", than = "sgd" }
"""
)


@pytest.fixture
def study(tmp_path: Path) -> Study:
    path = tmp_path / "audited.toml"
    path.write_text(STUDY)
    return load_study(path)


def record(
    study: Study,
    hypothesis_id: str,
    arm: str,
    seed: int,
    preset: str = "quick",
    change: dict[str, Any] | None = None,
    tuned: dict[str, Any] | None = None,
) -> TrialRecord:
    """The finished run of `arm` at `seed` under `preset`, its config changed by `change`."""
    hypothesis = next(h for h in study.hypotheses if h.id == hypothesis_id)
    config = study.arm_config(hypothesis, arm, preset, seed, tuned)
    if change:
        config = config.replace(change)
    tags = {
        f"{PREFIX}kind": "trial",
        f"{PREFIX}preset": preset,
        f"{PREFIX}key": config.key(),
        f"{PREFIX}seed": str(seed),
        f"{PREFIX}arms": json.dumps([[hypothesis_id, arm]]),
        f"{PREFIX}status": "finished",
        f"{PREFIX}code_version": VERSION,
    }
    metrics = {"val_loss": 0.5 + 0.01 * seed, "param_count": float(param_count(build_model(config.model)))}
    return TrialRecord(
        run_id=f"{hypothesis_id}-{arm}-{seed}",
        key=config.key(),
        seed=seed,
        status="finished",
        metrics=metrics,
        params=flat_params(config, Runtime()),
        tags=tags,
    )


def trained(
    study: Study, hypothesis_id: str, seeds: tuple[int, ...] = SEEDS, **per_arm: dict[str, Any]
) -> StudyData:
    """Every arm of one hypothesis run at every seed (`per_arm`: record() options by arm); the
    study's other hypotheses have no runs."""
    data: StudyData = {(h.id, arm): ArmData(h.id, arm) for h in study.hypotheses for arm in h.arms}
    hypothesis = next(h for h in study.hypotheses if h.id == hypothesis_id)
    for arm in hypothesis.arms:
        for seed in seeds:
            data[hypothesis_id, arm].records[seed] = record(
                study, hypothesis_id, arm, seed, **per_arm.get(arm, {})
            )
    return data


def built_params(study: Study, hypothesis_id: str, arm: str) -> int:
    hypothesis = next(h for h in study.hypotheses if h.id == hypothesis_id)
    return param_count(build_model(study.arm_config(hypothesis, arm, "quick", 0).model))


def test_a_fair_comparison_has_no_findings(study):
    findings = audit(study, "quick", trained(study, "width"))
    assert findings["width"] == []


def test_arms_with_missing_seeds_are_incomplete(study):
    data = trained(study, "width")
    data["width", "wide"].records.pop(1)
    findings = audit(study, "quick", data)
    assert findings["width"] == ["incomplete: arm 'wide' has 1 of 2 seeds finished"]
    assert findings["epochs"] == [
        "incomplete: arm 'short' has 0 of 2 seeds finished",
        "incomplete: arm 'long' has 0 of 2 seeds finished",
    ]


def test_a_hypothesis_given_more_seeds_than_the_preset_is_audited_at_its_own_count(study):
    data = trained(study, "width", seeds=(0, 1, 2))
    assert audit(study, "quick", data, seeds={"width": 3})["width"] == []
    data["width", "narrow"].records.pop(2)
    assert audit(study, "quick", data, seeds={"width": 4})["width"] == [
        "incomplete: arm 'narrow' has 2 of 4 seeds finished",
        "incomplete: arm 'wide' has 3 of 4 seeds finished",
    ]


def test_a_split_that_follows_the_seed_is_compared_seed_by_seed(study):
    # Each seed draws its own split, as with vary_split: the arms agree at every seed, whichever
    # order their runs were read in, and a seed missing from one arm is no difference either.
    data = trained(study, "width")
    for arm in ("narrow", "wide"):
        for seed, run in data["width", arm].records.items():
            run.params["data.split_seed"] = str(10 + seed)
    wide = data["width", "wide"].records
    data["width", "wide"].records = {seed: wide[seed] for seed in reversed(SEEDS)}
    assert audit(study, "quick", data)["width"] == []
    data["width", "wide"].records.pop(0)
    assert audit(study, "quick", data)["width"] == ["incomplete: arm 'wide' has 1 of 2 seeds finished"]


def test_arms_that_disagree_at_a_seed_are_flagged_though_each_arm_ran_both_values(study):
    data = trained(study, "width")
    for arm, long_seed in (("narrow", 1), ("wide", 0)):
        data["width", arm].records[long_seed] = record(
            study, "width", arm, long_seed, change={"train": {"epochs": 5}}
        )
    assert audit(study, "quick", data)["width"] == [
        "budget differs between arms: train.epochs = 2|5 (narrow), 5|2 (wide)",
        f"arm 'narrow' seed 1: {OTHER}",
        f"arm 'wide' seed 0: {OTHER}",
    ]


def test_a_budget_that_differs_between_arms_is_flagged(study):
    data = trained(study, "width", wide={"change": {"train": {"epochs": 5}}})
    assert audit(study, "quick", data)["width"] == [
        "budget differs between arms: train.epochs = 2 (narrow), 5 (wide)",
        f"arm 'wide' seed 0: {OTHER}",
        f"arm 'wide' seed 1: {OTHER}",
    ]


def test_a_data_split_that_differs_between_arms_is_flagged(study):
    data = trained(study, "width", wide={"change": {"data": {"val_size": 500}}})
    assert audit(study, "quick", data)["width"] == [
        "data split differs between arms: data.val_size = 200 (narrow), 500 (wide)",
        f"arm 'wide' seed 0: {OTHER}",
        f"arm 'wide' seed 1: {OTHER}",
    ]


def test_a_split_setting_the_hypothesis_declares_as_a_factor_is_not_a_confound(study):
    findings = audit(study, "quick", trained(study, "subset"))
    assert findings["subset"] == []


def test_a_budget_setting_the_hypothesis_sets_per_arm_is_not_a_confound(study):
    findings = audit(study, "quick", trained(study, "epochs"))
    assert findings["epochs"] == []


def test_runs_of_arms_trained_under_different_presets_are_flagged(study):
    # Both arms ran an earlier definition of the study (another learning rate): the same
    # settings in each, but the wide arm's runs came from another preset.
    old = {"train": {"lr": 0.01}}
    data = trained(study, "width", narrow={"change": old}, wide={"change": old, "preset": "again"})
    assert audit(study, "quick", data)["width"] == [
        "preset differs between arms: quick (narrow), again (wide)",
        f"arm 'narrow' seed 0: {OTHER}",
        f"arm 'narrow' seed 1: {OTHER}",
        f"arm 'wide' seed 0: {OTHER}",
        f"arm 'wide' seed 1: {OTHER}",
    ]


def test_a_run_of_the_planned_config_counts_as_this_presets_whichever_preset_trained_it(study):
    data = trained(study, "width", wide={"preset": "again"})
    assert audit(study, "quick", data)["width"] == []


def test_arms_trained_by_different_code_versions_are_flagged(study):
    data = trained(study, "width")
    for run in data["width", "wide"].records.values():
        run.tags[f"{PREFIX}code_version"] = "0.1.0+gdef5678"
    assert audit(study, "quick", data)["width"] == [
        f"code version differs between arms: {VERSION} (narrow), 0.1.0+gdef5678 (wide)"
    ]
    narrow = data["width", "narrow"].records
    first = next(iter(narrow.values()))
    narrow[99] = dataclasses.replace(first, seed=99, tags=dict(first.tags))  # a third run, as the second
    first.tags[f"{PREFIX}code_version"] = "0.1.0+gdef5678"
    line = f"code version differs between arms: 0.1.0+gdef5678|{VERSION} (narrow), 0.1.0+gdef5678 (wide)"
    assert line in audit(study, "quick", data)["width"]  # each arm's versions once, not once a run


def test_a_setting_the_hypothesis_does_not_declare_is_flagged_when_it_differs(study):
    data = trained(study, "width", wide={"change": {"model": {"dropout": 0.1}}})
    assert audit(study, "quick", data)["width"] == [
        "undeclared difference between arms: model.dropout = 0.0 (narrow), 0.1 (wide)",
        f"arm 'wide' seed 0: {OTHER}",
        f"arm 'wide' seed 1: {OTHER}",
    ]


def test_runtime_settings_never_make_a_difference(study):
    data = trained(study, "width")
    for run in data["width", "wide"].records.values():
        run.params |= {"runtime.threads": "4", "runtime.device": "cuda"}
    assert audit(study, "quick", data)["width"] == []


def test_runs_that_ran_with_other_threads_or_devices_are_flagged(study):
    # --threads 1 and 2 give different numbers for the same trial key (val_loss 1.6239 vs 1.6348)
    data = trained(study, "width")
    for arm_data in (data["width", "narrow"], data["width", "wide"]):
        for run in arm_data.records.values():
            run.tags |= {f"{PREFIX}threads": "1", f"{PREFIX}device": "cpu", f"{PREFIX}precision": "float32"}
    assert audit(study, "quick", data)["width"] == []
    data["width", "wide"].records[1].tags[f"{PREFIX}threads"] = "2"  # one run resumed with more threads
    assert audit(study, "quick", data)["width"] == [
        "runs differ in how they ran (threads 1 (narrow), 1|2 (wide)): floating-point results differ "
        "slightly between these, so rerun with one setting"
    ]


def test_tuned_settings_are_declared(study):
    hypothesis = next(h for h in study.hypotheses if h.id == "optimizer")
    best = {"adam": {"train": {"lr": 0.003}}, "sgd": {"train": {"lr": 0.1}}}
    tuned = {study.tuning_key(hypothesis, arm, "quick"): best[arm] for arm in hypothesis.arms}
    data = trained(study, "optimizer", **{arm: {"tuned": best[arm]} for arm in hypothesis.arms})
    assert data["optimizer", "sgd"].records[0].params["train.lr"] == "0.1"
    assert audit(study, "quick", data, tuned)["optimizer"] == []


def test_validating_on_the_test_set_is_flagged(study):
    findings = audit(study, "quick", trained(study, "course"))
    assert findings["course"] == [
        "validated on the test set (course protocol): test metrics are not held out"
    ]


def test_a_logged_param_count_that_the_config_does_not_build_is_flagged(study):
    data = trained(study, "width")
    data["width", "wide"].records[1].metrics["param_count"] = 999.0
    built = built_params(study, "width", "wide")
    assert built != 999
    assert audit(study, "quick", data)["width"] == [
        f"arm 'wide' seed 1: logged param_count 999 but its config gives {built:,}"
    ]


def test_a_logged_model_config_that_cannot_be_rebuilt_is_flagged(study):
    data = trained(study, "width")
    data["width", "narrow"].records[0].params["model.width"] = "8,8,8"  # three widths, two layers
    assert audit(study, "quick", data)["width"] == [
        "arm 'narrow' seed 0: the logged config cannot be rebuilt (model.width lists 3 widths for 2 layers)"
    ]


def test_a_run_without_a_logged_param_count_is_flagged(study):
    data = trained(study, "width")
    del data["width", "narrow"].records[1].metrics["param_count"]
    assert audit(study, "quick", data)["width"] == ["arm 'narrow' seed 1: no param_count was logged"]


def test_runs_of_an_earlier_definition_of_the_study_are_flagged(study):
    # The study file's base changed after both arms were trained: the arms still agree with
    # each other, but neither is what the file now defines.
    old = {"train": {"lr": 0.01}}
    data = trained(study, "width", narrow={"change": old}, wide={"change": old})
    assert audit(study, "quick", data)["width"] == [
        f"arm 'narrow' seed 0: {OTHER}",
        f"arm 'narrow' seed 1: {OTHER}",
        f"arm 'wide' seed 0: {OTHER}",
        f"arm 'wide' seed 1: {OTHER}",
    ]


def hand_built_store(workdir: Path, epochs_of_wide: int, wide_params: int | None = None) -> tuple:
    """Runs logged by hand for the tiny study's 'width' hypothesis, as another tool might."""
    study = load_study(STUDIES / "tiny.toml")
    tracker = Tracker()
    experiment_id = tracker.experiment(study.name)
    hypothesis = study.hypotheses[0]
    for arm in ("narrow", "wide"):
        for seed in (0, 1):
            config = study.arm_config(hypothesis, arm, "quick", seed)
            if arm == "wide":
                config = config.replace({"train": {"epochs": epochs_of_wide}})
            tags = {
                f"{PREFIX}kind": "trial",
                f"{PREFIX}preset": "quick",
                f"{PREFIX}key": config.key(),
                f"{PREFIX}seed": str(seed),
                f"{PREFIX}arms": json.dumps([[hypothesis.id, arm]]),
            }
            run_id = tracker.start_run(experiment_id, arm, tags)
            tracker.log_config(run_id, config)
            params = param_count(build_model(config.model))
            if arm == "wide" and wide_params:
                params = wide_params
            loss = 0.5 if arm == "wide" else 0.6
            tracker.finish(
                run_id, "finished", {"val_loss": loss + 0.01 * seed, "test_loss": loss, "param_count": params}
            )
    return study, tracker


def test_audit_flags_arms_trained_with_different_budgets(workdir):
    study, tracker = hand_built_store(workdir, epochs_of_wide=5)
    findings = audit(study, "quick", collect(study, "quick", tracker))
    width = findings["width"]
    assert "budget differs between arms: train.epochs = 2 (narrow), 5 (wide)" in width
    assert any("trained from a definition other than the study file's" in f for f in width)
    assert "incomplete: arm 'wide' has 2 of 2 seeds finished" not in width


def test_audit_is_clean_for_a_fair_comparison_and_flags_a_wrong_param_count(workdir):
    study, tracker = hand_built_store(workdir, epochs_of_wide=2)
    width = audit(study, "quick", collect(study, "quick", tracker))["width"]
    assert width == []
    study, tracker = hand_built_store(workdir, epochs_of_wide=2, wide_params=999)
    width = audit(study, "quick", collect(study, "quick", tracker))["width"]
    assert any("logged param_count 999 but its config gives" in f for f in width)


def test_a_setting_outside_the_key_is_never_a_difference_between_arms(study):
    """Stores written before `data.epoch_val_size` existed have runs without it: they trained the
    same models, so a mix is no confound."""
    data = trained(study, "width")
    for run in data["width", "wide"].records.values():
        run.params.pop("data.epoch_val_size", None)
    for run in data["width", "narrow"].records.values():
        run.params["data.epoch_val_size"] = "500"
    assert audit(study, "quick", data)["width"] == []
