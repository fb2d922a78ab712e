"""A PyTorch trainable on scikit-learn's bundled handwritten digits: 1,797 images of 8 x 8
pixels that ship inside the scikit-learn package, so nothing is downloaded.

`digits.toml` beside this file names `train`; hypotune runs it for every arm and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import hypotune


@dataclass(frozen=True)
class Digits:
    hidden: int = hypotune.setting(64, "units of the hidden layer")
    dropout: float = hypotune.setting(0.0, "dropout rate before the output layer")
    lr: float = hypotune.setting(1e-2, "Adam's learning rate")
    epochs: int = hypotune.setting(10, "passes over the training images")
    batch_size: int = hypotune.setting(64, "images per batch")


@hypotune.trainable(
    metrics={"val_loss": "minimize", "val_acc": "maximize", "test_loss": "minimize", "test_acc": "maximize"},
    deciding=("val_loss", "val_acc"),  # the test set reports, never decides
    epochs=lambda settings: settings.epochs,
    budget=("epochs", "batch_size"),
    units={"loss": "cross-entropy", "acc": "fraction correct"},  # for the report's axes and tables
    size="param_count",  # a size metric it logs: the report plots test loss against it
    varies=("weight initialisation", "data order", "the validation split"),  # what a seed changes
    fixed=("the test split",),
)
def train(settings: Digits, seed: int, log) -> dict[str, float]:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(log.runtime.threads)
    torch.manual_seed(seed)  # initialisation, dropout masks
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels)
    # One held-out test split for every run; the validation split is drawn by the seed.
    rest_x, test_x, rest_y, test_y = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=0.2, random_state=seed, stratify=rest_y
    )
    model = nn.Sequential(
        nn.Linear(64, settings.hidden),
        nn.ReLU(),
        nn.Dropout(settings.dropout),
        nn.Linear(settings.hidden, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    order = torch.Generator().manual_seed(seed)  # data order

    def evaluate(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model(inputs)
        return F.cross_entropy(logits, targets).item(), (logits.argmax(1) == targets).float().mean().item()

    for epoch in range(1, settings.epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_x), generator=order).split(settings.batch_size):
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val_loss, val_acc = evaluate(val_x, val_y)
        if log({"epoch": epoch, "train_loss": loss.item(), "val_loss": val_loss, "val_acc": val_acc}):
            return {"val_loss": val_loss, "val_acc": val_acc}  # a tuning search stopped it here
    metrics = {"val_loss": val_loss, "val_acc": val_acc}
    if not log.tuning:  # a tuning trial never looks at the test set
        metrics["test_loss"], metrics["test_acc"] = evaluate(test_x, test_y)
    metrics["param_count"] = float(sum(p.numel() for p in model.parameters()))
    return metrics
