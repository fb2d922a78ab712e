"""Scaling out: a real Ray cluster and an MLflow server on PostgreSQL, all on loopback.

Ray listens on the machine's network interface even when told to use 127.0.0.1, so the
cluster and its client run inside a network namespace with only loopback up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hypotune.config import Runtime
from hypotune.run.executors import LocalExecutor
from hypotune.run.runner import run_study
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker
from hypotune.study.file import load_study

from .helpers import (
    TOY_STUDY,
    free_port,
    session_commands,
    stop_and_wait_for_session,
    stop_process_group,
    toy_environment,
    wait_for_http,
)

# The toy, keeping "weights" as a model's trainer does; importable on the cluster's workers and
# in every process started here from the repository root.
TOY = TOY_STUDY.read_text().replace('"tests.toy:TOY"', '"tests.toy:WEIGHTED_TOY"')
ENVIRONMENT = toy_environment()
BIN = Path(sys.executable).parent


def namespace_or_skip() -> str:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("a network namespace needs root and iproute2 (`ip`)")
    name = f"hypotune-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return name


@pytest.fixture(scope="module")
def ray_cluster():
    """One Ray cluster for the module's tests (starting one takes most of a minute)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'hypotune[ray]')")
    namespace = namespace_or_skip()
    inside = ["ip", "netns", "exec", namespace]
    try:
        subprocess.run([*inside, str(BIN / "ray"), "start", "--head", "--port=6399", "--num-cpus=2",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=120, env=ENVIRONMENT)  # fmt: skip
        yield inside
    finally:
        subprocess.run([*inside, str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def metrics_by_key(tracker: Tracker) -> dict[str, dict[str, float]]:
    runs = tracker.runs(
        tracker.experiment("toy"), f"attributes.status = 'FINISHED' and tags.`{PREFIX}kind` = 'trial'"
    )
    return {r.data.tags[f"{PREFIX}key"]: r.data.metrics for r in runs}


def test_ray_cluster_gives_the_local_executor_numbers(ray_cluster, workdir, store_template, tmp_path):
    # The first hypothesis of the toy study alone: 4 trials show the same numbers as well as 10.
    first = TOY.split("[[hypotheses]]")[1]
    study = workdir / "toy.toml"
    study.write_text(TOY.split("[[hypotheses]]")[0] + "[[hypotheses]]" + first)
    command = [*ray_cluster, sys.executable, "-m", "hypotune.cli", "study", "run", str(study),
               "--executor", "ray", "--address", "auto"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=workdir, env=ENVIRONMENT
    )
    assert result.returncode == 0, result.stderr
    assert "4 trials trained" in result.stdout
    on_ray = metrics_by_key(Tracker())

    local_store = tmp_path / "local" / "runs"
    local_store.mkdir(parents=True)
    shutil.copy(store_template, local_store / "mlflow.db")
    local_tracker = Tracker(store_dir=local_store)
    run_study(load_study(study), "quick", LocalExecutor(2, Runtime()), local_tracker)
    local = metrics_by_key(local_tracker)
    assert set(on_ray) == set(local) and len(local) == 4
    for key, metrics in local.items():
        for name in ("val_loss", "test_loss"):
            assert on_ray[key][name] == metrics[name], (key, name)

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir, env=ENVIRONMENT)
    assert rerun.returncode == 0 and "0 trials trained, 4 already done" in rerun.stdout


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on a loopback port; yields a SQLAlchemy URI."""
    import glob
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; `make test` installs it)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'hypotune[server]')")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("starting a PostgreSQL cluster here needs root (to run it as the postgres user)")
    bin_dir = Path(binaries[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="hypotune-pg-"))
    folder.chmod(0o755)
    shutil.chown(folder, "postgres", "postgres")
    port = free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
        )

    try:
        as_postgres(
            str(bin_dir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server's output goes to a file, not to pipes this process would wait on
        start = [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(folder / "data"),
            "-l",
            str(folder / "log"),
            "-o",
            options,
        ]
        subprocess.run(["runuser", "-u", "postgres", "--", *start, "-w", "start"], check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *stop], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def running_ray_trials() -> list[int]:
    """Processes executing a trial as a Ray task (Ray titles them after the task)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::remote_trial"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_trials_on_ray_stop_when_the_driver_is_killed(ray_cluster, workdir):
    import signal
    import time

    slow = workdir / "slow.toml"  # 20 s a trial
    slow.write_text(
        TOY.replace('"tests.toy:WEIGHTED_TOY"', '"tests.toy:SLOW_TOY"').replace("epochs = 2", "epochs = 40")
    )
    command = [*ray_cluster, sys.executable, "-m", "hypotune.cli", "study", "run", str(slow),
               "--executor", "ray", "--address", "auto"]  # fmt: skip
    driver = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=ENVIRONMENT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not running_ray_trials() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert running_ray_trials(), "no trial started on the cluster"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 30
        while running_ray_trials() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not running_ray_trials(), "trials kept running on Ray after their driver died"
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.fixture
def tracking_server(postgres, tmp_path):
    port = free_port()
    # The cluster trusts loopback, so any password works; it must never show in `ps`.
    uri = postgres.replace("postgres@", "postgres:s3cret-pw@")
    command = [sys.executable, "-m", "hypotune.cli", "server",
               "--artifacts", str(tmp_path / "artifacts"), "--port", str(port)]  # fmt: skip
    environment = os.environ | {"MLFLOW_BACKEND_STORE_URI": uri}  # as a deployment keeps a password
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, env=environment)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        shown = session_commands(server.pid)
        assert len(shown) > 1 and not [c for c in shown.values() if "s3cret-pw" in c]
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        stop_process_group(server)
        raise
    stop_and_wait_for_session(server)  # SIGTERM to hypotune alone ends the server's whole tree


def test_a_study_tracks_to_a_postgres_backed_server(tracking_server, tmp_path):
    study = tmp_path / "toy.toml"
    study.write_text(TOY)
    command = [sys.executable, "-m", "hypotune.cli", "study", "run", str(study), "--workers", "2",
               "--tracking-uri", tracking_server]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=ENVIRONMENT
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "runs").exists()  # nothing went to a local store

    tracker = Tracker(tracking_server)
    by_key = metrics_by_key(tracker)
    assert len(by_key) == 10
    for run in tracker.runs(tracker.experiment("toy"), f"tags.`{PREFIX}kind` = 'trial'"):
        assert run.info.status == "FINISHED"
        assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
        assert {a.path for a in tracker.client.list_artifacts(run.info.run_id)} >= {"config.toml", "model.pt"}

    report = subprocess.run([sys.executable, "-m", "hypotune.cli", "report", str(study), "--tracking-uri",
                             tracking_server, "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=300, env=ENVIRONMENT)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "| start | near beats far |" in (tmp_path / "report" / "report.md").read_text()
