"""Named budgets for single runs (`hypotune train --preset NAME`); studies define their own."""

from typing import Any

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # The course protocol of the original write-up: 3 "epochs" of 100 batches of 64 images,
    # Adam 1e-3, pixels / 255. Unlike the course, validation uses a split of the training set.
    "course": {"train": {"epochs": 3, "steps_per_epoch": 100, "batch_size": 64}},
    # A first try that answers in seconds: a short run judged on small stratified subsets.
    "try": {
        "data": {"val_size": 1000, "test_size": 1000},
        "train": {"epochs": 2, "steps_per_epoch": 50, "batch_size": 64},
    },
    # Real epochs: full passes over the 50,000 training images.
    "full": {"train": {"epochs": 10, "steps_per_epoch": 0, "batch_size": 64}},
}
