"""Attention-map grids from a trainer-format run dir, and gradient saliency for any ResNet (ClickMe: test_eval_clickme)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models
from torchvision.transforms.functional import to_tensor
from typer.testing import CliRunner

from evaldata import write_run
from videonet.cli import app
from videonet.evaluation import attention_maps
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.features import normalize

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def write_photos(folder: Path) -> list[Path]:
    from skimage import data

    folder.mkdir(parents=True)
    paths = []
    for name in ("chelsea", "coffee", "astronaut"):
        paths.append(folder / f"{name}.jpg")
        Image.fromarray(getattr(data, name)()).save(paths[-1])
    return paths


def test_attention_map_is_mean_of_rescaled_scales(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    pool = attention_maps.load_attention(run / "attention.pt")
    model = load_backbone(str(run)).model
    mask = attention_maps.attention_map(model, pool, torch.randn(3, 64, 64))
    assert mask.shape == (64, 64)
    # Each scale is a softmax over space times its number of cells, so each averages to 1, and so
    # does their mean (up to the bilinear upsampling's border effects).
    assert mask.mean().item() == pytest.approx(1.0, abs=0.05)
    assert mask.min() > 0


def test_cli_draws_the_attention_grid(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    write_photos(tmp_path / "photos")
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["eval", "attention", str(run), str(tmp_path / "photos"), "--out", str(out),
                                      "--size", "96"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    grid = Image.open(out)
    assert grid.size == (900, 300)  # 3 panels of 3 inches at 100 dpi
    assert np.asarray(grid.convert("L")).std() > 10  # not a blank canvas


def test_gradient_saliency_for_any_resnet(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos")
    model = load_backbone("random", arch="resnet18").model
    # The saliency of a pooled-norm score is |d score / d pixel| max over colour: compare with autograd by hand.
    image = normalize()(to_tensor(attention_maps.view_transform(64)(Image.open(photos[0]).convert("RGB"))))
    x = image[None].clone().requires_grad_(True)
    model.eval()(x).norm().backward()  # resnet's fc is the identity: the output is the pooled layer4 feature
    torch.testing.assert_close(attention_maps.gradient_saliency(model, image), x.grad[0].abs().amax(dim=0))
    result = CliRunner().invoke(app, ["eval", "attention", "random", str(tmp_path / "photos"), "--method", "gradient",
                                      "--arch", "resnet18", "--size", "64", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert np.asarray(Image.open(tmp_path / "grid.png").convert("L")).std() > 10


def test_missing_or_average_attention_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    torch.save(models.resnet18().state_dict(), tmp_path / "bare" / "backbone.pt")
    result = CliRunner().invoke(app, ["eval", "attention", str(tmp_path / "bare"), str(tmp_path)])
    assert result.exit_code != 0 and str(result.exception).startswith("no attention.pt at")
    result = CliRunner().invoke(app, ["eval", "attention", "random", str(tmp_path)])
    assert result.exit_code != 0 and str(result.exception).startswith("no attention.pt for random")
    assert "--method gradient" in str(result.exception)
    avg = write_run(tmp_path / "avg", pooling="avg")
    result = CliRunner().invoke(app, ["eval", "attention", str(avg), str(tmp_path)])
    assert result.exit_code != 0 and "average pooling" in str(result.exception)
