"""``eval paper``: runs what DATA_ROOT holds and lays the numbers out as the paper's tables ("no data" elsewhere)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from evaldata import write_pascal
from videonet.errors import UserError
from videonet.evaluation import paper
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.finetune import Ranks

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

CPU = Ranks(0, 1, torch.device("cpu"))
SMOKE = paper.PaperOptions(arch="resnet18", workers=0, max_steps=3, batch_size=2, crop_size=32)


def test_only_pascal_present_fills_pascal_and_marks_the_rest(tmp_path: Path) -> None:
    write_pascal(tmp_path / "data" / "pascal", n_train=4, n_val=2)
    loaded = load_backbone("random", arch="resnet18")
    results = paper.run_paper(loaded, tmp_path / "data", "rand18", SMOKE, CPU)
    assert [(r.eval, r.dataset) for r in results] == [("segment-pascal", "pascal")]
    paths = paper.write_tables("rand18", results, tmp_path / "out")
    assert [p.name for p in paths] == ["paper.md", "paper_table1.csv", "paper_scene.csv", "paper_davis.csv",
                                      "paper_human.csv"]

    published = read_published(PACKAGED)
    with (tmp_path / "out" / "paper_scene.csv").open() as f:
        header, *rows = list(csv.reader(f))
    assert header[:4] == ["benchmark", "rand18", "VITO (VideoNet) (paper)", "difference to the paper"]
    assert [r[0] for r in rows] == ["PASCAL mIoU", "ADE20K mIoU", "COCO AP", "LVIS AP"]
    pascal = dict(zip(header, rows[0]))
    ours = 100 * results[0].metrics["mIoU"]
    assert float(pascal["rand18"]) == pytest.approx(ours, abs=0.05)
    # The paper's numbers beside ours, read from the paper's table B.3 (ResNet-50 rows), and the difference.
    vito = published[("B.3", "VITO", "VideoNet", "R50", "PASCAL", "mIoU")]
    assert float(pascal["VITO (VideoNet) (paper)"]) == vito
    assert float(pascal["difference to the paper"]) == pytest.approx(ours - vito, abs=0.05)
    assert pascal["difference to the paper"].startswith("-")
    # Every baseline row of those tables is there; the 200-epoch ablation of Table B.1 too; no Swin-S row (B.2).
    baselines = {(m, d) for (t, m, d, b, bench, _) in published if t == "B.3" and b == "R50" and bench == "PASCAL"}
    for method, data in baselines - {("VITO", "VideoNet")}:
        label = method if data == "-" else f"{method} ({data})"
        assert float(pascal[label]) == published[("B.3", method, data, "R50", "PASCAL", "mIoU")]
    assert float(pascal["VITO (200 epochs) (AudioSet)"]) == published[("B.1", "VITO (200 epochs)", "AudioSet", "R50",
                                                                      "PASCAL", "mIoU")]
    assert not any("Swin" in h for h in header)
    # No data: no number of ours and no difference, the paper's number still shown.
    ade = dict(zip(header, rows[1]))
    assert ade["rand18"] == "no data" and ade["difference to the paper"] == "" and ade["VITO (VideoNet) (paper)"] == "39.4"

    with (tmp_path / "out" / "paper_table1.csv").open() as f:
        header, *rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["ADE20K mIoU", "COCO AP", "DAVIS J&F", "UCF-101 top-1", "IN-A top-1", "IN-Vid pm0",
                                    "IN-Vid pm10"]
    assert [r[1] for r in rows] == ["no data"] * 7
    ina = dict(zip(header, rows[4]))
    assert float(ina["Supervised (ImageNet)"]) == published[("1", "Supervised", "ImageNet", "R50", "ImageNet-A", "top-1")]
    assert "| PASCAL mIoU |" in (tmp_path / "out" / "paper.md").read_text()
    # Another published row can be the reference, e.g. when the checkpoint is that baseline.
    header, rows = paper.tables("rand18", results, "Supervised (ImageNet)")["Scene understanding (Tables B.3, B.1)"]
    assert header[2] == "Supervised (ImageNet) (paper)" and rows[0][2] == "71.3"
    with pytest.raises(UserError, match="--paper-method 'ViTo'"):
        paper.tables("rand18", results, "ViTo")


PACKAGED = Path(paper.__file__).with_name(paper.PUBLISHED_CSV)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "vito_published.csv"


def read_published(path: Path) -> dict[tuple[str, ...], float]:
    """(table, pretraining, dataset, backbone, benchmark, metric) -> value, read with the csv module."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ("table", "pretraining", "dataset", "backbone", "benchmark", "metric")
    return {tuple(r[k] for k in keys): float(r["value"]) for r in rows}


@pytest.mark.skipif(not SHARED.is_file(), reason="no ../shared/paper/vito_published.csv beside the checkout")
def test_packaged_published_numbers_equal_the_shared_transcription() -> None:
    assert PACKAGED.read_bytes() == SHARED.read_bytes()
    assert len(paper.published()) == len(read_published(SHARED)) == 193


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
    assert "| benchmark | random | VITO (VideoNet) (paper) | difference to the paper |" in result.output
    assert "| PASCAL mIoU |" in result.output and "| 76.3 |" in result.output and "no data" in result.output
    assert (tmp_path / "res" / "random__segment-pascal__pascal.json").is_file()  # `eval summary` sees it too
    assert (tmp_path / "res" / "paper_scene.csv").is_file()
