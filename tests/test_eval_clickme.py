"""``eval clickme`` against serre-lab/harmonization's ``evaluate_clickme``, re-implemented here from its code.

The official steps are rewritten below in plain numpy from their definitions, not from videonet:
``gaussian_kernel`` of ``harmonization/common/blur.py`` (10x10, sigma 10), ``tf.nn.conv2d`` with
``'SAME'`` padding (TF pads ``k - 1`` in total, ``(k - 1) // 2`` before), ``tf.image.resize``
bilinear (half-pixel centres: ``in = (out + 0.5) * scale - 0.5``, neighbours ``floor``/``ceil``
clamped to the image), the loader's 256 -> 224 image and 256 -> 64 -> blur -> 224 heatmap, scipy's
``spearmanr`` and ``alignment_score = np.mean(spearman) / 0.65753``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from typer.testing import CliRunner

from evaldata import W1, W2, constant_head, write_run
from videonet.cli import app
from videonet.errors import UserError
from videonet.evaluation import attention_maps, clickme
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.linear import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
CEILING = 0.65753  # harmonization/evaluation/clickme.py


def official_kernel(size: int = 10, sigma: float = 10.0) -> np.ndarray:
    x_range = np.arange(-(size - 1) // 2, (size - 1) // 2 + 1)  # tf.range(-(size-1)//2, (size-1)//2 + 1, 1)
    y_range = np.arange((size - 1) // 2, -(size - 1) // 2 - 1, -1)  # tf.range((size-1)//2, -(size-1)//2 - 1, -1)
    xs, ys = np.meshgrid(x_range, y_range)
    kernel = np.exp(-(xs**2 + ys**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    return (kernel / kernel.sum()).astype(np.float32)


def tf_conv2d_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """tf.nn.conv2d(image[None, ..., None], kernel[..., None, None], [1, 1, 1, 1], 'SAME'): cross-correlation."""
    kh, kw = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2  # pad_total = k - 1 (stride 1); TF puts the odd one after
    padded = np.pad(image, ((top, kh - 1 - top), (left, kw - 1 - left)))
    h, w = image.shape
    return sum(kernel[i, j] * padded[i : i + h, j : j + w] for i in range(kh) for j in range(kw))


def tf_resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resize(image (H, W, C), (size, size), 'bilinear'): half-pixel centres, no antialiasing."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        low = np.maximum(np.floor(pos), 0).astype(int)
        high = np.minimum(np.ceil(pos), n_in - 1).astype(int)
        return low, high, pos - np.floor(pos)

    (y0, y1, wy), (x0, x1, wx) = axis(image.shape[0]), axis(image.shape[1])
    wx, wy = wx[None, :, None], wy[:, None, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * wx
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * wx
    return top + (bottom - top) * wy


def official_heatmap(raw: np.ndarray, blur: bool = True) -> np.ndarray:
    """parse_clickme_prototype's heatmap: (256, 256, 1) -> 64 -> gaussian_blur -> 224, then the channel mean."""
    small = tf_resize_bilinear(raw.astype(np.float32)[..., None], 64)[..., 0]
    if blur:
        small = tf_conv2d_same(small, official_kernel())
    return tf_resize_bilinear(small[..., None], 224)[..., 0]


def official_image(rgb: np.ndarray) -> torch.Tensor:
    """parse_clickme_prototype's image (resize to 224) and torch's ImageNet normalisation, as the model's input."""
    resized = tf_resize_bilinear(rgb.astype(np.float32), 224) / 255.0
    return torch.from_numpy(((resized - MEAN) / STD).transpose(2, 0, 1).astype(np.float32))


def official_scores(model_maps: list[np.ndarray], heatmaps: list[np.ndarray]) -> tuple[list[float], float]:
    """spearman_correlation's per-image rho (float32 maps) and evaluate_clickme's alignment_score."""
    rhos = [spearmanr(a.astype(np.float32).flatten(), b.astype(np.float32).flatten())[0]
            for a, b in zip(model_maps, heatmaps)]
    return rhos, float(np.mean(rhos)) / CEILING


def human_map(seed: int) -> np.ndarray:
    """A raw ClickMe-like map: a few hard-edged discs of clicks on an empty 256x256 canvas."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    canvas = np.zeros((256, 256), np.uint8)
    for _ in range(4):
        cy, cx, r = rng.integers(30, 226), rng.integers(30, 226), rng.integers(8, 30)
        canvas[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += np.uint8(rng.integers(40, 60))
    return canvas


def write_clickme(root: Path, constant: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three 256x256 photos with raw human maps (plus one all-zero map when ``constant``); name -> (rgb, map)."""
    from skimage import data

    (root / "images").mkdir(parents=True)
    (root / "maps").mkdir()
    samples = {}
    for seed, name in enumerate(("astronaut", "chelsea", "coffee")):
        rgb = getattr(data, name)()[:256, 100:356] if name != "astronaut" else data.astronaut()[::2, ::2]
        samples[name] = (np.ascontiguousarray(rgb), human_map(seed))
    if constant:
        samples["zeros"] = (samples["chelsea"][0], np.zeros((256, 256), np.uint8))
    for name, (rgb, heat) in samples.items():
        Image.fromarray(rgb).save(root / "images" / f"{name}.png")
        Image.fromarray(heat).save(root / "maps" / f"{name}.png")
    return samples


def test_kernel_blur_and_resize_are_the_official_ones() -> None:
    kernel = clickme.gaussian_kernel()
    np.testing.assert_allclose(kernel.numpy(), official_kernel(), rtol=1e-6)
    assert np.unravel_index(kernel.numpy().argmax(), (10, 10)) == (4, 5)  # the even kernel's peak is off-centre
    rng = np.random.default_rng(0)
    small = rng.random((64, 64)).astype(np.float32)
    np.testing.assert_allclose(clickme.gaussian_blur(torch.from_numpy(small)).numpy(),
                               tf_conv2d_same(small, official_kernel()), atol=1e-6)
    for shape, size in (((256, 256), 64), ((64, 64), 224), ((256, 300), 224)):  # down, up, not square
        image = rng.random(shape).astype(np.float32)
        np.testing.assert_allclose(clickme.resize(torch.from_numpy(image), size).numpy(),
                                   tf_resize_bilinear(image[..., None], size)[..., 0], atol=1e-4)  # float32 scale
    raw = human_map(7)
    np.testing.assert_allclose(clickme.preprocess_heatmap(raw), official_heatmap(raw), atol=1e-4)


def test_clickme_equals_the_official_score_on_raw_maps(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    samples = write_clickme(tmp_path / "clickme")
    result = CliRunner().invoke(app, ["eval", "clickme", str(run), str(tmp_path / "clickme"),
                                      "--results-dir", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((tmp_path / "res" / "run__clickme__clickme.json").read_text())["metrics"]

    pool = attention_maps.load_attention(run / "attention.pt")
    model = load_backbone(str(run)).model
    names = sorted(samples)
    model_maps = [attention_maps.attention_map(model, pool, official_image(samples[n][0])).numpy() for n in names]
    heatmaps = [official_heatmap(samples[n][1]) for n in names]
    rhos, alignment = official_scores(model_maps, heatmaps)
    assert metrics["spearman"] == pytest.approx(np.mean(rhos), abs=1e-4)
    assert metrics["alignment_score"] == pytest.approx(alignment, abs=1e-4)
    assert metrics["images"] == 3 and metrics["constant_maps"] == 0
    # The official Dice and IoU of the top 10 % of each map.
    masks = [(m > np.percentile(m, 90, (0, 1)), h > np.percentile(h, 90, (0, 1))) for m, h in zip(model_maps, heatmaps)]
    dice = np.mean([2.0 * np.sum(a * b) / (np.sum(a + b.astype(int)) + 1e-9) for a, b in masks])
    iou = np.mean([np.sum(a & b) / (np.sum(a | b) + 1e-9) for a, b in masks])
    assert metrics["dice"] == pytest.approx(dice, abs=1e-3) and metrics["iou"] == pytest.approx(iou, abs=1e-3)
    # The blur matters: scoring the maps unblurred gives another number.
    _, unblurred = official_scores(model_maps, [official_heatmap(samples[n][1], blur=False) for n in names])
    assert abs(unblurred - alignment) > 1e-3


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_a_constant_map_is_nan_and_left_out(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    samples = write_clickme(tmp_path / "clickme", constant=True)
    pool = attention_maps.load_attention(run / "attention.pt")
    model = load_backbone(str(run)).model
    explain = lambda image, wnid=None: attention_maps.attention_map(model, pool, image)  # noqa: E731
    scores = clickme.evaluate_clickme(explain, clickme.read_clickme(tmp_path / "clickme"))
    names = sorted(samples)  # astronaut, chelsea, coffee, zeros
    model_maps = [attention_maps.attention_map(model, pool, official_image(samples[n][0])).numpy() for n in names]
    rhos, official = official_scores(model_maps, [official_heatmap(samples[n][1]) for n in names])
    assert math.isnan(rhos[3]) and math.isnan(scores.spearman[3])  # spearmanr of a constant map
    assert math.isnan(official)  # evaluate_clickme's np.mean: one such image makes the whole score NaN
    metrics = scores.metrics()  # here it is left out and counted
    assert metrics["constant_maps"] == 1 and metrics["images"] == 4
    assert metrics["alignment_score"] == pytest.approx(np.mean(rhos[:3]) / CEILING, abs=1e-4)


def test_gradient_saliency_explains_the_ground_truth_class(tmp_path: Path) -> None:
    model = load_backbone("random", arch="resnet18").model
    torch.manual_seed(0)
    head = constant_head([W1, W2], [0.0, 0.0])
    head.linear.weight.data = torch.randn(2, 512)
    image = torch.randn(3, 64, 64)
    for target, row in ((W1, 0), (W2, 1)):
        x = image[None].clone().requires_grad_(True)
        logits = head.linear((model.eval()(x) - head.mean) / head.std)
        logits[0, row].backward()  # xplique's Saliency: |d logit_label / d x|, max over channels
        torch.testing.assert_close(attention_maps.gradient_saliency(model, image, head, target),
                                   x.grad[0].abs().amax(dim=0))
    saliency_w1 = attention_maps.gradient_saliency(model, image, head, W1)
    assert not torch.allclose(saliency_w1, attention_maps.gradient_saliency(model, image, head, W2))

    # The command reads the labels (a wnid, or an ImageNet index as in the official records: 1 = n01443537).
    write_clickme(tmp_path / "clickme")
    head.save(tmp_path / "head.pt")
    args = ["eval", "clickme", "random", str(tmp_path / "clickme"), "--method", "gradient", "--arch", "resnet18",
            "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, [*args, "--head", str(tmp_path / "head.pt")])
    assert result.exit_code != 0 and "needs --head and a label" in str(result.exception)
    with (tmp_path / "clickme" / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["name", "label"], ["astronaut", W1], ["chelsea", "1"], ["coffee", W2]])
    assert [s.wnid for s in clickme.read_clickme(tmp_path / "clickme")] == [W1, W2, W2]
    result = CliRunner().invoke(app, [*args, "--head", str(tmp_path / "head.pt")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((tmp_path / "res" / "random__clickme-gradient__clickme.json").read_text())
    assert record["metrics"]["images"] == 3 and record["config"]["method"] == "gradient"
    assert LinearHead.load(tmp_path / "head.pt", 512).classes == [W1, W2]


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit; crc32c(b"123456789") = 0xE3069283."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC: rotate right by 15, add 0xa282ead8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8 & 0xFFFFFFFF).to_bytes(4, "little")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tf_example(features: dict[str, bytes | int]) -> bytes:
    """A serialized tf.train.Example: bytes as BytesList, ints as a packed Int64List (example.proto, feature.proto)."""
    entries = b""
    for key, value in features.items():
        kind = (length_delimited(1, length_delimited(1, value)) if isinstance(value, bytes)
                else length_delimited(3, length_delimited(1, varint(value))))
        entries += length_delimited(1, length_delimited(1, key.encode()) + length_delimited(2, kind))
    return length_delimited(1, entries)


def write_tfrecord(path: Path, records: list[bytes]) -> None:
    with path.open("wb") as f:
        for data in records:
            length = len(data).to_bytes(8, "little")
            f.write(length + masked_crc(length) + data + masked_crc(data))


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_the_official_shards_are_read_as_released(tmp_path: Path) -> None:
    from skimage import data

    photos = [data.astronaut()[::2, ::2], data.chelsea()[:256, 100:356], data.coffee()[:256, 100:356]]
    records = [tf_example({"image": jpeg(np.ascontiguousarray(rgb)), "heatmap": jpeg(human_map(i)), "label": label})
               for i, (rgb, label) in enumerate(zip(photos, (0, 1, 999)))]
    shards = tmp_path / "clickme"
    shards.mkdir()
    write_tfrecord(shards / "val-10.tfrecords", records[2:])  # shard order is numeric: val-2 before val-10
    write_tfrecord(shards / "val-2.tfrecords", records[:2])
    assert crc32c(b"123456789") == 0xE3069283  # the check value: the records written above are valid TFRecords
    samples = clickme.read_clickme(shards)
    assert [s.name for s in samples] == ["val-2.tfrecords:0", "val-2.tfrecords:1", "val-10.tfrecords:0"]
    assert [s.wnid for s in samples] == [W1, W2, "n15075141"]  # ImageNet indices 0, 1, 999

    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["eval", "clickme", str(run), str(shards), "--results-dir", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((tmp_path / "res" / "run__clickme__clickme.json").read_text())["metrics"]
    # The official pipeline on the decoded JPEGs (decoded here by Pillow too).
    pool = attention_maps.load_attention(run / "attention.pt")
    model = load_backbone(str(run)).model
    decoded = [(np.asarray(Image.open(io.BytesIO(jpeg(np.ascontiguousarray(rgb))))),
                np.asarray(Image.open(io.BytesIO(jpeg(human_map(i)))).convert("L"))) for i, rgb in enumerate(photos)]
    model_maps = [attention_maps.attention_map(model, pool, official_image(rgb)).numpy() for rgb, _ in decoded]
    _, alignment = official_scores(model_maps, [official_heatmap(heat) for _, heat in decoded])
    assert metrics["images"] == 3 and metrics["alignment_score"] == pytest.approx(alignment, abs=1e-4)

    (shards / "val-3.tfrecords").write_bytes(b"\x05\x00")
    with pytest.raises(UserError, match="val-3.tfrecords: truncated TFRecord at byte 0"):
        clickme.read_clickme(shards)
