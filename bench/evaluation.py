"""The share of a trial spent evaluating, per preset of the built-in study, and what evaluating a
subset after each epoch but the last (`data.epoch_val_size`) saves.

For each preset the study's base arm (4 layers x 32 filters, as each preset trains it) is
measured in a fresh process with one torch thread, as a study worker runs it: seconds per
training step (in steady state, after a warm-up epoch) and seconds per evaluated image (a pass
over the validation split). The preset's trial then costs its steps and its evaluated images at
those rates, with every epoch evaluated on the whole validation set (before) and with the subset
(after). For the presets short enough, one whole trial is also timed each way, interleaved over
`--rounds` rounds (median of each), and its final metrics compared: they must be bitwise equal.

    .venv/bin/python bench/evaluation.py [--rounds 2] [--presets quick course full]
        [--trial-presets quick course]
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypotune.config import RunConfig, Runtime
from hypotune.fashion.data import cached_dataset
from hypotune.fashion.trainer import epoch_split, evaluate, memory_layout, steps_per_epoch, train
from hypotune.study.file import built_in_studies, load_study
from throughput import in_fresh_process  # bench/, the script's own folder

HYPOTHESIS = "dropout_instancenorm_synergy"  # its first arm is the study's base model, in every preset
FINAL = ("val_loss", "val_acc", "test_loss", "test_acc", "train_loss")


def preset_config(preset: str, epoch_val_size: int | None = None) -> RunConfig:
    study = load_study(built_in_studies()["fashion_mnist_synergy"])
    hypothesis = next(h for h in study.hypotheses if h.id == HYPOTHESIS)
    config = study.arm_config(hypothesis, next(iter(hypothesis.arms)), preset, seed=0)
    if epoch_val_size is not None:
        config = config.replace({"data": {"epoch_val_size": epoch_val_size}})
    return config


def unit_costs(preset: str, steps: int) -> dict[str, float]:
    """Seconds per training step and per evaluated image of the preset's base arm, one thread."""
    import torch

    config = preset_config(preset).replace({"train": {"epochs": 2, "steps_per_epoch": steps}})
    dataset = cached_dataset(config.data)
    result = train(config, dataset, Runtime(threads=1), evaluate_test=False)
    step_seconds = config.train.batch_size / result.epochs[1]["images_per_s"]
    from hypotune.fashion.model import build_model

    torch.manual_seed(0)
    model = build_model(config.model).to(memory_format=memory_layout(config.model))
    device = torch.device("cpu")
    evaluate(model, dataset.val, config.data, device, memory_layout(config.model))  # warm-up
    start = time.perf_counter()
    evaluate(model, dataset.val, config.data, device, memory_layout(config.model))
    image_seconds = (time.perf_counter() - start) / len(dataset.val)
    return {"step": step_seconds, "image": image_seconds}


def trial_seconds(preset: str, epoch_val_size: int) -> tuple[float, dict[str, float]]:
    config = preset_config(preset, epoch_val_size)
    dataset = cached_dataset(config.data)
    result = train(config, dataset, Runtime(threads=1))
    return result.metrics["wall_seconds"], {k: result.metrics[k] for k in FINAL}


def counts(preset: str) -> dict[str, int]:
    """Per trial of the preset: training steps, and images evaluated before and after."""
    config = preset_config(preset)
    dataset = cached_dataset(config.data)
    epochs, val, test = config.train.epochs, len(dataset.val), len(dataset.test)
    subset = len(epoch_split(dataset.val, config))
    after = config.settings.validations(val)
    return {
        "steps": epochs * steps_per_epoch(config.train, len(dataset.train)),
        "before": epochs * val + test,
        "after": after + test,
        "val": val,
        "subset": subset,
        "epochs": epochs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="training steps timed per preset")
    parser.add_argument("--presets", nargs="+", default=["quick", "course", "full"])
    parser.add_argument("--trial-presets", nargs="*", default=["quick", "course"])
    args = parser.parse_args()
    print("one torch thread per trial, as a study worker; shares computed from measured unit costs")
    print(
        f"{'preset':8s} {'steps':>6s} {'val':>6s} {'subset':>6s} {'s/step':>7s} {'ms/img':>7s} "
        f"{'eval share before':>18s} {'after':>6s} {'trial speedup':>14s}"
    )
    for preset in args.presets:
        unit = in_fresh_process(unit_costs, preset, args.steps)
        n = counts(preset)
        training = n["steps"] * unit["step"]
        before, after = n["before"] * unit["image"], n["after"] * unit["image"]
        print(
            f"{preset:8s} {n['steps']:6d} {n['val']:6d} {n['subset']:6d} {unit['step']:7.3f} "
            f"{unit['image'] * 1e3:7.3f} {before / (training + before):18.0%} "
            f"{after / (training + after):6.0%} {(training + before) / (training + after):13.2f}x"
        )
    for preset in args.trial_presets:
        whole, subset, finals = [], [], set()
        for _ in range(args.rounds):  # interleaved so drift on a shared machine hits both
            seconds, final = in_fresh_process(trial_seconds, preset, 0)
            whole.append(seconds)
            finals.add(tuple(final.values()))
            seconds, final = in_fresh_process(
                trial_seconds, preset, preset_config(preset).data.epoch_val_size
            )
            subset.append(seconds)
            finals.add(tuple(final.values()))
        same = "bitwise identical" if len(finals) == 1 else f"DIFFERENT ({len(finals)} distinct)"
        before, after = statistics.median(whole), statistics.median(subset)
        print(
            f"{preset} trial, timed whole: every epoch on the whole set {before:.1f} s, "
            f"subset {after:.1f} s, speedup {before / after:.2f}x; final {', '.join(FINAL)}: {same}"
        )


if __name__ == "__main__":
    main()
