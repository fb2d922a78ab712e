"""`hypotune analyze`: verdicts and the audit on runs a notebook logged with plain mlflow calls."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import mlflow
import pytest

import hypotune
from hypotune.cli import main
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
    assert report.findings["dropout"] == []  # same budget, same width, paired by seed: clean
    assert "budget differs between arms: epochs = 10 (narrow), 20 (wide)" in report.findings["width"]
    optimizer = report.findings["optimizer"]
    assert verdicts["optimizer"].verdict == "inconclusive"
    assert any(f.startswith("a single run for arm sgd, rmsprop") for f in optimizer)
    assert any("logged no seed" in f for f in optimizer)
    assert "arm 'sgd': validation metrics equal the test metrics in 1 of 1 runs" in " ".join(optimizer)
    document = json.loads((workdir / "out" / "verdicts.json").read_text())
    assert document["study"] == "notebook" and (workdir / "out" / "index.html").is_file()
    assert "nothing was trained" in (workdir / "out" / "report.md").read_text()


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
        ("[runs.params]", "[params]", "unknown setting 'params'"),
        ("[statistics]", "[tuning]\nspace.lr = { low = 0.1, high = 1.0 }\n[statistics]", "has no tuning"),
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
