"""Study throughput: `hypotune study run` against a plain loop over the same trials.

The plain side is what a notebook does: one process with 2 torch threads, float tensors and a
DataLoader, the trials one after another, validation every epoch and the test set at the end,
each trial logged to MLflow (params, per-epoch metrics, final metrics, weights). The hypotune
side is `run_study` with its default workers (one per core, one thread each) into its own
store. Both sides start from a created store; everything else is inside the clock. Prints
trials per hour of each and their ratio.

    .venv/bin/python bench/study_throughput.py [--preset course]
        [--hypotheses dropout_instancenorm_synergy] [--seeds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hypotune.config import RunConfig, Runtime
from hypotune.data import make_dataset
from hypotune.executors import LocalExecutor
from hypotune.model import build_model
from hypotune.runner import run_study
from hypotune.study import plan
from hypotune.studyfile import load_study
from hypotune.tracking import Tracker, flat_params
from kernels import torch_instance_norm, with_norm  # bench/, the script's own folder

BUILT_IN = Path(__file__).parents[1] / "studies" / "fashion_mnist_synergy.toml"


def as_floats(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1).float() / 255.0


def plain_trial(config: RunConfig, mlflow) -> None:
    """One trial the notebook way, logged with MLflow's fluent API."""
    torch.manual_seed(config.seed)
    dataset = make_dataset(config.data)
    train = TensorDataset(as_floats(dataset.train.images), dataset.train.labels)
    val = DataLoader(TensorDataset(as_floats(dataset.val.images), dataset.val.labels), batch_size=64)
    test = DataLoader(TensorDataset(as_floats(dataset.test.images), dataset.test.labels), batch_size=64)
    loader = DataLoader(train, batch_size=config.train.batch_size, shuffle=True)
    model = notebook_model(config)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=config.train.plateau_patience)
    with mlflow.start_run():
        mlflow.log_params(flat_params(config))
        batches = iter(loader)
        for epoch in range(1, config.train.epochs + 1):
            model.train()
            for _ in range(config.train.steps_per_epoch):
                try:
                    x, y = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    x, y = next(batches)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            val_loss, val_acc = evaluate(model, val)
            schedule.step(val_loss)
            mlflow.log_metrics(
                {"train_loss": loss.item(), "val_loss": val_loss, "val_acc": val_acc}, step=epoch
            )
        test_loss, test_acc = evaluate(model, test)
        mlflow.log_metrics({"test_loss": test_loss, "test_acc": test_acc})
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "model.pt").write_bytes(buffer.getvalue())
            mlflow.log_artifact(str(Path(folder) / "model.pt"))


def notebook_model(config: RunConfig) -> torch.nn.Module:
    """The arm's network as a notebook writes it: torch's InstanceNorm2d where hypotune uses the
    equivalent, faster GroupNorm(C, C); contiguous memory."""
    return with_norm(build_model(config.model), torch_instance_norm)


def evaluate(model: torch.nn.Module, loader: DataLoader) -> tuple[float, float]:
    model.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    return loss / count, correct / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=BUILT_IN)
    parser.add_argument("--preset", default="course")
    parser.add_argument("--hypotheses", default="dropout_instancenorm_synergy")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (the preset's own when 0)")
    args = parser.parse_args()
    study = load_study(args.study)
    chosen = set(args.hypotheses.split(","))
    presets = dict(study.presets)
    if args.seeds:
        presets[args.preset] = dataclasses.replace(presets[args.preset], seeds=args.seeds)
    study = dataclasses.replace(
        study, hypotheses=tuple(h for h in study.hypotheses if h.id in chosen), presets=presets, reference=()
    )
    trials = plan(study, args.preset)
    if any(h.tuned_in(args.preset) for h in study.hypotheses):
        raise SystemExit(
            f"preset {args.preset} tunes arms; pick one without tuning for a like-for-like count"
        )
    workers = os.cpu_count() or 1
    print(f"{study.name} [{', '.join(sorted(chosen))}], preset {args.preset}: {len(trials)} trials")

    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        mlflow.set_tracking_uri(f"sqlite:///{folder}/plain.db")
        # store creation outside the clock, as on the other side; artifacts beside the store
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("plain", artifact_location=f"{folder}/plain-artifacts")
        )
        torch.set_num_threads(2)
        start = time.perf_counter()
        for trial in trials:
            plain_trial(trial.config, mlflow)
        plain_seconds = time.perf_counter() - start
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it; keep stores apart

        tracker = Tracker(store_dir=Path(folder) / "runs")
        tracker.experiment(study.name)
        start = time.perf_counter()
        summary = run_study(study, args.preset, LocalExecutor(workers, Runtime()), tracker)
        ours_seconds = time.perf_counter() - start
        experiment_id = tracker.experiment(study.name)
        trial_runs = tracker.runs(experiment_id, "tags.`hypotune.kind` = 'trial'")
        first = min(run.info.start_time for run in trial_runs)
        for run in sorted(trial_runs, key=lambda run: run.info.start_time):
            start = (run.info.start_time - first) / 1000
            seconds = (run.info.end_time - run.info.start_time) / 1000
            print(f"  {run.info.run_name:<40} starts at {start:5.1f} s, takes {seconds:5.1f} s")
        peak = max(run.data.metrics.get("peak_rss_mb", 0.0) for run in trial_runs)
    assert summary.finished == len(trials), summary
    plain_rate, our_rate = (len(trials) / s * 3600 for s in (plain_seconds, ours_seconds))
    print(
        f"  plain loop, 2 threads, one trial at a time: {plain_seconds:6.1f} s, {plain_rate:5.0f} trials/hour"
    )
    print(
        f"  hypotune, {workers} workers x 1 thread:        {ours_seconds:6.1f} s, {our_rate:5.0f} trials/hour"
    )
    print(f"ratio {our_rate / plain_rate:.2f}x (target >= 2)")
    print(f"peak resident memory of a training worker: {peak:.0f} MB (target < 1,500)")


if __name__ == "__main__":
    main()
