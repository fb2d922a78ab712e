"""Reading a study back from the store: which finished runs belong to which arm."""

import json

from hypotune.decide.collect import collect
from hypotune.store.tags import PREFIX
from hypotune.study.model import plan


def test_collect_ignores_other_presets_and_unfinished_runs(planted_store):
    study, tracker, _ = planted_store
    experiment_id = tracker.experiment(study.name)
    config = study.arm_config(study.hypotheses[0], "learns", "quick", 0).replace({"epochs": 7})
    arms = json.dumps([["learning_matters", "learns"]])
    strays = {  # runs that must not count, at seeds of their own: another preset's, an unfinished one
        "other": (
            {f"{PREFIX}preset": "other", f"{PREFIX}key": config.key(), f"{PREFIX}seed": "7"},
            "FINISHED",
        ),
        "running": (
            {f"{PREFIX}preset": "quick", f"{PREFIX}key": "unfinished", f"{PREFIX}seed": "8"},
            "RUNNING",
        ),
    }
    for name, (tags, status) in strays.items():
        run_id = tracker.start_run(
            experiment_id, name, tags | {f"{PREFIX}kind": "trial", f"{PREFIX}arms": arms}
        )
        tracker.client.log_metric(run_id, "val_loss", 99.0)
        if status == "FINISHED":
            tracker.client.set_terminated(run_id, "FINISHED")
    data = collect(study, "quick", tracker)
    assert {len(arm.records) for arm in data.values()} == {3}
    keys = {r.key for arm in data.values() for r in arm.records.values()}
    assert keys == {t.key for t in plan(study, "quick")}
    assert all(v < 99 for v in data["learning_matters", "learns"].values("val_loss").values())
