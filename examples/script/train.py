"""A plain training script: argparse in, MLflow metrics out. It knows nothing of hypotune.

It fits a small multi-layer perceptron on scikit-learn's bundled handwritten digits (nothing is
downloaded), one pass over the training images per epoch, and logs the validation loss and
accuracy after each epoch with `mlflow.log_metric(..., step=epoch)`; then the test accuracy.

    python train.py --hidden 32 --lr 0.01 --epochs 10 --seed 0

Run by hypotune, it logs into the run hypotune opened (MLFLOW_RUN_ID); run alone, into a new
run of the "Default" experiment, as any MLflow script does.
"""

import argparse
import math
import warnings

import mlflow
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32, help="units in the hidden layer")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    args = parser.parse_args()

    digits = load_digits()
    images = digits.data / 16.0
    # The split is fixed (random_state=0): only the network's seed varies between runs.
    train_x, rest_x, train_y, rest_y = train_test_split(images, digits.target, test_size=0.4, random_state=0)
    val_x, test_x, val_y, test_y = train_test_split(rest_x, rest_y, test_size=0.5, random_state=0)
    classes = np.arange(10)

    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,), alpha=args.alpha, learning_rate_init=args.lr,
        batch_size=64, random_state=args.seed,
    )  # fmt: skip
    mlflow.log_params(vars(args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, args.epochs + 1):
            model.partial_fit(train_x, train_y, classes=classes)
            probabilities = model.predict_proba(val_x)
            val_loss = log_loss(val_y, probabilities, labels=classes)
            val_acc = accuracy_score(val_y, probabilities.argmax(axis=1))
            mlflow.log_metrics({"val_loss": val_loss, "val_acc": val_acc}, step=epoch)
            print(f"epoch {epoch}: val_loss {val_loss:.4f} val_acc {val_acc:.4f}", flush=True)
            if not math.isfinite(val_loss):
                break
    mlflow.log_metric("test_acc", accuracy_score(test_y, model.predict(test_x)), step=args.epochs)


if __name__ == "__main__":
    main()
