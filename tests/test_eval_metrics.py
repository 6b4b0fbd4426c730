"""Metric functions of videonet.evaluation against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videonet.evaluation.clickme import rankdata, spearman
from videonet.evaluation.davis_metrics import (
    ObjectScores,
    boundary_map,
    boundary_measure,
    boundary_tolerance_px,
    db_statistics,
    dilate_disk,
    region_similarity,
    score_sequence,
    summarize,
)
from videonet.evaluation.knn import knn_accuracy, knn_scores
from videonet.evaluation.linear import linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def square(top: int, left: int, size: int = 4, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def dot(r: int, c: int) -> np.ndarray:
    mask = np.zeros((10, 10), dtype=bool)
    mask[r, c] = True
    return mask


def test_region_similarity_is_iou() -> None:
    # 4x4 squares shifted by one column: 12 shared pixels, 20 in the union.
    assert region_similarity(square(2, 2), square(2, 3)) == pytest.approx(0.6)
    assert region_similarity(square(2, 2), square(2, 2)) == 1.0
    assert region_similarity(square(0, 0), square(6, 6)) == 0.0
    empty = np.zeros((10, 10), bool)
    assert region_similarity(empty, empty) == 1.0  # the toolkit's convention for absent objects
    assert region_similarity(square(2, 2), empty) == 0.0


def test_boundary_map_matches_toolkit_definition() -> None:
    # _seg2bmap marks a pixel whose E, S or SE neighbour differs: a single pixel gives a 2x2 block
    # (itself and the three pixels that have it as E, S, SE neighbour).
    expected = np.zeros((10, 10), bool)
    expected[3:5, 3:5] = True
    np.testing.assert_array_equal(boundary_map(dot(4, 4)), expected)


def test_boundary_tolerance_is_0_008_of_the_diagonal() -> None:
    assert boundary_tolerance_px((480, 854)) == 8  # ceil(0.008 * 979.7) = ceil(7.84)
    assert boundary_tolerance_px((10, 10)) == 1  # ceil(0.113)


def test_dilate_disk_matches_scipy_with_skimage_disk() -> None:
    # The toolkit dilates with cv2 and skimage.morphology.disk; scipy is an independent oracle.
    from scipy import ndimage
    from skimage.morphology import disk

    rng = np.random.default_rng(0)
    for radius in (1, 3, 8):
        mask = rng.random((40, 50)) < 0.02
        mask[0, 0] = mask[-1, -1] = True  # touches the borders, where the bounding-box crop is clipped
        expected = ndimage.binary_dilation(mask, structure=disk(radius).astype(bool))
        np.testing.assert_array_equal(dilate_disk(mask, radius), expected)
    assert not dilate_disk(np.zeros((5, 5), bool), 2).any()


def test_boundary_measure_hand_computed() -> None:
    # 10x10 image: 1 px tolerance (plus-shaped disk). Boundaries of dots at (4,4) and (4,6) are the
    # 2x2 blocks rows 3-4 x cols 3-4 and rows 3-4 x cols 5-6: only the adjacent columns 4 and 5
    # are within 1 px of each other, so precision = recall = 2/4 and F = 0.5.
    assert boundary_measure(dot(4, 4), dot(4, 6)) == pytest.approx(0.5)
    assert boundary_measure(dot(4, 4), dot(4, 5)) == pytest.approx(1.0)  # all within 1 px
    assert boundary_measure(dot(4, 4), dot(4, 7)) == 0.0  # 2 px apart
    assert boundary_measure(square(2, 2), square(2, 2)) == 1.0
    empty = np.zeros((10, 10), bool)
    assert boundary_measure(square(2, 2), empty) == 0.0
    assert boundary_measure(empty, square(2, 2)) == 0.0
    assert boundary_measure(empty, empty) == 1.0


def test_sequence_scores_skip_first_and_last_frame_and_score_void_as_the_toolkit() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[2:6, 2:6] = 1
    shifted = np.zeros_like(gt)
    shifted[2:6, 3:7] = 1
    wrong_last = np.zeros_like(gt)  # would drag the mean down if the last frame were scored
    with_void = gt.copy()
    with_void[2:6, [2, 6]] = 255  # the two columns where gt and prediction differ are void
    gts = [gt, gt, with_void, gt]
    preds = [gt, shifted, shifted, wrong_last]
    # Official semi-supervised scoring: void is background, so the object is columns 3-5 (12 px)
    # against the prediction's columns 3-6 (16 px): J = 12/16. Frame 1: 12 shared of 20 px.
    (obj,) = score_sequence("seq", gts, preds, [1])
    assert obj.j == pytest.approx([0.6, 0.75])
    means = summarize([obj])
    assert means["J_mean"] == pytest.approx(0.675)
    assert means["JF_mean"] == pytest.approx((means["J_mean"] + means["F_mean"]) / 2)
    # Ignoring void instead removes both differing columns: J = 1 on frame 2.
    (ignored,) = score_sequence("seq", gts, preds, [1], void="ignore")
    assert ignored.j == pytest.approx([0.6, 1.0])


def test_recall_and_decay_as_the_davis_toolkit() -> None:
    # 8 frames: bin edges round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7]; first bin frames
    # 0-2, last bin frames 5-7. Decay = mean(1, 1, .9) - mean(.4, .3, .2); recall = 5 of 8 above 0.5.
    values = [1.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.3, 0.2]
    mean, recall, decay = db_statistics(values)
    assert mean == pytest.approx(5.2 / 8) and recall == pytest.approx(5 / 8)
    assert decay == pytest.approx(2.9 / 3 - 0.3)
    stats = summarize([ObjectScores("s", 1, values, [1.0] * 8), ObjectScores("s", 2, [0.0] * 8, [1.0] * 8)])
    assert stats["J_recall"] == pytest.approx(5 / 16) and stats["J_decay"] == pytest.approx((2.9 / 3 - 0.3) / 2)
    assert stats["F_mean"] == 1.0 and stats["F_decay"] == 0.0


def test_knn_votes_are_exp_cosine_over_temperature() -> None:
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[2.0, 0.0]])  # not unit length: cosine must normalise it
    scores = knn_scores(train, labels, test, num_classes=2, k=3, temperature=1.0)
    torch.testing.assert_close(scores, torch.tensor([[math.e, 2 * math.exp(0.8)]]))
    # With T = 1 two good neighbours outvote one perfect one; with DINO's T = 0.07 the perfect one wins.
    assert knn_accuracy(train, labels, test, torch.tensor([1]), 2, k=3, temperature=1.0) == 1.0
    assert knn_accuracy(train, labels, test, torch.tensor([0]), 2, k=3, temperature=0.07) == 1.0
    # k larger than the training set is capped; k = 1 is nearest neighbour.
    torch.testing.assert_close(knn_scores(train, labels, test, 2, k=20, temperature=1.0), scores)
    assert knn_scores(train, labels, test, 2, k=1, temperature=1.0)[0, 1] == 0


def test_linear_probe_separates_blobs_and_reports_the_sweep() -> None:
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 3
    def blobs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        return centers[y] + torch.randn(n, 16, generator=gen), y
    (xtr, ytr), (xva, yva) = blobs(120), blobs(60)
    res = linear_probe(xtr, ytr, xva, yva, 3, lrs=(0.001, 0.1), epochs=20, batch_size=128)
    assert res.top1 >= 0.95
    assert set(res.sweep) == {0.001, 0.1} and res.best_lr in res.sweep
    shuffled = linear_probe(xtr, ytr[torch.randperm(120, generator=gen)], xva, yva, 3, lrs=(0.1,), epochs=20, batch_size=128)
    assert shuffled.top1 < 0.7  # labels unrelated to features: no better than chance-ish


def test_rankdata_averages_ties_and_spearman_is_rank_pearson() -> None:
    np.testing.assert_array_equal(rankdata(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*4/60 = 0.6
    assert spearman(a, np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)
    assert math.isnan(spearman(a, np.ones(4)))  # undefined, as scipy.stats.spearmanr
