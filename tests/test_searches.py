"""Searches: Optuna per tuned arm, run by the coordinator; nested runs, resume, Ctrl-C, the report.

On the toy (tests/toy.py), whose arms may want different step sizes.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hypotune.config import Runtime
from hypotune.decide.collect import collect, collect_searches
from hypotune.decide.verdicts import evaluate
from hypotune.report.build import build_report
from hypotune.run.executors import LocalExecutor
from hypotune.run.runner import run_study, study_status
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker
from hypotune.study.file import load_study
from hypotune.study.tuning import TUNING_SEED_BASE

from .helpers import (
    TOY_PER_SEED,
    TOY_TUNED,
    default_sigint,
    study_variant,
    toy_environment,
    wait_for_finished_runs,
)


def test_per_seed_searches_follow_the_seeds_added_in_rounds(workdir):
    study, tracker = load_study(TOY_PER_SEED), Tracker()
    executor = LocalExecutor(2, Runtime())
    summary = run_study(study, "quick", executor, tracker)
    assert summary.failed == [] and summary.seeds == {"tiny_margin": 3, "untuned": 3}
    # Both hypotheses stayed open (a margin of 1e-9): the second round of 'tiny_margin' got a
    # search per arm for its new seed, though its first round was looked at while it searched.
    searches = collect_searches(study, "quick", tracker)
    assert {arm: [s.seed for s in own] for arm, own in searches.items()} == {
        ("tiny_margin", "eight"): [0, 1, 2],
        ("tiny_margin", "nine"): [0, 1, 2],
    }
    assert summary.tuning_finished == 6 * 3 and all(s.finished for own in searches.values() for s in own)
    data = collect(study, "quick", tracker)
    for arm in ("eight", "nine"):
        best = {s.seed: s.best["lr"] for s in searches["tiny_margin", arm]}
        assert len(set(best.values())) > 1  # the searches really differ between seeds
        trained = {seed: float(r.params["lr"]) for seed, r in data["tiny_margin", arm].records.items()}
        assert trained == best  # seed N trained at the best of search N
    assert sorted(data["untuned", "four"].records) == [0, 1, 2]
    report = build_report(study, "quick", tracker, workdir / "report").markdown_path.read_text()
    assert "| eight, seed 2 | lr=" in report and "once for each seed" in report
    assert "searched again for every seed" in report
    rows = {row.id: row for row in study_status(study, "quick", tracker)}
    assert (rows["tiny_margin"].finished, rows["tiny_margin"].tuning, rows["tiny_margin"].pending) == (
        6,
        0,
        0,
    )
    again = run_study(study, "quick", executor, tracker)  # resume: nothing searched or trained twice
    assert (again.tuning_finished, again.finished, again.skipped) == (0, 0, 12)


@pytest.fixture(scope="module")
def tuned_store(tmp_path_factory):
    """The toy's Adam-vs-SGD study run at one shared step size, then with each arm tuned."""
    folder = tmp_path_factory.mktemp("tuned")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        study, tracker = load_study(TOY_TUNED), Tracker()
        executor = LocalExecutor(2, Runtime())
        summaries = {preset: run_study(study, preset, executor, tracker) for preset in ("untuned", "tuned")}
        yield study, tracker, summaries, folder
    finally:
        os.chdir(previous)


def test_tuning_each_arm_changes_the_verdict_and_the_report_shows_why(tuned_store):
    study, tracker, summaries, folder = tuned_store
    assert summaries["tuned"].tuning_finished == 20 and summaries["tuned"].failed == []
    untuned = evaluate(study, collect(study, "untuned", tracker), "untuned")[0]
    tuned = evaluate(study, collect(study, "tuned", tracker), "tuned")[0]
    assert untuned.verdict == "supported"  # at lr 0.1, which suits Adam only
    assert tuned.verdict != "supported" and abs(tuned.effect) < 0.1 < untuned.effect
    searches = collect_searches(study, "tuned", tracker)
    assert {len(own) for own in searches.values()} == {1}  # one search per arm, for every seed
    best = {arm: searches["optimizer", arm][0].best["lr"] for arm in ("adam", "sgd")}
    at_shared = {arm: searches["optimizer", arm][0].trials[0] for arm in ("adam", "sgd")}
    assert {t.params["lr"] for t in at_shared.values()} == {0.1}  # the study's own rate first
    assert at_shared["sgd"].value > 1.0 > at_shared["adam"].value  # it suits Adam only
    assert best["sgd"] > 3 * 0.1  # SGD's best rate is well above the shared one
    data = collect(study, "tuned", tracker)
    for arm in ("adam", "sgd"):  # every verdict run trained at its arm's own best rate
        assert {float(r.params["lr"]) for r in data["optimizer", arm].records.values()} == {best[arm]}

    report = build_report(study, "tuned", tracker, folder / "report")
    text = report.markdown_path.read_text()
    assert "nuisance settings tuned per arm" in text and "isolation plot" in text
    assert "| sgd | lr=" in text and "lr=0.1: 1." in text  # SGD at the shared rate: 0.8 worse
    assert (folder / "report" / "figures" / "optimizer-nuisance.png").stat().st_size > 5000
    assert report.findings["optimizer"] == []  # tuned rates are declared, not a confound


def test_tuning_trials_are_nested_runs_that_never_touch_the_test_set(tuned_store):
    study, tracker, _, _ = tuned_store
    experiment_id = tracker.experiment(study.name)
    searches = tracker.runs(experiment_id, f"tags.`{PREFIX}kind` = 'search'")
    trials = tracker.runs(experiment_id, f"tags.`{PREFIX}kind` = 'tuning_trial'")
    assert len(searches) == 2 and len(trials) == 20
    parent = {s.info.run_id: s for s in searches}
    for trial in trials:
        search = parent[trial.data.tags["mlflow.parentRunId"]]
        assert trial.data.tags[f"{PREFIX}tuning_key"] == search.data.tags[f"{PREFIX}key"]
        assert not {"test_loss", "test_acc"} & set(trial.data.metrics)
        assert int(trial.data.params["seed"]) == TUNING_SEED_BASE
        assert [a.path for a in tracker.client.list_artifacts(trial.info.run_id)] == [
            "config.toml"
        ]  # no weights
    pruned = [t for t in trials if t.data.tags[f"{PREFIX}status"] == "pruned"]
    history = tracker.client.get_metric_history
    assert pruned and all(len(history(t.info.run_id, "val_loss")) < 2 for t in pruned)
    for search in searches:
        assert search.data.tags["mlflow.parentRunId"]  # under the study's run
        assert search.info.status == "FINISHED" and f"{PREFIX}best" in search.data.tags
        assert math.isfinite(search.data.metrics["best_value"])
        best = json.loads(search.data.tags[f"{PREFIX}best"])
        for name in best:  # the file's value was never trained at: the param says it was searched
            assert search.data.params[name].startswith("searched: "), search.data.params[name]
        for name, value in best.items():  # where an MLflow user looks: a metric column per setting
            assert search.data.metrics[f"best.{name}"] == pytest.approx(float(value))
        counts = {k: v for k, v in search.data.metrics.items() if k.startswith("trials_")}
        assert set(counts) == {"trials_finished", "trials_pruned", "trials_failed"}
        assert counts["trials_finished"] + counts["trials_pruned"] == 10


def test_rerunning_a_tuned_study_trains_nothing_again(tuned_store):
    study, tracker, summaries, folder = tuned_store
    os.chdir(folder)
    again = run_study(study, "tuned", LocalExecutor(2, Runtime()), tracker)
    assert (again.tuning_finished, again.finished, again.skipped) == (0, 0, 6)
    rows = study_status(study, "tuned", tracker)
    assert (rows[0].finished, rows[0].tuning, rows[0].pending) == (6, 0, 0)


def test_a_larger_budget_continues_each_search(tuned_store):
    _, tracker, _, folder = tuned_store
    os.chdir(folder)
    study = load_study(
        study_variant(folder, {"trials = { tuned = 10 }": "trials = { tuned = 12 }"}, study=TOY_TUNED)
    )
    more = run_study(study, "tuned", LocalExecutor(2, Runtime()), tracker)
    assert more.tuning_finished == 4 and more.failed == []  # 2 more per arm, not 12
    searches = collect_searches(study, "tuned", tracker)
    every = [s for own in searches.values() for s in own]
    assert {len(s.trials) for s in every} == {12}
    assert {s.budget for s in every} == {12} and all(s.finished for s in every)
    assert evaluate(study, collect(study, "tuned", tracker), "tuned")[0].seeds == 3


def search_command(workdir: Path, *extra: str, trainable: str = "tests.toy:TOY") -> list[str]:
    """`hypotune search` of a toy config over its lr (unless `extra` gives a --space); the toy is
    importable from the repository root (see `toy_environment`)."""
    config = workdir / "config.toml"
    config.write_text("epochs = 3\nlr = 0.1\n")
    space = [] if "--space" in extra else ["--space", "lr=0.1:0.9"]
    return [sys.executable, "-m", "hypotune.cli", "search", "--trainable", trainable, "--config", str(config),
            "--workers", "2", *space, *extra]  # fmt: skip


def finished_tuning_trials(tracker: Tracker) -> dict[str, str]:
    """Optuna trial number -> the MLflow run that finished it."""
    runs = tracker.runs(
        tracker.experiment("search"),
        f"attributes.status = 'FINISHED' and tags.`{PREFIX}kind` = 'tuning_trial'",
    )
    numbers = [run.data.tags[f"{PREFIX}trial_number"] for run in runs]
    assert len(numbers) == len(set(numbers)), "a tuning trial finished twice"
    return {run.data.tags[f"{PREFIX}trial_number"]: run.info.run_id for run in runs}


def test_a_killed_search_resumes_from_its_finished_trials(workdir):
    command = search_command(workdir, "--trials", "10", "--no-pruning", trainable="tests.toy:SLOW_TOY")
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=default_sigint,
                               env=toy_environment())  # fmt: skip
    wait_for_finished_runs(workdir / "runs" / "mlflow.db", 4)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    tracker = Tracker()
    before = finished_tuning_trials(tracker)
    assert 4 <= len(before) < 10

    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=300, env=toy_environment()
    )
    assert result.returncode == 0, result.stderr
    after = finished_tuning_trials(tracker)
    assert len(after) >= 10 and all(after[n] == run for n, run in before.items())  # none redone
    assert f"resuming: {len(before)} of 10 trials already done" in result.stderr
    assert "best of 10 trials" in result.stdout and "\nlr = " in result.stdout
    assert not tracker.runs(tracker.experiment("search"), "attributes.status = 'RUNNING'")


def test_ctrl_c_while_a_search_records_a_trial_leaves_nothing_running(workdir, monkeypatch):
    from hypotune.cli.parser import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "finish", interrupted)  # a trial finished but is not yet recorded
    argv = search_command(workdir, "--trials", "4")[3:]
    assert main(argv) == 130
    tracker = Tracker()
    runs = tracker.runs(tracker.experiment("search"))
    assert {r.data.tags[f"{PREFIX}kind"] for r in runs} == {"search", "tuning_trial"}
    assert {r.info.status for r in runs} == {"KILLED"}


def test_search_warns_when_the_best_value_is_at_the_edge_of_its_range(workdir):
    # The toy's loss falls as lr nears 0.5: below 0.3, the best is the highest rate
    command = search_command(workdir, "--trials", "4", "--space", "lr=0.1:0.3")
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=300, env=toy_environment()
    )
    assert result.returncode == 0, result.stderr
    assert "is at the high end of its range" in result.stdout and "widen the range past 0.3" in result.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--space", "lr=0.1"], "--space expects KEY=LOW:HIGH"),
        (["--space", "lr=0:1:log"], "a log scale needs low > 0"),
        (["--space", "lr=1:0.1"], "low (1.0) must be below high (0.1)"),
        (["--trials", "-2"], "a search needs at least 1 trial, got -2"),
        (["--space", "dropout=0:2"], "unknown setting 'dropout'"),
    ],
)
def test_search_mistakes_are_one_line(workdir, flags, message):
    result = subprocess.run(
        search_command(workdir, *flags), capture_output=True, text=True, env=toy_environment()
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


def test_ctrl_c_during_tuning_then_a_rerun_completes_every_search_once(workdir):
    path = workdir / "slow.toml"  # the tuned toy's study, each epoch taking 0.5 s
    path.write_text(TOY_TUNED.read_text().replace('"tests.toy:TUNED_TOY"', '"tests.toy:SLOW_TOY"')
                    .replace("arms.adam = { best_lr = 0.1 }", "arms.adam = { x = 1.0 }")
                    .replace("arms.sgd = { best_lr = 0.9 }", "arms.sgd = { x = 1.5 }"))  # fmt: skip
    command = [sys.executable, "-m", "hypotune.cli", "study", "run", str(path), "--preset", "tuned",
               "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=default_sigint,
                               env=toy_environment())  # fmt: skip
    wait_for_finished_runs(workdir / "runs" / "mlflow.db", 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    tracker = Tracker()
    experiment_id = tracker.experiment("tuned")
    assert not tracker.runs(experiment_id, "attributes.status = 'RUNNING'")
    query = f"attributes.status = 'FINISHED' and tags.`{PREFIX}kind` = 'tuning_trial'"
    before = {run.info.run_id for run in tracker.runs(experiment_id, query)}
    assert 3 <= len(before) < 20

    rerun = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=300, env=toy_environment()
    )
    assert rerun.returncode == 0, rerun.stderr
    # Not a terminal: a plain line per finished trial instead of bars that print nothing until the end.
    lines = rerun.stderr.splitlines()
    assert any(re.fullmatch(r"tuning \d+/20 tune \w+ #\d+: (val_loss [0-9.e+-]+|pruned) \(\d+ s\)", line)
               for line in lines), rerun.stderr  # fmt: skip
    assert any(
        re.fullmatch(r"trial \d+/\d+ \w+, seed \d+: val_loss [0-9.e+-]+ \(\d+ s\)", line) for line in lines
    )
    after = tracker.runs(experiment_id, query)
    assert before <= {run.info.run_id for run in after}  # what had finished was kept
    per_search: dict[str, list[str]] = {}
    for run in after:
        per_search.setdefault(run.data.tags[f"{PREFIX}tuning_key"], []).append(
            run.data.tags[f"{PREFIX}trial_number"]
        )
    assert sorted(len(numbers) for numbers in per_search.values()) == [10, 10]
    assert all(len(set(numbers)) == len(numbers) for numbers in per_search.values())
    searches = tracker.runs(experiment_id, f"tags.`{PREFIX}kind` = 'search'")
    assert len(searches) == 2 and {s.info.status for s in searches} == {"FINISHED"}
