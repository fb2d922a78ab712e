"""The trainable protocol: the engine runs, tunes, resumes and reports a trainable it knows
nothing of (tests/toy.py: no torch, no data), and no engine module imports the built-in one."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

import hypotune
from hypotune.config import RunConfig, Runtime, setting_type
from hypotune.errors import ConfigError, StudyError
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Log, Result, result_of

from .toy import TOY, Toy

PACKAGE = Path(hypotune.__file__).parent
ENGINE = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")

TOY_STUDY = """
name = "toy"
[presets.quick]
seeds = 3
epochs = 2

[[hypotheses]]
id = "start"
statement = "starting at 1 beats starting at 3"
arms = { near = { x = 1.0 }, far = { x = 3.0 } }
prediction = { kind = "better", arm = "near", than = "far" }

[[hypotheses]]
id = "tuned"
statement = "with its own step size, 1 still beats 2"
arms = { near = { x = 1.0 }, middle = { x = 2.0 } }
prediction = { kind = "better", arm = "near", than = "middle" }
tuning = { space = { lr = { low = 0.1, high = 0.9 } }, trials = { quick = 4 } }
"""


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_engine_loads_without_torch():
    code = (
        "import sys, hypotune.run.runner, hypotune.run.worker, hypotune.report.build;"
        "import hypotune.api, hypotune.cli;"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('hypotune.fashion.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # not even the CNN's settings, until a command asks for its flags


def test_log_counts_epochs_and_stops_only_a_tuning_trial_that_is_told_to():
    events = []
    log = Log(lambda metrics, stored: events.append(metrics), Runtime())
    assert log({"val_loss": 1.0}) is False and log({"val_loss": 0.5}) is False
    assert [metrics["epoch"] for metrics in events] == [1.0, 2.0]
    stops = Log(lambda metrics, stored: None, Runtime(), tuning=True, should_stop=lambda epoch: epoch >= 2)
    assert stops({"epoch": 1, "val_loss": 1.0}) is False and stops({"epoch": 2, "val_loss": 1.0}) is True
    untuned = Log(lambda metrics, stored: None, Runtime(), should_stop=lambda epoch: True)
    assert untuned({"val_loss": 1.0}) is False  # only a search stops a trial


def test_a_train_function_may_return_metrics_or_a_result():
    assert result_of({"val_loss": 1}) == Result({"val_loss": 1.0})
    with pytest.raises(ConfigError, match="status 'done'; valid: finished, diverged, pruned"):
        result_of(Result({}, status="done"))
    with pytest.raises(ConfigError, match="must return a Result or a mapping"):
        result_of(0.5)
    for name in ("../escape", "/abs", "a//b", "./x"):
        with pytest.raises(ConfigError, match=f"artifact name '{re.escape(name)}' must be a relative path"):
            result_of(Result({}, artifacts={name: b""}))
    with pytest.raises(ConfigError, match="artifact 'a' must be bytes, got str"):
        result_of(Result({}, artifacts={"a": "text"}))
    assert result_of(Result({}, artifacts={"model/MLmodel": b"x"})).artifacts == {"model/MLmodel": b"x"}


def test_trainables_load_by_name_or_reference_and_bad_ones_say_why():
    assert load().name == "fashion_mnist" and load("hypotune.fashion:TRAINABLE").name == "fashion_mnist"
    assert load("tests.toy:TOY").ref == "tests.toy:TOY"
    with pytest.raises(ConfigError, match="neither built in .* nor 'module:attribute'"):
        load("toy")
    with pytest.raises(ConfigError, match="cannot import no_such_module"):
        load("no_such_module:TOY")
    with pytest.raises(ConfigError, match="tests.toy has no Trainable or training function named 'Toy'"):
        load("tests.toy:Toy")


def test_a_misspelt_module_says_which_file_and_folder_it_looked_in(workdir, capsys):
    from hypotune.cli.parser import main
    from hypotune.trainables.load import resolve_ref

    (workdir / "fit.py").write_text("def train(settings, seed, log): ...\n")
    with pytest.raises(ConfigError) as caught:
        resolve_ref("fitt:train", workdir)
    message = str(caught.value)
    assert f"cannot import fitt: no fitt.py in {workdir.resolve()}" in message
    assert "no module 'fitt' on the Python path; did you mean fit:train (fit.py)?" in message
    assert resolve_ref("fit:train", workdir) == f"{(workdir / 'fit.py').resolve()}:train"
    assert resolve_ref("tests.toy:TOY", Path(__file__).parent) == "tests.toy:TOY"  # importable by name
    (workdir / "study.toml").write_text('name = "s"\ntrainable = "fitt:train"\n')
    assert main(["validate", "study.toml"]) != 0
    assert "no fitt.py in" in capsys.readouterr().err


def test_settings_without_tables_resolve_by_plain_names():
    assert setting_type(Toy, "lr") is float
    with pytest.raises(ConfigError, match=r"unknown setting 'l' \(did you mean 'lr'\?\)"):
        setting_type(Toy, "l")
    config = hypotune.run_config(trainable=TOY, x=2.0, seed=4)
    assert config == RunConfig(Toy(x=2.0), 4) and config.x == 2.0
    assert config.replace({"lr": 0.1}).key() != config.key()


def test_a_study_file_names_the_settings_of_its_trainable(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY_STUDY.replace("x = 3.0", "noize = 3.0"))
    with pytest.raises(
        StudyError, match=r"arms.far.noize.; valid|arms.far.noize. \(did you mean .noise.\?\)"
    ):
        hypotune.load_study(path, trainable=TOY)
    path.write_text(TOY_STUDY)
    with pytest.raises(StudyError, match="presets.quick.*epochs"):  # the CNN's epochs are train.epochs
        hypotune.load_study(path)


def test_a_study_of_any_trainable_runs_tunes_resumes_and_reports(workdir):
    path = workdir / "toy.toml"
    path.write_text(TOY_STUDY)
    study = hypotune.load_study(path, trainable="tests.toy:TOY")
    done = hypotune.run_study(study, "quick", workers=2)
    assert done.summary.finished == 9 and not done.failed  # 3 seeds x (near, far, middle); near shared
    assert done.summary.tuning_finished == 8  # two tuned arms, 4 trials each
    analysis = hypotune.analyze(study, "quick")
    assert dict(zip(analysis.verdicts.hypothesis, analysis.verdicts.verdict, strict=True)) == {
        "start": "supported", "tuned": "supported",
    }  # fmt: skip
    again = hypotune.run_study(study, "quick", workers=2)
    assert again.summary.finished == 0 and again.summary.skipped == 9

    client = MlflowClient(analysis.tracking_uri)
    params = [client.get_run(run_id).data.params for run_id in set(analysis.runs.run_id)]
    assert {p["x"] for p in params} == {"1.0", "2.0", "3.0"} and {p["epochs"] for p in params} == {"2"}
    history = analysis.history(("val_loss",))
    assert set(history.epoch) == {1, 2}

    report = hypotune.write_report(study, "quick", workdir / "report")
    text = report.markdown_path.read_text()
    assert "Budget: 3 seeds per arm, epochs 2." in text and "start" in text


def test_a_trainable_that_raises_is_a_failed_trial_with_its_message(workdir):
    path = workdir / "toy.toml"
    path.write_text(TOY_STUDY.replace("far = { x = 3.0 }", "far = { x = 3.0, fail = true }"))
    study = hypotune.load_study(path, trainable=TOY)
    done = hypotune.run_study(study.under("quick"), "quick", workers=1)
    assert len(done.failed) == 3 and all("the toy was told to fail" in line for line in done.failed)


def test_a_trainable_that_workers_cannot_import_is_refused_before_anything_runs(workdir, tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY_STUDY)
    unreachable = dataclasses.replace(TOY, ref="")
    study = hypotune.load_study(path, trainable=unreachable)
    with pytest.raises(ConfigError, match="trainable 'toy' cannot reach worker processes: define it"):
        hypotune.run_study(study, "quick")
    assert hypotune.train(trainable=unreachable, x=1.0).status == "finished"  # in this process: fine


def test_train_runs_a_trainable_in_process_and_records_it(workdir):
    result = hypotune.train(trainable=TOY, x=1.5, epochs=4, seed=2)
    assert result.status == "finished" and list(result.history.epoch) == [1, 2, 3, 4]
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.data.params["x"] == "1.5" and run.data.metrics["val_loss"] == result.metrics["val_loss"]


USER_CODE = """
from __future__ import annotations

import random
from dataclasses import dataclass

import hypotune


@dataclass(frozen=True)
class Decay:
    rate: float = hypotune.setting(0.5, "how fast the loss falls per epoch")
    epochs: int = hypotune.setting(3, "epochs")
    noise: float = 0.02


def fit(settings: Decay, seed: int, log):
    rng = random.Random(f"{seed} {settings.rate}")
    loss = 1.0
    for epoch in range(1, settings.epochs + 1):
        loss *= 1 - settings.rate
        log({"epoch": epoch, "val_loss": loss})
    return {"val_loss": loss * (1 + rng.gauss(0, settings.noise))}


@hypotune.trainable(metrics={"val_acc": "maximize"}, epochs=lambda settings: settings.epochs)
def accuracy(settings: Decay, seed: int, log):
    rng = random.Random(f"{seed} {settings.rate}")
    return {"val_acc": settings.rate + rng.gauss(0, settings.noise)}
"""

USER_STUDY = """
name = "decay"
trainable = "decay:fit"

[presets.quick]
seeds = 3
epochs = 2

[[hypotheses]]
id = "rate"
statement = "a faster decay ends lower"
arms = { slow = { rate = 0.2 }, fast = { rate = 0.6 } }
prediction = { kind = "better", arm = "fast", than = "slow" }
"""


@pytest.fixture
def user_project(workdir):
    (workdir / "decay.py").write_text(USER_CODE)
    (workdir / "study.toml").write_text(USER_STUDY)
    return workdir


def test_a_study_names_a_training_function_beside_it_and_runs_it(user_project):
    study = hypotune.load_study(user_project / "study.toml")
    assert study.trainable.ref == f"{user_project / 'decay.py'}:fit" and study.trainable.name == "fit"
    done = hypotune.run_study(study, "quick", workers=2)  # the workers load decay.py by its path
    assert done.summary.finished == 6 and not done.failed
    assert list(hypotune.analyze(study, "quick").verdicts.verdict) == ["supported"]


def test_a_study_of_a_training_function_names_its_settings_with_the_same_checks(user_project):
    study = user_project / "study.toml"
    study.write_text(USER_STUDY.replace("rate = 0.6", "rtae = 0.6"))
    with pytest.raises(StudyError, match=r"arms.fast.rtae' \(did you mean 'rate'\?\)"):
        hypotune.load_study(study)
    study.write_text(USER_STUDY.replace("rate = 0.6", 'rate = "fast"'))
    with pytest.raises(StudyError, match="arms.fast.rate must be a number"):
        hypotune.load_study(study)
    study.write_text(USER_STUDY.replace('"decay:fit"', '"decay:fti"'))
    with pytest.raises(StudyError, match="has no Trainable or training function named 'fti'"):
        hypotune.load_study(study)
    study.write_text(USER_STUDY.replace('"decay:fit"', '"missing.py:fit"'))
    with pytest.raises(StudyError, match="no such file missing.py"):
        hypotune.load_study(study)


def test_a_decorated_function_declares_its_metrics_and_stays_callable(user_project):
    trainable = load(f"{user_project / 'decay.py'}:accuracy")
    assert trainable.metrics == {"val_acc": False} and trainable.epochs_of(trainable.settings()) == 3
    assert (
        trainable(trainable.settings(rate=0.3), 0, Log(lambda metrics, stored: None, Runtime()))["val_acc"]
        > 0
    )
    study = user_project / "study.toml"
    text = USER_STUDY.replace('"decay:fit"', '"decay.py:accuracy"').replace("better", "better", 1)
    study.write_text(
        text.replace('statement = "a faster decay ends lower"', 'statement = "x"\nmetric = "val_acc"')
    )
    loaded = hypotune.load_study(study)
    assert loaded.hypotheses[0].lower_is_better is False


def test_a_function_without_settings_says_how_to_declare_them(tmp_path):
    from hypotune.trainables.function import from_function

    def bare(settings, seed, log):
        return {}

    with pytest.raises(ConfigError, match="annotate its first parameter with one"):
        from_function(bare)

    @dataclasses.dataclass(frozen=True)
    class Clash:
        seed: int = 0

    with pytest.raises(ConfigError, match="a setting may not be named seed"):
        from_function(bare, Clash)
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('no data here')\n")
    with pytest.raises(ConfigError, match="broken.py failed to load: ValueError: no data here"):
        load(f"{broken}:fit")


def test_the_command_line_runs_a_training_function(user_project, capsys):
    from hypotune.cli.parser import main

    assert main(["validate", "study.toml"]) == 0
    assert main(["study", "run", "study.toml", "--workers", "1"]) == 0
    assert main(["train", "--trainable", "decay.py:fit", "--rate", "0.3", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "study 'decay' is valid" in out and "val_loss" in out
    with pytest.raises(SystemExit) as usage:  # --depth is the CNN's, not a setting of fit
        main(["train", "--trainable", "decay.py:fit", "--depth", "3"])
    assert usage.value.code == 2 and "unrecognized arguments: --depth 3" in capsys.readouterr().err
    (user_project / "clash.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass S:\n    experiment: int = 1\n\n"
        "def fit(settings: S, seed, log):\n    return {'val_loss': float(settings.experiment)}\n"
    )  # a setting named like a flag of `train` is given with --set
    assert main(["train", "--trainable", "clash.py:fit", "--set", "experiment=3", "--experiment", "e"]) == 0
    assert main(["train", "--trainable", "nothing.py:fit"]) == 2
    assert "no such file nothing.py" in capsys.readouterr().err
