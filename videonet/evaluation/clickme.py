"""ClickMe human alignment, scored as serre-lab/harmonization's ``evaluate_clickme`` scores it.

The official evaluation (``harmonization/common/clickme_dataset.py``, ``common/blur.py``,
``evaluation/clickme.py`` and ``evaluation/metrics.py``, Fel et al. 2022), step by step:

* the 256x256 image is resized to 224x224 (``tf.image.resize``, bilinear, no antialiasing) and
  given to the model;
* the human map is resized to 64x64 the same way, blurred by a 10x10 Gaussian of sigma 10 (the
  kernel of ``gaussian_kernel``, applied by ``tf.nn.conv2d`` with ``'SAME'`` zero padding), then
  resized to 224x224;
* the model's map is compared with it by Spearman's rank correlation (``scipy.stats.spearmanr``:
  NaN when either map is constant), and by Dice and IoU of the top 10 % of each map;
* ``alignment_score`` is the mean Spearman correlation divided by the human inter-rater ceiling
  ``HUMAN_SPEARMAN_CEILING = 0.65753``.

``tf.image.resize``'s bilinear mode samples at half-pixel centres without antialiasing, which is
torch's ``interpolate(mode="bilinear", align_corners=False)``; TF's ``'SAME'`` padding of an even
kernel puts the extra row and column after the map (4 before, 5 after). Two differences, both
written in the README's fidelity table: the official score is ``np.mean`` over every image, so one
constant map (NaN) makes the whole score NaN; here the NaN images are left out of the mean and
counted (``constant_maps``). The official loader batches by 64 and drops the last partial batch;
here every image of the folder is scored.

A ClickMe folder is either the official release's validation shards as downloaded
(``val-<i>.tfrecords``, or ``clickme_val_<i>`` as ``tf.keras.utils.get_file`` saves them; each record
a 256x256 JPEG ``image``, a JPEG ``heatmap`` and an ImageNet ``label``), read without TensorFlow
(:mod:`videonet.evaluation.tfrecord`; the JPEGs are decoded by Pillow, not by TF's decoder), or
files: ``images/<name>.<jpg|png>`` and ``maps/<name>.<png|npy>`` (same stem), with ``labels.csv``
(``name,label``; a wnid or an ImageNet-1k class index) for the ground-truth class that gradient
saliency explains.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.features import normalize
from videonet.evaluation.tfrecord import parse_example, read_examples, read_record

HUMAN_SPEARMAN_CEILING = 0.65753  # harmonization/evaluation/clickme.py
IMAGE_SIZE = 224  # model input and scoring resolution
BLUR_RESOLUTION = 64  # the human map is blurred at this size
BLUR_KERNEL_SIZE = 10
BLUR_SIGMA = 10.0
TOP_PERCENT = 10  # Dice and IoU compare the top 10 % of each map
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

# A normalised image (3, H, W) and its ground-truth wnid (or None) -> an importance map (H, W).
ExplainFn = Callable[[torch.Tensor, "str | None"], torch.Tensor]


def gaussian_kernel(size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """The official (size, size) kernel, normalised to sum 1: x runs -5..4 left to right, y 4..-5 top to bottom."""
    x = torch.arange(-(size - 1) // 2, (size - 1) // 2 + 1, dtype=torch.float64)
    y = torch.arange((size - 1) // 2, -(size - 1) // 2 - 1, -1, dtype=torch.float64)
    ys, xs = torch.meshgrid(y, x, indexing="ij")
    kernel = torch.exp(-(xs**2 + ys**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


def resize(array: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) -> (..., size, size) as ``tf.image.resize(method="bilinear")`` (half-pixel, no antialias)."""
    lead = array.shape[:-2]
    flat = array.reshape(-1, 1, *array.shape[-2:]).float()
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(*lead, size, size)


def gaussian_blur(heatmap: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W) cross-correlated with the kernel under TF's ``'SAME'`` zero padding (``tf.nn.conv2d``)."""
    kernel = gaussian_kernel() if kernel is None else kernel
    kh, kw = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = F.pad(heatmap[None, None].float(), (left, kw - 1 - left, top, kh - 1 - top))
    return F.conv2d(padded, kernel[None, None])[0, 0]


def preprocess_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """A raw ClickMe map (H, W) as the official loader gives it: to 64 px, blurred, to 224 px."""
    small = resize(torch.as_tensor(np.asarray(heatmap, dtype=np.float32)), BLUR_RESOLUTION)
    return resize(gaussian_blur(small), IMAGE_SIZE).numpy()


def preprocess_image(image: Image.Image) -> torch.Tensor:
    """The model's input: RGB resized to 224x224 as the official loader does, then ImageNet-normalised."""
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
    return normalize()(resize(rgb, IMAGE_SIZE) / 255.0)


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
    """Spearman rank correlation of two equally sized maps; NaN when either is constant (as ``spearmanr``)."""
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def top_overlap(a: np.ndarray, b: np.ndarray, percent: float = TOP_PERCENT) -> tuple[float, float]:
    """(Dice, IoU) of the pixels strictly above each map's (100 - percent)th percentile, as the official metrics."""
    ma, mb = a > np.percentile(a, 100 - percent), b > np.percentile(b, 100 - percent)
    eps = 1e-9  # harmonization's EPSILON: two empty masks score 0
    dice = 2.0 * np.sum(ma & mb) / (np.sum(ma) + np.sum(mb) + eps)
    iou = np.sum(ma & mb) / (np.sum(ma | mb) + eps)
    return float(dice), float(iou)


def read_human_map(source: Path | Image.Image) -> np.ndarray:
    """A human importance map as float32 (``.npy`` arrays, or images read as greyscale)."""
    if isinstance(source, Path) and source.suffix == ".npy":
        array = np.asarray(np.load(source), dtype=np.float32)
    else:
        array = np.asarray((source if isinstance(source, Image.Image) else Image.open(source)).convert("L"),
                           dtype=np.float32)
    return array.mean(axis=-1) if array.ndim == 3 else array  # official: mean over a trailing channel axis


@dataclass(frozen=True)
class ClickMeSample:
    """One ClickMe image with its human map and (when known) its ground-truth wnid.

    From files: ``image`` and ``heatmap`` are their paths. From the official shards: ``image`` is the
    shard and ``offset`` the record's position in it (read again when scored, so the whole set is
    never held in memory).
    """

    name: str
    image: Path
    heatmap: Path | None = None
    wnid: str | None = None
    offset: int | None = None

    def load(self) -> tuple[Image.Image, np.ndarray]:
        """The image and the raw human map."""
        if self.offset is None:
            return Image.open(self.image), read_human_map(self.heatmap)
        record = parse_example(read_record(self.image, self.offset))
        return (Image.open(io.BytesIO(record["image"][0])),
                read_human_map(Image.open(io.BytesIO(record["heatmap"][0]))))


def _label_to_wnid(label: str, where: str) -> str:
    """A labels.csv entry (wnid, or ImageNet-1k index as in the official records) as a wnid."""
    label = label.strip()
    if not label.isdigit():
        return label
    from videonet.curation.vocabulary.classes import imagenet1k

    table = imagenet1k()
    if int(label) >= len(table):
        raise UserError(f"{where}: label {label} is not an ImageNet-1k class index (0..999)")
    return table[int(label)].wnid


def _shard_index(path: Path) -> int:
    found = re.findall(r"\d+", path.name)
    return int(found[-1]) if found else -1


def read_shards(shards: list[Path]) -> list[ClickMeSample]:
    """One sample per record of the official shards (in shard order), labelled by the record's ImageNet index."""
    samples = []
    for shard in shards:
        for i, (offset, record) in enumerate(read_examples(shard)):
            if not {"image", "heatmap", "label"} <= set(record):
                raise UserError(f"{shard}: record {i} lacks image, heatmap or label (not a ClickMe shard)")
            wnid = _label_to_wnid(str(record["label"][0]), str(shard))
            samples.append(ClickMeSample(f"{shard.name}:{i}", shard, wnid=wnid, offset=offset))
    if not samples:
        raise UserError(f"{', '.join(map(str, shards))}: no records")
    return samples


def read_clickme(root: Path) -> list[ClickMeSample]:
    """The official shards in ``root``, or its image/map pairs (sorted by name) with labels.csv's classes."""
    shards = sorted((p for p in root.glob("*") if p.is_file() and (p.suffix == ".tfrecords"
                                                                 or p.name.startswith("clickme_val_"))),
                    key=_shard_index) if root.is_dir() else []
    if shards:
        return read_shards(shards)
    images = {p.stem: p for p in sorted((root / "images").glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES} \
        if (root / "images").is_dir() else {}
    maps = {p.stem: p for p in sorted((root / "maps").glob("*"))} if (root / "maps").is_dir() else {}
    names = sorted(set(images) & set(maps))
    if not names:
        raise UserError(f"{root}: need the official val-<i>.tfrecords shards, or images/<name>.jpg and "
                        "maps/<name>.png|npy with matching names")
    labels: dict[str, str] = {}
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        with labels_csv.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"name", "label"} <= set(rows[0]):
            raise UserError(f"{labels_csv}: expected the columns name,label")
        labels = {r["name"]: _label_to_wnid(r["label"], str(labels_csv)) for r in rows}
    return [ClickMeSample(n, images[n], maps[n], labels.get(n)) for n in names]


@dataclass
class ClickMeScores:
    """Per-image scores (the lists ``evaluate_clickme`` returns) and their summary."""

    spearman: list[float] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Means over images; Spearman over the defined ones, ``alignment_score`` = that over the ceiling."""
        rho = np.asarray(self.spearman, dtype=np.float64)
        defined = rho[~np.isnan(rho)]
        mean = float(defined.mean()) if defined.size else float("nan")
        return {"spearman": mean, "alignment_score": mean / HUMAN_SPEARMAN_CEILING,
                "dice": float(np.mean(self.dice)), "iou": float(np.mean(self.iou)),
                "images": float(len(rho)), "constant_maps": float(len(rho) - defined.size)}


def evaluate_clickme(explain: ExplainFn, samples: list[ClickMeSample]) -> ClickMeScores:
    """Score the model's map of every sample against its preprocessed human map."""
    scores = ClickMeScores()
    for sample in tqdm(samples, desc="clickme", unit="img"):
        image, heatmap = sample.load()
        model_map = explain(preprocess_image(image), sample.wnid).detach().float().numpy()
        human = preprocess_heatmap(heatmap)
        scores.spearman.append(spearman(model_map, human))
        dice, iou = top_overlap(model_map, human)
        scores.dice.append(dice)
        scores.iou.append(iou)
    return scores
