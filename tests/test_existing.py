"""`hypotune analyze`: verdicts and the audit on runs a notebook logged with plain mlflow calls."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import mlflow
import pytest

import hypotune
from hypotune.cli.parser import main
from hypotune.errors import HypotuneError, StudyError

RUNS_FILE = """
name = "notebook"
[runs]
experiment = "course-notebook"
seed = "seed"
metrics = { val_acc = "maximize", val_loss = "minimize", test_acc = "maximize" }
deciding = ["val_acc", "val_loss"]
budget = ["epochs"]
[runs.params]
dropout = 0.0
width = 32
optimizer = "adam"

[statistics]
margin = 0.005

[[hypotheses]]
id = "dropout"
statement = "dropout 0.3 beats none"
metric = "val_acc"
arms = { none = { dropout = 0.0 }, some = { dropout = 0.3 } }
prediction = { kind = "better", arm = "some", than = "none" }

[[hypotheses]]
id = "width"
statement = "64 channels beat 32"
metric = "val_acc"
arms = { narrow = { width = 32 }, wide = { width = 64 } }
prediction = { kind = "better", arm = "wide", than = "narrow" }

[[hypotheses]]
id = "optimizer"
statement = "SGD beats RMSprop"
metric = "val_acc"
arms = { sgd = { optimizer = "sgd" }, rmsprop = { optimizer = "rmsprop" } }
prediction = { kind = "better", arm = "sgd", than = "rmsprop" }
"""


def log_notebook_runs(uri: str) -> None:
    """Runs as a course notebook logs them: plain mlflow calls, params as it likes them."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("course-notebook")
    noise = random.Random(0)

    def run(params: dict, val_acc: float, test_acc: float | None = None) -> None:
        with mlflow.start_run():
            mlflow.log_params(params)
            for epoch in range(1, 4):
                mlflow.log_metric("val_loss", 1.0 / epoch + (1 - val_acc), step=epoch)
            mlflow.log_metric("val_acc", val_acc)
            mlflow.log_metric("test_acc", val_acc - 0.01 if test_acc is None else test_acc)

    for seed in range(5):
        run({"dropout": 0.0, "width": 32, "epochs": 10, "seed": seed}, 0.85 + noise.gauss(0, 0.002))
        run({"dropout": 0.3, "width": 32, "epochs": 10, "seed": seed}, 0.88 + noise.gauss(0, 0.002))
        run({"dropout": 0.0, "width": 64, "epochs": 20, "seed": seed}, 0.87 + noise.gauss(0, 0.002))
    run({"optimizer": "sgd"}, 0.86, test_acc=0.86)  # one run each, no seed, validated on the test set
    run({"optimizer": "rmsprop"}, 0.84, test_acc=0.84)
    run({"dropout": "lots"}, 0.5)  # a param no arm can have: read as nothing
    mlflow.set_tracking_uri("")


@pytest.fixture(scope="module")
def notebook_store(tmp_path_factory) -> Path:
    database = tmp_path_factory.mktemp("notebook") / "notebook.db"
    log_notebook_runs(f"sqlite:///{database}")
    return database


@pytest.fixture
def notebook(workdir: Path, notebook_store: Path) -> Path:
    shutil.copy(notebook_store, workdir / "notebook.db")
    path = workdir / "runs.toml"
    path.write_text(RUNS_FILE)
    return path


def uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'notebook.db'}"


def test_runs_a_notebook_logged_get_verdicts_and_an_audit(workdir, notebook):
    report = hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    verdicts = {v.hypothesis: v for v in report.verdicts}
    assert verdicts["dropout"].verdict == "supported" and verdicts["dropout"].seeds == 5
    # same budget, same width, paired by seed: clean, but for the run no arm can hold
    assert report.findings["dropout"] == ["1 runs left out: their dropout ('lots') is not a number"]
    assert "budget differs between arms: epochs = 10 (narrow), 20 (wide)" in report.findings["width"]
    optimizer = report.findings["optimizer"]
    assert verdicts["optimizer"].verdict == "inconclusive"
    assert any(f.startswith("a single run for arm sgd, rmsprop") for f in optimizer)
    assert "arm 'sgd': 1 runs have no integer seed: numbered as they started" in optimizer
    assert "arm 'sgd': validation metrics equal the test metrics in 1 of 1 runs" in " ".join(optimizer)
    document = json.loads((workdir / "out" / "verdicts.json").read_text())
    assert document["study"] == "notebook" and (workdir / "out" / "index.html").is_file()
    markdown = (workdir / "out" / "report.md").read_text()
    assert markdown.startswith("# notebook: the finished runs of the MLflow experiment 'course-notebook'")
    assert "nothing was trained" in markdown


def test_analyze_only_reads_the_store(workdir, notebook):
    client = mlflow.MlflowClient(uri(workdir))
    before = {(r.info.run_id, r.info.status, len(r.data.tags)) for r in client.search_runs(["1"])}
    experiments = len(client.search_experiments())
    hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    assert {(r.info.run_id, r.info.status, len(r.data.tags)) for r in client.search_runs(["1"])} == before
    assert len(client.search_experiments()) == experiments


def test_the_command_prints_the_verdicts_and_fails_on_request(workdir, notebook, capsys):
    arguments = ["analyze", str(notebook), "--tracking-uri", uri(workdir), "--out", str(workdir / "r")]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "dropout" in printed and "supported" in printed and "report:" in printed
    assert main([*arguments, "--fail-on", "inconclusive"]) == 1


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            'experiment = "course-notebook"',
            'experiment = "course-notbook"',
            "no experiment named 'course-notbook'",
        ),
        ('seed = "seed"', 'sed = "seed"', "unknown setting 'sed' (did you mean 'seed'?)"),
        ("width = 32\n", "width = [32]\n", "setting 'width': its default must be"),
        ("dropout = 0.3 }", "dropout = 0.7 }", None),
        (
            'arms = { sgd = { optimizer = "sgd" }',
            'arms = { sgd = { optimiser = "sgd" }',
            "did you mean 'optimizer'",
        ),
        ("[runs]\n", "[run]\n", "experiment must name the MLflow experiment"),
        ("[runs.params]", "[params]", "[runs.params] must name the params that define arms"),
        ("[statistics]", "[tuning]\nspace.lr = { low = 0.1, high = 1.0 }\n[statistics]", "has no tuning"),
        ("[statistics]", "[statistic]", "unknown setting 'statistic' (did you mean 'statistics'?)"),
    ],
)
def test_a_mistake_in_a_runs_file_is_one_line(workdir, notebook, old, new, message):
    text = RUNS_FILE.replace(old, new, 1)
    assert text != RUNS_FILE
    notebook.write_text(text)
    if message is None:  # an arm no run has: analysed, and the audit says it has no seeds
        report = hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
        assert "incomplete: arm 'some' has 0 of 5 seeds finished" in report.findings["dropout"]
        return
    with pytest.raises((HypotuneError, StudyError)) as caught:
        hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_runs_that_cannot_be_filed_as_they_say_are_named_in_the_audit(workdir):
    mlflow.set_tracking_uri(uri(workdir))
    mlflow.set_experiment("course-notebook")
    for dropout, width, seed, metrics in [
        (0.0, "32", "0", {"val_acc": 0.80}),
        (0.0, "32", "1", {"val_acc": 0.10}),
        (0.0, "32", "1", {"val_acc": 0.81}),  # the same seed again: replaces the run before
        (0.3, "32.0", "0", {"val_acc": 0.90}),  # 32.0 is the integer 32
        (0.3, "32", "1.5", {"val_acc": 0.91}),  # not an integer seed: numbered by start
        (0.3, "wide", "2", {"val_acc": 0.92}),  # not an integer width: no arm can hold it
        (0.3, "32", "3", {"val_loss": 0.3}),  # no val_acc: nothing to decide with
    ]:
        with mlflow.start_run():
            mlflow.log_params({"dropout": dropout, "width": width, "seed": seed})
            mlflow.log_metrics(metrics)
    mlflow.set_tracking_uri("")
    path = workdir / "runs.toml"
    path.write_text(RUNS_FILE)
    report = hypotune.analyze_runs(path, workdir / "out", tracking_uri=uri(workdir))
    found = report.findings["dropout"]
    assert "arm 'none': 1 runs replaced by a later run with the same seed" in found
    assert "arm 'some': 1 runs have no integer seed: numbered as they started" in found
    assert "1 runs left out: their width ('wide') is not an integer" in found
    assert "arm 'some': 1 runs logged no val_acc: left out" in found
    assert next(v for v in report.verdicts if v.hypothesis == "dropout").seeds == 2  # seeds 0 and 1


def test_analyze_never_creates_a_store(workdir):
    shutil.rmtree(workdir / "runs")
    (workdir / "runs.toml").write_text(RUNS_FILE)
    for given in (f"sqlite:///{workdir / 'missing.db'}", None):
        with pytest.raises(HypotuneError, match="no MLflow store at"):
            hypotune.analyze_runs(workdir / "runs.toml", tracking_uri=given)
    assert not (workdir / "missing.db").exists() and not (workdir / "runs").exists()


def test_validate_checks_a_runs_file_and_study_run_points_to_analyze(workdir, notebook, capsys):
    assert main(["validate", str(notebook)]) == 0
    assert "runs file 'notebook' is valid" in capsys.readouterr().out
    assert main(["study", "run", str(notebook)]) == 2
    assert "`hypotune analyze` reads it" in capsys.readouterr().err


def test_a_misspelt_deciding_metric_is_named_with_the_logged_one(workdir, notebook):
    notebook.write_text(
        RUNS_FILE.replace('"val_acc"', '"val_accuracy"').replace("val_acc =", "val_accuracy =")
    )
    with pytest.raises(StudyError) as caught:
        hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    message = str(caught.value)
    assert (
        "'val_accuracy', which no finished run of 'course-notebook' logged; did you mean 'val_acc'?"
        in message
    )
    assert "params" not in message and "\n" not in message


def test_a_declared_metric_no_run_logged_is_a_finding(workdir, notebook):
    notebook.write_text(
        RUNS_FILE.replace('test_acc = "maximize" }', 'test_acc = "maximize", test_loss = "minimize" }')
    )
    report = hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    found = "[runs] metrics names 'test_loss', which no finished run of 'course-notebook' logged"
    assert any(f.startswith(found) for f in report.findings["dropout"])


def test_a_run_that_joined_an_arm_by_a_default_is_named(workdir, notebook):
    mlflow.set_tracking_uri(uri(workdir))
    mlflow.set_experiment("course-notebook")
    with mlflow.start_run():  # no dropout logged: [runs.params] files it at dropout = 0.0
        mlflow.log_params({"width": 32, "epochs": 10, "seed": 7})
        mlflow.log_metrics({"val_acc": 0.85, "val_loss": 0.5, "test_acc": 0.84})
    mlflow.set_tracking_uri("")
    report = hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    assert "arm 'none': 1 runs logged no dropout: filed at its default 0.0" in report.findings["dropout"]
    assert not any("logged no" in f for f in report.findings["optimizer"])  # it varies no dropout


def test_runs_made_elsewhere_say_how_many_more_would_decide(workdir, notebook):
    report = hypotune.analyze_runs(notebook, workdir / "out", tracking_uri=uri(workdir))
    optimizer = next(v for v in report.verdicts if v.hypothesis == "optimizer")
    assert optimizer.verdict == "inconclusive"
    assert optimizer.stopped.startswith("open with the 1 run per arm there is: ")
    assert "would likely decide it" in optimizer.stopped and "maximum" not in optimizer.stopped
