"""A report speaks the trainable's own vocabulary: a panel, column or sentence appears only where
the trainable declares it or its runs logged it, and every axis names the metric it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hypotune
from hypotune.report import figures
from hypotune.report.build import build_report
from hypotune.store.tracker import Tracker

# A regression script that logs nothing but its validation mean squared error, once per epoch.
MSE_SCRIPT = """
import random, sys
import mlflow
epochs, slope, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
noise = random.Random(f"{seed} {slope}")
for epoch in range(1, epochs + 1):
    mlflow.log_metric("val_mse", (slope - 1) ** 2 + 1 / epoch + noise.gauss(0, 0.01), step=epoch)
"""

MSE_STUDY = """
name = "regression"
description = "A script that logs only its validation MSE."
dataset = "a regression of my own"
[trainable]
command = ["python", "fit.py", "{epochs}", "{slope}", "{seed}"]
metrics = { val_mse = "minimize" }
epochs = "epochs"
[trainable.settings]
epochs = 3
slope = 1.0

[statistics]
margin = 0.05

[presets.quick]
seeds = 3

[[hypotheses]]
id = "slope"
statement = "the right slope beats a wrong one"
arms = { right = { slope = 1.0 }, wrong = { slope = 3.0 } }
prediction = { kind = "better", arm = "right", than = "wrong" }
"""

CNN_WORDS = ("cross-entropy", "param", "test_loss", "train_loss", "course", "weight initialisation",
             "Pareto", "Fashion")  # fmt: skip


@pytest.fixture
def axes_drawn(monkeypatch) -> list[tuple[str, str, str, str]]:
    """Every axis the report draws: (figure file, title, x label, y label)."""
    drawn = []
    save = figures._save

    def recording(figure, path):
        for axis in figure.axes:
            drawn.append((Path(path).name, axis.get_title(), axis.get_xlabel(), axis.get_ylabel()))
        return save(figure, path)

    monkeypatch.setattr(figures, "_save", recording)
    return drawn


def test_a_command_that_logs_only_val_mse_gets_a_report_in_its_own_words(workdir, axes_drawn):
    (workdir / "fit.py").write_text(MSE_SCRIPT)
    (workdir / "study.toml").write_text(MSE_STUDY)
    study = hypotune.load_study(workdir / "study.toml")
    done = hypotune.run_study(study, "quick", workers=2)
    assert not done.failed and done.summary.finished == 6
    report = build_report(study, "quick", Tracker(done.tracking_uri), workdir / "report")
    page = report.html_path.read_text()
    markdown = report.markdown_path.read_text()
    assert report.verdicts[0].verdict == "supported"
    for word in CNN_WORDS:
        assert word not in page and word not in markdown, word
    assert ">diverged<" not in page and "(1 diverged)" not in page  # no run diverged; none is called so
    assert "<th>val_mse, deciding</th>" in page and "<th>parameters</th>" not in page
    assert "does not say what a seed varies" in markdown
    assert "Data: a regression of my own." in markdown  # the study's own label, for its reader
    figure_names = sorted({name for name, *_ in axes_drawn})
    assert figure_names == ["slope-arms.png", "slope-curves.png"]  # no Pareto, no training-loss panel
    curves = [axis for axis in axes_drawn if axis[0] == "slope-curves.png"]
    assert [(title, y) for _, title, _, y in curves] == [("val_mse", "val_mse")]
    for name, _, x, y in axes_drawn:
        assert "val_mse" in x + y, (name, x, y)


def test_declared_units_size_and_seed_noise_reach_the_report(workdir, axes_drawn):
    (workdir / "fit.py").write_text(
        MSE_SCRIPT.replace(
            '"val_mse", ', '"param_count", 10 ** (1 + slope))\n    mlflow.log_metric("val_mse", '
        )
    )
    declared = (
        'units = { mse = "squared error" }\nsize = "param_count"\n'
        'varies = ["the noise of the fit"]\nfixed = ["the data"]\n'
    )
    text = MSE_STUDY.replace('epochs = "epochs"\n', 'epochs = "epochs"\n' + declared)
    text = text.replace(
        'metrics = { val_mse = "minimize" }',
        'metrics = { val_mse = "minimize", param_count = "minimize" }\ndeciding = ["val_mse"]',
    )
    (workdir / "study.toml").write_text(text)
    study = hypotune.load_study(workdir / "study.toml")
    done = hypotune.run_study(study, "quick", workers=2)
    assert not done.failed
    report = build_report(study, "quick", Tracker(done.tracking_uri), workdir / "report")
    markdown = report.markdown_path.read_text()
    assert "Each seed varies: the noise of the fit. Fixed across seeds: the data." in markdown
    assert "val_mse (squared error), deciding" in markdown and "| param_count |" in markdown
    assert "## param_count vs val_mse" in markdown  # no test metric: the view plots the deciding one
    pareto = [axis for axis in axes_drawn if axis[0] == "pareto.png"]
    assert pareto and pareto[0][2] == "param_count" and pareto[0][3].startswith("val_mse (squared error)")
    assert re.search(r"\| slope: right \| 100 \|", markdown)


def test_a_study_of_its_own_data_and_metric_loads_tunes_on_it_and_shows_it(workdir):
    """A dataset label of the user's, a search that names no metric, and `train`'s result table:
    each takes the trainable's own metric, none the CNN's."""
    from hypotune.cli.output import result_table, shown

    (workdir / "fit.py").write_text(MSE_SCRIPT)
    tuned = MSE_STUDY.replace(
        'prediction = { kind = "better", arm = "right", than = "wrong" }\n',
        'prediction = { kind = "better", arm = "right", than = "wrong" }\n'
        "tuning = { space = { rate = { low = 0.5, high = 1.5 } }, trials = { quick = 2 } }\n",
    ).replace("slope = 1.0\n\n", "slope = 1.0\nrate = 1.0\n\n", 1)
    (workdir / "study.toml").write_text(tuned)
    study = hypotune.load_study(workdir / "study.toml")  # "a regression of my own": any label
    assert study.dataset == "a regression of my own"
    assert study.hypotheses[0].metric == "val_mse" and study.hypotheses[0].tuning.metric == "val_mse"
    trainable = study.trainable
    assert shown({"epoch": 2, "val_mse": 0.25, "other": 1.0}, trainable) == "val_mse 0.25"
    table = result_table("finished", {"other": 1.0, "val_mse": 0.25, "epoch": 3}, trainable)
    assert [cell for cell in table.columns[0].cells] == ["val_mse", "other"]  # declared first
