"""The `hypotune` command: the parser, the sub-commands (they print and call the API) and the
MLflow UI and server they start."""

from hypotune.cli.parser import main

__all__ = ["main"]
