"""Shared fixtures: tiny synthetic Fashion-MNIST files and a pre-migrated MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hypotune.errors import DataError
from hypotune.fashion.config import DataConfig
from hypotune.fashion.data import locate, read_raw

from .helpers import STUDIES, make_synthetic_dir


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dir(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def synthetic_data(synthetic_dir: Path):
    """A small Dataset: 1,000 train, 200 validation, 300 test images."""
    from hypotune.fashion.data import make_dataset

    return make_dataset(DataConfig(val_size=200), str(synthetic_dir))


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store migrated once; tests copy it instead of migrating their own."""
    from hypotune.store.tracker import Tracker

    folder = tmp_path_factory.mktemp("store-template")
    Tracker(store_dir=folder / "runs")
    return folder / "runs" / "mlflow.db"


@pytest.fixture
def workdir(tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with a ready ./runs/ store, as a user's project folder."""
    (tmp_path / "runs").mkdir()
    shutil.copy(store_template, tmp_path / "runs" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    # mlflow.set_tracking_uri exports this variable, which hypotune honours, and keeps the URI in
    # a global too: both are put back after each test, so no test reads another's store.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    return tmp_path


@pytest.fixture(scope="session")
def real_data_dir() -> str:
    """The directory of the real Fashion-MNIST files; skips only when they are not there."""
    try:
        paths = locate(download=False)
    except DataError as error:
        pytest.skip(f"real Fashion-MNIST not available ({error}); `make data` installs it")
    folder = str(paths["train_images"].parent)
    read_raw(folder)  # files that are there but cannot be read are a failure, not a skip
    return folder


@pytest.fixture(scope="session")
def planted_store(tmp_path_factory, store_template):
    """The planted study (tests/studies/planted.toml, on the toy), trained once for the tests that read it."""
    from hypotune.config import Runtime
    from hypotune.run.executors import LocalExecutor
    from hypotune.run.runner import run_study
    from hypotune.store.tracker import Tracker
    from hypotune.study.file import load_study

    folder = tmp_path_factory.mktemp("planted")
    (folder / "runs").mkdir()
    shutil.copy(store_template, folder / "runs" / "mlflow.db")
    tracker = Tracker(store_dir=folder / "runs")
    study = load_study(STUDIES / "planted.toml")
    summary = run_study(study, "quick", LocalExecutor(2, Runtime()), tracker)
    assert summary.finished == summary.planned
    return study, tracker, folder
