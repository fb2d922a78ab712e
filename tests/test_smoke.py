"""A few runs on the real Fashion-MNIST files (skipped where they are not installed)."""

import subprocess
import sys

import pytest

from hypotune.fashion.config import DataConfig
from hypotune.fashion.data import make_dataset


def test_real_data_splits(real_data_dir):
    dataset = make_dataset(DataConfig(), real_data_dir)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (50_000, 10_000, 10_000)
    assert dataset.val.labels.bincount().tolist() == [1000] * 10


def test_hypotune_train_on_real_data_is_readable_with_search_runs(workdir, real_data_dir):
    command = [
        sys.executable,
        "-m",
        "hypotune.cli",
        "train",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "20",
        "--val-size",
        "2000",
        "--data-dir",
        real_data_dir,
    ]
    trained = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    reader = (
        "import mlflow; mlflow.set_tracking_uri('sqlite:///runs/mlflow.db');"
        "r = mlflow.search_runs(experiment_names=['train']).iloc[0];"
        "print(r['status'], r['params.model.depth'], r['metrics.param_count'], r['metrics.test_acc'])"
    )
    read = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120)
    status, depth, params, test_acc = read.stdout.split()
    assert (status, depth, float(params)) == ("FINISHED", "10", 93_130)
    assert 0.0 <= float(test_acc) <= 1.0


@pytest.mark.parametrize("flags", [["--norm", "instance", "--dropout", "0.1", "--depth", "6"]])
def test_a_regularized_model_trains_on_real_data(workdir, real_data_dir, flags):
    from hypotune.cli.parser import main

    code = main(
        [
            "train",
            *flags,
            "--epochs",
            "1",
            "--steps-per-epoch",
            "10",
            "--val-size",
            "1000",
            "--data-dir",
            real_data_dir,
            "--no-weights",
        ]
    )
    assert code == 0
