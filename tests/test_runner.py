"""The coordinator: planning, recording, resuming, rounds of seeds, time budgets, Ctrl-C and kill -9.

Trials train the toy (tests/toy.py): the engine's behaviour, not the CNN's, is under test.
"""

import bisect
import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hypotune.config import Runtime
from hypotune.decide.verdicts import SeedRound
from hypotune.run.executors import LocalExecutor
from hypotune.run.runner import StudySource, run_study, study_status
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker
from hypotune.study.file import load_study
from hypotune.study.model import plan

from .helpers import (
    TOY_STUDY,
    NoSearch,
    slow_study,
    start_cli_study,
    study_variant,
    wait_for_finished_runs,
)

TOY = TOY_STUDY


def finished_trial_keys(tracker: Tracker, name: str) -> Counter:
    experiment_id = tracker.experiment(name)
    runs = tracker.runs(experiment_id, f"attributes.status = 'FINISHED' and tags.`{PREFIX}kind` = 'trial'")
    return Counter(run.data.tags[f"{PREFIX}key"] for run in runs)


def test_run_records_every_trial_and_resume_skips_them(workdir):
    study = load_study(TOY)
    tracker = Tracker()
    executor = LocalExecutor(2, Runtime())
    first = run_study(study, "quick", executor, tracker)
    assert (first.planned, first.finished, first.skipped, first.failed) == (10, 10, 0, [])
    again = run_study(study, "quick", executor, tracker)
    assert (again.finished, again.skipped) == (0, 10)
    keys = finished_trial_keys(tracker, "toy")
    assert set(keys) == {t.key for t in plan(study, "quick")} and set(keys.values()) == {1}
    parent = tracker.client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED" and again.parent_run_id == first.parent_run_id
    run = tracker.runs(tracker.experiment("toy"), f"tags.`{PREFIX}kind` = 'trial'")[0]
    assert run.data.tags["mlflow.parentRunId"] == first.parent_run_id
    assert run.data.tags[f"{PREFIX}preset"] == "quick" and f"{PREFIX}arms" in run.data.tags
    rows = {row.id: row for row in study_status(study, "quick", tracker)}
    assert (rows["start"].finished, rows["x_x_lr"].finished, rows["start"].pending) == (4, 8, 0)


def test_parallel_workers_lose_no_tracking_data(workdir):
    # 4 workers, 24 short trials, 3 epochs each: every metric point must arrive exactly once
    lr = (
        '\n[[hypotheses]]\nid = "lr"\nstatement = "lr 0.4 beats 0.5"\n'
        "arms.base = {}\narms.low = { lr = 0.4 }\n"
        'prediction = { kind = "better", arm = "low", than = "base" }\n'
    )
    path = study_variant(workdir, {"seeds = 2": "seeds = 4", "epochs = 2": "epochs = 3"}, lr, study=TOY)
    study = load_study(path)
    tracker = Tracker()
    summary = run_study(study, "quick", LocalExecutor(4, Runtime()), tracker)
    assert summary.finished == summary.planned == 24
    runs = tracker.runs(tracker.experiment("toy"), f"tags.`{PREFIX}kind` = 'trial'")
    assert len(runs) == 24 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        history = tracker.client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == [1, 2, 3]
        assert run.data.params["epochs"] == "3" and "test_loss" in run.data.metrics


def test_a_failing_trial_is_recorded_and_the_rest_go_on(workdir):
    path = study_variant(
        workdir, {"arms.near = { x = 1.0 }": "arms.near = { x = 1.0, fail = true }"}, study=TOY
    )
    study = load_study(path)
    tracker = Tracker()
    executor = LocalExecutor(2, Runtime())
    summary = run_study(study, "quick", executor, tracker)
    assert summary.finished == 8 and len(summary.failed) == 2
    assert "the toy was told to fail" in summary.failed[0]
    failed = tracker.runs(
        tracker.experiment("toy"), f"attributes.status = 'FAILED' and tags.`{PREFIX}kind` = 'trial'"
    )
    assert len(failed) == 2 and "told to fail" in failed[0].data.tags[f"{PREFIX}error"]
    assert tracker.client.get_run(summary.parent_run_id).info.status == "FAILED"
    again = run_study(study, "quick", executor, tracker)  # failed trials are retried, finished are not
    assert (again.skipped, len(again.failed)) == (8, 2)


def test_a_diverged_trial_counts_as_a_result(workdir):
    path = study_variant(
        workdir, {"arms.near = { x = 1.0 }": "arms.near = { x = 12.0 }"}, study=TOY
    )  # loss 121
    study = load_study(path)
    tracker = Tracker()
    executor = LocalExecutor(1, Runtime())
    summary = run_study(study, "quick", executor, tracker)
    assert summary.diverged == 2 and summary.failed == []
    assert run_study(study, "quick", executor, tracker).skipped == 10


def test_kill_9_of_the_whole_tree_then_rerun_records_each_trial_once(workdir):
    path = slow_study(workdir)
    process = start_cli_study(workdir, path)
    wait_for_finished_runs(workdir / "runs" / "mlflow.db", 3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    tracker = Tracker()
    before = finished_trial_keys(tracker, "toy")
    assert 3 <= sum(before.values()) < 10

    rerun = start_cli_study(workdir, path)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    after = finished_trial_keys(tracker, "toy")
    assert set(after) == {t.key for t in plan(load_study(path), "quick")}
    assert set(after.values()) == {1}  # every trial exactly once
    assert all(after[key] == 1 for key in before)  # nothing finished before was redone
    experiment_id = tracker.experiment("toy")
    assert not tracker.runs(experiment_id, "attributes.status = 'RUNNING'")
    killed = tracker.runs(experiment_id, f"attributes.status = 'KILLED' and tags.`{PREFIX}kind` = 'trial'")
    assert killed  # what was in flight at the kill is marked, not left RUNNING


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(workdir):
    path = slow_study(workdir)
    process = start_cli_study(workdir, path)
    wait_for_finished_runs(workdir / "runs" / "mlflow.db", 1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    tracker = Tracker()
    experiment_id = tracker.experiment("toy")
    assert not tracker.runs(experiment_id, "attributes.status = 'RUNNING'")
    rerun = start_cli_study(workdir, path)
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert set(finished_trial_keys(tracker, "toy").values()) == {1}


@pytest.mark.parametrize("method", ["start_run", "finish"])
def test_ctrl_c_while_recording_a_run_leaves_nothing_running(workdir, monkeypatch, method):
    # start_run: a trial's run is created but not yet known as in flight; finish: not yet recorded
    original = getattr(Tracker, method)

    def interrupted(self, *args):
        if method == "start_run":
            run_id = original(self, *args)
            if args[2][f"{PREFIX}kind"] == "study":
                return run_id
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, method, interrupted)
    tracker = Tracker()
    executor = LocalExecutor(1, Runtime())
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(TOY), "quick", executor, tracker)
    runs = tracker.runs(tracker.experiment("toy"))
    assert {r.data.tags[f"{PREFIX}kind"] for r in runs} == {"study", "trial"}
    assert {r.info.status for r in runs} == {"KILLED"}
    monkeypatch.setattr(Tracker, method, original)
    summary = run_study(load_study(TOY), "quick", executor, tracker)
    assert summary.finished == summary.planned == 10 and summary.failed == []


def test_a_second_runner_on_the_same_study_is_refused(workdir):
    path = slow_study(workdir)
    process = start_cli_study(workdir, path)
    try:
        wait_for_finished_runs(workdir / "runs" / "mlflow.db", 1)
        second = start_cli_study(workdir, path)
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 2 and "already running" in stderr
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


ADAPTIVE = """name = "adaptive"
trainable = "tests.toy:TOY"

[statistics]
margin = 0.05
futility = 0  # the open one gets seeds to the maximum (test_futility... turns it on)
[presets.quick]
seeds = { min = 2, max = 4 }
epochs = 2

[[hypotheses]]
id = "same"
statement = "Two configs of one toy: the same loss"
arms.before = {}
arms.after = { noise = 0.0100000001 }
prediction = { kind = "better", arm = "before", than = "after" }

[[hypotheses]]
id = "tiny_margin"
statement = "Starting at 0.999 beats starting at 1 by more than a hair"
margin = 1e-9
base = { noise = 1.0 }
arms.eight = { x = 1.0 }
arms.nine = { x = 0.999 }
prediction = { kind = "better", arm = "nine", than = "eight" }
"""


def test_seeds_are_added_only_where_a_verdict_is_open(workdir):
    from hypotune.decide.collect import collect
    from hypotune.decide.verdicts import evaluate

    path = workdir / "adaptive.toml"
    path.write_text(ADAPTIVE)
    study = load_study(path)
    tracker = Tracker()
    executor = LocalExecutor(2, Runtime())
    summary = run_study(study, "quick", executor, tracker)
    data = collect(study, "quick", tracker)
    seeds = {key: len(arm.records) for key, arm in data.items()}
    # identical arms are equivalent at the first look; a tiny margin keeps the other open to the max
    assert seeds == {("same", "before"): 2, ("same", "after"): 2, ("tiny_margin", "eight"): 4,
                     ("tiny_margin", "nine"): 4}  # fmt: skip
    assert summary.finished == summary.planned == 12 and summary.seeds == {"same": 2, "tiny_margin": 4}
    same, open_one = evaluate(study, data, "quick")
    assert same.verdict == "equivalent" and same.stopped == "decided at 2 seeds"
    assert open_one.verdict == "inconclusive" and open_one.stopped == "open at the maximum of 4 seeds"
    again = run_study(study, "quick", executor, tracker)  # a rerun finds every round done
    assert (again.finished, again.skipped) == (0, 12)
    rows = {row.id: row for row in study_status(study, "quick", tracker)}
    assert (rows["tiny_margin"].finished, rows["tiny_margin"].pending) == (8, 0)


def test_futility_stops_giving_seeds_to_a_prediction_that_would_need_far_more(workdir):
    from hypotune.decide.collect import collect
    from hypotune.decide.verdicts import evaluate

    path = workdir / "adaptive.toml"
    path.write_text(ADAPTIVE.replace("futility = 0 ", "futility = 1.5 "))
    study = load_study(path)
    tracker = Tracker()
    summary = run_study(study, "quick", LocalExecutor(2, Runtime()), tracker)
    data = collect(study, "quick", tracker)
    # given up at its second look (3 seeds), where the maximum is 4
    seeds = {key: len(arm.records) for key, arm in data.items()}
    assert seeds == {("same", "before"): 2, ("same", "after"): 2, ("tiny_margin", "eight"): 3,
                     ("tiny_margin", "nine"): 3}  # fmt: skip
    assert summary.finished == summary.planned == 10 and summary.seeds == {"same": 2, "tiny_margin": 3}
    assert list(summary.given_up) == ["tiny_margin"] and "would need" in summary.given_up["tiny_margin"]
    _, open_one = evaluate(study, data, "quick")
    assert open_one.given_up and open_one.stopped.startswith("open: would need")


def test_a_relative_margin_is_fixed_at_the_first_look_and_recorded_with_the_study(workdir):
    from hypotune.decide.collect import collect
    from hypotune.decide.verdicts import evaluate

    path = workdir / "adaptive.toml"
    path.write_text(ADAPTIVE.replace("margin = 0.05\nfutility", 'margin = "5%"\nfutility'))
    study = load_study(path)
    tracker = Tracker()
    run_study(study, "quick", LocalExecutor(2, Runtime()), tracker)
    margins = tracker.margins("adaptive", "quick")
    assert set(margins) == {"same"}  # the other hypothesis sets an absolute margin of its own
    value, basis = margins["same"]
    data = collect(study, "quick", tracker)
    first = [
        data["same", arm].records[seed].metrics["val_loss"] for arm in ("before", "after") for seed in (0, 1)
    ]
    assert value == pytest.approx(0.05 * float(np.median(first)))
    assert basis.endswith("at the first look (2 seeds)")
    same, _ = evaluate(study, data, "quick", margins=margins)
    assert same.margin == value and "recorded with the study" in same.evidence


def test_a_time_budget_stops_adding_trials_and_says_so(workdir):
    from hypotune.report.build import build_report

    path = workdir / "adaptive.toml"
    path.write_text(ADAPTIVE)
    study = load_study(path)
    tracker = Tracker()
    executor = LocalExecutor(2, Runtime())
    summary = run_study(study, "quick", executor, tracker, budget_seconds=1e-6)
    assert summary.budget_stopped and summary.finished == 0
    parent = tracker.client.get_run(summary.parent_run_id)
    assert parent.data.tags[f"{PREFIX}stopped"] == "budget"
    report = build_report(study, "quick", tracker, workdir / "report")
    assert "the time budget ran out" in report.markdown_path.read_text()
    resumed = run_study(study, "quick", executor, tracker)
    assert not resumed.budget_stopped and resumed.finished == 12
    assert tracker.client.get_run(summary.parent_run_id).data.tags[f"{PREFIX}stopped"] == ""


def test_a_trial_cap_stops_handing_out_trials_and_says_so(workdir):
    from hypotune.report.build import build_report

    path = workdir / "adaptive.toml"
    path.write_text(ADAPTIVE)
    study = load_study(path)
    tracker = Tracker()
    executor = LocalExecutor(2, Runtime())
    summary = run_study(study, "quick", executor, tracker, max_trials=3)
    assert summary.stopped_by == "trials" and summary.budget_stopped and summary.finished == 3
    parent = tracker.client.get_run(summary.parent_run_id)
    assert parent.data.tags[f"{PREFIX}stopped"] == "trials"
    report = build_report(study, "quick", tracker, workdir / "report")
    assert "the trial cap (--max-trials) was reached" in report.markdown_path.read_text()
    # The cap counts this run's trials: a rerun under the same cap trains three more.
    again = run_study(study, "quick", executor, tracker, max_trials=3)
    assert again.finished == 3 and again.skipped == 3 and again.stopped_by == "trials"
    resumed = run_study(study, "quick", executor, tracker)
    assert resumed.stopped_by == "" and resumed.finished == 6 and resumed.skipped == 6


def test_a_budget_too_small_for_every_first_look_completes_the_cheapest_per_prediction(tmp_path):
    path = tmp_path / "adaptive.toml"
    # 'tiny_margin' now costs (3 + 2) epochs a seed pair against 'same''s (2 + 2): under a cap of
    # four trials, 'same''s whole first look, not half of each.
    path.write_text(ADAPTIVE.replace("arms.eight = { x = 1.0 }", "arms.eight = { x = 1.0, epochs = 3 }"))
    study = load_study(path)
    capped = StudySource(
        study, "quick", NoSearch(), set(), advance=lambda: SeedRound({}, {}, {}), max_trials=4
    )
    handed_out = [capped.trials[task.key] for task in iter(capped.next_task, None)]
    assert len(handed_out) == 4 and {h for t in handed_out for h, _ in t.arms} == {"same"}
    assert capped.stopped_by == "trials" and len(capped.queue) == 4
    # Without a budget the same source hands out the longest trials first, whatever they serve.
    free = StudySource(study, "quick", NoSearch(), set())
    first = [free.trials[task.key] for task in iter(free.next_task, None)][:4]
    assert {h for t in first for h, _ in t.arms} != {"same"}


def test_a_run_from_any_round_serves_every_arm_with_its_config(workdir):
    # Seeds 2 and 3 of 'eight' were trained for the open hypothesis; a hypothesis added later
    # that compares the same config must find them, whichever round trained them.
    from hypotune.decide.collect import collect

    first = ADAPTIVE.split("[[hypotheses]]")
    path = workdir / "adaptive.toml"
    path.write_text(first[0] + "[[hypotheses]]" + first[2])
    study = load_study(path)
    tracker = Tracker()
    run_study(study, "quick", LocalExecutor(2, Runtime()), tracker)
    path.write_text(
        path.read_text()
        + '[[hypotheses]]\nid = "again"\nstatement = "the same arm again"\n'
        + "base = { noise = 1.0 }\narms.eight = { x = 1.0 }\narms.ten = { x = 0.9 }\n"
        + 'prediction = { kind = "better", arm = "ten", than = "eight" }\n'
    )
    data = collect(load_study(path), "quick", tracker)
    assert sorted(data["again", "eight"].records) == [0, 1, 2, 3] and not data["again", "ten"].records


def test_every_hypothesis_gets_its_first_look_before_any_gets_another_round(tmp_path):
    path = tmp_path / "adaptive.toml"
    path.write_text(ADAPTIVE.replace("arms.eight = { x = 1.0 }", "arms.eight = { x = 1.0, epochs = 3 }"))
    study = load_study(path)
    looks = study.presets["quick"].seeds.looks
    # Resumed with a later round already wanted for the costlier hypothesis: the cheap one's
    # first round still goes first, though its trials would otherwise come last.
    source = StudySource(study, "quick", NoSearch(), set(), seeds={"tiny_margin": looks[1]})
    handed_out = [source.trials[task.key] for task in iter(source.next_task, None)]
    rounds = [bisect.bisect_right(looks, trial.config.seed) for trial in handed_out]
    assert rounds == sorted(rounds) and rounds[-1] == 1
    first = [t for t in handed_out if t.config.seed < looks[0]]
    costs = [study.trainable.cost_of(t.config.settings) for t in first]
    assert costs == sorted(costs, reverse=True) and costs[0] > min(costs)  # longest first within it


def test_a_round_wanted_after_the_budget_is_spent_is_reported_not_started(tmp_path):

    path = tmp_path / "adaptive.toml"
    path.write_text(ADAPTIVE)
    study = load_study(path)
    wanted = {"same": 2, "tiny_margin": 3}  # what the verdicts would ask for after round one
    source = StudySource(
        study,
        "quick",
        NoSearch(),
        set(),
        advance=lambda: SeedRound(wanted, {}, {}),
        deadline=time.monotonic() + 3600,
    )
    tasks = []
    while (task := source.next_task()) is not None:
        tasks.append(task)
    assert len(tasks) == 8  # two seeds of four arms
    source.deadline = time.monotonic() - 1  # the budget runs out as the round ends
    for task in tasks:
        source.finished(source.trials[task.key])
    assert source.budget_stopped and source.next_task() is None and source.seeds.get("tiny_margin", 2) == 2
    fresh = StudySource(study, "quick", NoSearch(), set(), advance=lambda: SeedRound(wanted, {}, {}))
    for task in list(iter(fresh.next_task, None)):
        fresh.finished(fresh.trials[task.key])
    assert fresh.seeds["tiny_margin"] == 3 and not fresh.budget_stopped and len(fresh.queue) == 2


@pytest.mark.parametrize("likelier", ["same", "tiny_margin"])
def test_under_a_budget_the_look_likeliest_to_decide_per_second_goes_first(tmp_path, likelier):
    path = tmp_path / "adaptive.toml"
    path.write_text(ADAPTIVE)
    study = load_study(path)
    other = ({"same", "tiny_margin"} - {likelier}).pop()
    round_two = SeedRound({"same": 3, "tiny_margin": 3}, {likelier: 0.9, other: 0.1}, {})
    source = StudySource(study, "quick", NoSearch(), set(), advance=lambda: round_two,
                         deadline=time.monotonic() + 3600)  # fmt: skip
    first = list(iter(source.next_task, None))
    assert len(first) == 8  # every first look goes first, whatever the chances
    for task in first:
        source.finished(source.trials[task.key])
    later = [source.trials[t.key] for t in iter(source.next_task, None)]
    assert [{h for h, _ in t.arms} for t in later] == [{likelier}, {likelier}, {other}, {other}]
    assert source.why[likelier].startswith("3 seeds: the look is expected to decide 0.90 open predictions")
    assert "s of training" in source.why[likelier]  # seconds measured on the first look's trials


class PendingSearch(NoSearch):
    """The per-seed searches of a study: open until `finish`, then every one has its best."""

    def __init__(self, study, preset):
        from hypotune.run.search import plan_searches

        self.study, self.preset, self.best = study, preset, None
        self.searches = []
        self.extend(plan_searches(study, preset))

    def extend(self, groups):
        from types import SimpleNamespace

        known = {s.group.key for s in self.searches}
        self.searches += [
            SimpleNamespace(group=g, best=self.best, error="") for g in groups if g.key not in known
        ]

    def finish(self):
        self.best = {"train.lr": 0.01}
        for search in self.searches:
            search.best = self.best

    def tuned(self):
        return {s.group.key: {"train": {"lr": 0.01}} for s in self.searches if s.best}

    def done(self):
        return all(s.best for s in self.searches)


def test_a_hypothesis_still_searching_is_looked_at_only_once_its_seeds_are_in():
    # The untuned hypothesis finishes its round while the tuned one searches; the tuned one must
    # not count as looked at then, or its own round would end without a look and never grow.
    study = load_study(Path(__file__).parent / "studies" / "per_seed.toml")
    search = PendingSearch(study, "quick")
    wanted = {"tiny_margin": 2, "untuned": 2}
    source = StudySource(
        study, "quick", search, set(), seeds=dict(wanted), advance=lambda: SeedRound(dict(wanted), {}, {})
    )
    untuned = list(iter(source.next_task, None))
    assert {h for t in untuned for h, _ in source.trials[t.key].arms} == {"untuned"}
    for task in untuned:
        source.finished(source.trials[task.key])
    search.finish()
    tuned = list(iter(source.next_task, None))
    assert len(tuned) == 4 and {h for t in tuned for h, _ in source.trials[t.key].arms} == {"tiny_margin"}
    wanted["tiny_margin"] = 3  # what the verdicts ask for once its first round is in
    for task in tuned:
        source.finished(source.trials[task.key])
    assert source.seeds["tiny_margin"] == 3
    assert sorted(s.group.seed for s in search.searches) == [0, 0, 1, 1, 2, 2]  # a search per new seed


def test_kill_9_in_a_later_round_then_rerun_finishes_the_same_rounds(workdir):
    path = workdir / "adaptive.toml"
    path.write_text(
        ADAPTIVE.replace('"tests.toy:TOY"', '"tests.toy:SLOW_TOY"').replace("epochs = 2", "epochs = 3")
    )
    process = start_cli_study(workdir, path)
    wait_for_finished_runs(workdir / "runs" / "mlflow.db", 9)  # the first round is 8 trials
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    rerun = start_cli_study(workdir, path)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    tracker = Tracker()
    keys = finished_trial_keys(tracker, "adaptive")
    assert len(keys) == 12 and set(keys.values()) == {1}  # both rounds, each trial once
    study = load_study(path)
    assert {t.key for t in plan(study, "quick", seeds={"same": 2, "tiny_margin": 4})} == set(keys)


def test_a_rerun_reopens_the_study_run_clean_and_leaves_other_runs_alone(workdir):
    study, tracker = load_study(TOY), Tracker()
    experiment_id = tracker.experiment("toy")
    parent = tracker.open_study_run(experiment_id, "toy", "quick")
    tracker.fail(parent, "interrupted", status="KILLED")  # as Ctrl-C leaves it
    # `hypotune train --experiment tiny`, running at the same time in another terminal
    foreign = tracker.start_run(experiment_id, "train-by-hand", {f"{PREFIX}kind": "train"})
    executor = LocalExecutor(1, Runtime())
    summary = run_study(study, "quick", executor, tracker, budget_seconds=1e-6)
    assert summary.parent_run_id == parent
    tags = tracker.client.get_run(parent).data.tags
    assert f"{PREFIX}error" not in tags and f"{PREFIX}status" not in tags  # no stale "killed"
    assert tracker.client.get_run(foreign).info.status == "RUNNING"  # not a leftover of this study


def test_a_refused_second_runner_writes_nothing_to_the_store(workdir):
    import fcntl

    from hypotune.errors import StudyError

    tracker = Tracker()
    with (tracker.state_dir / ".toy.lock").open("w") as held:  # another runner has the study
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StudyError, match="already running"):
            run_study(load_study(TOY), "quick", LocalExecutor(1, Runtime()), tracker)
    assert tracker.client.get_experiment_by_name("toy") is None  # not even the experiment


def test_a_trial_planned_for_one_round_serves_the_hypotheses_whose_later_rounds_need_it():
    from hypotune.study.file import built_in_studies

    study = load_study(built_in_studies()["fashion_mnist_synergy"]).under("quick")
    three = {h.id: 3 for h in study.hypotheses}
    source = StudySource(study, "quick", NoSearch(), set(), seeds=three | {"dropout_rate": 5})
    shared = next(t for t in source.queue if t.name == "dropout=0.1, seed 3")
    assert {h for h, _ in shared.arms} == {"dropout_rate"}
    source.seeds = three | {"dropout_rate": 5, "dropout_instancenorm_synergy": 5, "diminishing_returns": 5}
    source.refresh(force=True)
    assert {h for h, _ in shared.arms} == {
        "dropout_rate",
        "dropout_instancenorm_synergy",
        "diminishing_returns",
    }
    assert sum(t.key == shared.key for t in source.queue) == 1


@pytest.mark.parametrize("promising", [True, False])
def test_under_a_budget_a_first_look_that_promises_a_verdict_gets_its_seeds_before_another_starts(
    tmp_path, promising
):
    # 'tiny_margin' trains longer, so 'same' (one prediction for less) starts. Once its first look
    # says its next look likely decides it, that look goes before 'tiny_margin' is even started;
    # if its outlook is poor, the study starts 'tiny_margin' instead (counted as decidable as the
    # seed plan is sized for).
    path = tmp_path / "adaptive.toml"
    path.write_text(ADAPTIVE.replace("base = { noise = 1.0 }", "base = { noise = 1.0, epochs = 3 }"))
    study = load_study(path)
    looks = study.presets["quick"].seeds.looks
    sized = {
        h: tuple((n, p) for n, p in zip(looks, (0.0, 0.3, 0.8), strict=True)) for h in ("same", "tiny_margin")
    }
    outlook = 0.9 if promising else 0.01
    after_first = SeedRound(
        {"same": looks[1], "tiny_margin": looks[0]},
        {"same": outlook},
        {},
        {"same": ((looks[1], outlook), (looks[2], outlook)), "tiny_margin": sized["tiny_margin"]},
    )
    source = StudySource(study, "quick", NoSearch(), set(), advance=lambda: after_first,
                         max_trials=100, ahead=sized)  # fmt: skip
    first = [source.trials[task.key] for task in (source.next_task() for _ in range(4))]
    assert {h for t in first for h, _ in t.arms} == {"same"}  # its first look: 2 arms, 2 seeds
    for trial in first:
        source.finished(trial)
    rest = [{h for h, _ in source.trials[t.key].arms} for t in iter(source.next_task, None)]
    if promising:
        assert rest == [{"same"}] * 2 + [{"tiny_margin"}] * 4
        assert source.why["same"].startswith(f"{looks[1]} seeds: the look is expected to decide 0.90")
    else:
        assert rest == [{"tiny_margin"}] * 4 + [{"same"}] * 2
