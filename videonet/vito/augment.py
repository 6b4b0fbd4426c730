"""BYOL's asymmetric augmentations A1 / A2 (torchvision.transforms.v2), applied per view.

VITO keeps BYOL's pipeline: random resized crop (bicubic, aspect 3/4..4/3) -> horizontal flip
(p 0.5) -> colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8 -> greyscale (p 0.2) -> Gaussian blur
(p 1.0 in A1, 0.1 in A2) -> solarise (p 0 in A1, 0.2 in A2). The two distributions are deliberately
different: one view is always blurred, the other sometimes solarised. View 0 uses A1, view 1 A2,
and any further view (VITO's third) A1 again.

Two changes that follow from the data rather than from taste:

- The minimum crop scale is 0.4 for video (time already provides strong view differences, so
  VITO crops less aggressively) and BYOL's 0.08 for image-style single-frame training.
- The blur kernel is 23 px at 224 px (about a tenth of the side); it scales with ``--image-size``
  (``2 * round(0.05 * size) + 1``) so small CPU runs blur comparably rather than wiping the image.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD

VIDEO_MIN_SCALE = 0.4
IMAGE_MIN_SCALE = 0.08


def blur_kernel(size: int) -> int:
    """Odd kernel of about a tenth of the image side: 23 at 224 px."""
    return 2 * round(0.05 * size) + 1


def byol_view(size: int, min_scale: float, blur_p: float, solarize_p: float) -> v2.Compose:
    """One of BYOL's view distributions; input a uint8 ``(C, H, W)`` tensor, output normalised float."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=(3 / 4, 4 / 3),
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))], p=blur_p),
        v2.RandomSolarize(threshold=128, p=solarize_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class ViewAugment:
    """Maps the decoded frames of one clip (one per view) to augmented views, A1/A2/A1/..."""

    def __init__(self, size: int = 224, min_scale: float = VIDEO_MIN_SCALE) -> None:
        self.a1 = byol_view(size, min_scale, blur_p=1.0, solarize_p=0.0)
        self.a2 = byol_view(size, min_scale, blur_p=0.1, solarize_p=0.2)

    def __call__(self, frames: list[torch.Tensor], seed: int) -> torch.Tensor:
        """``(V, 3, size, size)`` views; the randomness is a function of ``seed`` only (for resume)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([(self.a2 if v == 1 else self.a1)(f) for v, f in enumerate(frames)])
