"""hypotune: hypothesis-driven experiments on neural networks, tracked in MLflow.

The Python API (docs/api.md): load a study, run it, analyse it, write its report; train or
search one configuration. Results come back as records with pandas DataFrames.
"""

from hypotune.api import (
    Analysis,
    SearchResult,
    StudyRun,
    TrainResult,
    analyze,
    analyze_runs,
    built_in_studies,
    executor_for,
    load_study,
    run_config,
    run_study,
    search,
    search_group,
    study_status,
    train,
    write_report,
)
from hypotune.config import RunConfig, Runtime, setting
from hypotune.errors import (
    ArchitectureError,
    ConfigError,
    DataError,
    HypotuneError,
    StudyError,
    TrackingError,
)
from hypotune.fashion.config import DataConfig, ModelConfig, Settings, TrainConfig
from hypotune.trainables import Log, Result, Trainable, trainable

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "ArchitectureError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "HypotuneError",
    "Log",
    "ModelConfig",
    "Result",
    "RunConfig",
    "Runtime",
    "SearchResult",
    "Settings",
    "StudyError",
    "StudyRun",
    "TrackingError",
    "TrainConfig",
    "TrainResult",
    "Trainable",
    "analyze",
    "analyze_runs",
    "built_in_studies",
    "executor_for",
    "load_study",
    "run_config",
    "run_study",
    "search",
    "search_group",
    "setting",
    "study_status",
    "train",
    "trainable",
    "write_report",
]
