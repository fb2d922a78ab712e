"""How long `hypotune ui` takes to show its first page: the one quiet worker it starts against
MLflow's defaults (4 uvicorn workers, INFO and access logs), side by side.

Makes a temporary SQLite store with one small experiment (three runs, logged with MLflow's
client), then starts each side in turn (interleaved, new first) and times from the start of the
command to the first HTTP 200 of the UI's page (GET /, which the link's #/experiments/... is a
view of). The new side is the real `hypotune ui` (its own start-up and store check inside the
clock), and also reports when it printed its link; the old side is `mlflow ui` with the options
`hypotune ui` passed before (plain MLflow defaults). Prints median and minimum per side, and how
many lines each printed on the console by then.

    .venv/bin/python bench/ui_start.py [--repeats 3] [--timeout 180]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Start:
    page: float  # seconds to the first 200 of GET /
    link: float | None  # seconds to the printed link (the new side only)
    lines: int  # console lines printed until the page answered


def make_store(folder: Path) -> str:
    """A SQLite store with one experiment of three small runs: what a first look at a study sees."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bench_ui", artifact_location=(folder / "artifacts").as_uri())
    for seed in range(3):
        run = client.create_run(experiment, run_name=f"seed-{seed}")
        client.log_param(run.info.run_id, "seed", seed)
        for epoch in range(3):
            client.log_metric(run.info.run_id, "val_loss", 1.0 / (epoch + 1 + seed), step=epoch)
        client.set_terminated(run.info.run_id)
    return uri


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_command(uri: str, port: int) -> list[str]:
    return [sys.executable, "-m", "hypotune.cli", "ui", "--tracking-uri", uri, "--port", str(port)]


def old_command(uri: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def answers(url: str) -> bool:
    try:
        with DIRECT.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def timed_start(command: list[str], port: int, uri: str, timeout: float) -> Start:
    """Start `command` in its own process group, time its first page, then end the whole group."""
    environment = os.environ | {"MLFLOW_TRACKING_URI": uri}
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)  # fmt: skip

    def read() -> None:
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not answers(f"http://127.0.0.1:{port}/"):
            if process.poll() is not None or time.perf_counter() - start > timeout:
                raise SystemExit(f"{command[2:4]} did not answer:\n{''.join(t for _, t in lines)}")
            time.sleep(0.05)
        page = time.perf_counter() - start
        deadline = time.perf_counter() + 5
        while not any("MLflow UI:" in t for _, t in lines) and command[2] == "hypotune.cli":
            if time.perf_counter() > deadline:
                break
            time.sleep(0.05)
        link = next((at for at, t in lines if "MLflow UI:" in t), None)
        return Start(page, link, sum(1 for at, _ in lines if at <= page))
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the group and wait until every process of it (uvicorn, job consumers) has gone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process.wait(timeout=60)
    for _ in range(300):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)


def summary(name: str, starts: list[Start]) -> str:
    pages = [s.page for s in starts]
    text = f"{name:<34} page: median {statistics.median(pages):5.1f} s, min {min(pages):5.1f} s"
    links = [s.link for s in starts if s.link is not None]
    if links:
        text += f"; link printed: median {statistics.median(links):5.1f} s"
    return text + f"; console lines by then: {max(s.lines for s in starts)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before a start has failed")
    args = parser.parse_args()
    sides = {
        "hypotune ui (1 quiet worker)": new_command,
        "mlflow ui defaults (4 workers)": old_command,
    }
    with tempfile.TemporaryDirectory() as folder:
        uri = make_store(Path(folder))
        starts: dict[str, list[Start]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, command in sides.items():
                port = free_port()
                found = timed_start(command(uri, port), port, uri, args.timeout)
                starts[name].append(found)
                print(f"  {repeat + 1}/{args.repeats} {name}: page after {found.page:.1f} s", flush=True)
    print(f"first page of the UI, {args.repeats} starts per side ({os.cpu_count()} cores)")
    for name, found in starts.items():
        print(summary(name, found))
    new, old = (statistics.median(s.page for s in found) for found in starts.values())
    print(f"speed-up (median): {old / new:.2f}x")


if __name__ == "__main__":
    main()
