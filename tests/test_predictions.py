"""Prediction kinds: one registry entry each, with its fields, checks, words and evidence.

A new kind is one entry in `hypotune.study.predictions.KINDS` and one row of `EXAMPLES` here."""

import math

import pytest

from hypotune.errors import StudyError
from hypotune.study.predictions import KINDS, cells, collect_evidence, describe, trend_steps

from .test_verdicts import SYNERGY, data_of, study_of

ARMS = "arms = { narrow = { model = { width = 4 } }, wide = { model = { width = 8 } } }"
FACTOR = 'factors = { "model.width" = [4, 8, 16] }'
# kind -> (the hypothesis's arms or factors (None: a 2x2 factorial), the prediction's fields, its words)
EXAMPLES = {
    "better": (ARMS, 'arm = "wide", than = "narrow"', "wide beats narrow"),
    "best": (ARMS, 'arm = "wide"', "wide is best"),
    "synergy": (None, "", "combined effect exceeds the sum"),
    "diminishing": (None, "", "combined effect falls short of the sum"),
    "efficiency": (
        ARMS,
        'arm = "narrow", reference = "wide", performance = 0.9, params = 0.5',
        "narrow reaches 90% of wide with <= 50% of its parameters",
    ),
    "trend": (FACTOR, 'factor = "model.width", direction = "decreasing"', "decreasing with model.width"),
    "reaches": (ARMS, 'arm = "wide", value = 0.5', "wide reaches 0.5"),
}


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(KINDS)


def hypothesis_text(kind: str, arms: str | None, fields: str) -> str:
    if arms is None:  # the interaction kinds: a 2x2 factorial
        both = 'predictions = [{ kind = "synergy" }, { kind = "diminishing" }]'
        return SYNERGY.replace(both, f'prediction = {{ kind = "{kind}" }}')
    return f"""
[[hypotheses]]
id = "h"
statement = "a claim"
{arms}
prediction = {{ {", ".join(filter(None, [f'kind = "{kind}"', fields]))} }}
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_loads_describes_itself_and_finds_its_evidence(kind, tmp_path):
    arms, fields, words = EXAMPLES[kind]
    study = study_of(tmp_path, hypothesis_text(kind, arms, fields))
    hypothesis = study.hypotheses[0]
    (prediction,) = hypothesis.predictions
    assert words in describe(prediction)
    values = {arm: [1.0 - 0.1 * i + 0.01 * s for s in range(5)] for i, arm in enumerate(hypothesis.arms)}
    evidence = collect_evidence(hypothesis, prediction, data_of(study, values))
    numbers = evidence.per_seed or next(iter((evidence.rivals or {}).values()), {})  # best: per rival
    assert sorted(numbers) == [0, 1, 2, 3, 4]  # one number per seed, paired across arms
    assert all(math.isfinite(v) for v in numbers.values()) and evidence.label and evidence.test


@pytest.mark.parametrize("kind", [k for k, kind in KINDS.items() if any(kind.fields.values())])
def test_a_kind_without_a_required_field_names_it(kind, tmp_path):
    arms, fields, _ = EXAMPLES[kind]
    first = fields.split(",")[0]
    name = first.split("=")[0].strip()
    text = hypothesis_text(kind, arms, ", ".join(part for part in fields.split(",")[1:]))
    with pytest.raises(StudyError, match=f"a '{kind}' prediction needs {name}"):
        study_of(tmp_path, text)


def test_cells_map_levels_to_arms(tmp_path):
    study = study_of(tmp_path, SYNERGY)
    assert cells(study.hypotheses[0]) == {
        (0, 0): "dropout=0.0, norm=none",
        (0, 1): "dropout=0.0, norm=instance",
        (1, 0): "dropout=0.1, norm=none",
        (1, 1): "dropout=0.1, norm=instance",
    }


def test_trend_steps_follow_the_factor_values_not_the_file_order(tmp_path):
    text = hypothesis_text("trend", FACTOR.replace("[4, 8, 16]", "[16, 4, 8]"), EXAMPLES["trend"][1])
    study = study_of(tmp_path, text)
    hypothesis = study.hypotheses[0]
    assert trend_steps(hypothesis, hypothesis.predictions[0]) == ["width=4", "width=8", "width=16"]
