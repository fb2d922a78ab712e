"""hypotune: hypothesis-driven experiments on convolutional networks, tracked in MLflow."""

from hypotune.config import DataConfig, ModelConfig, RunConfig, Runtime, TrainConfig
from hypotune.errors import (
    ArchitectureError,
    ConfigError,
    DataError,
    HypotuneError,
    StudyError,
    TrackingError,
)

__version__ = "0.1.0"

__all__ = [
    "ArchitectureError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "HypotuneError",
    "ModelConfig",
    "RunConfig",
    "Runtime",
    "StudyError",
    "TrackingError",
    "TrainConfig",
]
