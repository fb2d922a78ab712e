"""What a hostile or unlucky user can do: crafted study files, a read-only or full disk.

Each case must end in one line on stderr and a non-zero exit, write nothing outside the chosen
output folder, and leave no run RUNNING. Other such cases live beside the code they guard:
kill -9 of the coordinator (test_runner), SIGTERM to a server (test_cli, test_scale), models
too big to exist (test_model), bad study fields (test_study).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypotune.cli.parser import main
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker

from .helpers import TINY_BASE

STUDIES = Path(__file__).parent / "studies"
TINY = STUDIES / "tiny.toml"

CRAFTED = {
    "preset_escapes_report": (
        TINY.read_text().replace("[presets.quick]", '[presets."/../../x"]'),
        "a preset name '/../../x' may hold only",
    ),
    "preset_with_a_quote": (
        TINY.read_text().replace("[presets.quick]", '[presets."it\'s"]'),
        "a preset name 'it's' may hold only",
    ),
    "id_with_slashes": (TINY.read_text().replace('id = "width"', 'id = "../../w"'), "id '../../w' may hold"),
    "statement_not_text": (
        TINY.read_text().replace('statement = "Wider is better"', "statement = 5"),
        "statement",
    ),
    "nan_value": (
        'name = "n"\n'
        + TINY_BASE
        + '[presets.quick]\nseeds = 2\n[[hypotheses]]\nid = "h"\nstatement = "s"\narms.a = {}\n'
        + 'prediction = { kind = "reaches", arm = "a", value = nan }\n',
        "value must be a finite number, got nan",
    ),
    "model_too_big": (
        TINY.read_text().replace("width = 16 }", "width = 4096, depth = 8, kernel_size = 27 }"),
        "GiB to train at batch 32",
    ),
}


@pytest.mark.parametrize("name", CRAFTED)
@pytest.mark.parametrize("command", ["validate", "report", "study run"])
def test_crafted_study_files_are_one_line_and_write_nothing(workdir, capsys, name, command):
    text, message = CRAFTED[name]
    path = workdir / "crafted.toml"
    path.write_text(text)
    before = {p for p in workdir.parent.rglob("*")}
    code = main(
        [*command.split(), str(path)] + (["--out", str(workdir / "out")] if command == "report" else [])
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert {p for p in workdir.parent.rglob("*")} - before <= {workdir / "out"}  # nothing written elsewhere
    experiment = Tracker().client.get_experiment_by_name("tiny")
    assert experiment is None  # refused before a run was started


def read_only(folder: Path) -> list[str]:
    """A command prefix that runs with `folder` mounted read-only (a private mount namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a folder read-only")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("cannot make a private read-only mount here (needs root in a mount namespace)")
    # `cd "$PWD"` after mounting: the working folder must be entered through the new mount
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    return ["unshare", "-m", "sh", "-c", f'{mount} && cd "$PWD" && exec "$@"', "sh"]


@pytest.mark.parametrize(
    ("frozen", "message"),
    [("runs", "is read-only: give write access or use another tracking URI"),
     (".", "cannot create the store folder runs/: Read-only file system")],
)  # fmt: skip
def test_an_unwritable_store_or_folder_fails_within_seconds_in_one_line(
    tmp_path, store_template, frozen, message
):
    if frozen == "runs":  # an existing store that cannot be written
        (tmp_path / "runs").mkdir()
        shutil.copy(store_template, tmp_path / "runs" / "mlflow.db")
    shutil.copy(TINY, tmp_path / "tiny.toml")
    started = time.monotonic()
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store
    result = subprocess.run(
        [*read_only(tmp_path / frozen), sys.executable, "-m", "hypotune.cli", "study", "status", "tiny.toml"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=environment,
    )  # fmt: skip
    assert time.monotonic() - started < 30  # MLflow alone would retry for about two minutes
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def full_disk_for_weights(log_artifacts):
    """MLflow's log_artifacts, failing as a full disk does when the files are a model's."""

    def logged(self, run_id, local_dir, artifact_path=None):
        if (Path(local_dir) / "model.pt").exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(local_dir) / "model.pt"))
        return log_artifacts(self, run_id, local_dir, artifact_path)

    return logged


def test_a_full_disk_while_saving_weights_fails_the_run_in_one_line(workdir, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(MlflowClient, "log_artifacts", full_disk_for_weights(MlflowClient.log_artifacts))
    code = main(["train", "--trainable", "tests.toy:WEIGHTED_TOY", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("hypotune: error: No space left on device")  # after the bars
    assert "Traceback" not in "".join(err)
    tracker = Tracker()
    (run,) = tracker.runs(tracker.experiment("train"))
    assert run.info.status == "FAILED" and "No space left" in run.data.tags[f"{PREFIX}error"]


def test_a_full_disk_during_a_study_leaves_no_run_running(workdir, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(MlflowClient, "log_artifacts", full_disk_for_weights(MlflowClient.log_artifacts))
    study = workdir / "weighted.toml"  # the toy study, keeping weights as a model's trainer does
    study.write_text(
        (STUDIES / "toy.toml").read_text().replace('"tests.toy:TOY"', '"tests.toy:WEIGHTED_TOY"')
    )
    code = main(["study", "run", str(study), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "No space left on device" in err[-1] and "Traceback" not in "".join(err)
    tracker = Tracker()
    assert not tracker.runs(tracker.experiment("toy"), "attributes.status = 'RUNNING'")
