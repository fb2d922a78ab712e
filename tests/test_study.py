"""Studies and their plan: arms shared between hypotheses, layering, presets."""

import subprocess
import sys

from hypotune.study.file import load_study
from hypotune.study.model import plan

from .helpers import TINY, write_variant


def test_shared_arms_train_once():
    study = load_study(TINY)
    trials = plan(study, "quick")
    # narrow (width 8, no dropout, no norm) is the factorial's "dropout=0.0, norm=none" arm
    assert len(trials) == 5 * 2
    shared = [t for t in trials if len(t.arms) == 2]
    assert {tuple(sorted(t.arms)) for t in shared} == {
        (("dropout_x_norm", "dropout=0.0, norm=none"), ("width", "narrow"))
    }
    assert sorted({t.config.seed for t in trials}) == [0, 1]


def test_layering_base_preset_arm():
    study = load_study(TINY)
    wide = study.arm_config(study.hypotheses[0], "wide", "quick", seed=1)
    assert (wide.model.width, wide.model.depth, wide.train.steps_per_epoch, wide.seed) == (16, 2, 8, 1)


def test_a_preset_runs_only_the_hypotheses_it_names(tmp_path):
    path = write_variant(tmp_path, "seeds = 2", 'seeds = 2\nhypotheses = ["width"]')
    study = load_study(path)
    narrowed = study.under("quick")
    assert [h.id for h in narrowed.hypotheses] == ["width"]
    assert len(plan(narrowed, "quick")) == 2 * 2
    assert [h.id for h in study.under(None).hypotheses] == ["width"]  # None: the first preset
    result = subprocess.run(
        [sys.executable, "-m", "hypotune.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "preset quick: 4 trials, 2 seeds, 1 hypotheses" in result.stdout
