"""BYOL's augmentations split between the loader (crop box, parameters) and the training device (the ops).

The references are torchvision's own transforms: each device op must equal torchvision's op image by
image, and over many draws the device pipeline must give the same distributions (brightness shifts,
blur, greyscale and solarise rates) as the torchvision pipeline videonet ran before, within
tolerances set by the number of draws.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from videonet.vito.augment import (
    A1, A2, COLUMN, PARAMS, SOLARIZE_THRESHOLD, DeviceAugment, apply_params, blur_kernel, crop_box, draw_params,
    view_distribution,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

DRAWS = 4000


def tolerance(sd_a: float, sd_b: float, n: int, z: float = 4.5) -> float:
    """``z`` standard errors of the difference of two means of ``n`` draws each."""
    return z * math.sqrt((sd_a ** 2 + sd_b ** 2) / n)


def rate_tolerance(p: float, n: int, z: float = 4.5) -> float:
    """``z`` standard errors of the difference of two binomial rates ``p`` of ``n`` draws each."""
    return z * math.sqrt(2 * p * (1 - p) / n) + 1e-9


def mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def reference_mean_area(min_scale: float, aspect: float, steps: int = 200_000) -> float:
    """E[area] of torchvision's rejection sampler with aspects (lo, hi) = (3/4, max(4/3, aspect)), by
    integration over the scale: a try with scale s fits the frame for log-aspects in
    [log max(lo, s * aspect), log min(hi, aspect / s)] (ignores the whole-frame fallback after 100
    failed tries, about 0.55^100)."""
    lo, hi = 3 / 4, max(4 / 3, aspect)
    span = math.log(hi / lo)
    num = den = 0.0
    for k in range(steps):
        s = min_scale + (k + 0.5) * (1 - min_scale) / steps
        accept = max(0.0, math.log(min(hi, aspect / s)) - math.log(max(lo, s * aspect))) / span
        num, den = num + s * accept, den + accept
    return num / den


def test_crop_box_reaches_the_papers_scale_range_on_16_9_frames() -> None:
    rng = random.Random(0)
    width, height = 854, 480
    boxes = [crop_box(rng, 0.4, width / height) for _ in range(DRAWS)]
    areas = [b.width * b.height for b in boxes]
    expected = reference_mean_area(0.4, width / height)
    assert expected == pytest.approx(0.586, abs=0.001)
    m, sd = mean_sd(areas)
    assert abs(m - expected) < 4.5 * sd / math.sqrt(DRAWS)
    assert min(areas) >= 0.4 - 1e-9 and max(areas) > 0.97  # the whole (0.4, 1.0) range
    assert not any(b == (0.0, 0.0, 1.0, 1.0) for b in boxes)  # no fallback crop
    ratios = [b.width * width / (b.height * height) for b in boxes]  # the crops' own aspects, in pixels
    assert min(ratios) >= 3 / 4 - 1e-9 and max(ratios) <= width / height + 1e-9
    assert all(0 <= b.left and b.left + b.width <= 1 + 1e-9 and 0 <= b.top and b.top + b.height <= 1 + 1e-9
               for b in boxes)
    # What torchvision's absolute aspect range gives on the same frames: capped at 0.75, with fallbacks.
    torch.manual_seed(0)
    frame = torch.empty(3, height, width)
    old = [v2.RandomResizedCrop.get_params(frame, [0.4, 1.0], [3 / 4, 4 / 3]) for _ in range(DRAWS)]
    old_areas = [h * w / (width * height) for _, _, h, w in old]
    assert max(old_areas) <= 0.75 + 1e-3 and sum(old_areas) / DRAWS == pytest.approx(0.52, abs=0.01)
    assert 0.02 < sum(h == height for _, _, h, _ in old) / DRAWS < 0.05  # the centre-crop fallbacks


def test_crop_box_is_torchvisions_on_4_3_frames() -> None:
    """Where torchvision's aspect range already holds the frame's shape, the crops are its crops: the
    same mean area (the reference integral) and the same aspect range."""
    rng = random.Random(1)
    boxes = [crop_box(rng, 0.4, 4 / 3) for _ in range(DRAWS)]
    m, sd = mean_sd([b.width * b.height for b in boxes])
    assert abs(m - reference_mean_area(0.4, 4 / 3)) < 4.5 * sd / math.sqrt(DRAWS)
    torch.manual_seed(1)
    frame = torch.empty(3, 480, 640)
    tv = [h * w / (640 * 480) for _, _, h, w in (v2.RandomResizedCrop.get_params(frame, [0.4, 1.0], [3 / 4, 4 / 3])
                                                   for _ in range(DRAWS))]
    tv_m, tv_sd = mean_sd(tv)
    assert abs(m - tv_m) < tolerance(sd, tv_sd, DRAWS)
    ratios = [b.width * 4 / (b.height * 3) for b in boxes]
    assert min(ratios) >= 3 / 4 - 1e-9 and max(ratios) <= 4 / 3 + 1e-9


def torchvision_apply(image: torch.Tensor, row: list[float], kernel: int) -> torch.Tensor:
    """One image through torchvision's functional ops with the parameters of ``row``, in BYOL's order."""
    p = dict(zip(PARAMS, row))
    x = F.horizontal_flip(image) if p["flip"] else image
    if p["jitter"]:
        ops = [lambda y: F.adjust_brightness(y, p["brightness"]), lambda y: F.adjust_contrast(y, p["contrast"]),
               lambda y: F.adjust_saturation(y, p["saturation"]), lambda y: F.adjust_hue(y, p["hue"])]
        for k in range(4):
            x = ops[int(p[f"order{k}"])](x)
    if p["grayscale"]:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    if p["blur"]:
        x = F.gaussian_blur(x, [kernel, kernel], [p["sigma"], p["sigma"]])
    return F.solarize(x, SOLARIZE_THRESHOLD) if p["solarize"] else x


def test_device_ops_match_torchvision_image_by_image() -> None:
    rng = random.Random(1)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(64, 3, 24, 24, generator=g)
    rows = [draw_params(rng, view_distribution(i % 3)) for i in range(64)]
    for i in range(0, 64, 4):  # force every op on some images, every order and flag mixed across the batch
        rows[i][COLUMN["jitter"]] = rows[i][COLUMN["solarize"]] = rows[i][COLUMN["grayscale"]] = 1.0
    kernel = blur_kernel(24)
    got = apply_params(images.clone(), torch.tensor(rows), kernel)
    expected = torch.stack([torchvision_apply(img, row, kernel) for img, row in zip(images, rows)])
    assert torch.allclose(got, expected, atol=2e-5)
    for name in ("flip", "jitter", "grayscale", "blur", "solarize"):
        assert 0 < sum(r[COLUMN[name]] for r in rows) < 64, name  # each op on some images, not all


def old_pipeline(blur_p: float, solarize_p: float, kernel: int) -> v2.Compose:
    """videonet's augmentations before they moved to the device (after the crop), on float images."""
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p),
        v2.RandomSolarize(threshold=SOLARIZE_THRESHOLD, p=solarize_p),
    ])


def sharpness(x: torch.Tensor) -> float:
    """Largest horizontal step over the value range: 1 for an unblurred step edge, ~1/(2.5 sigma) blurred;
    unchanged by brightness, contrast (affine per image) and flips."""
    steps = (x[..., 1:] - x[..., :-1]).abs().amax()
    return float(steps / (x.amax() - x.amin()).clamp_min(1e-12))


@pytest.mark.slow  # 4 x 2,000 images through torchvision one by one: 13-22 s each on the shared 2-core machine
@pytest.mark.parametrize("dist", [A1, A2], ids=["A1", "A2"])
def test_device_augment_distributions_match_the_old_pipeline(dist) -> None:
    kernel = blur_kernel(32)
    old = old_pipeline(dist.blur_p, dist.solarize_p, kernel)
    rng = random.Random(2)
    torch.manual_seed(2)
    grey = torch.full((3, 32, 32), 0.3)  # brightness: the only op that moves a uniform grey image
    edge = torch.full((3, 32, 32), 0.1)
    edge[..., 16:] = 0.3  # blur: a grey step edge (colour ops keep it grey and affine)
    bright = torch.full((3, 32, 32), 0.9)  # solarise: stays >= 128/255 under jitter, so the rate shows
    colour = torch.tensor([0.6, 0.3, 0.2]).view(3, 1, 1).expand(3, 32, 32).clone()  # greyscale rate
    n = DRAWS // 2
    rows = torch.tensor([draw_params(rng, dist) for _ in range(4 * n)]).view(4, n, -1)
    new = {name: apply_params(img.expand(n, -1, -1, -1).clone(), rows[k], kernel)
           for k, (name, img) in enumerate([("grey", grey), ("edge", edge), ("bright", bright), ("colour", colour)])}
    olds = {name: torch.stack([old(img) for _ in range(n)])
            for name, img in [("grey", grey), ("edge", edge), ("bright", bright), ("colour", colour)]}

    def brightness(x: torch.Tensor) -> list[float]:
        return x.mean(dim=(1, 2, 3)).tolist()

    (m_new, sd_new), (m_old, sd_old) = mean_sd(brightness(new["grey"])), mean_sd(brightness(olds["grey"]))
    assert abs(m_new - m_old) < tolerance(sd_new, sd_old, n)
    assert sd_new == pytest.approx(sd_old, rel=0.1)
    assert sd_old > 0.05  # jitter does move it: 0.8 of the images by a factor in [0.6, 1.4]

    def blurred(x: torch.Tensor) -> list[float]:
        return [float(sharpness(img) < 0.9) for img in x]

    for name, fn, p in [("edge", blurred, dist.blur_p * 0.85),
                        ("bright", lambda x: (x.mean(dim=(1, 2, 3)) < 0.5).float().tolist(), dist.solarize_p),
                        ("colour", lambda x: (x.std(dim=1).amax(dim=(1, 2)) < 1e-6).float().tolist(), 0.2)]:
        rate_new, rate_old = sum(fn(new[name])) / n, sum(fn(olds[name])) / n
        assert abs(rate_new - rate_old) <= rate_tolerance(max(p, 0.05), n), (name, rate_new, rate_old)
        if p == 0:
            assert rate_new == rate_old == 0.0, name
    sharp_new = [sharpness(img) for img in new["edge"]]
    sharp_old = [sharpness(img) for img in olds["edge"]]
    (m_new, sd_new), (m_old, sd_old) = mean_sd(sharp_new), mean_sd(sharp_old)
    assert abs(m_new - m_old) < tolerance(sd_new, sd_old, n)  # the same sigma distribution


def test_params_have_byols_rates_per_view() -> None:
    rng = random.Random(3)
    n = 20_000
    for view, (blur, solarize) in enumerate([(1.0, 0.0), (0.1, 0.2), (1.0, 0.0)]):
        rows = torch.tensor([draw_params(rng, view_distribution(view)) for _ in range(n)])
        for name, p in [("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2), ("blur", blur), ("solarize", solarize)]:
            rate = float(rows[:, COLUMN[name]].mean())
            assert abs(rate - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9, (view, name, rate)
        assert sorted(rows[0, COLUMN["order0"]:COLUMN["order3"] + 1].tolist()) == [0, 1, 2, 3]
        for name, (low, high) in [("brightness", (0.6, 1.4)), ("contrast", (0.6, 1.4)), ("saturation", (0.8, 1.2)),
                                  ("hue", (-0.1, 0.1)), ("sigma", (0.1, 2.0))]:
            column = rows[:, COLUMN[name]]
            assert low <= column.min() and column.max() <= high, name
            assert float(column.mean()) == pytest.approx((low + high) / 2, abs=4.5 * (high - low) / math.sqrt(12 * n))


def test_device_augment_normalises_views_of_a_batch() -> None:
    rng = random.Random(4)
    views = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    params = torch.tensor([[draw_params(rng, view_distribution(v)) for v in range(3)] for _ in range(2)])
    out = DeviceAugment(32)(views, params)
    assert out.shape == (2, 3, 3, 32, 32) and out.dtype == torch.float32
    flat = apply_params(views.reshape(-1, 3, 32, 32).float() / 255, params.reshape(6, -1), blur_kernel(32))
    expected = F.normalize(flat, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).reshape(out.shape)
    assert torch.allclose(out, expected, atol=1e-5)
