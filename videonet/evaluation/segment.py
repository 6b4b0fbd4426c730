"""Semantic segmentation transfer (PASCAL VOC 2012, ADE20K): an FCN fine-tuned end to end, scored by mIoU.

The VITO paper's scene-understanding protocol (its appendix, after DetCon/MoCo): torchvision's
``FCN`` (``FCNHead`` on ``layer4``; for bottleneck ResNets ``layer4`` is dilated instead of strided,
output stride 16 as MoCo's FCN; torchvision's BasicBlock cannot dilate, so resnet18/34 run at
stride 32) on the loaded backbone, every weight trained; 512x512 crops; random horizontal flip and
rescaling by a ratio in [0.5, 2.0] of the mmseg base scale (short side 512, long side at most 2048),
plus colour jitter on ADE20K (mmseg's photometric distortion, approximated by torchvision's
``ColorJitter``: brightness x[0.875, 1.125] instead of +-32 grey levels, the four jitters always
applied in random order instead of each with probability 0.5); SGD momentum 0.9, batch 16, weight
decay 0.005, lr 0.04 with polynomial decay (power 0.9) per step; 45 epochs on PASCAL train_aug, 60
on ADE20K train. Testing resizes to the base scale and averages the logits of 512x512 windows
slid with stride 341 (mmseg's ``slide`` mode), then scores at the label's own resolution.

Layouts (as the archives unpack; DATA may also be a folder above ``VOCdevkit``, ``VOC2012`` or
``ADEChallengeData2016``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png          labels 0-20, 255 = ignore
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train_aug,val}.txt
    ADEChallengeData2016/images/{training,validation}/<name>.jpg
    ADEChallengeData2016/annotations/{training,validation}/<name>.png   0 = ignore, 1-150 = classes
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, tv_tensors
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import FCN
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.finetune import Finetune, Ranks, finetune, shard
from videonet.evaluation.settings import Workers
from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD, stage_channels

IGNORE = 255
WINDOW_STRIDE = 2 / 3  # of the crop: mmseg's 512 crop / 341 stride


@dataclass(frozen=True)
class SegDataset:
    """What differs between the two benchmarks."""

    name: str
    num_classes: int
    epochs: int  # the paper's schedule
    photometric: bool  # ADE20K adds colour distortions
    reduce_zero_label: bool  # ADE20K: 0 is "other" (ignored), classes are 1..150


SEG_DATASETS = {
    "pascal": SegDataset("pascal", 21, 45, photometric=False, reduce_zero_label=False),
    "ade20k": SegDataset("ade20k", 150, 60, photometric=True, reduce_zero_label=True),
}
def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path} not found ({what})")
    return path


def _inside(root: Path, *subdirs: str) -> Path:
    """The first of ``root/<subdir>`` that exists, else ``root``: DATA may be the dataset folder or any parent in its archive."""
    return next((root / sub for sub in subdirs if (root / sub).is_dir()), root)


def _pascal_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    voc = _inside(root, "VOCdevkit/VOC2012", "VOC2012")
    listing = _require(voc / "ImageSets" / "Segmentation" / ("train_aug.txt" if split == "train" else "val.txt"),
                       "expected a VOCdevkit/VOC2012 layout with the SegmentationClassAug list files")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    return [(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClassAug" / f"{i}.png") for i in ids]


def _ade_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    ade = _inside(root, "ADEChallengeData2016")
    sub = "training" if split == "train" else "validation"
    images = _require(ade / "images" / sub, "expected an ADEChallengeData2016 layout")
    _require(ade / "annotations" / sub, "expected an ADEChallengeData2016 layout")
    return [(p, ade / "annotations" / sub / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]


def list_pairs(root: Path, dataset: str, split: str) -> list[tuple[Path, Path]]:
    """(image, label PNG) paths of a split, checked to exist; a one-line error names the first missing file."""
    if dataset not in SEG_DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(SEG_DATASETS)}, not {dataset!r}")
    if not root.is_dir():
        raise UserError(f"{dataset} dir {root} does not exist")
    pairs = (_pascal_pairs if dataset == "pascal" else _ade_pairs)(root, split)
    if not pairs:
        raise UserError(f"{root}: the {dataset} {split} split is empty")
    for image, label in pairs:
        _require(image, f"an image of the {dataset} {split} split")
        _require(label, f"the label of {image.name}")
    return pairs


def read_label(path: Path, reduce_zero_label: bool) -> np.ndarray:
    """Class indices (H, W) uint8 with IGNORE where unlabelled; ADE20K's 0 becomes IGNORE and 1..150 -> 0..149."""
    label = np.array(Image.open(path))  # palette PNGs read as indices, grey PNGs as values: both are labels
    if label.ndim != 2:
        raise UserError(f"{path} is not a single-channel label map")
    if reduce_zero_label:
        label = np.where(label == 0, IGNORE, label.astype(np.int32) - 1).astype(np.uint8)
    return label


def base_size(height: int, width: int, short: int) -> list[int]:
    """mmseg's keep-ratio ``Resize((4 * short, short))``: short side ``short`` unless the long side passes 4x that."""
    scale = min(short / min(height, width), 4 * short / max(height, width))
    return [max(1, round(height * scale)), max(1, round(width * scale))]


class SegmentationSet(Dataset):
    """Images and label maps of one split, augmented for training or resized for sliding-window testing.

    Training items are ``(image (3, crop, crop), label (crop, crop) int64)``; test items are
    ``(image at the base scale, label at its own resolution)``.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], spec: SegDataset, crop: int, train: bool) -> None:
        self.pairs, self.spec, self.crop, self.train = pairs, spec, crop, train
        jitter = [v2.ColorJitter(brightness=32 / 255, contrast=0.5, saturation=0.5, hue=18 / 360)] if spec.photometric else []
        self.augment = v2.Compose([
            *jitter,
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            # Padding after normalising fills the image with the mean colour (0) and the label with IGNORE.
            v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE}),
            v2.RandomHorizontalFlip(),
        ])
        self.normalise = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[i]
        label = read_label(label_path, self.spec.reduce_zero_label)
        image = TF.to_dtype(TF.to_image(Image.open(image_path).convert("RGB")), torch.float32, scale=True)
        if image.shape[-2:] != label.shape:
            raise UserError(f"{image_path.name} is {tuple(image.shape[-2:])} but its label is {label.shape}")
        size = base_size(*label.shape, self.crop)
        if not self.train:
            return self.normalise(TF.resize(image, size, antialias=True)), torch.from_numpy(label).long()
        ratio = float(torch.empty(()).uniform_(0.5, 2.0))  # torch's RNG: seeded per DataLoader worker
        size = [max(1, round(s * ratio)) for s in size]
        mask = tv_tensors.Mask(torch.from_numpy(label)[None])
        image = TF.resize(image, size, antialias=True)
        mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        image, mask = self.augment(image, mask)
        return image.as_subclass(torch.Tensor), mask[0].as_subclass(torch.Tensor).long()


def build_fcn(backbone: models.ResNet, arch: str, num_classes: int) -> FCN:
    """torchvision's FCN (``FCNHead`` on ``layer4``) over a copy of ``backbone``'s weights, layer4 dilated where possible."""
    dilate = arch not in ("resnet18", "resnet34")  # torchvision's BasicBlock refuses dilation
    net = getattr(models, arch)(weights=None, replace_stride_with_dilation=[False, False, dilate])
    result = net.load_state_dict(backbone.state_dict(), strict=False)
    if result.unexpected_keys or any(not k.startswith("fc.") for k in result.missing_keys):
        raise UserError(f"backbone weights do not fit torchvision {arch}")
    body = IntermediateLayerGetter(net, {"layer4": "out"})
    return FCN(body, FCNHead(stage_channels(net, "layer4"), num_classes))


def segmentation_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Pixel-wise cross-entropy of the FCN logits (upsampled to the crop by FCN itself), IGNORE excluded."""
    images, labels = batch
    logits = model(images.to(device, non_blocking=True))["out"]
    return F.cross_entropy(logits.float(), labels.to(device, non_blocking=True), ignore_index=IGNORE)


def poly_schedule(optimizer: torch.optim.Optimizer, total: int, per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """lr x (1 - step / total) ** 0.9, stepped per iteration (mmseg's ``PolyLR``)."""
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=0.9)


@torch.no_grad()
def slide_logits(model: nn.Module, image: torch.Tensor, num_classes: int, crop: int) -> torch.Tensor:
    """Logits (C, H, W) of an image (3, H, W): the mean over overlapping crop x crop windows (mmseg ``slide``).

    An image smaller than the window is zero-padded (the mean colour) and the padding cut off again.
    """
    _, h, w = image.shape
    ph, pw = max(h, crop), max(w, crop)
    padded = F.pad(image, (0, pw - w, 0, ph - h))
    stride = max(1, round(crop * WINDOW_STRIDE))

    def starts(length: int) -> list[int]:
        return sorted({min(s, length - crop) for s in range(0, length - crop + stride, stride)})

    boxes = [(y, x) for y in starts(ph) for x in starts(pw)]
    windows = torch.stack([padded[:, y:y + crop, x:x + crop] for y, x in boxes])
    out = model(windows)["out"].float()
    logits = image.new_zeros((num_classes, ph, pw), dtype=torch.float32)
    counts = image.new_zeros((1, ph, pw), dtype=torch.float32)
    for (y, x), window in zip(boxes, out):
        logits[:, y:y + crop, x:x + crop] += window
        counts[:, y:y + crop, x:x + crop] += 1
    return (logits / counts)[:, :h, :w]


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows = ground truth, columns = prediction, over pixels whose label is not ignored."""
    valid = label != IGNORE
    index = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(confusion: torch.Tensor) -> dict[str, float]:
    """mIoU over the classes present in the ground truth or the prediction (mmseg's nanmean), and pixel accuracy."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    return {"mIoU": float(iou.mean()) if len(iou) else 0.0, "pixel_acc": float(tp.sum() / confusion.sum().clamp(min=1))}


@torch.no_grad()
def test(model: nn.Module, dataset: SegmentationSet, where: Ranks, workers: int = Workers.workers) -> dict[str, float]:
    """mIoU of ``model`` on the split: each rank scores its share, the confusion matrices are summed."""
    model = model.to(where.device).eval()
    c = dataset.spec.num_classes
    confusion = torch.zeros(c, c, dtype=torch.int64, device=where.device)
    loader = DataLoader(shard(dataset, where), batch_size=1, num_workers=workers)
    for image, label in tqdm(loader, desc=f"{dataset.spec.name} val", unit="img", disable=not where.main):
        with torch.autocast(where.device.type, dtype=torch.float16, enabled=where.device.type == "cuda"):
            logits = slide_logits(model, image[0].to(where.device), c, dataset.crop)
        logits = F.interpolate(logits[None], size=label.shape[-2:], mode="bilinear", align_corners=False)[0]
        confusion += confusion_matrix(logits.argmax(0), label[0].to(where.device), c)
    if where.world > 1:
        torch.distributed.all_reduce(confusion)
    return scores(confusion.cpu())


def evaluate(root: Path, dataset: str, backbone: models.ResNet, arch: str, config: Finetune, crop: int,
             where: Ranks) -> tuple[dict[str, float], list[float], dict[str, int]]:
    """Fine-tune an FCN on the train split and score val; returns (metrics, per-step losses, split sizes)."""
    spec = SEG_DATASETS.get(dataset)
    if spec is None:
        raise UserError(f"--dataset must be one of {', '.join(SEG_DATASETS)}, not {dataset!r}")
    train_pairs, val_pairs = list_pairs(root, dataset, "train"), list_pairs(root, dataset, "val")
    model = build_fcn(backbone, arch, spec.num_classes)
    train_set = SegmentationSet(train_pairs, spec, crop, train=True)
    losses = finetune(model, train_set, segmentation_loss, poly_schedule, config, where, desc=f"{dataset} finetune")
    metrics = test(model, SegmentationSet(val_pairs, spec, crop, train=False), where, config.workers)
    return metrics, losses, {"train": len(train_pairs), "val": len(val_pairs)}
