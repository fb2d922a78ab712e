"""A store written before the modules moved into subpackages still reads, reports and resumes.

The fixture (tests/fixtures/before_layout/) was written by hypotune at 00ba42a, the last commit
of the flat layout: `toy.toml` run at its quick preset through the Python API (trial runs, an
arm's search with its tuning trials, the study's run) and one `train` run, all on the toy
trainable. The study's trial keys and tags must read the same after any move of the code.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hypotune

FIXTURE = Path(__file__).parent / "fixtures" / "before_layout"


@pytest.fixture
def old_store(workdir: Path) -> Path:
    with gzip.open(FIXTURE / "mlflow.db.gz") as packed, (workdir / "runs" / "mlflow.db").open("wb") as db:
        shutil.copyfileobj(packed, db)
    shutil.copy(FIXTURE / "optuna.journal", workdir / "runs" / "optuna.journal")
    shutil.copy(FIXTURE / "toy.toml", workdir / "toy.toml")
    return workdir


def _hypotune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    root = str(Path(__file__).parents[1])
    command = [
        sys.executable,
        "-c",
        "import sys; from hypotune.cli.parser import main; sys.exit(main())",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin", "HOME": str(cwd)})  # fmt: skip


def test_an_old_store_decides_as_it_did(old_store):
    study = hypotune.load_study("toy.toml", trainable="tests.toy:TOY")
    analysis = hypotune.analyze(study, "quick")
    assert analysis.counts["supported"] == 2
    assert set(analysis.verdicts["hypothesis"]) == {"start", "tuned_start"}


def test_an_old_store_resumes_with_nothing_to_train(old_store):
    """The trial keys and the search runs of the old layout are the new one's: nothing reruns."""
    study = hypotune.load_study("toy.toml", trainable="tests.toy:TOY")
    run = hypotune.run_study(study, "quick", workers=1)
    assert run.summary.skipped == run.summary.planned == 9
    assert run.summary.finished == 0 and run.summary.tuning_finished == 0
    assert not run.failed


def test_an_old_store_reports_and_shows_status_from_the_command_line(old_store):
    done = _hypotune("study", "status", "toy.toml", "--trainable", "tests.toy:TOY", cwd=old_store)
    assert done.returncode == 0, done.stderr
    assert "tuned_start" in done.stdout and "start" in done.stdout
    done = _hypotune("report", "toy.toml", "--trainable", "tests.toy:TOY", "--out", "report", cwd=old_store)
    assert done.returncode == 0, done.stderr
    text = (old_store / "report" / "report.md").read_text()
    assert "supported" in text and "tuned_start" in text
