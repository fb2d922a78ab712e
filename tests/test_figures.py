"""The report's figures: the data each plot draws, computed without drawing."""

from hypotune.decide.collect import collect
from hypotune.report.figures import Band, curve_data, interaction_data, pareto_data, pareto_view
from hypotune.study.file import load_study

from .helpers import STUDIES


def test_figure_data_without_drawing(planted_store):
    study, tracker, _ = planted_store
    data = collect(study, "quick", tracker)
    from hypotune.report.build import fetch_history

    curves = curve_data(study.hypotheses[0], data, fetch_history(tracker, data, study))
    band = curves["learns"]["val_loss"]
    assert isinstance(band, Band) and band.x == [1.0, 2.0]
    assert all(lo <= m <= hi for lo, m, hi in zip(band.low, band.mean, band.high, strict=True))
    assert curves["frozen"]["val_loss"].mean[-1] > band.mean[-1]
    view = pareto_view(study, data)
    assert (view.size, view.metric, view.lower_is_better) == ("param_count", "test_loss", True)
    points = pareto_data(study, data, view)
    assert len(points) == 4  # learns, frozen, and the two dropout orders
    assert any(p.on_front for p in points)
    assert interaction_data(study.hypotheses[0], data) == {}


def test_pareto_front_marks_only_undominated_points(tmp_path):
    from hypotune.store.records import TrialRecord
    from hypotune.study.model import ArmData

    arms = "arms.small = {}\narms.mid = { model = { width = 12 } }\narms.big = { model = { width = 16 } }\n"
    path = tmp_path / "three.toml"
    path.write_text(
        (STUDIES / "tiny.toml").read_text().split("[[hypotheses]]")[0]
        + f'[[hypotheses]]\nid = "size"\nstatement = "s"\n{arms}'
        + 'prediction = { kind = "best", arm = "mid" }\n'
    )
    study = load_study(path)
    points = {"small": (1000, 0.50), "mid": (2000, 0.40), "big": (3000, 0.45)}  # big is dominated by mid
    data = {}
    for arm, (params, loss) in points.items():
        records = {}
        for seed in range(2):
            metrics = {"param_count": params, "test_loss": loss + 0.01 * seed}
            logged = {"model.width": arm, "seed": str(seed), "data.split_seed": str(seed)}
            records[seed] = TrialRecord(arm, "", seed, "finished", metrics, logged, {})
        data["size", arm] = ArmData("size", arm, records)
    view = pareto_view(study, data)
    front = {p.label.split(": ")[1]: p.on_front for p in pareto_data(study, data, view)}
    assert front == {"small": True, "mid": True, "big": False}
    empty = {key: _empty(*key) for key in data}
    assert pareto_view(study, empty) is None and pareto_data(study, empty, view) == []


def _empty(hypothesis, arm):
    from hypotune.study.model import ArmData

    return ArmData(hypothesis, arm)
