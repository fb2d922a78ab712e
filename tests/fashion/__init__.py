"""The built-in CNN trainable's own tests: its settings, model, data and trainer, and the
protocol around it. The engine's tests run on tests/toy.py instead."""
