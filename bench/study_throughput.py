"""Study throughput: `hypotune study run` against a plain loop over the same trials.

The plain side is what a notebook does: one process with 2 torch threads, float tensors and a
DataLoader, the trials one after another, validation every epoch and the test set at the end,
each trial logged to MLflow (params, per-epoch metrics, final metrics, weights). The hypotune
side is `run_study` with its default workers (one per core, one thread each) into its own
store. Both sides start from a created store; everything else is inside the clock. With
`--rounds 2` (the default) the sides run plain, hypotune, hypotune, plain, so that a machine
drifting slower or faster during the run weighs on both alike. Prints
trials per hour of each and their ratio, and the rate each side computes at: the study's
floating-point work (counted from the models' convolution and linear layers: 2 x multiply-adds
x forward passes, a training image counting three) per second, against the machine's peak.
That rate bounds the ratio: no side can compute faster than the peak.

    .venv/bin/python bench/study_throughput.py [--preset course]
        [--hypotheses dropout_instancenorm_synergy | all] [--seeds 1] [--rounds 2]
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
from hypotune.fashion import TRAINABLE, forward_passes
from hypotune.fashion.data import make_dataset
from hypotune.fashion.model import build_model, flop_count
from hypotune.run.executors import LocalExecutor
from hypotune.run.runner import run_study
from hypotune.store.tags import PREFIX
from hypotune.store.tracker import Tracker, flat_params, tag_filter
from hypotune.study.file import built_in_studies, load_study
from hypotune.study.model import SeedPlan, plan
from kernels import torch_instance_norm, with_norm  # bench/, the script's own folder
from throughput import CORE_PEAK

BUILT_IN = built_in_studies()["fashion_mnist_synergy"]


def trial_flops(config: RunConfig) -> float:
    return 2 * flop_count(build_model(config.model)) * forward_passes(config.settings)


def gflops(config: RunConfig, seconds: float, cores: int = 1) -> str:
    rate = trial_flops(config) / seconds
    return f"{rate / 1e9:4.1f} GFLOP/s ({rate / (cores * CORE_PEAK):.0%} of {cores} core(s)' peak)"


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


def plain_side(trials: list, folder: Path, name: str) -> float:
    """Seconds for the trials run the notebook way into a fresh experiment of the plain store."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder}/plain.db")
    # store creation outside the clock, as on the other side; artifacts beside the store
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment(name, artifact_location=f"{folder}/{name}-artifacts")
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it; keep stores apart
    torch.set_num_threads(2)
    start = time.perf_counter()
    for trial in trials:
        began = time.perf_counter()
        plain_trial(trial.config, mlflow)
        seconds = time.perf_counter() - began
        print(f"  plain {trial.key:<34} takes {seconds:5.1f} s, {gflops(trial.config, seconds, 2)}")
    return time.perf_counter() - start


def hypotune_side(study, preset: str, trials: list, store: Path, workers: int) -> tuple[float, float]:
    """Seconds for `run_study` into a fresh store, and the peak memory of a worker in MB."""
    tracker = Tracker(store_dir=store)
    tracker.experiment(study.name)
    start = time.perf_counter()
    summary = run_study(study, preset, LocalExecutor(workers, Runtime(), preload=TRAINABLE.preload), tracker)
    seconds = time.perf_counter() - start
    assert summary.finished == len(trials), summary
    trial_runs = tracker.runs(tracker.experiment(study.name), tag_filter({f"{PREFIX}kind": "trial"}))
    by_key = {trial.key: trial.config for trial in trials}
    first = min(run.info.start_time for run in trial_runs)
    for run in sorted(trial_runs, key=lambda run: run.info.start_time):
        began = (run.info.start_time - first) / 1000
        took = (run.info.end_time - run.info.start_time) / 1000
        config = by_key[run.data.tags[f"{PREFIX}key"]]
        print(
            f"  {run.info.run_name:<40} starts at {began:5.1f} s, takes {took:5.1f} s, {gflops(config, took)}"
        )
    return seconds, max(run.data.metrics.get("peak_rss_mb", 0.0) for run in trial_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=BUILT_IN)
    parser.add_argument("--preset", default="course")
    parser.add_argument("--hypotheses", default="dropout_instancenorm_synergy", help="ids, or 'all'")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (the preset's own when 0)")
    parser.add_argument(
        "--rounds",
        type=int,
        choices=(1, 2),
        default=2,
        help="1: plain then hypotune; 2: plain, hypotune, hypotune, plain",
    )
    args = parser.parse_args()
    study = load_study(args.study)
    chosen = {h.id for h in study.hypotheses} if args.hypotheses == "all" else set(args.hypotheses.split(","))
    presets = dict(study.presets)
    if args.seeds:
        fixed = SeedPlan(args.seeds, args.seeds)  # no rounds: the same trials on both sides
        presets[args.preset] = dataclasses.replace(presets[args.preset], seeds=fixed)
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

    # A B B A: a machine that drifts slower or faster during the run weighs on both sides alike
    order = ["plain", "hypotune", "hypotune", "plain"][: 2 * args.rounds]
    seconds = {"plain": 0.0, "hypotune": 0.0}
    peak = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for index, side in enumerate(order):
            if side == "plain":
                took = plain_side(trials, Path(folder), f"plain{index}")
            else:
                took, worker_peak = hypotune_side(
                    study, args.preset, trials, Path(folder) / f"runs{index}", workers
                )
                peak = max(peak, worker_peak)
            print(f"{side}: {took:.1f} s")
            seconds[side] += took
    runs = len(trials) * args.rounds
    plain_rate, our_rate = (runs / seconds[side] * 3600 for side in ("plain", "hypotune"))
    print(
        f"  plain loop, 2 threads, one trial at a time: {seconds['plain']:6.1f} s,"
        f" {plain_rate:5.0f} trials/hour"
    )
    print(
        f"  hypotune, {workers} workers x 1 thread:        {seconds['hypotune']:6.1f} s,"
        f" {our_rate:5.0f} trials/hour"
    )
    print(f"ratio {our_rate / plain_rate:.2f}x (target >= 2)")
    work = sum(trial_flops(trial.config) for trial in trials) * args.rounds
    peak_rate = workers * CORE_PEAK
    for side, label in (("plain", "plain loop"), ("hypotune", "hypotune")):
        rate = work / seconds[side]
        share = rate / peak_rate
        print(f"  {label}: {rate / 1e9:5.1f} GFLOP/s, {share:4.0%} of the ~{peak_rate / 1e9:.0f} peak")
    print(f"a study at the peak would be {seconds['plain'] * peak_rate / work:.2f}x the plain loop")
    print(f"peak resident memory of a training worker: {peak:.0f} MB (target < 1,500)")


if __name__ == "__main__":
    main()
