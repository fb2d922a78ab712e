"""The Python API: docs/api.md runs as written, and its results are records and DataFrames."""

import re
from pathlib import Path

import mlflow
import pytest

import hypotune

API_DOC = Path(__file__).parents[1] / "docs" / "api.md"


def doc_cells() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_DOC.read_text(), flags=re.S)


def test_the_api_walkthrough_runs_as_written(workdir, synthetic_dir, monkeypatch):
    monkeypatch.setenv("HYPOTUNE_DATA", str(synthetic_dir))  # the doc's default data, here synthetic
    cells = doc_cells()
    assert len(cells) >= 10
    namespace: dict = {}
    for cell in cells:
        exec(compile(cell, str(API_DOC), "exec"), namespace)

    run, analysis = namespace["run"], namespace["analysis"]
    assert run.summary.finished == 6 and run.summary.failed == []
    assert "6 trials trained" in run._repr_html_()
    assert sum(analysis.counts.values()) == 1
    verdicts = analysis.verdicts
    assert list(verdicts.hypothesis) == ["width"] and verdicts.verdict[0] in {
        "supported", "refuted", "equivalent", "inconclusive"}  # fmt: skip
    assert verdicts.seeds[0] == 3
    runs = analysis.runs
    assert len(runs) == 6 and set(runs.arm) == {"narrow", "wide"} and set(runs.seed) == {0, 1, 2}
    assert runs.val_loss.notna().all()
    curves = namespace["curves"]
    assert set(curves.epoch) == {1, 2} and len(curves[curves.metric == "val_loss"]) == 12
    assert "<table" in analysis._repr_html_() and "width (try)" in analysis._repr_html_()
    report = namespace["report"]
    assert {"index.html", "report.md", "verdicts.json", "verdicts.csv"} <= {
        p.name for p in report.html_path.parent.iterdir()}  # fmt: skip

    result = namespace["result"]
    assert result.status == "finished" and len(result.history) == 2
    tracker = hypotune.api._tracker(None)
    recorded = tracker.client.get_run(result.run_id)
    assert recorded.info.status == "FINISHED" and recorded.data.params["model.depth"] == "2"
    found = namespace["found"]
    assert found.trials == 4 and set(found.best) == {"train.lr"} and 1e-4 <= found.best["train.lr"] <= 1e-2
    assert found.as_toml().startswith("[train]\nlr = ")  # paste-able into a config
    assert namespace["report"].counts_line().startswith("Decided ")
    fitted = namespace["fitted"]
    assert fitted.metrics["val_loss"] == 0.75**3 and list(fitted.history.epoch) == [1, 2, 3]
    assert "did you mean" in namespace["message"] and "depth" in namespace["message"]


def test_run_study_resumes_and_refuses_bad_arguments(workdir):
    study = hypotune.load_study(Path(__file__).parent / "studies" / "toy.toml")
    first = hypotune.run_study(study, workers=2)
    assert first.summary.finished == first.summary.planned > 0
    again = hypotune.run_study(study, workers=2)
    assert again.summary.finished == 0 and again.summary.skipped == first.summary.planned
    with pytest.raises(hypotune.HypotuneError, match="workers must be at least 1"):
        hypotune.run_study(study, workers=0)
    with pytest.raises(hypotune.ConfigError, match="valid: local, ray"):
        hypotune.run_study(study, executor="slurm")
    with pytest.raises(hypotune.ConfigError, match="not a duration"):
        hypotune.run_study(study, budget="soon")
    for cap in (0, -1, 2.5, "3"):
        with pytest.raises(hypotune.ConfigError, match="trial cap must be a positive whole number"):
            hypotune.run_study(study, max_trials=cap)
    with pytest.raises(hypotune.StudyError, match="preset"):
        hypotune.analyze(study, "nosuchpreset")


@pytest.mark.parametrize(
    ("budget", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800), ("2H", 7200), (None, None)]
)
def test_budgets_in_seconds_or_units(budget, seconds):
    assert hypotune.api.seconds(budget) == seconds


def test_settings_layer_as_documented(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text("[model]\ndepth = 3\nwidth = 12\n")
    config = hypotune.run_config(path, model__width=20, train={"epochs": 4})
    assert (config.model.depth, config.model.width, config.train.epochs) == (3, 20, 4)
    assert hypotune.run_config(config) == config
    with pytest.raises(hypotune.ConfigError, match="did you mean"):
        hypotune.run_config(trian__epochs=3)


SCRIPT = '''
from pathlib import Path

import hypotune

Path("toy.toml").write_text("""
name = "toy"
[presets.quick]
seeds = 2
epochs = 1

[[hypotheses]]
id = "start"
statement = "starting at 1 beats starting at 3"
arms = { near = { x = 1.0 }, far = { x = 3.0 } }
prediction = { kind = "better", arm = "near", than = "far" }
""")
study = hypotune.load_study("toy.toml", trainable="tests.toy:TOY")
'''


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_that_starts_a_study_unguarded_is_told_how_and_leaves_no_runs(workdir, guarded):
    """Worker processes import the script that started them again; run at its top level, the
    study would start again in each and die. Told before anything starts; guarded, it runs."""
    import os
    import subprocess
    import sys

    call = 'run = hypotune.run_study(study, "quick", workers=2)\nprint("finished", run.summary.finished)\n'
    if guarded:
        call = 'if __name__ == "__main__":\n' + "".join(f"    {line}\n" for line in call.splitlines())
    (workdir / "script.py").write_text(SCRIPT + call)
    root = str(Path(__file__).parents[1])
    environment = os.environ | {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "script.py"], cwd=workdir, env=environment, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    if guarded:
        assert done.returncode == 0, done.stderr
        assert "finished 4" in done.stdout
        return
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    line = (SCRIPT + call).splitlines().index(call.splitlines()[0]) + 1
    assert f"script.py, line {line}, starts trials from the script's top level" in last
    assert 'if __name__ == "__main__":' in last and "hypotune train" not in done.stderr
    assert runs == []  # nothing was started, so nothing is left KILLED or FAILED


def test_the_former_name_of_plan_search_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match="plan_search"):
        space = {"lr": {"low": 0.1, "high": 0.9}}
        plan = hypotune.search_group(trainable="tests.toy:TOY", trials=2, space=space)
    assert plan.budget == 2 and "search_group" not in hypotune.__all__
