"""Small evaluation inputs shared by the eval tests: a trainer-format run dir, a constant probe, flat images."""

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
