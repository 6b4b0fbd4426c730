"""``videonet eval``'s command line: options generated from the settings dataclasses (fast help: test_fast_help.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from videonet.evaluation import cli as eval_cli
from videonet.evaluation import settings as S


@pytest.mark.parametrize(("command", "flag", "default"), [
    ("knn", "--k", S.Knn.k), ("knn", "--temperature", S.Knn.temperature),
    ("segment", "--crop-size", S.SegmentSettings.crop_size), ("paper", "--crop-size", S.SegmentSettings.crop_size),
    ("detect", "--min-size", S.DetectSettings.min_size), ("paper", "--max-size", S.DetectSettings.max_size),
    ("davis", "--radius", S.PropagationConfig.radius), ("ucf101", "--fps", S.ClipConfig.fps),
])
def test_defaults_come_from_the_settings(command: str, flag: str, default: object) -> None:
    import typer.main

    group = typer.main.get_command(eval_cli.app)
    params = {o: p for p in group.commands[command].params for o in p.opts}
    assert params[flag].default == default


def test_a_closed_choice_fails_when_the_command_line_is_parsed(tmp_path) -> None:
    # Before any data is read or weights are loaded: the data dir does not even exist.
    for args, message in ((["knn", "random", str(tmp_path / "none"), "--device", "tpu"],
                           "--device 'tpu': expected auto, cpu, cuda, cuda:N"),
                          (["ucf101", "random", str(tmp_path / "none"), "--schedule", "cosine"],
                           "--schedule 'cosine': expected paper, sgd-cosine"),
                          (["knn", "random", str(tmp_path / "none"), "--k", "0"], "--k must be at least 1")):
        proc = subprocess.run([sys.executable, "-m", "videonet", "eval", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
