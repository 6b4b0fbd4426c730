"""Frozen global features of an ImageFolder dataset (train/ and val/ subfolders), for kNN and linear probes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.settings import Features
from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD, forward_stages


def normalize() -> transforms.Normalize:
    """The ImageNet normalisation every torchvision ResNet (and VITO) was trained with."""
    return transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def eval_transform(crop_size: int = Features.crop_size) -> transforms.Compose:
    """Resize the short side to crop*256/224 then centre-crop: the standard ImageNet eval view."""
    return transforms.Compose(
        [
            transforms.Resize(round(crop_size * 256 / 224)),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),
            normalize(),
        ]
    )


@dataclass
class FeatureSet:
    """Features (N, D), integer labels (N,) and the class names the labels index."""

    features: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def image_folder_splits(root: Path, crop_size: int = Features.crop_size) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    """Open ``root/train`` and ``root/val`` and check that they name the same classes in the same order."""
    if not root.is_dir():
        raise UserError(f"dataset dir {root} does not exist")
    splits = []
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise UserError(f"{root} has no {split}/ subfolder (expected ImageFolder layout {split}/<class>/<image>)")
        try:
            splits.append(datasets.ImageFolder(str(root / split), transform=eval_transform(crop_size)))
        except FileNotFoundError as exc:
            raise UserError(f"{root / split}: {exc}") from exc
    train, val = splits
    if train.classes != val.classes:
        raise UserError(f"{root}: train/ and val/ have different class folders")
    return train, val


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    dataset: datasets.ImageFolder,
    device: torch.device,
    batch_size: int = Features.batch_size,
    workers: int = 0,
    desc: str = "features",
) -> FeatureSet:
    """Global-average-pooled ``layer4`` features of every image, in dataset order."""
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    feats, labels = [], []
    for images, targets in tqdm(loader, desc=desc, unit="batch"):
        fmap = forward_stages(model, images.to(device), ["layer4"])["layer4"]
        feats.append(fmap.mean(dim=(2, 3)).float().cpu())
        labels.append(targets)
    return FeatureSet(torch.cat(feats), torch.cat(labels), list(dataset.classes))
