"""Tuning specs: nuisance settings with ranges and scales, trials per preset, search keys, range edges."""

import pytest

from hypotune.errors import StudyError
from hypotune.study.file import built_in_studies, load_study
from hypotune.study.tuning import TUNING_SEED_BASE, Dimension

from .helpers import TUNED, variant

SPACE = 'space."train.lr" = { low = 1e-4, high = 1.0, scale = "log" }'
BAD = [
    (SPACE, 'space."train.lr" = { low = 0.0, high = 1.0, scale = "log" }', "a log scale needs low > 0"),
    (SPACE, 'space."train.lr" = { low = 1.0, high = 0.1 }', "low (1.0) must be below high (0.1)"),
    (SPACE, 'space."train.lrate" = { low = 0.1, high = 1.0 }', "unknown setting 'train.lrate'"),
    (
        SPACE,
        'space."train.lr" = { low = 1e-4, high = 1.0, scale = "exp" }',
        "scale is 'exp'; valid: linear, log",
    ),
    (SPACE, 'space."model.norm" = { low = 1, high = 2 }', "model.norm is not numeric; give choices"),
    (SPACE, 'space."train.lr" = { low = 1e-4, high = inf }', "high must be a finite number, got inf"),
    (
        SPACE,
        'space."model.head_hidden" = { choices = [[32], [64, 32]] }',
        "model.head_hidden is a list setting; choices must be single values",
    ),
    (SPACE, 'space."model.dropout" = { low = 0.0, high = 1.5 }', "model.dropout must be in [0, 1)"),
    ("trials = { tuned = 10 }", "trials = { fast = 10 }", "tuning.trials names preset 'fast'"),
    ("trials = { tuned = 10 }", "trials = { tuned = -1 }", "tuning.trials.tuned must be an integer"),
    ("trials = { tuned = 10 }", 'trials = { tuned = 10 }\nmetric = "test_loss"', "never test"),
    ("trials = { tuned = 10 }", "trials = { tuned = 10 }\nsampler = 1", "unknown setting 'tuning.sampler'"),
    (
        "trials = { tuned = 10 }",
        'trials = { tuned = 10 }\nper_seed = "yes"',
        "per_seed must be true or false",
    ),
    (
        'space."train.lr"',
        'space."train.optimizer" = { choices = ["adam", "sgd"] }\nspace."train.lr"',
        "train.optimizer is what this hypothesis compares",
    ),
    (
        "arms.adam = {}",
        'tuning = { trials = { tuned = "many" } }\narms.adam = {}',
        "hypotheses[0] (optimizer).tuning.trials.tuned must be an integer",
    ),
]


@pytest.mark.parametrize("old, new, message", BAD, ids=[case[2][:40] for case in BAD])
def test_bad_tuning_specs_are_rejected_with_the_place(tmp_path, old, new, message):
    path = variant(tmp_path, old, new)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_hypothesis_can_opt_out_or_raise_its_own_budget(tmp_path):
    study = load_study(variant(tmp_path, "arms.adam = {}", "tuning = false\narms.adam = {}"))
    assert study.hypotheses[0].tuning is None
    study = load_study(
        variant(tmp_path, "arms.adam = {}", "tuning = { trials = { untuned = 4 } }\narms.adam = {}")
    )
    spec = study.hypotheses[0].tuning
    assert (spec.budget("untuned"), spec.budget("tuned")) == (4, 10)  # merged over the study's table


def test_the_built_in_study_tunes_the_learning_rate_in_full_only():
    study = load_study(built_in_studies()["fashion_mnist_synergy"])
    tuned = {preset: [h.id for h in study.hypotheses if h.tuned_in(preset)] for preset in study.presets}
    assert tuned["course"] == []  # the write-up's protocol: one shared rate
    assert len(tuned["full"]) == len(study.hypotheses) and tuned["quick"] == []
    assert [d.name for d in study.hypotheses[0].tuning.space] == ["train.lr"]


def test_a_search_per_seed_has_its_own_key_seed_and_split(tmp_path):
    from hypotune.run.search import plan_searches
    from hypotune.study.model import plan

    shared = load_study(TUNED)
    study = load_study(
        variant(tmp_path, "trials = { tuned = 10 }", "trials = { tuned = 10 }\nper_seed = true")
    )
    hypothesis = study.hypotheses[0]
    assert hypothesis.tuning.per_seed and not shared.hypotheses[0].tuning.per_seed
    groups = plan_searches(study, "tuned")
    assert [(g.label, g.config.seed, g.config.data.split_seed) for g in groups] == [
        (f"{arm}, seed {seed}", TUNING_SEED_BASE + seed, TUNING_SEED_BASE + seed)
        for seed in range(3)
        for arm in ("adam", "sgd")
    ]
    assert len({g.key for g in groups}) == 6
    assert [g.key for g in groups] == [
        study.tuning_key(hypothesis, arm, "tuned", seed) for seed in range(3) for arm in ("adam", "sgd")
    ]
    assert len(plan_searches(study, "tuned", {"optimizer": 5})) == 10  # a round of seeds, more searches
    # Seed 1 of adam trains at its own search's best, and only once that search has finished.
    own = {study.tuning_key(hypothesis, "adam", "tuned", 1): {"train": {"lr": 0.02}}}
    trials = plan(study, "tuned", own)
    assert [(t.config.seed, t.config.train.lr, t.arms) for t in trials] == [
        (1, 0.02, [("optimizer", "adam")])
    ]
    # A shared search keeps the key it always had, so existing stores resume where they were.
    assert len(plan_searches(shared, "tuned")) == 2
    assert {shared.tuning_key(shared.hypotheses[0], "adam", "tuned", seed) for seed in range(3)} == {
        plan_searches(shared, "tuned")[0].key
    }
    builtin = load_study(built_in_studies()["fashion_mnist_synergy"])
    first = builtin.hypotheses[0]
    assert builtin.tuning_key(first, next(iter(first.arms)), "full") == "c9b30cc0ac514357"


def test_dimension_edges_are_measured_on_the_search_scale():
    rate = Dimension("train.lr", 1e-4, 1e-2, log=True)
    assert rate.position(1e-3) == pytest.approx(0.5)
    assert (rate.edge(1.2e-4), rate.edge(1e-3), rate.edge(9e-3)) == ("low", "", "high")
    assert Dimension("model.dropout", 0.0, 0.5).edge(0.48) == "high"
    assert Dimension("model.norm", choices=("none", "batch")).edge("none") == ""
