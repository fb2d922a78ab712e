"""The tag schema, one constant per tag: every tag hypotune sets on a run is `hypotune.<name>`.
The store writes and reads runs through these names only; a store written by any earlier
version uses the same values.
"""

from __future__ import annotations

PREFIX = "hypotune."  # of every tag hypotune sets


def tag(name: str) -> str:
    """The full name of a tag whose name is data (a setting the trial ran with, a search's scope):
    tag('threads') -> 'hypotune.threads'."""
    return f"{PREFIX}{name}"


# On every run.
KIND = tag("kind")  # one of the KIND_* values below
CODE_VERSION = tag("code_version")  # the package version, plus the git commit from a checkout
STATUS = tag("status")  # finished, pruned, diverged, failed, killed
ERROR = tag("error")  # the message of a failed or killed run

KIND_STUDY = "study"  # the parent run of a study under one preset
KIND_TRIAL = "trial"  # one arm's config at one seed, shared by every arm with that config
KIND_TRAIN = "train"  # a single `hypotune train` run
KIND_SEARCH = "search"  # the parent run of one tuning search
KIND_TUNING_TRIAL = "tuning_trial"  # one trial of a search

# On a study's parent run.
STUDY = tag("study")  # the study's name (also on trials and searches)
PRESET = tag("preset")  # the preset (also on trials and searches)
STUDY_FILE = tag("study_file")  # the study file's text, to rebuild the report from the store
STOPPED = tag("stopped")  # the budget that ended it with seeds still wanted: "budget" (time), "trials"
MARGIN_PREFIX = tag("margin.")  # + hypothesis id: its fixed relative margin, as JSON value/basis

# On a trial.
KEY = tag("key")  # the config's key (also on searches: the searched arm's key)
SEED = tag("seed")
HYPOTHESES = tag("hypotheses")  # comma-separated ids of the hypotheses it serves
ARMS = tag("arms")  # JSON list of [hypothesis, arm]
WARNING = tag("warning")  # a `train` run's config warning

# On a search and its tuning trials.
SPACE = tag("space")  # JSON of the searched ranges
METRIC = tag("metric")  # the metric it minimises or maximises
BUDGET = tag("budget")  # its trial budget
BEST = tag("best")  # JSON of the best params found
EDGE = tag("edge")  # "; "-joined ranges whose best value lies at an edge
TUNING_SEED = tag("tuning_seed")  # the sampler's seed
TUNING_KEY = tag("tuning_key")  # on a tuning trial: its search's key
TRIAL_NUMBER = tag("trial_number")  # on a tuning trial: its number in the search
BEST_SETTING_PREFIX = "best."  # + setting: each best value as its own tag, for the MLflow UI
