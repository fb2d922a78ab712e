"""Errors that carry a message meant for a person; the CLI prints it as one line."""


class HypotuneError(Exception):
    """Base of every error caused by user input or the environment, not by a bug."""


class ConfigError(HypotuneError):
    """A setting is unknown, has the wrong type, or an invalid value."""


class ArchitectureError(ConfigError):
    """A model configuration that cannot be built."""


class DataError(HypotuneError):
    """The dataset is missing, truncated, corrupt, or could not be downloaded."""


class StudyError(ConfigError):
    """A study file is invalid."""


class TrackingError(HypotuneError):
    """The tracking store cannot be reached or holds something unexpected."""


class WorkerError(HypotuneError):
    """Worker processes cannot run at all."""


class CommandFailed(HypotuneError):
    """A script failed, hung past its timeout, or logged none of its metrics."""
