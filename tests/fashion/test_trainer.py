import math
import platform
import subprocess
import sys

import pytest

from hypotune.config import Runtime
from hypotune.fashion.trainer import train
from tests.helpers import tiny_config


def test_training_learns_the_synthetic_task(synthetic_data):
    result = train(tiny_config(epochs=3, steps_per_epoch=30), synthetic_data)
    assert result.status == "finished"
    assert [e["epoch"] for e in result.epochs] == [1, 2, 3]
    assert result.metrics["test_acc"] > 0.5  # chance is 0.1
    assert result.metrics["param_count"] > 0 and result.state_dict
    assert 50 < result.metrics["peak_rss_mb"] < 1500  # torch alone takes more than 50 MB


def test_same_seed_same_numbers_and_other_seed_other_numbers(synthetic_data):
    first = train(tiny_config(), synthetic_data)
    again = train(tiny_config(), synthetic_data)
    other = train(tiny_config().replace({"seed": 1}), synthetic_data)
    strip = ("images_per_s", "epoch_seconds", "wall_seconds", "peak_rss_mb")
    values = [{k: v for k, v in r.metrics.items() if k not in strip} for r in (first, again, other)]
    assert values[0] == values[1]
    assert values[0]["val_loss"] != values[2]["val_loss"]


def test_a_diverging_run_is_recorded_not_raised(synthetic_data):
    result = train(tiny_config(optimizer="sgd", lr=1e12, schedule="constant"), synthetic_data)
    assert result.status == "diverged"
    assert math.isinf(result.metrics["val_loss"]) and math.isinf(result.metrics["test_loss"])
    assert result.state_dict is None


def test_a_non_finite_validation_loss_also_counts_as_divergence(synthetic_data, monkeypatch):
    import hypotune.fashion.trainer as train_module

    monkeypatch.setattr(train_module, "evaluate", lambda *args: (math.nan, 0.1))
    result = train(tiny_config(), synthetic_data)
    assert result.status == "diverged" and len(result.epochs) == 1
    assert math.isinf(result.metrics["val_loss"])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "plateau"])
def test_every_optimizer_and_schedule_trains(synthetic_data, optimizer, schedule):
    config = tiny_config(optimizer=optimizer, schedule=schedule, lr=0.01, epochs=1, steps_per_epoch=5)
    assert train(config, synthetic_data).status == "finished"


def test_schedules_change_the_learning_rate(synthetic_data, monkeypatch):
    cosine = train(tiny_config(schedule="cosine", epochs=3), synthetic_data)
    assert cosine.epochs[0]["lr"] > cosine.epochs[2]["lr"]
    import hypotune.fashion.trainer as train_module

    monkeypatch.setattr(train_module, "evaluate", lambda *args: (1.0, 0.5))  # a flat val loss
    plateau = train(tiny_config(schedule="plateau", plateau_patience=0, epochs=3, lr=0.01), synthetic_data)
    assert [e["lr"] for e in plateau.epochs] == pytest.approx([0.01, 0.01, 0.001])


def test_early_stopping_stops_and_keeps_the_best_epoch(synthetic_data, monkeypatch):
    import hypotune.fashion.trainer as train_module

    real_evaluate = train_module.evaluate
    val_losses = iter([0.9, 0.5, 0.7, 0.8, 0.6, 0.4])

    def scripted(model, split, mode, device, layout):
        loss, accuracy = real_evaluate(model, split, mode, device, layout)
        return (next(val_losses), accuracy) if split is not synthetic_data.test else (loss, accuracy)

    monkeypatch.setattr(train_module, "evaluate", scripted)
    result = train(tiny_config(epochs=6, early_stopping=2), synthetic_data)
    assert [e["val_loss"] for e in result.epochs] == [0.9, 0.5, 0.7, 0.8]
    assert result.metrics["val_loss"] == 0.5 and result.metrics["best_val_loss"] == 0.5


def test_full_pass_epochs_use_every_training_image(synthetic_data):
    result = train(tiny_config(steps_per_epoch=0, batch_size=100, epochs=1), synthetic_data)
    assert result.status == "finished"  # 1,000 images / 100 = 10 steps


def test_augmentation_trains(synthetic_data):
    config = tiny_config().replace({"data": {"flip": True, "translate": 2}})
    assert train(config, synthetic_data, Runtime(threads=1)).status == "finished"


def test_eval_flip_averages_the_probabilities_of_each_image_and_its_mirror(synthetic_data):
    import torch
    from torch.nn import functional as F

    from hypotune.fashion.config import DataConfig
    from hypotune.fashion.data import normalize
    from hypotune.fashion.model import build_model
    from hypotune.fashion.trainer import evaluate

    model = build_model(tiny_config().model)
    model.load_state_dict(train(tiny_config(), synthetic_data).state_dict)
    split = synthetic_data.test
    cpu = torch.device("cpu")
    loss, acc = evaluate(model, split, DataConfig(eval_flip=True), cpu, torch.contiguous_format)
    plain_loss, _ = evaluate(model, split, DataConfig(), cpu, torch.contiguous_format)
    with torch.no_grad():
        images = normalize(split.images, "scale")
        probs = (F.softmax(model(images), 1) + F.softmax(model(images.flip(-1)), 1)) / 2
    expected_loss = -probs[torch.arange(len(split)), split.labels].log().mean().item()
    assert math.isclose(loss, expected_loss, rel_tol=1e-4) and loss != plain_loss
    assert math.isclose(acc, (probs.argmax(1) == split.labels).float().mean().item()) and acc > 0.3


FAULT_PROBE = """
import resource, torch
from hypotune.fashion.trainer import reuse_freed_memory

def faults():  # allocate and free a step's worth of large tensors, as training does
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        held = [torch.ones(2 * 1024 * 1024) for _ in range(8)]  # 8 x 8 MiB, every page touched
        del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

assert reuse_freed_memory()
faults()  # the heap grows once
print(faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator only")
def test_freed_memory_is_reused_not_faulted_in_again():
    # In a fresh interpreter: the setting is per process and this one has trained already.
    result = subprocess.run([sys.executable, "-c", FAULT_PROBE], capture_output=True, text=True, check=True)
    after = int(result.stdout)
    # By default glibc often faults every page in again each round (81,920 faults), but not
    # always: its thresholds move with what the process allocated before, so only the
    # after-state is asserted.
    pages = 5 * 8 * 8 * 1024 * 1024 // 4096
    assert after < pages // 100


def test_weights_kept_in_the_store_load_safely(workdir, synthetic_data):
    import torch

    from hypotune.fashion.model import build_model
    from hypotune.fashion.trainer import serialize_weights
    from hypotune.store.tracker import Tracker

    tracker = Tracker()
    config = tiny_config(epochs=1)
    run_id = tracker.start_run(tracker.experiment("w"), "w", {})
    result = train(config, synthetic_data)
    tracker.finish(run_id, result.status, result.metrics, {"model.pt": serialize_weights(result.state_dict)})
    path = tracker.client.download_artifacts(run_id, "model.pt", str(workdir))
    model = build_model(config.model)
    model.load_state_dict(torch.load(path, weights_only=True))


TIMING = ("images_per_s", "epoch_seconds", "wall_seconds", "peak_rss_mb")


def with_epoch_val(config, size):
    return config.replace({"data": {"epoch_val_size": size}})


@pytest.mark.parametrize(
    "train_settings",
    [
        {"schedule": "constant"},
        {"schedule": "plateau", "plateau_patience": 2},  # 3 epochs: the plateau can never cut
        {"schedule": "cosine", "optimizer": "sgd", "lr": 0.05},
    ],
)
def test_the_epoch_subset_leaves_the_trained_model_and_its_final_metrics_bitwise_the_same(
    synthetic_data, train_settings
):
    config = tiny_config(epochs=3, **train_settings)
    model = {"model": {"dropout": 0.1, "norm": "batch"}}  # dropout masks and running statistics
    whole = train(with_epoch_val(config, 0).replace(model), synthetic_data)
    subset = train(with_epoch_val(config, 50).replace(model), synthetic_data)
    assert with_epoch_val(config, 0).key() == with_epoch_val(config, 50).key() == config.key()
    final = {k: v for k, v in whole.metrics.items() if k not in (*TIMING, "best_val_loss")}
    assert final == {k: v for k, v in subset.metrics.items() if k not in (*TIMING, "best_val_loss")}
    assert all(whole.state_dict[k].equal(subset.state_dict[k]) for k in whole.state_dict)
    # The curves before the last epoch are the subset's; the last epoch is the whole set's.
    assert [e["train_loss"] for e in whole.epochs] == [e["train_loss"] for e in subset.epochs]
    assert whole.epochs[0]["val_loss"] != subset.epochs[0]["val_loss"]
    assert whole.epochs[-1]["val_loss"] == subset.epochs[-1]["val_loss"] == subset.metrics["val_loss"]
    assert subset.metrics["best_val_loss"] == subset.metrics["val_loss"]  # of whole evaluations only


@pytest.mark.parametrize(
    "train_settings", [{"early_stopping": 2}, {"schedule": "plateau", "plateau_patience": 1}]
)
def test_every_epoch_is_evaluated_whole_where_its_loss_steers_the_training(synthetic_data, train_settings):
    config = tiny_config(epochs=4, **train_settings)
    whole = train(with_epoch_val(config, 0), synthetic_data)
    subset = train(with_epoch_val(config, 50), synthetic_data)
    assert [e["val_loss"] for e in whole.epochs] == [e["val_loss"] for e in subset.epochs]
    assert whole.metrics["best_val_loss"] == subset.metrics["best_val_loss"]


def test_a_trial_pruned_after_a_subset_epoch_still_reports_the_whole_validation_set(synthetic_data):
    config = tiny_config(epochs=3)
    pruned = train(with_epoch_val(config, 50), synthetic_data, on_epoch=lambda metrics: False)
    reference = train(with_epoch_val(config, 0), synthetic_data, on_epoch=lambda metrics: False)
    assert pruned.status == reference.status == "pruned" and len(pruned.epochs) == 1
    assert pruned.metrics["val_loss"] == reference.metrics["val_loss"]
    assert pruned.metrics["best_val_loss"] == reference.metrics["best_val_loss"]
