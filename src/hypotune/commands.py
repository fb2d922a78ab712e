"""What each `hypotune` sub-command does, and how its results are shown in the terminal."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hypotune.errors import HypotuneError

console = Console(stderr=True)
out = Console()


def dispatch(args: argparse.Namespace) -> int:
    handler = {"train": run_train, "data": run_data, "ui": run_ui}[args.command]
    return handler(args)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_train(args: argparse.Namespace) -> int:
    from hypotune.cli import resolve_run_config, resolve_runtime
    from hypotune.data import make_dataset
    from hypotune.model import build_model, param_count
    from hypotune.tracking import TAG, Tracker
    from hypotune.train import train

    config = resolve_run_config(args)
    runtime = resolve_runtime(args, threads=os.cpu_count() or 1)  # one run: every core
    build_model(config.model)  # an impossible architecture fails here, before any I/O
    dataset = make_dataset(config.data, runtime.data_dir)
    tracker = Tracker(args.tracking_uri)
    experiment_id = tracker.experiment(args.experiment)
    tags = {f"{TAG}key": config.key(), f"{TAG}seed": str(config.seed), f"{TAG}kind": "train"}
    if config.data.validate_on_test:
        tags[f"{TAG}warning"] = "validated on the test set (course protocol)"
    run_id = tracker.start_run(experiment_id, f"train-{config.key()[:8]}", tags)
    tracker.log_config(run_id, config, runtime)
    console.print(
        f"training {param_count(build_model(config.model)):,} parameters on "
        f"{len(dataset.train):,} images ({dataset.source}); run {run_id}"
    )
    try:
        with progress_bar() as progress:
            task = progress.add_task("epochs", total=config.train.epochs, status="")

            def on_epoch(metrics: dict[str, float]) -> None:
                tracker.log_metrics(run_id, metrics, step=int(metrics["epoch"]))
                status = f"val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_acc']:.3f}"
                progress.update(task, advance=1, status=status)

            result = train(config, dataset, runtime, on_epoch)
    except KeyboardInterrupt:
        tracker.fail(run_id, "interrupted", status="KILLED")
        raise
    except Exception as error:
        tracker.fail(run_id, f"{type(error).__name__}: {error}")
        raise
    weights = None if args.no_weights else result.state_dict
    tracker.finish(run_id, result.status, result.metrics, weights)
    out.print(result_table(result.status, result.metrics))
    out.print(f"run {run_id} in {tracker.uri} (experiment '{args.experiment}')")
    return 0 if result.status == "finished" else 1


def result_table(status: str, metrics: dict[str, float]) -> Table:
    table = Table(title=f"result: {status}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in (
        "test_loss", "test_acc", "val_loss", "val_acc", "train_loss",
        "param_count", "images_per_s", "wall_seconds",
    ):  # fmt: skip
        if name in metrics:
            table.add_row(name, format_number(metrics[name]))
    return table


def format_number(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return f"{int(value):,}"


def run_data(args: argparse.Namespace) -> int:
    from hypotune.data import read_raw

    raw = read_raw(args.data_dir or "")
    out.print(f"Fashion-MNIST in {raw.source}: {len(raw.train):,} training and {len(raw.test):,} test images")
    return 0


def run_ui(args: argparse.Namespace) -> int:
    from hypotune.tracking import Tracker

    uri = Tracker(args.tracking_uri).uri
    if not uri.startswith("sqlite:"):
        raise HypotuneError(f"{uri} is a tracking server: open it in a browser instead")
    command = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
        "--host", args.host, "--port", str(args.port),
    ]  # fmt: skip
    console.print(f"MLflow UI on http://{args.host}:{args.port} for {uri} (Ctrl-C to stop)")
    try:
        return subprocess.call(command, env=os.environ | {"MLFLOW_TRACKING_URI": uri})
    except KeyboardInterrupt:
        return 0
