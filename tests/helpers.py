"""Helpers for the tests: synthetic IDX files and tiny configs."""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

from hypotune.config import RunConfig
from hypotune.fashion.config import DataConfig, ModelConfig, Settings, TrainConfig
from hypotune.fashion.data import PARTS
from hypotune.run.search import NoSearches

STUDIES = Path(__file__).parent / "studies"
TINY = STUDIES / "tiny.toml"
TUNED = STUDIES / "tuned.toml"
TOY_STUDY = STUDIES / "toy.toml"  # the tiny study's shape on tests/toy.py: the engine's tests
ROOT = Path(__file__).parents[1]
TOY_TUNED = STUDIES / "toy_tuned.toml"  # two arms that want different step sizes
TOY_PER_SEED = STUDIES / "toy_per_seed.toml"
PER_SEED = STUDIES / "per_seed.toml"


def write_idx(path: Path, array: torch.Tensor, compress: bool = True) -> Path:
    """Write a uint8 tensor as an IDX file (gzip-compressed unless told otherwise)."""
    magic = 0x0803 if array.dim() == 3 else 0x0801
    payload = struct.pack(f">I{array.dim()}I", magic, *array.shape) + array.numpy().tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)
    return path


def synthetic_split(count: int, seed: int, shuffle_labels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images where each class lights a different 7x7 patch over noise: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.randint(0, 60, (count, 28, 28), generator=generator, dtype=torch.uint8)
    for cls in range(10):
        row, col = divmod(cls, 4)
        images[labels == cls, row * 7 + 3 : row * 7 + 10, col * 7 : col * 7 + 7] = 220
    labels = labels[torch.randperm(count, generator=generator)] if shuffle_labels else labels
    return images, labels.to(torch.uint8)


def make_synthetic_dir(folder: Path, n_train: int = 1200, n_test: int = 300, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = synthetic_split(count, seed)
        write_idx(folder / PARTS[f"{split}_images"], images, compress)
        write_idx(folder / PARTS[f"{split}_labels"], labels, compress)
    return folder


# The model and data tables of the tests' small study files: trains in well under a second.
TINY_BASE = """
[base.model]
depth = 2
width = 8
pool_size = 2
head_hidden = []
[base.data]
val_size = 200
"""


def tiny_config(**train: object) -> RunConfig:
    """A model and budget small enough to train in well under a second."""
    settings = Settings(
        data=DataConfig(val_size=200),
        model=ModelConfig(depth=2, width=8, pool_size=2, head="flatten", head_hidden=()),
        train=TrainConfig(**({"epochs": 2, "steps_per_epoch": 10, "batch_size": 32} | train)),
    )
    return RunConfig(settings)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process, seconds: float = 120) -> None:
    """Poll `url` until it answers; fail early if the server process has exited."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(
                    f"server exited: {process.stderr.read() if process.stderr else ''}"
                ) from None
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def stop_process_group(process, seconds: float = 30) -> None:
    """SIGTERM a process started with start_new_session=True, and wait for its whole group."""
    import os
    import signal
    import time

    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group has already exited
        return
    process.wait(timeout=seconds)
    deadline = time.time() + seconds
    while time.time() < deadline:  # helpers (MLflow's job consumers) shut down on their own
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)


def default_sigint() -> None:
    """SIGINT back to its default, as in a terminal. A background job of a shell without job
    control (as CI may run the tests) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so a simulated Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_finished_runs(database: Path, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with sqlite3.connect(database, timeout=1) as connection:
                (done,) = connection.execute("select count(*) from runs where status = 'FINISHED'").fetchone()
            if done >= count:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} runs finished in {timeout} s")


def session_commands(session: int) -> dict[int, str]:
    """pid -> command line of every live process of a session (re-parented ones included)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":  # state, ppid, pgrp, session
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def stop_and_wait_for_session(process, seconds: float = 30) -> None:
    """SIGTERM the process alone (as a service manager does), then assert that every process
    it started has ended within `seconds`; kill what is left either way."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
        deadline = time.time() + seconds
        while session_commands(process.pid) and time.time() < deadline:
            time.sleep(0.3)
        left = session_commands(process.pid)
        assert not left, f"still running after SIGTERM: {sorted(left.values())}"
    finally:
        import contextlib
        import os

        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def take_a_task_and_die(inbox, events, runtime, slot) -> None:
    """A worker's main function that takes its task and dies before saying it started."""
    import os

    inbox.get()
    os._exit(3)


def toy_environment() -> dict[str, str]:
    """This process's environment, with the repository root on PYTHONPATH: a process started
    from it (a CLI, a worker, a Ray node) imports tests.toy as it would a user's trainable."""
    return os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start_cli_study(workdir: Path, study: Path, data_dir: Path | None = None) -> subprocess.Popen:
    """`hypotune study run STUDY --workers 2` in its own session; the toy trainable importable."""
    command = [sys.executable, "-m", "hypotune.cli", "study", "run", str(study), "--workers", "2"]
    command += ["--data-dir", str(data_dir)] if data_dir is not None else []
    environment = toy_environment()
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def slow_study(workdir: Path) -> Path:
    """The toy study with trials long enough to be caught in flight (1.5 s each)."""
    return study_variant(
        workdir, {'"tests.toy:TOY"': '"tests.toy:SLOW_TOY"', "epochs = 2": "epochs = 3"}, study=TOY_STUDY
    )


class ListSource:
    def __init__(self, tasks):
        self.tasks = list(tasks)

    def next_task(self):
        return self.tasks.pop(0) if self.tasks else None

    def exhausted(self):
        return not self.tasks


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = TINY.read_text()
    assert old in text
    path = tmp_path / "study.toml"
    path.write_text(text.replace(old, new))
    return path


def study_variant(tmp_path: Path, replace: dict[str, str], extra: str = "", study: Path = TINY) -> Path:
    """A study (the tiny one) with some text replaced and some appended."""
    text = study.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "study.toml"
    path.write_text(text + extra)
    return path


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = TUNED.read_text()
    assert old in text, old
    path = tmp_path / "study.toml"
    path.write_text(text.replace(old, new))
    return path


NoSearch = NoSearches  # a study's searches when it has none: for driving a StudySource by hand
