"""``eval paper``: runs what DATA_ROOT holds and lays the numbers out as the paper's tables ("no data" elsewhere)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from test_eval_backbone import one_thread  # noqa: F401  (autouse: one torch thread)
from test_eval_segment import write_pascal
from videonet.errors import UserError
from videonet.evaluation import paper
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.finetune import Ranks

CPU = Ranks(0, 1, torch.device("cpu"))
SMOKE = paper.PaperOptions(arch="resnet18", workers=0, max_steps=3, batch_size=2, crop_size=32)


def test_only_pascal_present_fills_pascal_and_marks_the_rest(tmp_path: Path) -> None:
    write_pascal(tmp_path / "data" / "pascal", n_train=4, n_val=2)
    loaded = load_backbone("random", arch="resnet18")
    results = paper.run_paper(loaded, tmp_path / "data", "rand18", SMOKE, CPU)
    assert [(r.eval, r.dataset) for r in results] == [("segment-pascal", "pascal")]
    paths = paper.write_tables("rand18", results, tmp_path / "out")
    assert [p.name for p in paths] == ["paper.md", "paper_table1.csv", "paper_scene.csv"]

    with (tmp_path / "out" / "paper_scene.csv").open() as f:
        header, ours, published = list(csv.reader(f))
    assert header == ["model", "PASCAL mIoU", "ADE20K mIoU", "COCO AP", "LVIS AP"]
    assert ours[0] == "rand18" and ours[2:] == ["no data"] * 3
    assert float(ours[1]) == pytest.approx(100 * results[0].metrics["mIoU"], abs=0.05)
    assert published == ["VITO (paper)", "", "", "", ""]  # nothing verified: empty, never made up

    with (tmp_path / "out" / "paper_table1.csv").open() as f:
        header, ours, _ = list(csv.reader(f))
    assert header[1:] == ["ADE20K mIoU", "COCO AP", "DAVIS J&F", "UCF-101 top-1", "IN-A top-1", "IN-Vid pm0", "IN-Vid pm10"]
    assert ours[1:] == ["no data"] * 7
    assert "| rand18 |" in (tmp_path / "out" / "paper.md").read_text()


def test_a_broken_folder_stops_before_any_training(tmp_path: Path) -> None:
    write_pascal(tmp_path / "pascal", n_train=2, n_val=1)
    (tmp_path / "coco").mkdir()
    with pytest.raises(UserError, match="instances_train2017.json not found"):
        paper.check_layouts(tmp_path)


def test_paper_command_prints_and_writes_the_tables(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from videonet.cli import app

    write_pascal(tmp_path / "data" / "pascal", n_train=2, n_val=1)
    args = ["eval", "paper", "random", "--data-root", str(tmp_path / "data"), "--arch", "resnet18", "--steps", "2",
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--device", "cpu",
            "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| random |" in result.output and "no data" in result.output
    assert (tmp_path / "res" / "random__segment-pascal__pascal.json").is_file()  # `eval summary` sees it too
    assert (tmp_path / "res" / "paper_scene.csv").is_file()
