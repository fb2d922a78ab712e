"""Studies: hypotheses, arms and predictions read from a study file, every problem named at its place."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hypotune.errors import StudyError
from hypotune.run.search import plan_searches
from hypotune.study.file import built_in_studies, load_study
from hypotune.study.model import plan
from hypotune.study.predictions import describe

from .helpers import write_variant

TINY = Path(__file__).parent / "studies" / "tiny.toml"


def test_tiny_study_loads_with_factorial_arms():
    study = load_study(TINY)
    synergy = study.hypotheses[1]
    assert list(synergy.arms) == [
        "dropout=0.0, norm=none",
        "dropout=0.0, norm=instance",
        "dropout=0.2, norm=none",
        "dropout=0.2, norm=instance",
    ]
    assert [f.name for f in synergy.factors] == ["model.dropout", "model.norm"]
    assert synergy.predictions[0].kind == "synergy"


@pytest.mark.parametrize("name", sorted(built_in_studies()))
def test_every_shipped_study_is_valid(name):
    study = load_study(name)
    for preset in study.presets:
        assert plan(study, preset) or plan_searches(study, preset)  # trials, or searches first


TWO_ARMS = "arms.narrow = {}\narms.wide = { model = { width = 16 } }\n" + (
    'prediction = { kind = "better", arm = "wide", than = "narrow" }'
)


BAD = [
    ('name = "tiny"', 'name = "tiny"\nowner = "me"', "unknown setting 'owner'"),
    ("[base.model]\ndepth", "[base.modle]\ndepth", "base.modle' (did you mean 'model'?)"),
    ("width = 8", "widht = 8", "unknown setting 'base.model.widht' (did you mean 'width'?)"),
    ("seeds = 2", "seeds = 0", "presets.quick.seeds must be an integer from 1 to 1000"),
    (
        "arms.wide = { model = { width = 16 } }",
        'arms.wide = { model = { width = "big" } }',
        "hypotheses[0] (width).arms.wide.model.width must be",
    ),
    (
        'than = "narrow"',
        'than = "medium"',
        "hypotheses[0] (width).prediction.than names arm 'medium', which is not one of: narrow, wide",
    ),
    ('kind = "better", arm = "wide"', 'kind = "better", arm = "huge"', "prediction.arm names arm 'huge'"),
    (
        'kind = "better", arm = "wide", than = "narrow"',
        'kind = "better", arm = "wide"',
        "a 'better' prediction needs than",
    ),
    ('kind = "better"', 'kind = "superior"', "prediction.kind is 'superior'; valid: better, best"),
    (
        '"model.norm" = ["none", "instance"]',
        '"model.norm" = ["none", "instance", "batch"]',
        "hypotheses[1] (dropout_x_norm).prediction: 'synergy' needs a 2x2 factorial",
    ),
    (
        '"model.dropout" = [0.0, 0.2], ',
        "",
        "'synergy' needs a 2x2 factorial (two factors of two levels), got 2",
    ),
    (
        '"model.dropout"',
        '"model.dropuot"',
        "factors.model.dropuot: unknown setting 'model.dropuot' (did you mean 'model.dropout'?)",
    ),
    ('id = "width"', 'id = "dropout_x_norm"', "id 'dropout_x_norm' is used twice"),
    ('name = "tiny"', 'name = "Bob\'s study"', "name 'Bob's study' may hold only letters, digits"),
    # names reach file names and store filters: nothing that climbs out of report/ or needs quoting
    ("[presets.quick]", '[presets."/../../x"]', "presets./../../x: a preset name '/../../x' may hold only"),
    ("[presets.quick]", '[presets."it\'s"]', "a preset name 'it's' may hold only letters"),
    ('id = "width"', 'id = "a/b"', "hypotheses[0]: id 'a/b' may hold only letters, digits"),
    ('id = "width"', 'id = ".."', "hypotheses[0]: id '..' may hold only letters, digits"),
    ('statement = "Wider is better"', "statement = 5", "hypotheses[0] (width).statement must be a non-empty"),
    ('description = "A tiny synthetic study"', "description = 7", "description must be a non-empty string"),
    ("seeds = 2", "seeds = 2\ndescription = []", "presets.quick.description must be a non-empty string"),
    (
        'kind = "better", arm = "wide", than = "narrow"',
        'kind = "best", arm = "wide", among = 5',
        "prediction.among must be a list of arm names, got 5",
    ),
    ('than = "narrow"', 'than = ["narrow"]', "prediction.than must be a non-empty string, got ['narrow']"),
    ("arms.narrow = {}", 'arms."" = {}', "hypotheses[0] (width): an arm or factor level needs a name"),
    ("arms.narrow = {}", 'arms." " = {}', "an arm or factor level needs a name, got ' '"),
    (
        'kind = "better", arm = "wide", than = "narrow"',
        'kind = "reaches", arm = "wide", value = nan',
        "prediction.value must be a finite number, got nan",
    ),
    ("depth = 2", "depth = 2\n[base.train]\nlr = inf", "base.train.lr must be a finite number, got inf"),
    ("width = 16 }", "width = 16 }, train = { weight_decay = -inf }", "weight_decay must be a finite number"),
    (
        "arms.wide = { model = { width = 16 } }",
        "arms.wide = { model = { depth = 9, pools = 5 } }",
        "arms.wide under preset 'quick': model.pools: pooling after layer",
    ),
    (
        "arms.wide = { model = { width = 16 } }",
        "arms.wide = { model = { depth = 8, width = 4096, kernel_size = 27 } }",
        "arms.wide under preset 'quick': the model (",
    ),
    (
        'statement = "Wider is better"',
        'statement = "Wider is better"\nmetric = "test_loss"',
        "metric 'test_loss' may be reported, never decide",
    ),
    ("[presets.quick]", "[presets.quick]\nepochs = 3", "unknown setting 'presets.quick.epochs'"),
    (
        "seeds = 2",
        'seeds = 2\nhypotheses = ["widht"]',
        "presets.quick.hypotheses names 'widht', which is not a hypothesis; hypotheses: width, dropout_x",
    ),
    (
        'prediction = { kind = "better", arm = "wide", than = "narrow" }',
        'metric = "val_acc"\nprediction = { kind = "reaches", arm = "wide", value = 93 }',
        "prediction.value: val_acc is a fraction (0.93 for 93%), got 93",
    ),
    (
        'prediction = { kind = "better", arm = "wide", than = "narrow" }',
        'prediction = { kind = "reaches", arm = "wide" }',
        "a 'reaches' prediction needs value",
    ),
    (
        TWO_ARMS,
        'arms.wide = { model = { width = 16 } }\nprediction = { kind = "best", arm = "wide" }',
        "compares at least two arms (one only to test a 'reaches')",
    ),
    (  # best of itself alone passed validation and then crashed the verdicts
        TWO_ARMS,
        "arms.narrow = {}\narms.wide = { model = { width = 16 } }\n"
        'prediction = { kind = "best", arm = "wide", among = ["wide"] }',
        "'best' needs at least one rival for 'wide' to beat",
    ),
    ("seeds = 2", "seeds = { min = 5, max = 3 }", "presets.quick.seeds.max (3) is below min (5)"),
    ("seeds = 2", "seeds = { min = 3, mx = 9 }", "unknown setting 'presets.quick.seeds.mx'"),
    ("seeds = 2", "seeds = { min = 0 }", "presets.quick.seeds.min must be an integer from 1 to 1000, got 0"),
    (
        "[base.model]",
        '[statistics]\nmargin = "x%"\n[base.model]',
        "statistics.margin must be a positive number",
    ),
    (
        "[base.model]",
        "[statistics]\nmargin = -0.1\n[base.model]",
        "statistics.margin must be a positive number",
    ),
    (
        "[base.model]",
        '[statistics]\nfamily = "all"\n[base.model]',
        "statistics.family is 'all'; valid: hypothesis",
    ),
    (
        "[base.model]",
        "[statistics]\nalpha = 1.5\n[base.model]",
        "statistics.alpha must be a number between 0",
    ),
    (
        "[base.model]",
        "[statistics]\nfutility = 0.5\n[base.model]",
        "statistics.futility must be 0 (never give up) or a number of at least 1",
    ),
    (
        "[base.model]",
        '[statistics]\nfutility = "never"\n[base.model]',
        "statistics.futility must be 0 (never give up) or a number of at least 1",
    ),
    (
        "[base.model]",
        "[statistics]\nalhpa = 0.1\n[base.model]",
        "unknown setting 'statistics.alhpa'",
    ),
    ('name = "tiny"', 'name = "tiny"\nvary_split = "yes"', "vary_split must be true or false"),
    (
        'statement = "Wider is better"',
        'statement = "Wider is better"\nmargin = "5"',
        "hypotheses[0] (width).margin must be a positive number",
    ),
    (
        'than = "narrow" }',
        'than = "narrow", exploratory = "yes" }',
        "prediction.exploratory must be true or false",
    ),
]


@pytest.mark.parametrize("old, new, message", BAD, ids=[case[2][:40] for case in BAD])
def test_bad_study_files_are_rejected_with_the_place(tmp_path, old, new, message):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize("old, new, message", BAD[:6], ids=[case[2][:40] for case in BAD[:6]])
def test_validate_command_prints_one_line_and_exits_2(tmp_path, old, new, message):
    path = write_variant(tmp_path, old, new)
    result = subprocess.run(
        [sys.executable, "-m", "hypotune.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_files_that_are_not_toml_text_are_one_line(tmp_path):
    binary = tmp_path / "latin1.toml"
    binary.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    for path, message in ((binary, "not valid TOML: the file is not UTF-8 text"), (folder, "a folder, not")):
        for command in (["validate", str(path)], ["study", "run", str(path)], ["report", str(path)]):
            result = subprocess.run(
                [sys.executable, "-m", "hypotune.cli", *command],
                capture_output=True,
                text=True,
                cwd=tmp_path,
            )
            assert result.returncode == 2 and result.stderr.count("\n") == 1, (command, result.stderr)
            assert message in result.stderr and "Traceback" not in result.stderr


def test_validate_accepts_a_good_study_and_a_run_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hypotune.cli", "validate", str(TINY)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "preset quick: 10 trials" in result.stdout
    config = tmp_path / "run.toml"
    config.write_text("[model]\ndepth = 6\nwidth = 64\n")
    result = subprocess.run(
        [sys.executable, "-m", "hypotune.cli", "validate", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "valid run config" in result.stdout


def test_a_study_file_is_never_executed(tmp_path):
    path = write_variant(tmp_path, 'kind = "better"', "kind = \"__import__('os').system('touch pwned')\"")
    with pytest.raises(StudyError, match="prediction.kind is"):
        load_study(path)
    assert not (tmp_path / "pwned").exists()


def test_one_arm_is_enough_for_a_reaches_prediction(tmp_path):
    path = write_variant(
        tmp_path,
        TWO_ARMS,
        'metric = "val_acc"\narms.wide = { model = { width = 16 } }\n'
        'prediction = { kind = "reaches", arm = "wide", value = 0.8 }',
    )
    prediction = load_study(path).hypotheses[0].predictions[0]
    assert (prediction.kind, prediction.value, describe(prediction)) == ("reaches", 0.8, "wide reaches 0.8")


def test_the_built_in_study_travels_in_the_wheel(tmp_path):
    pytest.importorskip("setuptools")
    root = Path(__file__).parents[1]
    command = [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
               "-w", str(tmp_path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("hypotune-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "hypotune/studies/fashion_mnist_synergy.toml" in archive.namelist()


def test_a_built_in_study_is_named_from_anywhere(tmp_path, monkeypatch, capsys):
    from hypotune.cli.parser import main

    monkeypatch.chdir(tmp_path)  # outside the checkout
    assert "fashion_mnist_synergy" in built_in_studies()
    assert main(["studies"]) == 0
    listed = capsys.readouterr().out
    assert "fashion_mnist_synergy" in listed and "quick" in listed
    assert main(["validate", "fashion_mnist_synergy"]) == 0
    assert "study 'fashion_mnist_synergy' is valid" in capsys.readouterr().out
    assert main(["validate", "fashion_mnist_synergi"]) == 2
    error = capsys.readouterr().err
    assert "no built-in study of that name (built in: fashion_mnist_synergy)" in error
    assert error.endswith("did you mean fashion_mnist_synergy?\n")


def test_validate_reads_a_piped_study_once():
    result = subprocess.run([sys.executable, "-m", "hypotune.cli", "validate", "/dev/stdin"],
                            input=TINY.read_text(), capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and "study 'tiny' is valid" in result.stdout, result.stderr
