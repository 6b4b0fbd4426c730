"""Semi-supervised video object segmentation on DAVIS-2017 by label propagation (the CRW / VFS protocol).

Layout (as distributed, DAVIS-2017-trainval-480p.zip)::

    DAVIS/JPEGImages/480p/<seq>/00000.jpg ...
    DAVIS/Annotations/480p/<seq>/00000.png ...   palette PNGs, 0 = background, k = object k, 255 = void
    DAVIS/ImageSets/2017/val.txt                 one sequence name per line

Every frame is embedded independently by the frozen backbone; the first frame's mask is then
carried forward by attention: each position of frame t takes the softmax(affinity / T)-weighted
labels of its top-k most similar positions among the first frame and the previous n frames,
restricted to a spatial radius (all sizes in feature-map cells). Features are "res4" (layer3) at
stride 8: the stride of layer3's first block is set to 1 (no dilation), as CRW and VFS do, rather
than upsampling the stride-16 map, so every affinity uses features that saw the pixels they label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.backbone import remove_stride
from videonet.evaluation.davis_metrics import VOID, ObjectScores, score_sequence, summarize
from videonet.evaluation.settings import DavisRun, PropagationConfig
from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD, forward_stages

# Maps a normalised image (3, H, W) to a feature map (C, h, w); h, w set the propagation grid.
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DavisSequence:
    """Frame paths and (where present) annotation paths of one sequence, in frame order."""

    name: str
    frames: list[Path]
    annotations: list[Path]


def list_sequences(root: Path, split: str = DavisRun.split, resolution: str = "480p") -> list[DavisSequence]:
    """Read ``ImageSets/2017/<split>.txt`` and the frame and annotation lists of each sequence."""
    split_file = root / "ImageSets" / "2017" / f"{split}.txt"
    if not split_file.is_file():
        raise UserError(f"{split_file} not found (expected the DAVIS-2017 layout, see `videonet eval davis --help`)")
    sequences = []
    for name in split_file.read_text().split():
        frames = sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))
        annotations = sorted((root / "Annotations" / resolution / name).glob("*.png"))
        if not frames or not annotations or annotations[0].stem != frames[0].stem:
            raise UserError(f"sequence {name}: need JPEGImages/{resolution}/{name}/*.jpg and the first frame's mask in Annotations")
        sequences.append(DavisSequence(name, frames, annotations))
    return sequences


def read_image(path: Path) -> torch.Tensor:
    """An RGB frame as a (3, H, W) float tensor with ImageNet normalisation."""
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (rgb - mean) / std


def read_mask(path: Path) -> tuple[np.ndarray, list[int] | None]:
    """A label map (H, W) uint8 and its palette (None for greyscale masks)."""
    img = Image.open(path)
    if img.mode not in ("P", "L"):
        raise UserError(f"{path}: expected a palette or greyscale label PNG, got mode {img.mode}")
    return np.asarray(img, dtype=np.uint8), img.getpalette() if img.mode == "P" else None


def default_palette() -> list[int]:
    """The PASCAL VOC / DAVIS colour map (object k gets the bit-interleaved colour of k)."""
    palette = []
    for k in range(256):
        r = g = b = 0
        c = k
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_mask(labels: np.ndarray, palette: list[int] | None, path: Path) -> None:
    """Save a label map as a palette PNG, the format the DAVIS toolkit and server read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(palette or default_palette())
    img.save(path)


def _radius_mask(h: int, w: int, radius: float, device: torch.device) -> torch.Tensor:
    """(hw, hw) bool: True where two feature cells are closer than ``radius`` (CRW's strict '<')."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()
    return torch.cdist(pos, pos) < radius


def propagate(
    features: Iterable[torch.Tensor],
    first_mask: np.ndarray,
    config: PropagationConfig = PropagationConfig(),
) -> Iterator[np.ndarray]:
    """Yield the label map (H, W) of every frame after the first, given per-frame feature maps.

    ``features`` yields (C, h, w) maps, the first for the annotated frame (lazily, so a long video
    is never held in memory). Labels travel as soft per-object probabilities at feature resolution
    (the first mask downsampled by nearest neighbour with PIL, as VFS's ``pil_nearest_interpolate``;
    later ones the propagated soft labels) and are upsampled bilinearly to the mask size before the
    argmax. The first frame is a key once; CRW's padding by repeated first frames only duplicates
    identical affinities.
    """
    if config.radius <= 0 or config.topk < 1 or config.n_context < 1:
        raise UserError("propagation needs radius > 0, topk >= 1 and n_context >= 1")
    frames = iter(features)
    first = next(frames)
    device = first.device
    # Label value of each channel; background always has one so that an empty first mask still works.
    values = np.setdiff1d(np.union1d([0], np.unique(first_mask)), [VOID]).astype(np.uint8)
    c, h, w = first.shape
    small = np.asarray(Image.fromarray(first_mask).resize((w, h), Image.NEAREST))
    labels0 = torch.from_numpy(small[None] == values[:, None, None]).float().to(device).flatten(1).T  # (hw, K)
    keys = [F.normalize(first.flatten(1).float(), dim=0).T]  # each (hw, C)
    labels = [labels0]
    near = _radius_mask(h, w, config.radius, device)
    size = first_mask.shape
    for fmap in frames:
        query = F.normalize(fmap.flatten(1).float(), dim=0).T
        context_keys, context_labels = torch.cat(keys), torch.cat(labels)  # (M*hw, C), (M*hw, K)
        n_frames = len(keys)
        pred = torch.empty(h * w, len(values), device=device)
        for start in range(0, h * w, config.query_chunk):
            q = query[start : start + config.query_chunk]
            aff = (q @ context_keys.T).masked_fill(~near[start : start + len(q)].repeat(1, n_frames), float("-inf"))
            top, idx = aff.topk(min(config.topk, aff.shape[1]), dim=1)
            weights = torch.softmax(top / config.temperature, dim=1)  # cells beyond the radius get weight 0
            pred[start : start + len(q)] = (weights[..., None] * context_labels[idx]).sum(dim=1)
        keys.append(query)
        labels.append(pred)
        if len(keys) > config.n_context + 1:  # keep the first frame and the latest n_context frames
            del keys[1], labels[1]
        upsampled = F.interpolate(pred.T.reshape(1, -1, h, w), size=size, mode="bilinear", align_corners=False)
        yield values[upsampled[0].argmax(dim=0).cpu().numpy()].astype(np.uint8)


def backbone_feature_fn(model: torch.nn.Module, device: torch.device, layer: str = "layer3") -> FeatureFn:
    """Stride-8 res4 features of a ResNet (layer3 with its stride removed), as a FeatureFn."""
    model = remove_stride(model, layer).to(device).eval()

    @torch.no_grad()
    def embed(image: torch.Tensor) -> torch.Tensor:
        return forward_stages(model, image[None].to(device), [layer])[layer][0]

    return embed


def evaluate(
    root: Path,
    feature_fn: FeatureFn,
    out_dir: Path | None,
    split: str = DavisRun.split,
    config: PropagationConfig = PropagationConfig(),
    sequences: list[str] | None = None,
    void: str = DavisRun.void,
) -> tuple[dict[str, float], list[ObjectScores]]:
    """Propagate every sequence of the split, write masks to ``out_dir/<seq>/`` and score J and F.

    A sequence is scored only if every frame has an annotation (val), so test-dev runs still write
    the masks to submit. ``void`` is how ground-truth void pixels are scored (see
    :mod:`~videonet.evaluation.davis_metrics`). Returns the dataset statistics (mean, recall,
    decay of J and F; empty if nothing was scored) and per-object scores.
    """
    if not root.is_dir():
        raise UserError(f"DAVIS dir {root} does not exist")
    seqs = list_sequences(root, split)
    if sequences:
        seqs = [s for s in seqs if s.name in set(sequences)]
        if not seqs:
            raise UserError(f"none of {', '.join(sequences)} is in the {split} split")
    scores: list[ObjectScores] = []
    for seq in tqdm(seqs, desc="davis", unit="seq"):
        first_mask, palette = read_mask(seq.annotations[0])
        preds = [first_mask]
        feats = (feature_fn(read_image(p)) for p in seq.frames)
        for frame, pred in zip(seq.frames[1:], propagate(feats, first_mask, config)):
            preds.append(pred)
            if out_dir is not None:
                write_mask(pred, palette, out_dir / seq.name / f"{frame.stem}.png")
        if len(seq.annotations) == len(seq.frames):
            gts = [read_mask(p)[0] for p in seq.annotations]
            object_ids = [int(v) for v in np.unique(first_mask) if v not in (0, VOID)]
            scores += score_sequence(seq.name, gts, preds, object_ids, void)
    return (summarize(scores) if scores else {}), scores
