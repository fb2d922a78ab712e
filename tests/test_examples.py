"""The examples under examples/ run as their READMEs say: offline, end to end, tuning and resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import hypotune
from hypotune.cli.parser import main

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture
def digits(workdir: Path) -> Path:
    pytest.importorskip("sklearn")
    folder = workdir / "digits"
    shutil.copytree(EXAMPLES / "digits", folder)
    return folder


def test_the_digits_example_tunes_runs_resumes_and_reports(digits, capsys):
    assert main(["validate", str(digits / "digits.toml")]) == 0
    study = hypotune.load_study(digits / "digits.toml")
    done = hypotune.run_study(study, "quick", workers=2)
    assert not done.failed and done.summary.tuning_finished == 8  # 4 trials for each width arm
    again = hypotune.run_study(study, "quick", workers=2)
    assert again.summary.finished == 0 and again.summary.tuning_finished == 0  # all resumed
    analysis = hypotune.analyze(study, "quick")
    verdicts = dict(zip(analysis.verdicts.hypothesis, analysis.verdicts.verdict, strict=True))
    assert verdicts["width"] == "supported"  # 8 hidden units cannot fit what 64 fit in 5 epochs
    runs = analysis.runs
    assert (runs.test_acc > 0.5).all() and len(set(runs.seed)) >= 3
    out = digits / "report"
    assert main(["report", str(digits / "digits.toml"), "--preset", "quick", "--out", str(out)]) == 0
    assert "width" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert "param_count vs test_loss" in page  # the size the example declares, against its test loss
    assert "test_loss (cross-entropy)" in page and "weight initialisation, data order" in page
    assert "course" not in page and "Fashion" not in page and "augmentation" not in page


def test_the_script_example_runs_an_unchanged_script_tunes_resumes_and_reports(workdir, capsys):
    pytest.importorskip("sklearn")
    folder = workdir / "script"
    shutil.copytree(EXAMPLES / "script", folder)
    path = folder / "study.toml"
    text = path.read_text()
    smaller = {"seeds = { min = 3, max = 5 }": "seeds = 2", "quick = 3, full": "quick = 2, full"}
    for old, new in smaller.items():  # the quick preset, smaller still: each trial starts a Python
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    assert main(["validate", str(path)]) == 0
    study = hypotune.load_study(path)
    done = hypotune.run_study(study, "quick", workers=2)
    assert not done.failed and done.summary.tuning_finished == 4  # 2 tuning trials for each width arm
    assert done.summary.finished == done.summary.planned >= 6  # a tuned arm may equal the base arm
    again = hypotune.run_study(study, "quick", workers=2)
    assert again.summary.finished == 0 and again.summary.tuning_finished == 0  # all resumed
    runs = hypotune.analyze(study, "quick").runs
    assert (runs.test_acc > 0.3).all() and (runs.val_loss > 0).all()  # read back from what the script logged
    assert main(["report", str(path), "--preset", "quick"]) == 0
    assert "width" in capsys.readouterr().out
