"""Draw VITO's learned attention masks (or any ResNet's gradient saliency) over images, and score them against ClickMe.

``attention.pt`` is the trainer's export (:meth:`videonet.vito.model.MultiScalePooling.export`):
one softmax-over-space mask per scale (layer3 and layer4). The displayed mask is the mean of the
scales after each is upsampled to the image and multiplied by its number of positions, so that a
uniform mask is 1 at every scale and the finer scale is not drowned out by its smaller weights.

Models without attention pooling (supervised or MoCLR ResNets, ``random``) are drawn and scored by
gradient saliency instead: the absolute gradient of a score with respect to the input pixels, max
over colour channels (xplique's ``Saliency``, the explainer the harmonization code uses). The score
is the top logit of the ``eval linear`` probe when one is given, else the norm of the pooled
``layer4`` features (label-free, so any checkpoint can be scored).

Human alignment follows the ClickMe protocol of Fel et al. (2022) as used by VITO: the Spearman
rank correlation between the model's map and the human importance map of the same image,
averaged over images (``spearman``), and that mean divided by the human inter-rater ceiling
(``spearman_ceiled``), as serre-lab/harmonization's ``evaluate_clickme`` computes its
``alignment_score`` (``HUMAN_SPEARMAN_CEILING = 0.65753`` in ``harmonization/evaluation/klickme.py``).
Layout of a saliency dir: ``images/<name>.<jpg|png>`` and ``maps/<name>.<png|npy>`` (same stem).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.features import normalize
from videonet.torch_utils import forward_stages, load_torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
HUMAN_SPEARMAN_CEILING = 0.65753  # ClickMe inter-rater Spearman (serre-lab/harmonization, klickme.py)
METHODS = ("attention", "gradient")

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


def gradient_saliency(model: torch.nn.Module, image: torch.Tensor, head=None) -> torch.Tensor:
    """(H, W) max over channels of |d score / d pixel|; score = the probe's top logit, or the pooled feature norm.

    ``head`` is a :class:`~videonet.evaluation.linear.LinearHead` (or None).
    """
    x = image[None].clone().requires_grad_(True)
    pooled = forward_stages(model.eval(), x, ["layer4"])["layer4"].mean(dim=(2, 3))
    score = head.linear((pooled - head.mean) / head.std).max() if head is not None else pooled.norm()
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


def draw_grid(map_fn: MapFn, images: list[Path], out: Path, size: int = 224, columns: int = 4) -> Path:
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


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1 with ties given their average rank (scipy.stats.rankdata's default)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    new_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group_of = np.empty(len(x), dtype=np.int64)
    group_of[order] = np.cumsum(new_group) - 1
    bounds = np.r_[np.nonzero(new_group)[0], len(x)]  # group g spans sorted positions bounds[g]..bounds[g+1]-1
    return 0.5 * (bounds[group_of] + bounds[group_of + 1] + 1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally sized maps (0 when either is constant)."""
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def read_human_map(path: Path) -> Image.Image:
    """A human importance map as a float PIL image (``.npy`` arrays or greyscale images)."""
    array = np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path).convert("F"))
    return Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")


def human_alignment(map_fn: MapFn, saliency_dir: Path, size: int = 224) -> dict[str, float]:
    """Mean Spearman correlation between the model's maps and human maps, raw and divided by the human ceiling."""
    images = list_images([saliency_dir / "images"]) if (saliency_dir / "images").is_dir() else []
    maps = {p.stem: p for p in (saliency_dir / "maps").glob("*")} if (saliency_dir / "maps").is_dir() else {}
    pairs = [(img, maps[img.stem]) for img in images if img.stem in maps]
    if not pairs:
        raise UserError(f"{saliency_dir}: need images/<name>.jpg and maps/<name>.png|npy with matching names")
    view = view_transform(size)
    scores = []
    for image_path, map_path in tqdm(pairs, desc="clickme", unit="img"):
        image = normalize()(transforms.functional.to_tensor(view(Image.open(image_path).convert("RGB"))))
        human = np.asarray(view(read_human_map(map_path)))
        scores.append(spearman(map_fn(image).detach().numpy(), human))
    mean = float(np.mean(scores))
    return {"spearman": mean, "spearman_ceiled": mean / HUMAN_SPEARMAN_CEILING, "images": float(len(scores))}
