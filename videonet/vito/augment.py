"""BYOL's asymmetric augmentations A1 / A2, split between the loader's CPU and the training device.

VITO keeps BYOL's pipeline: random resized crop (bicubic, aspect 3/4..4/3, see below) -> horizontal flip
(p 0.5) -> colour jitter (0.4, 0.4, 0.2, 0.1, in a random order) with p 0.8 -> greyscale (p 0.2)
-> Gaussian blur (sigma 0.1..2, p 1.0 in A1, 0.1 in A2) -> solarise (p 0 in A1, 0.2 in A2). The
two distributions are deliberately different: one view is always blurred, the other sometimes
solarised. View 0 uses A1, view 1 A2, and any further view (VITO's third) A1 again.

Where each part runs, so that a GPU is not starved by its loader:

- **CPU (loader worker)**: :func:`crop_box` picks each view's crop (for the frame's aspect) and the
  decoder resizes the crop straight to ``size x size`` (:mod:`videonet.vito.data`);
  :func:`draw_params` draws every other random parameter of the view (a row of :data:`PARAMS`) from
  the sample's seeded RNG. Drawing is a dozen Python random numbers: the stream stays a pure
  function of the seed (exact resume).
- **Training device**: :class:`DeviceAugment` applies flip, jitter, greyscale, blur and solarise to
  the whole batch at once, each view with its own parameters, and normalises.

The colour operations are torchvision's (``transforms.v2.functional``) with one factor per image
instead of one per call: brightness ``x * b``, contrast and saturation blends with the greyscale
mean / image, hue a shift in torchvision's HSV space, all in float with a clamp to [0, 1];
``tests/test_vito_augment.py`` checks each against torchvision's own op image by image. Solarise
inverts values >= 128/255 (torchvision's ``threshold=128`` on the uint8 images it ran on before).

Three changes that follow from the data rather than from taste:

- The minimum crop scale is 0.4 for video (time already provides strong view differences, so
  VITO crops less aggressively) and BYOL's 0.08 for image-style single-frame training.
- The aspect-ratio range reaches the frame's own aspect: on a 16:9 frame a crop of aspect 3/4..4/3
  (torchvision's range) covers at most 0.75 of the frame, so the paper's scale range (0.4, 1.0)
  was cut short (mean area 0.52, 3.4% centre-crop fallbacks). With the range widened to 3/4..16/9
  the whole range is reached (mean area 0.59, no fallbacks), and a crop is squeezed into the square
  output at most as much as the whole frame is (on 3:4..4:3 frames nothing changes).
- The blur kernel is 23 px at 224 px (about a tenth of the side); it scales with ``--image-size``
  (``2 * round(0.05 * size) + 1``) so small CPU runs blur comparably rather than wiping the image.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

import torch

from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD

VIDEO_MIN_SCALE = 0.4
IMAGE_MIN_SCALE = 0.08
RATIO = (3 / 4, 4 / 3)
FLIP_P = 0.5
JITTER_P = 0.8
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.4, 0.4, 0.2, 0.1
GRAYSCALE_P = 0.2
SIGMA = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128 / 255
CROP_TRIES = 100

PARAMS = ("flip", "jitter", "brightness", "contrast", "saturation", "hue", "order0", "order1", "order2", "order3",
          "grayscale", "blur", "sigma", "solarize")
"""The columns of a view's parameter row; ``order0..3`` is the jitter's permutation of (b, c, s, h)."""
COLUMN = {name: i for i, name in enumerate(PARAMS)}


@dataclass(frozen=True)
class ViewDistribution:
    """What differs between BYOL's A1 and A2: how often a view is blurred and solarised."""

    blur_p: float
    solarize_p: float


A1 = ViewDistribution(blur_p=1.0, solarize_p=0.0)
A2 = ViewDistribution(blur_p=0.1, solarize_p=0.2)


def view_distribution(view: int) -> ViewDistribution:
    """A1 for views 0, 2, 3, ...; A2 for view 1."""
    return A2 if view == 1 else A1


def blur_kernel(size: int) -> int:
    """Odd kernel of about a tenth of the image side: 23 at 224 px."""
    return 2 * round(0.05 * size) + 1


class Box(NamedTuple):
    """A crop as fractions of the frame's width and height (so it is drawn before the frame is seen)."""

    left: float
    top: float
    width: float
    height: float


def crop_box(rng: random.Random, min_scale: float, aspect: float) -> Box:
    """torchvision's ``RandomResizedCrop.get_params`` with the aspect range widened to the frame's own.

    Area fraction ``s ~ U(min_scale, 1)``, aspect ``r`` log-uniform in ``(min(3/4, aspect),
    max(4/3, aspect))`` where ``aspect`` is the frame's width / height; a box that does not fit the
    frame is drawn again. On frames from 3:4 to 4:3 this is torchvision's crop exactly; on a 16:9 frame
    the range reaches the frame's own shape, so the whole (0.4, 1.0) scale range is reachable (with
    torchvision's 3/4..4/3 a crop covers at most 0.75 of the frame) and a crop is never squeezed
    more than the whole frame would be. Up to 100 tries instead of torchvision's 10 (a failed try is
    likelier on a wide frame; the whole frame after 100 failures, never seen in 10^5 draws).

    Returned in fractions of the frame, so the box is the same whichever decoder reads the frame.
    Drawn from ``rng`` (the sample's seeded generator), not from torch's global one, so that the
    stream is a function of the seed.
    """
    ratio = (min(RATIO[0], aspect), max(RATIO[1], aspect))
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_TRIES):
        scale = rng.uniform(min_scale, 1.0)
        r = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(scale * r / aspect), math.sqrt(scale * aspect / r)  # fractions of width, height
        if w <= 1.0 and h <= 1.0:
            return Box(rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h), w, h)
    return Box(0.0, 0.0, 1.0, 1.0)


def draw_params(rng: random.Random, dist: ViewDistribution) -> list[float]:
    """One view's parameters (a row of :data:`PARAMS`), with the probabilities and ranges of
    ``v2.RandomHorizontalFlip(0.5)``, ``v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], 0.8)``,
    ``v2.RandomGrayscale(0.2)``, ``v2.RandomApply([v2.GaussianBlur(k, (0.1, 2.0))], dist.blur_p)`` and
    ``v2.RandomSolarize(128, dist.solarize_p)``. Every number is drawn whether used or not, so a
    view's parameters do not depend on the coin flips before them."""
    order = list(range(4))
    rng.shuffle(order)
    return [
        float(rng.random() < FLIP_P),
        float(rng.random() < JITTER_P),
        rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS),
        rng.uniform(1 - CONTRAST, 1 + CONTRAST),
        rng.uniform(1 - SATURATION, 1 + SATURATION),
        rng.uniform(-HUE, HUE),
        *map(float, order),
        float(rng.random() < GRAYSCALE_P),
        float(rng.random() < dist.blur_p),
        rng.uniform(*SIGMA),
        float(rng.random() < dist.solarize_p),
    ]


# -- the device side: one op per parameter, applied to the images whose flag is set ----------------


def _gray(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ITU-R 601-2 luma, one channel."""
    from torchvision.transforms.v2 import functional as F

    return F.rgb_to_grayscale(x, num_output_channels=1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with one ratio per image: ``ratio * x + (1 - ratio) * other``, clamped."""
    r = ratio.view(-1, 1, 1, 1)
    return (x * r + other * (1 - r)).clamp_(0.0, 1.0)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), f)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), f)


def _hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` (its own RGB <-> HSV conversions) with one shift per image."""
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
    return _hsv_to_rgb(torch.stack(((h + f.view(-1, 1, 1)).remainder_(1.0), s, v), dim=-3))


JITTER_OPS = (("brightness", _brightness), ("contrast", _contrast), ("saturation", _saturation), ("hue", _hue))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` (separable, reflect padding, its kernel formula) with one sigma per image."""
    n, c, h, w = x.shape
    lim = (kernel - 1) / (2.0 * math.sqrt(2.0))
    grid = torch.linspace(-lim, lim, kernel, dtype=x.dtype, device=x.device)
    k1d = torch.softmax(-(grid[None] / sigma[:, None].to(x.dtype)).pow(2), dim=1)  # (n, kernel)
    weights = k1d.repeat_interleave(c, dim=0)  # one kernel per image and channel, for a grouped conv
    pad = kernel // 2
    y = torch.nn.functional.pad(x.reshape(1, n * c, h, w), [pad, pad, pad, pad], mode="reflect")
    y = torch.nn.functional.conv2d(y, weights[:, None, None, :], groups=n * c)
    y = torch.nn.functional.conv2d(y, weights[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def apply_params(x: torch.Tensor, params: torch.Tensor, kernel: int) -> torch.Tensor:
    """Flip, jitter, greyscale, blur, solarise ``x`` ``(N, 3, H, W)`` float in [0, 1], image ``i`` with
    ``params[i]`` (a row of :data:`PARAMS`); the images that skip an op are not computed for it."""
    p = params.to(device=x.device, dtype=torch.float32)
    on = {name: p[:, COLUMN[name]] > 0.5 for name in ("flip", "jitter", "grayscale", "blur", "solarize")}
    x = torch.where(on["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
    order = p[:, [COLUMN[f"order{k}"] for k in range(4)]].long()
    for stage in range(4):  # torchvision's ColorJitter: the four ops in a random order per image
        for index, (name, op) in enumerate(JITTER_OPS):
            chosen = on["jitter"] & (order[:, stage] == index)
            if chosen.any():
                x[chosen] = op(x[chosen], p[chosen, COLUMN[name]])
    if on["grayscale"].any():
        x[on["grayscale"]] = _gray(x[on["grayscale"]]).expand(-1, 3, -1, -1)
    if on["blur"].any():
        x[on["blur"]] = gaussian_blur(x[on["blur"]], p[on["blur"], COLUMN["sigma"]], kernel)
    return torch.where(on["solarize"].view(-1, 1, 1, 1) & (x >= SOLARIZE_THRESHOLD), 1.0 - x, x)


class DeviceAugment:
    """The device half of A1/A2: ``(B, V, 3, S, S)`` uint8 crops + ``(B, V, len(PARAMS))`` -> normalised float."""

    def __init__(self, size: int) -> None:
        self.kernel = blur_kernel(size)

    def __call__(self, views: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        shape = views.shape
        x = views.reshape(-1, *shape[-3:]).float().div_(255)
        x = apply_params(x, params.reshape(-1, params.shape[-1]), self.kernel)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).reshape(shape)
