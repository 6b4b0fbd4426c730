"""kNN and linear probes end to end on real photo crops (scikit-image's sample photos) in ImageFolder layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models
from typer.testing import CliRunner

from videonet.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "grass")
TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 5


def write_photo_crops(root: Path, seed: int = 0) -> Path:
    """One class per photo; train crops from the left 60% of the photo, val crops from the disjoint right 40%.

    The val images are therefore new pixels of the same scene, so the probes must generalise.
    """
    from skimage import data

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = getattr(data, name)()
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]  # grass is greyscale
        h, w = photo.shape[:2]
        size = min(h, w) // 3
        split_x = int(0.6 * w)
        for split, count, (x0, x1) in (("train", TRAIN_PER_CLASS, (0, split_x)), ("val", VAL_PER_CLASS, (split_x, w))):
            out = root / split / name
            out.mkdir(parents=True)
            for i in range(count):
                top = int(rng.integers(0, h - size))
                left = int(rng.integers(x0, x1 - size))
                crop = Image.fromarray(photo[top : top + size, left : left + size]).resize((80, 80))
                crop.save(out / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def photo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_crops(tmp_path_factory.mktemp("photos"))


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_knn_and_linear_compare_two_checkpoints_in_one_summary(photo_dataset: Path, tmp_path: Path) -> None:
    # Checkpoint 2 is a trainer-style run dir holding a torchvision resnet18 state dict without fc.
    torch.manual_seed(1)
    net = models.resnet18()
    run_dir = tmp_path / "run-seed1"
    run_dir.mkdir()
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, run_dir / "backbone.pt")

    results = tmp_path / "results"
    common = ["--crop-size", "64", "--workers", "0", "--device", "cpu", "--results-dir", str(results)]
    run("knn", "random", str(photo_dataset), "--arch", "resnet18", *common)
    run("knn", str(run_dir), str(photo_dataset), *common)
    run("linear", str(run_dir), str(photo_dataset), "--epochs", "30", "--lrs", "0.01,0.1", *common)

    knn_random = json.loads((results / "random__knn__photos0.json").read_text())
    assert knn_random["metrics"]["top1"] > 2 / len(PHOTOS)  # chance is 1/6
    assert knn_random["config"] == {"k": 20, "temperature": 0.07, "crop_size": 64, "train": 60, "val": 30}
    linear = json.loads((results / "run-seed1__linear__photos0.json").read_text())
    assert linear["metrics"]["top1"] > 2 / len(PHOTOS)
    assert linear["config"]["best_lr"] in (0.01, 0.1)

    output = run("summary", str(results))
    assert "| random | resnet18 |" in output
    with open(results / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["checkpoint", "arch", "knn/photos0:top1", "linear/photos0:top1"]
    assert [r[0] for r in rows[1:]] == ["random", "run-seed1"]
    assert rows[1][3] == ""  # random was not linearly probed: an empty cell, not a zero
    assert float(rows[2][2]) == pytest.approx(json.loads((results / "run-seed1__knn__photos0.json").read_text())["metrics"]["top1"], abs=1e-4)


def test_missing_split_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    result = CliRunner().invoke(app, ["eval", "knn", "random", str(tmp_path)])
    assert result.exit_code != 0 and "has no val/ subfolder" in str(result.exception)
