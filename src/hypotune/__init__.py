"""hypotune: hypothesis-driven experiments on neural networks, tracked in MLflow.

The Python API (docs/api.md): load a study, run it, analyse it, write its report; train or
search one configuration. Results come back as records with pandas DataFrames.
"""

from importlib.metadata import version

from hypotune.api import (
    Analysis,
    SearchPlan,
    SearchResult,
    StudyRun,
    TrainResult,
    analyze,
    analyze_runs,
    built_in_studies,
    executor_for,
    load_study,
    plan_search,
    run_config,
    run_study,
    search,
    study_status,
    train,
    write_report,
)
from hypotune.api import (
    search_group as search_group,  # the former name of plan_search, outside __all__
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
from hypotune.trainables.function import trainable
from hypotune.trainables.protocol import Log, Result, Trainable

__version__ = version("hypotune")

__all__ = [
    "Analysis",
    "ArchitectureError",
    "ConfigError",
    "DataError",
    "HypotuneError",
    "Log",
    "Result",
    "RunConfig",
    "Runtime",
    "SearchPlan",
    "SearchResult",
    "StudyError",
    "StudyRun",
    "TrackingError",
    "TrainResult",
    "Trainable",
    "analyze",
    "analyze_runs",
    "built_in_studies",
    "executor_for",
    "load_study",
    "run_config",
    "run_study",
    "plan_search",
    "search",
    "setting",
    "study_status",
    "train",
    "trainable",
    "write_report",
]
