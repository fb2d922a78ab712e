import json
import math
from pathlib import Path

import pytest

from hypotune.config import Runtime
from hypotune.decide import sequential
from hypotune.decide.audit import audit
from hypotune.decide.collect import collect
from hypotune.decide.verdicts import evaluate
from hypotune.report.build import build_report
from hypotune.run.executors import LocalExecutor
from hypotune.run.runner import run_study
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker
from hypotune.study.file import load_study

from .helpers import TINY_BASE

STUDIES = Path(__file__).parent / "studies"


def test_planted_effect_is_supported_and_null_is_equivalent(planted_store):
    study, tracker, _ = planted_store
    verdicts = {v.hypothesis: v for v in evaluate(study, collect(study, "quick", tracker), "quick")}
    planted, null = verdicts["learning_matters"], verdicts["dropout_order"]
    assert planted.verdict == "supported" and planted.seeds == 3
    assert planted.ci_low > 0 and planted.p_adjusted < 0.05
    assert null.verdict == "equivalent" and null.effect == 0.0 and (null.ci_low, null.ci_high) == (0, 0)


def test_report_files_and_content(planted_store, tmp_path):
    study, tracker, _ = planted_store
    report = build_report(study, "quick", tracker, tmp_path / "report")
    markdown = report.markdown_path.read_text()
    assert "| learning_matters | learns beats frozen | supported |" in markdown
    assert "| dropout_order | before beats after | equivalent |" in markdown
    assert "Decided 2 of 2 predictions (1 supported, 1 equivalent)." in markdown
    assert (
        "## Original write-up vs this study" in markdown
        and "| a learning network | 0.5 (test_loss) |" in markdown
    )
    for image in (tmp_path / "report" / "figures").glob("*.png"):
        assert image.stat().st_size > 1000
        assert f"figures/{image.name}" in markdown
    page = report.html_path.read_text()
    assert page.count("data:image/png;base64,") == len(list((tmp_path / "report" / "figures").glob("*.png")))
    assert "src='figures/" not in page and "http" not in page  # self-contained


def test_report_command_prints_the_verdict_table(planted_store, monkeypatch, capsys):
    from hypotune.cli.parser import main

    _, _, folder = planted_store
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["report", str(STUDIES / "planted.toml"), "--out", "out"]) == 0
    printed = capsys.readouterr().out
    assert "learning_matters" in printed and "supported" in printed and "index.html" in printed
    assert (folder / "out" / "index.html").is_file()


def test_verdicts_are_machine_readable_and_the_report_is_kept_on_the_study_run(planted_store, tmp_path):
    study, tracker, _ = planted_store
    report = build_report(study, "quick", tracker, tmp_path / "report")
    document = json.loads((tmp_path / "report" / "verdicts.json").read_text())
    assert document["study"] == "planted" and document["preset"] == "quick"
    assert document["counts"] == {"supported": 1, "refuted": 0, "equivalent": 1, "inconclusive": 0,
                                  "exploratory": 0}  # fmt: skip
    rows = {row["hypothesis"]: row for row in document["verdicts"]}
    planted = next(v for v in report.verdicts if v.hypothesis == "learning_matters")
    assert rows["learning_matters"]["verdict"] == "supported"
    assert rows["learning_matters"]["ci_low"] == planted.ci_low and rows["learning_matters"]["seeds"] == 3
    lines = (tmp_path / "report" / "verdicts.csv").read_text().splitlines()
    assert lines[0].startswith("hypothesis,prediction,kind,metric,verdict,effect,ci_low,ci_high,")
    assert len(lines) == 3 and any(line.startswith("dropout_order,before beats after,") for line in lines)
    # The study's MLflow run keeps the report as an artifact.
    experiment_id = tracker.experiment("planted")
    (study_run,) = tracker.runs(experiment_id, f"tags.`{PREFIX}kind` = 'study'")
    kept = {a.path for a in tracker.client.list_artifacts(study_run.info.run_id, "report")}
    assert {"report/index.html", "report/report.md", "report/verdicts.json", "report/verdicts.csv"} <= kept


@pytest.mark.parametrize(("fail_on", "code"), [([], 0), (["refuted"], 0), (["refuted", "equivalent"], 1)])
def test_report_fail_on_a_verdict_exits_1_for_ci(planted_store, monkeypatch, capsys, fail_on, code):
    from hypotune.cli.parser import main

    _, _, folder = planted_store
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    flags = [flag for verdict in fail_on for flag in ("--fail-on", verdict)]
    assert main(["report", str(STUDIES / "planted.toml"), "--out", "out", *flags]) == code
    printed = capsys.readouterr().out
    assert ("equivalent: dropout_order: before beats after" in printed) == bool(code)


def test_audit_reports_missing_seeds(planted_store):
    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    data["learning_matters", "frozen"].records.pop(2)
    findings = audit(study, "quick", data)
    assert "incomplete: arm 'frozen' has 2 of 3 seeds finished" in findings["learning_matters"]
    assert findings["dropout_order"] == []


REACH = (
    'name = "reach"\n'
    + TINY_BASE
    + """
[presets.quick]
seeds = 2
train = { epochs = 2, steps_per_epoch = 8, batch_size = 32 }
[presets.target]
seeds = 3
hypotheses = ["target"]
train = { epochs = 2, steps_per_epoch = 8, batch_size = 32 }
[[hypotheses]]
id = "width"
statement = "Wider is better"
arms.narrow = {}
arms.wide = { model = { width = 16 } }
prediction = { kind = "better", arm = "wide", than = "narrow" }
[[hypotheses]]
id = "target"
statement = "The small network reaches a validation METRIC of VALUE"
metric = "METRIC"
arms.small = { train = { lr = 0.003 } }
prediction = { kind = "reaches", arm = "small", value = VALUE }
"""
)


def reach_study(tmp_path: Path, metric: str = "val_acc", value: float = 0.8):
    path = tmp_path / "reach.toml"
    path.write_text(REACH.replace("METRIC", metric).replace("VALUE", str(value)))
    return load_study(path)


@pytest.mark.parametrize(
    "metric, value, values, verdict",
    [
        ("val_acc", 0.8, [0.85, 0.86, 0.87], "supported"),
        ("val_acc", 0.8, [0.70, 0.71, 0.72], "refuted"),
        ("val_acc", 0.8, [0.75, 0.85, 0.80], "inconclusive"),
        ("val_loss", 0.3, [0.20, 0.21, 0.22], "supported"),
        ("val_loss", 0.3, [0.35, 0.36, 0.37], "refuted"),
    ],
)
def test_reaches_tests_the_arm_mean_against_the_value(tmp_path, metric, value, values, verdict):
    from hypotune.store.records import TrialRecord
    from hypotune.study.model import ArmData

    study = reach_study(tmp_path, metric, value).under("target")
    records = {
        s: TrialRecord(str(s), "key", s, "finished", {metric: v}, {}, {}) for s, v in enumerate(values)
    }
    [result] = evaluate(study, {("target", "small"): ArmData("target", "small", records)}, "target")
    assert result.verdict == verdict and result.seeds == 3
    margin = sum(values) / 3 - value
    assert math.isclose(result.effect, margin if metric == "val_acc" else -margin, abs_tol=1e-12)
    assert f"small against {value:g}: margin in {metric}" in result.evidence


TOY_REACH = """name = "reach"
trainable = "tests.toy:TOY"
[presets.quick]
seeds = 2
epochs = 2
[presets.target]
seeds = 3
hypotheses = ["target"]
epochs = 2
[[hypotheses]]
id = "far"
statement = "Starting at 1 beats starting at 0"
arms.far = {}
arms.near = { x = 1.0 }
prediction = { kind = "better", arm = "near", than = "far" }
[[hypotheses]]
id = "target"
statement = "The toy started at its best reaches a validation loss of 0.8"
metric = "val_loss"
arms.small = { x = 1.0 }
prediction = { kind = "reaches", arm = "small", value = 0.8 }
"""


def test_a_preset_that_names_one_hypothesis_trains_and_reports_only_it(workdir):
    path = workdir / "reach.toml"
    path.write_text(TOY_REACH)
    study = load_study(path)
    tracker = Tracker()
    summary = run_study(study, "target", LocalExecutor(2, Runtime()), tracker)
    assert summary.planned == summary.finished == 3
    report = build_report(study, "target", tracker, workdir / "report")
    assert [v.hypothesis for v in report.verdicts] == ["target"]
    text = report.markdown_path.read_text()
    assert report.verdicts[0].seeds == 3 and "small reaches 0.8" in text
    assert "test_loss, reported" in text  # a claim on a validation metric reports its test counterpart


def test_report_numbers_match_the_runs(planted_store, tmp_path):
    """The verdict row and the evidence line show the effect, interval, p, adjusted p and seeds
    that the logged runs give, computed here from the raw metrics with scipy alone."""
    from scipy import stats as scipy_stats

    from hypotune.decide.verdicts import fmt

    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    learns, frozen = (data["learning_matters", arm].values("val_loss") for arm in ("learns", "frozen"))
    gains = [frozen[s] - learns[s] for s in sorted(learns)]
    test = scipy_stats.ttest_1samp(gains, 0.0)
    low, high = test.confidence_interval(0.95)
    # One look of plain t-intervals, which scipy computes too; the default design's skew-corrected
    # intervals are checked against their own definition in test_sequential.py.
    with sequential.designed(sequential.GAUSSIAN_POCOCK):
        markdown = build_report(study, "quick", tracker, tmp_path / "report").markdown_path.read_text()
    mean = sum(gains) / len(gains)
    effect = f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"
    assert f"| learning_matters | learns beats frozen | supported | {effect} | 0.05 | 3 |" in markdown
    assert f"p = {test.pvalue:.3g} (adjusted {fmt(test.pvalue, 3)})" in markdown  # a family of one
    assert "over 3 seeds" in markdown and "Family: hypothesis learning_matters (1 prediction)" in markdown


def test_hostile_names_and_statements_stay_text_in_every_report_file(planted_store, tmp_path):
    """A statement with a script tag and an arm named like matplotlib math: the same runs,
    reported under those names, give a report whose Markdown and HTML hold them only as text."""
    study, tracker, _ = planted_store
    text = (STUDIES / "planted.toml").read_text()
    text = text.replace(
        'statement = "A network that learns',
        'statement = "<script>alert(1)</script> & <img src=x onerror=alert(2)> A network that learns',
    )
    text = text.replace("arms.learns", 'arms."cheap ($\\\\nosuchcmd$) | <b>"').replace(
        'arm = "learns"', 'arm = "cheap ($\\\\nosuchcmd$) | <b>"'
    )
    path = tmp_path / "planted.toml"
    path.write_text(text)
    hostile = load_study(path)
    report = build_report(hostile, "quick", tracker, tmp_path / "report")
    markdown, page = report.markdown_path.read_text(), report.html_path.read_text()
    for content in (markdown, page):
        assert "<script>" not in content and "<img src=x" not in content and "<b>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x" in markdown
    assert "cheap ($\\nosuchcmd$) \\| &lt;b&gt; beats frozen | supported" in markdown
    figures_written = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert "learning_matters-arms.png" in figures_written  # the arm's label drawn as plain text
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - {path}
    assert written and all(p.is_relative_to(tmp_path / "report") for p in written)


def test_effects_read_the_same_in_the_report_the_terminal_and_the_csv(planted_store, tmp_path):
    import csv

    from hypotune.report.build import build_report

    study, tracker, _ = planted_store
    report = build_report(study, "quick", tracker, tmp_path / "report")
    markdown = report.markdown_path.read_text()
    with (tmp_path / "report" / "verdicts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    checked = 0
    for row, verdict in zip(rows, report.verdicts, strict=True):
        if not row["ci_low"]:
            continue
        assert f"{row['effect']} [{row['ci_low']}, {row['ci_high']}]" in markdown
        assert f"CI {row['ci_low']} to {row['ci_high']}" in verdict.evidence  # the line the terminal prints
        decimals = {len(row[name].partition(".")[2]) for name in ("effect", "ci_low", "ci_high")}
        assert len(decimals) == 1  # one precision for the estimate and both ends
        checked += 1
    assert checked >= 2


def test_the_report_says_what_futility_gave_up_and_what_a_next_look_would_bring():
    import dataclasses

    from hypotune.decide.verdicts import Verdict
    from hypotune.report.build import counts_line, verdict_item

    open_one = Verdict("h", "a beats b", "better", "val_loss", "inconclusive", 0.01, -0.05, 0.07, 0.6, 0.6, 5,
                       40, next_chance=0.35, stopped="open at 5 of up to 8 seeds")  # fmt: skip
    assert "next look would decide it with a chance of about 35%" in verdict_item(open_one)
    gave_up = dataclasses.replace(
        open_one, given_up=True, stopped="open: would need about 40 seeds, more than 2.5 x the maximum of 8"
    )
    item = verdict_item(gave_up)
    assert "Seeds: open: would need about 40 seeds" in item and "next look" not in item
    assert "1 open prediction was given no more seeds" in counts_line([gave_up, open_one])
    assert "given no more seeds" not in counts_line([open_one])
