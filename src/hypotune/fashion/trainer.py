"""Train one configuration on one seed and evaluate it; knows nothing of studies or tracking."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import io
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hypotune.config import RunConfig, Runtime
from hypotune.errors import ConfigError
from hypotune.fashion.config import DataConfig, Settings, TrainConfig
from hypotune.fashion.data import BatchStream, Dataset, Split, eval_batches, stratified_pick
from hypotune.fashion.model import build_model, check_fits, flop_count, memory_layout, param_count

# Called after every epoch with its metrics; returning False stops the run there ("pruned").
EpochCallback = Callable[[dict[str, float]], bool | None]


@dataclass
class TrialResult:
    status: str  # "finished", "diverged", or "pruned" (stopped early by its caller)
    epochs: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics
    metrics: dict[str, float] = field(default_factory=dict)  # final metrics
    state_dict: dict[str, torch.Tensor] | None = None  # trained weights, on the CPU
    # How it ran: torch threads, device, precision. Outside the trial key (the same trial), but
    # floating-point results differ slightly between them, so the audit compares them.
    ran_with: dict[str, str] = field(default_factory=dict)


def serialize_weights(state_dict: dict[str, torch.Tensor] | None) -> bytes | None:
    """Weights as `torch.save` bytes, loadable with `torch.load(..., weights_only=True)`."""
    if state_dict is None:
        return None
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def mlflow_model(
    settings: Settings, state_dict: dict[str, torch.Tensor], folder: str = "model"
) -> dict[str, bytes]:
    """The trained CNN as an MLflow model (pytorch flavor), file by file under `folder`, so that
    `mlflow.pytorch.load_model("runs:/<run id>/model")` gives back the nn.Module.

    It is pickled with its classes, as MLflow's "pickle" format does: load it only from a store
    you trust. `model.pt` beside it holds the same weights for `torch.load(..., weights_only=True)`.
    (MLflow's "pt2" format traces the model instead: an inference-only graph, at 0.3 to 1 s per
    trial and 2.5 s more on each worker's first, where this takes 0.03 s.)
    """
    import logging
    import tempfile
    from pathlib import Path

    import mlflow.pytorch

    model = build_model(settings.model)
    model.load_state_dict(state_dict)
    model.eval()
    torch_version = torch.__version__.split("+")[0]
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its warning on pickles: said above
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / folder
        mlflow.pytorch.save_model(
            model, str(path), serialization_format="pickle", pip_requirements=[f"torch=={torch_version}"]
        )
        return {
            f"{folder}/{p.relative_to(path)}": p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
        }


def ran_with(device: torch.device) -> dict[str, str]:
    """What a run's numbers depend on besides its config: threads, device and precision."""
    precision = "bfloat16 autocast" if device.type == "cuda" else "float32"
    return {"threads": str(torch.get_num_threads()), "device": device.type, "precision": precision}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA GPU is available")
    return torch.device(name)


def steps_per_epoch(config: TrainConfig, train_size: int) -> int:
    return config.steps_per_epoch or max(1, train_size // min(config.batch_size, train_size))


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> tuple[Any, str]:
    """The scheduler and when it steps: 'step', 'epoch' (on val loss) or 'never'."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps), "step"
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total_steps), "step"
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        ), "epoch"
    return None, "never"


# Images per forward pass when evaluating. On a CPU, batches of 64 keep activations in cache:
# as fast as 256 on small models, 1.36x faster on 6x64, and batches of 1,024 are the slowest
# everywhere (docs/performance.md). A GPU wants large ones.
EVAL_BATCH = {"cpu": 64, "cuda": 1024}


def evaluate(
    model: nn.Module,
    split: Split,
    config: DataConfig,
    device: torch.device,
    layout: torch.memory_format,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (of mirror-averaged predictions with
    `config.eval_flip`)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), autocast(device):
        for images, labels in eval_batches(split, config.normalize, EVAL_BATCH.get(device.type, 256)):
            images = to_device(images, device, layout)
            log_probs = F.log_softmax(model(images).float(), dim=1)
            if config.eval_flip:
                mirror = images.flip(-1).contiguous(memory_format=layout)
                mirrored = F.log_softmax(model(mirror).float(), dim=1)
                log_probs = torch.logsumexp(torch.stack((log_probs, mirrored)), dim=0) - math.log(2)
            loss_sum += F.nll_loss(log_probs, labels, reduction="sum")
            correct += (log_probs.argmax(1) == labels).sum()
    model.train()
    count = max(len(split), 1)
    return float(loss_sum) / count, float(correct) / count


def epoch_split(val: Split, config: RunConfig) -> Split:
    """The validation images evaluated after each epoch but the last: a fixed stratified subset
    of `data.epoch_val_size` images (the whole split when that is 0 or at least its size)."""
    size = config.data.epoch_val_size
    if not size or size >= len(val):
        return val
    index = stratified_pick(val.labels.cpu(), size, config.data.split_seed + 3).to(val.labels.device)
    return Split(val.images[index], val.labels[index])


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    # bf16 pays on GPUs; on CPUs without AVX512-BF16/AMX it is slower than fp32.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(images: torch.Tensor, device: torch.device, layout: torch.memory_format) -> torch.Tensor:
    return images.to(device, non_blocking=True).contiguous(memory_format=layout)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step_schedule: Any,
    stream: BatchStream,
    steps: int,
    label_smoothing: float,
    device: torch.device,
    layout: torch.memory_format,
) -> float:
    """One epoch of `steps` batches; returns the mean training loss (inf or nan if it diverged)."""
    loss_sum = torch.zeros((), device=device)
    for images, labels in stream.batches(steps):
        with autocast(device):
            logits = model(to_device(images, device, layout)).float()
            loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_schedule is not None:
            step_schedule.step()
        loss_sum += loss.detach()  # summed on the device: no sync per step
    return float(loss_sum) / steps


def train(
    config: RunConfig,
    dataset: Dataset,
    runtime: Runtime | None = None,
    on_epoch: EpochCallback | None = None,
    evaluate_test: bool = True,
) -> TrialResult:
    """Train `config` on `dataset`; a loss that stops being finite ends the run as diverged.

    With `evaluate_test` False the test split is never touched (tuning trials).
    """
    runtime = runtime or Runtime()
    torch.set_num_threads(runtime.threads)
    reuse_freed_memory()
    device = resolve_device(runtime.device)
    started = time.perf_counter()
    torch.manual_seed(config.seed)  # initialisation and dropout masks
    layout = memory_layout(config.model)
    check_fits(config)  # before allocating: a model too big for this machine is one clear line
    model = build_model(config.model).to(device, memory_format=layout)
    train_split, val_split = dataset.train.to(device), dataset.val.to(device)
    steps = steps_per_epoch(config.train, len(train_split))
    optimizer = make_optimizer(config.train, model)
    schedule, schedule_every = make_schedule(config.train, optimizer, steps * config.train.epochs)
    stream = BatchStream(train_split, config.train.batch_size, config.data, config.seed)
    result = TrialResult(status="finished", ran_with=ran_with(device))
    probe = epoch_split(val_split, config)
    best_val, best_state, stale = math.inf, None, 0
    for epoch in range(1, config.train.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        epoch_start = time.perf_counter()
        step_schedule = schedule if schedule_every == "step" else None
        train_loss = train_epoch(
            model, optimizer, step_schedule, stream, steps, config.train.label_smoothing, device, layout
        )
        train_seconds = time.perf_counter() - epoch_start
        whole = epoch == config.train.epochs or config.train.loss_steers
        val_loss, val_acc = (
            evaluate(model, val_split if whole else probe, config.data, device, layout)
            if math.isfinite(train_loss)
            else (math.nan, 0.0)
        )
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            result.status = "diverged"
            result.epochs.append({"epoch": epoch, "train_loss": math.inf})
            break
        if schedule_every == "epoch":
            schedule.step(val_loss)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "images_per_s": steps * stream.batch_size / train_seconds,
            "epoch_seconds": time.perf_counter() - epoch_start,
        }
        result.epochs.append(metrics)
        if not whole:
            pass  # a subset's loss is for the curves: the best is that of whole evaluations
        elif val_loss < best_val:
            best_val, stale = val_loss, 0
            if config.train.early_stopping:
                best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if on_epoch and on_epoch(metrics) is False:
            result.status = "pruned"
            break
        if config.train.early_stopping and stale >= config.train.early_stopping:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if result.status == "pruned" and not whole:
        # Pruned after an epoch evaluated on the subset: its final numbers are still the whole set's.
        result.epochs[-1]["val_loss"], result.epochs[-1]["val_acc"] = evaluate(
            model, val_split, config.data, device, layout
        )
        best_val = min(best_val, result.epochs[-1]["val_loss"])
    result.metrics = final_metrics(model, dataset, config, device, result, best_val, evaluate_test)
    result.metrics["wall_seconds"] = time.perf_counter() - started
    if (peak := peak_rss_mb()) is not None:
        result.metrics["peak_rss_mb"] = peak
    if result.status == "finished":
        result.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return result


# glibc's malloc maps every block above its threshold (128 KiB, rising to at most 32 MiB) fresh
# from the kernel and returns it on free, and trims the heap top back too. A training step
# allocates and frees the same activation tensors every time, so each step paid 15,000-30,000
# page faults on the 6x64 model: 10% of its speed (docs/performance.md). Keeping freed memory
# in the process removes them; the peak resident size is unchanged, as the step's working set
# is what it was.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the most glibc accepts on 64-bit


@functools.cache  # once per process: libc_ver() reads the interpreter's binary
def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the kernel.

    Returns whether it applied (glibc only; elsewhere the allocator is left alone)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MB; None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def final_metrics(
    model: nn.Module,
    dataset: Dataset,
    config: RunConfig,
    device: torch.device,
    result: TrialResult,
    best_val: float,
    evaluate_test: bool = True,
) -> dict[str, float]:
    metrics: dict[str, float] = {
        "param_count": param_count(model),
        "flops_per_image": flop_count(model),
        "epochs_run": len(result.epochs),
    }
    if result.status == "diverged":
        # A diverged run still counts as a result: infinitely bad, never missing.
        metrics |= {"val_loss": math.inf, "best_val_loss": math.inf, "val_acc": 0.0, "train_loss": math.inf}
        if evaluate_test:
            metrics |= {"test_loss": math.inf, "test_acc": 0.0}
        return metrics
    # With early stopping the best epoch's weights were restored, so its numbers describe the model.
    trained = [e for e in result.epochs if "val_loss" in e]
    last = min(trained, key=lambda e: e["val_loss"]) if config.train.early_stopping else trained[-1]
    metrics |= {
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "val_acc": last["val_acc"],
        "best_val_loss": best_val,
        "images_per_s": sum(e["images_per_s"] for e in trained) / len(trained),
    }
    if evaluate_test:
        metrics["test_loss"], metrics["test_acc"] = evaluate(
            model, dataset.test.to(device), config.data, device, memory_layout(config.model)
        )
    return metrics
