"""The built-in trainable as the engine sees it: the protocol around the CNN on Fashion-MNIST."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from hypotune.config import RunConfig, Runtime
from hypotune.errors import ArchitectureError
from hypotune.fashion import TRAINABLE, forward_passes
from hypotune.fashion.config import Settings
from hypotune.fashion.model import build_model
from hypotune.study.file import load_study
from hypotune.study.model import plan
from hypotune.trainables.load import load
from hypotune.trainables.protocol import Log, result_of
from tests.helpers import TINY, NoSearch, tiny_config


def test_forward_passes_count_training_thrice_and_every_evaluation():
    course = RunConfig(Settings()).replace(
        {"train": {"epochs": 3, "steps_per_epoch": 100, "batch_size": 64}, "data": {"val_size": 10000}}
    )
    # the 2,000-image subset after epochs 1 and 2, the whole 10,000 after the last, then the test set
    assert forward_passes(course.settings) == 3 * 3 * 100 * 64 + (2 * 2000 + 10000) + 10000
    whole = course.replace({"data": {"epoch_val_size": 0}})
    assert forward_passes(whole.settings) == 3 * 3 * 100 * 64 + 3 * 10000 + 10000
    steering = course.replace({"train": {"early_stopping": 1}})  # every epoch is evaluated whole
    assert forward_passes(steering.settings) == forward_passes(whole.settings)
    on_test = whole.replace({"train": {"steps_per_epoch": 0}, "data": {"validate_on_test": True}})
    assert forward_passes(on_test.settings) == 3 * 3 * 60000 + 4 * 10000  # all 60,000 train; test every epoch
    mirrored = whole.replace({"data": {"eval_flip": True, "test_size": 2000}})
    assert forward_passes(mirrored.settings) == 3 * 3 * 100 * 64 + 2 * (3 * 10000 + 2000)


def test_the_built_in_study_keeps_its_trial_keys():
    """Runs already in a store are found again: the keys are those of the layout before the engine
    and its trainables were split apart (3 seeds per hypothesis at the quick preset)."""
    study = load_study("fashion_mnist_synergy")
    quick = study.under("quick")
    keys = sorted(t.key for t in plan(quick, "quick", seeds={h.id: 3 for h in quick.hypotheses}))
    assert len(keys) == 21 and hashlib.sha256("".join(keys).encode()).hexdigest()[:16] == "0e298d1339417b9d"


def test_it_trains_through_the_protocol_and_keeps_loadable_weights(synthetic_dir):
    events = []
    config = tiny_config(epochs=2)
    runtime = Runtime(data_dir=str(synthetic_dir))
    result = result_of(
        TRAINABLE.train(config.settings, 3, Log(lambda metrics, stored: events.append(metrics), runtime))
    )
    assert result.status == "finished" and result.epochs == 2 and result.tags["precision"] == "float32"
    assert [metrics["epoch"] for metrics in events] == [1, 2]
    assert {"val_loss", "test_loss", "param_count"} <= set(result.metrics)
    model = build_model(config.model)
    model.load_state_dict(torch.load(io.BytesIO(result.artifacts["model.pt"]), weights_only=True))
    assert {"model/MLmodel", "model/data/model.pth", "model/requirements.txt"} <= set(result.artifacts)

    tuning = Log(lambda metrics, stored: None, runtime, tuning=True, should_stop=lambda epoch: True)
    stopped = result_of(TRAINABLE.train(config.settings, 3, tuning))
    assert stopped.status == "pruned" and stopped.epochs == 1 and not stopped.artifacts
    assert "test_loss" not in stopped.metrics  # a tuning trial never looks at the test set


def test_a_study_keeps_each_trials_model_for_mlflow_pytorch_load_model(workdir, synthetic_dir, monkeypatch):
    import mlflow.pytorch

    from hypotune import api
    from tests.helpers import TINY_BASE

    path = workdir / "one.toml"
    path.write_text(
        'name = "one"\n'
        + TINY_BASE
        + """
[presets.quick]
seeds = 1
[presets.quick.train]
epochs = 1
steps_per_epoch = 5
[[hypotheses]]
id = "one"
statement = "it trains"
arms = { plain = {} }
prediction = { kind = "reaches", arm = "plain", value = 10.0 }
"""
    )
    study = api.load_study(path)
    api.run_study(study, "quick", workers=1, data_dir=str(synthetic_dir))
    run_id = api.analyze(study, "quick").runs.run_id[0]
    mlflow.set_tracking_uri(api.store_uri())  # put back after the test (the workdir fixture)
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    config = study.arm_config(study.hypotheses[0], "plain", "quick", 0)
    weights = torch.load(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model.pt"), weights_only=True)
    rebuilt = build_model(config.model)
    rebuilt.load_state_dict(weights)
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(model.eval()(images), rebuilt.eval()(images))


def test_its_checks_and_words_come_from_the_model_and_the_data(synthetic_dir):
    assert load() is TRAINABLE
    config = tiny_config()
    assert TRAINABLE.describe(config.settings).split(";")[0].endswith(" parameters")
    assert TRAINABLE.recount(config.settings)["param_count"] > 0
    assert "Fashion-MNIST in" in TRAINABLE.ready(Runtime(data_dir=str(synthetic_dir)))
    with pytest.raises(ArchitectureError):
        TRAINABLE.describe(config.replace({"model": {"depth": 9, "pools": 9}}).settings)
    assert TRAINABLE.epochs_of(config.settings) == 2


def test_a_study_hands_out_the_costliest_cnn_trials_first():
    """The runner starts the longest trials first by the trainable's cost; the CNN's counts FLOPs
    and images, and a layout that runs slower per FLOP."""
    from hypotune.run.runner import StudySource

    source = StudySource(load_study(TINY), "quick", NoSearch(), done=set())
    handed_out = []
    while (task := source.next_task()) is not None:
        handed_out.append(source.trials[task.key])
    costs = [TRAINABLE.cost_of(trial.config.settings) for trial in handed_out]
    assert len(handed_out) == 10 and costs == sorted(costs, reverse=True)
    assert {trial.arms[0][1] for trial in handed_out[:2]} == {"wide"}  # twice the width's FLOPs
    order = [(trial.arms[0][1], trial.config.seed) for trial in handed_out]
    assert order.index(("wide", 0)) < order.index(("wide", 1))  # ties keep the plan's order
    config = handed_out[-1].config
    assert config.model.norm == "none"  # the norms kept contiguous run slower per FLOP
    whole_epochs = config.replace({"train": {"steps_per_epoch": 0}})  # 59,800 images, not 8 x 32
    assert TRAINABLE.cost_of(whole_epochs.settings) > 10 * TRAINABLE.cost_of(config.settings)  # test set too
    impossible = config.replace({"model": {"depth": 9, "pools": 9}})
    assert TRAINABLE.cost_of(impossible.settings) == 0.0  # left to fail in its worker, with its own message


def test_train_of_the_cnn_tracks_a_run_with_its_settings(workdir, synthetic_dir, capsys):
    import mlflow

    from hypotune.cli.parser import main

    flags = ["--depth", "2", "--width", "8", "--pool-size", "2", "--head-hidden", "", "--val-size", "200",
             "--epochs", "2", "--steps-per-epoch", "5", "--batch-size", "32", "--threads", "1"]  # fmt: skip
    code = main(["train", *flags, "--data-dir", str(synthetic_dir), "--seed", "3", "--experiment", "cli"])
    assert code == 0
    assert "test_acc" in capsys.readouterr().out
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")
    row = mlflow.search_runs(experiment_names=["cli"]).iloc[0]
    assert (row["params.seed"], row["params.model.depth"], row["params.model.head_hidden"]) == ("3", "2", "")
