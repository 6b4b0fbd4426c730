"""DAVIS region (J) and boundary (F) measures, ported from the official davis2017-evaluation toolkit.

Re-implemented with numpy only (the toolkit needs OpenCV) and kept numerically identical: J is the
IoU of two binary masks (1 when both are empty); F is the F-measure of boundary precision/recall
where a boundary pixel counts as matched if the other boundary lies within a disk of radius
ceil(0.008 * image diagonal).

Void (255) pixels: the toolkit's semi-supervised evaluation (``davis2017/evaluation.py``) passes
``void_pixels=None``, and ``DAVIS.get_all_masks`` has already set void to 0, so void counts as
background there; that is the default here (``void="background"``). ``void="ignore"`` drops void
pixels from both masks instead (what the toolkit does only for the unsupervised task).

Statistics per object follow ``davis2017/utils.py:db_statistics``: mean, recall = fraction of
frames above 0.5, decay = mean of the first minus mean of the last of 4 bins of frames, with
bin edges ``round(linspace(1, n, 5) + 1e-10) - 1`` and bin i spanning frames ids[i]..ids[i+1]
inclusive. The toolkit casts the edges to uint8 (wrong past 255 frames, which DAVIS never has);
they are plain ints here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from videonet.evaluation.settings import DavisRun

BOUNDARY_TOLERANCE = 0.008
VOID = 255  # annotation value of pixels nobody labelled
VOID_MODES = ("background", "ignore")


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: intersection over union of two binary masks; two empty masks agree perfectly."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.logical_or(gt, pred).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(gt, pred).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask: pixels that differ from their E, S or SE neighbour.

    Same definition as the toolkit's ``_seg2bmap`` at full resolution, including its treatment of
    the last row and column.
    """
    seg = mask.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk (x^2 + y^2 <= r^2, as skimage.morphology.disk), by OR-ing shifted copies.

    Only the bounding box of the mask grown by ``radius`` can change, so the work is done there:
    boundaries are sparse and this makes scoring a 480p DAVIS frame several times faster.
    """
    out = np.zeros(mask.shape, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out
    y0, y1 = max(ys.min() - radius, 0), min(ys.max() + radius + 1, mask.shape[0])
    x0, x1 = max(xs.min() - radius, 0), min(xs.max() + radius + 1, mask.shape[1])
    h, w = y1 - y0, x1 - x0
    padded = np.pad(mask[y0:y1, x0:x1].astype(bool), radius)
    box = out[y0:y1, x0:x1]  # a view: OR-ing into it fills ``out``
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                box |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def boundary_tolerance_px(shape: tuple[int, ...], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Matching radius in pixels: ceil(tolerance * image diagonal), e.g. 8 px at 854x480."""
    return int(math.ceil(tolerance * math.hypot(shape[0], shape[1])))


def boundary_measure(gt: np.ndarray, pred: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """F: harmonic mean of boundary precision and recall with the DAVIS distance tolerance."""
    radius = boundary_tolerance_px(gt.shape, tolerance)
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = int(gt_b.sum()), int(pred_b.sum())
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:  # toolkit: precision or recall is 0, the other 1, so F = 0
        return 0.0
    precision = (pred_b & dilate_disk(gt_b, radius)).sum() / n_pred
    recall = (gt_b & dilate_disk(pred_b, radius)).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


@dataclass
class ObjectScores:
    """Per-frame J and F of one object in one sequence."""

    sequence: str
    object_id: int
    j: list[float]
    f: list[float]


def score_sequence(name: str, gts: list[np.ndarray], preds: list[np.ndarray], object_ids: list[int],
                   void: str = DavisRun.void) -> list[ObjectScores]:
    """J and F of every object on every frame except the first (given) and last, as the toolkit does.

    ``gts`` and ``preds`` are label maps (H, W) with 0 as background and 255 as void, which counts
    as background (``void="background"``, the toolkit's semi-supervised scoring) or is left out of
    both masks (``void="ignore"``). A sequence of two frames or fewer has no scored frames, so all
    its frames but the first are scored instead.
    """
    if void not in VOID_MODES:
        raise ValueError(f"void must be one of {VOID_MODES}, not {void!r}")
    frames = range(1, len(gts) - 1) if len(gts) > 2 else range(1, len(gts))
    scores = [ObjectScores(name, obj, [], []) for obj in object_ids]
    for t in frames:
        valid = gts[t] != VOID if void == "ignore" else np.ones(gts[t].shape, dtype=bool)
        for s in scores:
            gt, pred = (gts[t] == s.object_id) & valid, (preds[t] == s.object_id) & valid
            s.j.append(region_similarity(gt, pred))
            s.f.append(boundary_measure(gt, pred))
    return scores


def db_statistics(per_frame: list[float]) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F, as the toolkit's ``db_statistics``."""
    values = np.asarray(per_frame, dtype=float)
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return float(np.mean(values)), float(np.mean(values > 0.5)), float(np.mean(bins[0]) - np.mean(bins[3]))


def summarize(scores: list[ObjectScores]) -> dict[str, float]:
    """Dataset statistics as the DAVIS-2017 toolkit reports them: per-object statistics, averaged over objects."""
    out = {}
    for measure in ("J", "F"):
        stats = np.array([db_statistics(getattr(s, measure.lower())) for s in scores])  # (objects, 3)
        out |= dict(zip((f"{measure}_mean", f"{measure}_recall", f"{measure}_decay"), stats.mean(axis=0).tolist()))
    return {**out, "JF_mean": (out["J_mean"] + out["F_mean"]) / 2}
