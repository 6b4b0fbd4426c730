"""Segmentation transfer: readers of the official layouts, mIoU against a hand-computed confusion matrix, a CPU fine-tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaldata import H, W, scene, write_pascal
from videonet.errors import UserError
from videonet.evaluation import segment
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.finetune import Finetune, Ranks

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

CPU = Ranks(0, 1, torch.device("cpu"))
def write_ade(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """ADEChallengeData2016/images|annotations/training|validation with 0 = other."""
    ade = root / "ADEChallengeData2016"
    for split, n, offset in (("training", n_train, 0), ("validation", n_val, n_train)):
        (ade / "images" / split).mkdir(parents=True)
        (ade / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            rgb, label = scene(offset + i)
            label[label == 255] = 0
            name = f"ADE_{split[:5]}_{offset + i:08d}"
            Image.fromarray(rgb).save(ade / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(label).save(ade / "annotations" / split / f"{name}.png")
    return ade


def test_miou_from_a_hand_computed_confusion_matrix() -> None:
    label = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 1, 0]])
    # rows = truth, columns = prediction, the 255 pixel left out
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    confusion = segment.confusion_matrix(pred, label, 3)
    assert torch.equal(confusion, expected)
    # IoU: class 0 = 1 / (2 + 1 - 1), class 1 = 2 / (2 + 4 - 2), class 2 = 0 / 1
    assert segment.scores(confusion) == pytest.approx({"mIoU": (0.5 + 0.5 + 0.0) / 3, "pixel_acc": 3 / 5})
    # A class in neither truth nor prediction does not count (mmseg's nanmean).
    assert segment.scores(segment.confusion_matrix(pred, label, 5))["mIoU"] == pytest.approx(1 / 3)


def test_sliding_windows_reassemble_a_per_pixel_model_exactly() -> None:
    class PerPixel(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": x * 2}

    image = torch.randn(3, 23, 50)  # shorter than the window on one side, several windows on the other
    torch.testing.assert_close(segment.slide_logits(PerPixel(), image, 3, crop=16), image * 2)


def test_readers_find_both_layouts_and_name_what_is_missing(tmp_path: Path) -> None:
    voc = write_pascal(tmp_path / "p")
    assert len(segment.list_pairs(voc, "pascal", "train")) == 8
    assert len(segment.list_pairs(voc / "VOC2012", "pascal", "val")) == 3
    ade = write_ade(tmp_path / "a")
    pairs = segment.list_pairs(ade.parent, "ade20k", "val")
    assert len(pairs) == 2
    # ADE20K: 0 (other) is ignored, classes shift down by one.
    raw = np.array(Image.open(pairs[0][1]))
    reduced = segment.read_label(pairs[0][1], reduce_zero_label=True)
    assert set(np.unique(reduced)) <= {255, 0, 1, 2} and np.array_equal(reduced == 255, raw == 0)
    assert np.array_equal(reduced[raw > 0], raw[raw > 0] - 1)

    (voc / "VOC2012" / "SegmentationClassAug" / "2007_000009.png").unlink()
    with pytest.raises(UserError, match="2007_000009.png not found"):
        segment.list_pairs(voc, "pascal", "val")
    with pytest.raises(UserError, match="train_aug.txt not found"):
        segment.list_pairs(tmp_path / "a", "pascal", "train")


def test_training_items_are_crops_with_ignore_padding(tmp_path: Path) -> None:
    pairs = segment.list_pairs(write_pascal(tmp_path), "pascal", "train")
    train = segment.SegmentationSet(pairs, segment.SEG_DATASETS["pascal"], crop=48, train=True)
    torch.manual_seed(0)
    for i in range(4):
        image, label = train[i]
        assert image.shape == (3, 48, 48) and label.shape == (48, 48) and label.dtype == torch.int64
        assert set(label.unique().tolist()) <= {0, 1, 2, 3, 255}
    val = segment.SegmentationSet(pairs, segment.SEG_DATASETS["pascal"], crop=48, train=False)
    image, label = val[0]
    assert image.shape == (3, 48, 67) and label.shape == (H, W)  # short side to the crop; label untouched


@pytest.mark.slow
def test_cpu_finetune_lowers_the_loss_and_scores_val(tmp_path: Path) -> None:
    root = write_pascal(tmp_path)
    backbone = load_backbone("random", arch="resnet18", seed=0)
    config = Finetune(epochs=20, batch_size=4, lr=0.01, weight_decay=0.005, max_steps=16, workers=0)
    metrics, losses, sizes = segment.evaluate(root, "pascal", backbone.model, "resnet18", config, crop=32, where=CPU)
    assert sizes == {"train": 8, "val": 3} and len(losses) == 16
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert 0.0 <= metrics["mIoU"] <= 1.0 and 0.0 <= metrics["pixel_acc"] <= 1.0


@pytest.mark.slow
def test_segment_command_on_ade20k_writes_a_result(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from videonet.cli import app

    ade = write_ade(tmp_path / "data")
    args = ["eval", "segment", "random", str(ade), "--dataset", "ade20k", "--arch", "resnet18", "--steps", "3",
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--device", "cpu",
            "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "res" / "random__segment-ade20k__ADEChallengeData2016.json").read_text())
    assert set(saved["metrics"]) == {"mIoU", "pixel_acc"} and saved["config"]["max_steps"] == 3
