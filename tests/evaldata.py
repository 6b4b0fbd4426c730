"""Small evaluation inputs shared by the eval tests: a trainer-format run dir, a constant probe, flat images,
segmentation scenes in PASCAL's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import models

from videonet.evaluation.linear import LinearHead
from videonet.vito.model import MultiScalePooling

W1, W2, W3, W4, W5 = "n01440764", "n01443537", "n01484850", "n01491361", "n01494475"  # ImageNet indices 0-4


def write_run(run: Path, pooling: str = "attn") -> Path:
    """backbone.pt and attention.pt exactly as `videonet train` exports them (resnet18, two scales)."""
    torch.manual_seed(0)
    run.mkdir(parents=True)
    net = models.resnet18()
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, run / "backbone.pt")
    pool = MultiScalePooling([256, 512], ["layer3", "layer4"], pooling, hidden=32)
    torch.save(pool.export("resnet18"), run / "attention.pt")
    return run


def constant_head(classes: list[str], bias: list[float], path: Path | None = None) -> LinearHead:
    """A probe on 512-d (resnet18) features that ignores them: logits = bias for every image."""
    linear = nn.Linear(512, len(classes))
    nn.init.zeros_(linear.weight)
    linear.bias.data = torch.tensor(bias, dtype=torch.float32)
    head = LinearHead(linear, torch.zeros(512), torch.ones(512), classes)
    if path is not None:
        head.save(path)
    return head


def image(path: Path, colour: tuple[int, int, int] = (120, 60, 30)) -> Path:
    """A flat 40x40 image at ``path`` (its folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(path)
    return path


H, W = 40, 56
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def scene(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with one coloured rectangle whose class is its colour (1-3), a 255 border on PASCAL's convention."""
    k = i % 3
    rgb = np.full((H, W, 3), 120, np.uint8)
    label = np.zeros((H, W), np.uint8)
    y, x = 5 + (i * 3) % 12, 6 + (i * 7) % 20
    rgb[y:y + 18, x:x + 24] = COLOURS[k]
    label[y:y + 18, x:x + 24] = k + 1
    label[y - 1, x:x + 24] = 255  # the void outline PASCAL draws around objects
    return rgb, label


def write_pascal(root: Path, n_train: int = 8, n_val: int = 3) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClassAug and ImageSets/Segmentation/{train_aug,val}.txt."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(n_train + n_val)]
    for i, name in enumerate(ids):
        rgb, label = scene(i)
        Image.fromarray(rgb).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        Image.fromarray(label).save(voc / "SegmentationClassAug" / f"{name}.png")
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root / "VOCdevkit"
