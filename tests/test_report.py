import json
import math
import shutil
from pathlib import Path

import pytest

from hypotune.analysis import collect
from hypotune.audit import audit
from hypotune.config import Runtime
from hypotune.executors import LocalExecutor
from hypotune.fashion.model import build_model, param_count
from hypotune.figures import Band, curve_data, interaction_data, pareto_data
from hypotune.report import build_report
from hypotune.runner import run_study
from hypotune.store import TAG, Tracker
from hypotune.study import plan
from hypotune.studyfile import load_study
from hypotune.verdicts import evaluate

from .helpers import TINY_BASE

STUDIES = Path(__file__).parent / "studies"


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory, store_template, synthetic_dir):
    """The planted study, trained once for every test in this module."""
    folder = tmp_path_factory.mktemp("planted")
    (folder / "runs").mkdir()
    shutil.copy(store_template, folder / "runs" / "mlflow.db")
    tracker = Tracker(store_dir=folder / "runs")
    study = load_study(STUDIES / "planted.toml")
    summary = run_study(study, "quick", LocalExecutor(2, Runtime(data_dir=str(synthetic_dir))), tracker)
    assert summary.finished == summary.planned
    return study, tracker, folder


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
    from hypotune.cli import main

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
    (study_run,) = tracker.runs(experiment_id, f"tags.`{TAG}kind` = 'study'")
    kept = {a.path for a in tracker.client.list_artifacts(study_run.info.run_id, "report")}
    assert {"report/index.html", "report/report.md", "report/verdicts.json", "report/verdicts.csv"} <= kept


@pytest.mark.parametrize(("fail_on", "code"), [([], 0), (["refuted"], 0), (["refuted", "equivalent"], 1)])
def test_report_fail_on_a_verdict_exits_1_for_ci(planted_store, monkeypatch, capsys, fail_on, code):
    from hypotune.cli import main

    _, _, folder = planted_store
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    flags = [flag for verdict in fail_on for flag in ("--fail-on", verdict)]
    assert main(["report", str(STUDIES / "planted.toml"), "--out", "out", *flags]) == code
    printed = capsys.readouterr().out
    assert ("equivalent: dropout_order: before beats after" in printed) == bool(code)


def test_figure_data_without_drawing(planted_store):
    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    from hypotune.report import fetch_history

    curves = curve_data(study.hypotheses[0], data, fetch_history(tracker, data))
    band = curves["learns"]["val_loss"]
    assert isinstance(band, Band) and band.x == [1.0, 2.0]
    assert all(lo <= m <= hi for lo, m, hi in zip(band.low, band.mean, band.high, strict=True))
    assert curves["frozen"]["val_loss"].mean[-1] > band.mean[-1]
    points = pareto_data(study, data)
    assert len(points) == 4  # learns, frozen, and the two dropout orders
    assert any(p.on_front for p in points)
    assert interaction_data(study.hypotheses[0], data) == {}


def test_pareto_front_marks_only_undominated_points(tmp_path):
    from hypotune.analysis import ArmData, TrialRecord

    arms = "arms.small = {}\narms.mid = { model = { width = 12 } }\narms.big = { model = { width = 16 } }\n"
    path = tmp_path / "three.toml"
    path.write_text(
        (STUDIES / "tiny.toml").read_text().split("[[hypotheses]]")[0]
        + f'[[hypotheses]]\nid = "size"\nstatement = "s"\n{arms}'
        + 'prediction = { kind = "best", arm = "mid" }\n'
    )
    study = load_study(path)
    points = {"small": (1000, 0.50), "mid": (2000, 0.40), "big": (3000, 0.45)}  # big is dominated by mid
    data = {}
    for arm, (params, loss) in points.items():
        records = {}
        for seed in range(2):
            metrics = {"param_count": params, "test_loss": loss + 0.01 * seed}
            logged = {"model.width": arm, "seed": str(seed), "data.split_seed": str(seed)}
            records[seed] = TrialRecord(arm, "", seed, "finished", metrics, logged, {})
        data["size", arm] = ArmData("size", arm, records)
    front = {p.label.split(": ")[1]: p.on_front for p in pareto_data(study, data)}
    assert front == {"small": True, "mid": True, "big": False}
    assert pareto_data(study, {key: _empty(*key) for key in data}) == []


def _empty(hypothesis, arm):
    from hypotune.analysis import ArmData

    return ArmData(hypothesis, arm)


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
                f"{TAG}kind": "trial",
                f"{TAG}preset": "quick",
                f"{TAG}key": config.key(),
                f"{TAG}seed": str(seed),
                f"{TAG}arms": json.dumps([[hypothesis.id, arm]]),
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


def test_audit_reports_missing_seeds(planted_store):
    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    data["learning_matters", "frozen"].records.pop(2)
    findings = audit(study, "quick", data)
    assert "incomplete: arm 'frozen' has 2 of 3 seeds finished" in findings["learning_matters"]
    assert findings["dropout_order"] == []


def test_collect_ignores_other_presets_and_unfinished_runs(planted_store):
    study, tracker, _ = planted_store
    experiment_id = tracker.experiment(study.name)
    config = study.arm_config(study.hypotheses[0], "learns", "quick", 0).replace({"train": {"epochs": 7}})
    arms = json.dumps([["learning_matters", "learns"]])
    strays = {  # runs that must not count, at seeds of their own: another preset's, an unfinished one
        "other": ({f"{TAG}preset": "other", f"{TAG}key": config.key(), f"{TAG}seed": "7"}, "FINISHED"),
        "running": ({f"{TAG}preset": "quick", f"{TAG}key": "unfinished", f"{TAG}seed": "8"}, "RUNNING"),
    }
    for name, (tags, status) in strays.items():
        run_id = tracker.start_run(experiment_id, name, tags | {f"{TAG}kind": "trial", f"{TAG}arms": arms})
        tracker.client.log_metric(run_id, "val_loss", 99.0)
        if status == "FINISHED":
            tracker.client.set_terminated(run_id, "FINISHED")
    data = collect(study, "quick", tracker)
    assert {len(arm.records) for arm in data.values()} == {3}
    keys = {r.key for arm in data.values() for r in arm.records.values()}
    assert keys == {t.key for t in plan(study, "quick")}
    assert all(v < 99 for v in data["learning_matters", "learns"].values("val_loss").values())


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
        ("val_loss", 0.3, [0.25, 0.26, 0.27], "supported"),
        ("val_loss", 0.3, [0.35, 0.36, 0.37], "refuted"),
    ],
)
def test_reaches_tests_the_arm_mean_against_the_value(tmp_path, metric, value, values, verdict):
    from hypotune.analysis import ArmData, TrialRecord

    study = reach_study(tmp_path, metric, value).under("target")
    records = {
        s: TrialRecord(str(s), "key", s, "finished", {metric: v}, {}, {}) for s, v in enumerate(values)
    }
    [result] = evaluate(study, {("target", "small"): ArmData("target", "small", records)}, "target")
    assert result.verdict == verdict and result.seeds == 3
    margin = sum(values) / 3 - value
    assert math.isclose(result.effect, margin if metric == "val_acc" else -margin, abs_tol=1e-12)
    assert f"small against {value:g}: margin in {metric}" in result.evidence


def test_a_preset_that_names_one_hypothesis_trains_and_reports_only_it(workdir, synthetic_dir):
    study = reach_study(workdir)
    tracker = Tracker()
    summary = run_study(study, "target", LocalExecutor(2, Runtime(data_dir=str(synthetic_dir))), tracker)
    assert summary.planned == summary.finished == 3
    report = build_report(study, "target", tracker, workdir / "report")
    assert [v.hypothesis for v in report.verdicts] == ["target"]
    text = report.markdown_path.read_text()
    assert report.verdicts[0].seeds == 3 and "small reaches 0.8" in text
    assert "test_acc (reported)" in text  # an accuracy claim reports test accuracy


def test_report_numbers_match_the_runs(planted_store, tmp_path):
    """The verdict row and the evidence line show the effect, interval, p, adjusted p and seeds
    that the logged runs give, computed here from the raw metrics with scipy alone."""
    from scipy import stats as scipy_stats

    from hypotune.verdicts import fmt

    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    learns, frozen = (data["learning_matters", arm].values("val_loss") for arm in ("learns", "frozen"))
    gains = [frozen[s] - learns[s] for s in sorted(learns)]
    test = scipy_stats.ttest_1samp(gains, 0.0)
    low, high = test.confidence_interval(0.95)
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
