"""docs/tutorial.md works as a new user follows it: its files written where it says, its
commands run in order, and its verdicts come out as it says they do."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from hypotune.cli.parser import main

TUTORIAL = Path(__file__).parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs_as_written(workdir, capsys, monkeypatch):
    text = TUTORIAL.read_text()
    files = re.findall(r"```(?:python|toml) (\S+)\n(.*?)```", text, flags=re.S)
    assert [path for path, _ in files] == ["mystudy/fit.py", "mystudy/study.toml"]
    for path, body in files:
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(body)
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines()]
    assert commands[0] == "make setup"  # the checkout's own set-up: done already for the tests
    ran = []
    for command in commands[1:]:
        words = shlex.split(command)
        if words[0] == "cd":
            assert words[1] == "mystudy"
            continue
        assert words[0] == "../.venv/bin/hypotune"
        monkeypatch.chdir(workdir / "mystudy")
        assert main(words[1:]) == 0, command
        ran.append(words[1])
    assert ran == ["train", "validate", "study", "report"]
    printed = capsys.readouterr().out
    assert "val_loss" in printed
    verdicts = json.loads((workdir / "mystudy/report/momentum-quick/verdicts.json").read_text())["verdicts"]
    outcome = {v["hypothesis"]: v["verdict"] for v in verdicts}
    assert outcome == {"momentum": "supported", "step": "equivalent"}  # as the tutorial says
    assert "momentum helps (*supported*)" in text and "*equivalent*" in text
