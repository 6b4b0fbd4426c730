"""Draw VITO's learned attention masks (or any ResNet's gradient saliency) over images.

``attention.pt`` is the trainer's export (:meth:`videonet.vito.model.MultiScalePooling.export`):
one softmax-over-space mask per scale (layer3 and layer4). The displayed mask is the mean of the
scales after each is upsampled to the image and multiplied by its number of positions, so that a
uniform mask is 1 at every scale and the finer scale is not drowned out by its smaller weights.

Models without attention pooling (supervised or MoCLR ResNets, ``random``) are drawn and scored by
gradient saliency instead: the absolute gradient of a score with respect to the input pixels, max
over colour channels (xplique's ``Saliency``, the explainer the harmonization code uses). The score
is the logit of the given class under the ``eval linear`` probe (the ground truth when scoring
ClickMe, as xplique is given the labels), else the probe's top logit, else the norm of the pooled
``layer4`` features (label-free, so any checkpoint can be drawn). Scoring against ClickMe's human
maps is :mod:`videonet.evaluation.clickme`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.clickme import IMAGE_SUFFIXES
from videonet.evaluation.features import normalize
from videonet.evaluation.settings import AttentionGrid
from videonet.torch_utils import forward_stages, load_torch

# A normalised image (3, H, W) -> an importance map (H, W) of the same size.
MapFn = Callable[[torch.Tensor], torch.Tensor]


def load_attention(path: Path):
    """The trainer's pooling modules from ``attention.pt``; a one-line UserError when they are unusable."""
    from videonet.vito.model import MultiScalePooling

    if not path.is_file():
        raise UserError(f"no attention.pt at {path}: attention maps need a VITO run trained with attention pooling")
    try:
        pool = MultiScalePooling.from_export(load_torch(str(path), "attention export"))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from exc
    if pool.pooling != "attn":
        raise UserError(f"{path} holds average pooling (trained with --pooling avg): there is no attention to show")
    return pool.eval()


def view_transform(size: int) -> transforms.Compose:
    """Short side to ``size`` then centre crop: applied identically to images and human maps."""
    return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])


@torch.no_grad()
def attention_map(model: torch.nn.Module, pool, image: torch.Tensor) -> torch.Tensor:
    """(H, W) mean of the per-scale masks for a normalised image (3, H, W), each rescaled so uniform = 1."""
    maps = forward_stages(model, image[None], pool.layers)
    scaled = []
    for layer, module in zip(pool.layers, pool.pools):
        fmap = maps[layer]
        h, w = fmap.shape[-2:]
        weights = module.weights(fmap).view(1, 1, h, w) * (h * w)
        scaled.append(F.interpolate(weights, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(scaled).mean(dim=0)


def gradient_saliency(model: torch.nn.Module, image: torch.Tensor, head=None, target: str | None = None) -> torch.Tensor:
    """(H, W) max over channels of |d score / d pixel|.

    The score is ``head``'s logit of class ``target`` (a wnid among its classes), or its top logit
    without a target, or the pooled feature norm without a head. ``head`` is a
    :class:`~videonet.evaluation.linear.LinearHead` (or None).
    """
    if target is not None and (head is None or target not in head.classes):
        raise UserError(f"class {target} needs a --head trained on it" if head is None
                        else f"the linear head has no class {target} (train it on ImageNet wnid folders)")
    x = image[None].clone().requires_grad_(True)
    pooled = forward_stages(model.eval(), x, ["layer4"])["layer4"].mean(dim=(2, 3))
    if head is None:
        score = pooled.norm()
    else:
        logits = head.linear((pooled - head.mean) / head.std)[0]
        score = logits[head.classes.index(target)] if target is not None else logits.max()
    (grad,) = torch.autograd.grad(score, x)
    return grad[0].abs().amax(dim=0)


def list_images(paths: list[Path]) -> list[Path]:
    """Image files given directly or found (non-recursively, sorted) in given directories."""
    found = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p} does not exist")
    if not found:
        raise UserError("no images found in " + ", ".join(map(str, paths)))
    return found


def draw_grid(map_fn: MapFn, images: list[Path], out: Path, size: int = AttentionGrid.size,
              columns: int = AttentionGrid.columns) -> Path:
    """Write a PNG grid of the images with their maps (attention or saliency) overlaid (jet, half transparent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = view_transform(size)
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path in tqdm(list(zip(axes.flat, images)), desc="attention", unit="img"):
        rgb = view(Image.open(path).convert("RGB"))
        mask = map_fn(normalize()(transforms.functional.to_tensor(rgb))).detach().numpy()
        ax.imshow(rgb)
        ax.imshow(mask, cmap="jet", alpha=0.5)
        ax.set_title(path.stem, fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
