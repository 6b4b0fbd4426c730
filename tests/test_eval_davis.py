"""Label propagation end to end on a synthetic sequence written in the real DAVIS-2017 layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from videonet.cli import app
from videonet.evaluation import davis
from videonet.evaluation.davis import PropagationConfig, default_palette

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

H, W, FRAMES = 96, 128, 6
BACKGROUND = (90, 140, 90)
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}  # object id -> RGB


def draw_frame(t: int) -> tuple[np.ndarray, np.ndarray]:
    """A red square moving right and a blue disk moving down, and their label map."""
    yy, xx = np.mgrid[0:H, 0:W]
    labels = np.zeros((H, W), np.uint8)
    labels[(yy >= 20) & (yy < 52) & (xx >= 10 + 5 * t) & (xx < 42 + 5 * t)] = 1
    labels[(yy - (30 + 4 * t)) ** 2 + (xx - 95) ** 2 < 15**2] = 2
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = BACKGROUND
    for obj, colour in COLOURS.items():
        rgb[labels == obj] = colour
    return rgb, labels


def write_davis(root: Path, name: str = "shapes") -> Path:
    """JPEGImages/480p/<seq>/00000.jpg, Annotations/480p/<seq>/00000.png (palette), ImageSets/2017/val.txt."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(name + "\n")
    for t in range(FRAMES):
        rgb, labels = draw_frame(t)
        for sub, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
            (root / sub / "480p" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(default_palette())
        mask.save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
    return root


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_davis(tmp_path_factory.mktemp("DAVIS"))


def colour_features(image: torch.Tensor) -> torch.Tensor:
    """Pixel identity: the image averaged over 8x8 cells, plus a constant so no vector is zero."""
    pooled = F.avg_pool2d(image[None], 8)[0]
    return torch.cat([pooled, torch.ones_like(pooled[:1])])


def random_features(image: torch.Tensor) -> torch.Tensor:
    """Features unrelated to the image (fresh noise per frame): propagation becomes a local blur of labels."""
    return torch.randn(16, image.shape[1] // 8, image.shape[2] // 8)


def test_colour_features_propagate_far_better_than_random(davis_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    colour, _ = davis.evaluate(davis_root, colour_features, tmp_path / "colour")
    rand, scores = davis.evaluate(davis_root, random_features, None)
    assert [(s.sequence, s.object_id, len(s.j)) for s in scores] == [("shapes", 1, FRAMES - 2), ("shapes", 2, FRAMES - 2)]
    # Nearest downsampling of the first mask (VFS) snaps the shapes to 8x8 cells: J, F about 0.84.
    assert colour["J_mean"] > 0.8 and colour["F_mean"] > 0.8
    assert colour["J_recall"] == 1.0 and set(colour) >= {"J_decay", "F_recall", "F_decay"}
    assert colour["J_mean"] > rand["J_mean"] + 0.2
    assert colour["JF_mean"] > rand["JF_mean"] + 0.2
    # Masks for every frame but the first, as palette PNGs with the annotation's palette.
    written = sorted((tmp_path / "colour" / "shapes").glob("*.png"))
    assert [p.name for p in written] == [f"{t:05d}.png" for t in range(1, FRAMES)]
    mask = Image.open(written[-1])
    assert mask.mode == "P" and mask.getpalette()[:9] == default_palette()[:9]
    truth = draw_frame(FRAMES - 1)[1]
    assert (np.asarray(mask) == truth).mean() > 0.95


def test_propagation_respects_the_spatial_radius() -> None:
    # Two frames with identical features everywhere: labels can only come from within the radius,
    # so with a radius of 1 cell (only the same cell) the first mask is copied exactly.
    first = np.zeros((32, 32), np.uint8)
    first[:, :8] = 3  # a quarter of the frame; object ids need not be consecutive
    feats = [torch.ones(4, 4, 4), torch.ones(4, 4, 4)]
    (pred,) = davis.propagate(feats, first, PropagationConfig(radius=1, topk=1))
    np.testing.assert_array_equal(pred, first)
    # With an unlimited radius every cell looks alike: the majority label (background) wins everywhere.
    (pred,) = davis.propagate(feats, first, PropagationConfig(radius=100, topk=16))
    assert (pred == 0).all()


def test_first_mask_is_downsampled_by_nearest_neighbour() -> None:
    # A 1-pixel-wide object: area downsampling would give it 1/8 of a cell, nearest keeps or drops it
    # whole. PIL's nearest samples pixel 8i + 4 of each 8-pixel cell: column 4 is kept, column 3 is not.
    for column, kept in ((4, True), (3, False)):
        first = np.zeros((16, 16), np.uint8)
        first[:, column] = 1
        feats = [torch.ones(4, 2, 2), torch.ones(4, 2, 2)]
        (pred,) = davis.propagate(feats, first, PropagationConfig(radius=1, topk=1))
        assert (pred[:, :8] == 1).all() == kept and (pred[:, 8:] == 0).all()


def test_cli_davis_with_a_resnet_writes_masks_and_result(davis_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "davis", "random", str(davis_root), "--arch", "resnet18", "--results-dir", str(tmp_path), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("random__davis__*.json")
    record = json.loads(path.read_text())
    assert record["arch"] == "resnet18" and record["config"]["radius"] == 18.0
    assert record["config"]["temperature"] == 0.07 and record["config"]["void"] == "background"
    assert 0.0 <= record["metrics"]["J_mean"] <= 1.0 and 0.0 <= record["metrics"]["F_mean"] <= 1.0
    assert len(list((tmp_path / "davis-masks" / "random" / "shapes").glob("*.png"))) == FRAMES - 1


def test_cli_davis_missing_layout_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "davis", "random", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception) and "ImageSets/2017/val.txt" in str(result.exception)
