"""Fast filter vs the naive reference on the real demo clips with the real offline classifier."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import QUERIES, SCAN_CHUNK, SCAN_FRAMES
from videonet.curation.judge.scan import naive_scan, scan_clips
from videonet.curation.judge.frames import CROP, DecodeError, center_crop, iter_frames, naive_frames
from videonet.curation.judge.verdicts import keep_decision


@pytest.fixture(scope="module")
def scans(lite0, demo_dir):
    jobs = [(str(demo_dir / name), {cls}) for name, cls in QUERIES]
    fast = scan_clips(lite0, jobs, SCAN_FRAMES, SCAN_CHUNK)
    full = scan_clips(lite0, jobs, SCAN_FRAMES, SCAN_CHUNK, early_exit=False)
    naive = [naive_scan(lite0, path, SCAN_FRAMES) for path, _ in jobs]
    return fast, full, naive


def _kept(scan, cls):
    return keep_decision(scan.top1, cls).kept


def test_fast_and_naive_keep_the_same_clips(scans):
    fast, _, naive = scans
    decisions = [(_kept(f, cls), _kept(n, cls)) for f, n, (_, cls) in zip(fast, naive, QUERIES)]
    assert [f for f, _ in decisions] == [n for _, n in decisions]
    assert decisions[0] == (True, True) and decisions[1] == (True, True)  # the cat and the espresso are kept
    assert decisions[2] == (False, False) and decisions[3] == (False, False)  # goldfish, teapot: rejected


def test_per_frame_labels_mostly_agree(scans):
    _, full, naive = scans
    pairs = [(a, b) for f, n in zip(full, naive) for a, b in zip(f.top1, n.top1)]
    assert len(pairs) == len(QUERIES) * SCAN_FRAMES
    agree = sum(a == b for a, b in pairs) / len(pairs)
    assert agree >= 0.9, agree  # the two decoders' bilinear filters differ by ~1 grey level


def test_early_exit_classifies_fewer_frames_only_for_kept_clips(scans):
    fast, full, _ = scans
    for f, n, (_, cls) in zip(fast, full, QUERIES):
        assert f.error is None and n.error is None
        assert n.frames_classified == SCAN_FRAMES
        if _kept(f, cls):
            assert f.frames_classified < SCAN_FRAMES  # stopped after the chunk with the first match
            assert f.top1 == n.top1[:f.frames_classified]
        else:
            assert f.frames_classified == SCAN_FRAMES and f.top1 == n.top1


def test_decode_fast_matches_naive(demo_dir):
    for name in ("chelsea_cat.mp4", "bikes.mp4", "bigbuckbunny.mp4"):
        fast = np.stack(list(iter_frames(str(demo_dir / name), 12)))
        naive = naive_frames(str(demo_dir / name), 12)
        assert fast.shape == naive.shape == (12, CROP, CROP, 3) and fast.dtype == np.uint8
        diff = np.abs(fast.astype(np.int16) - naive.astype(np.int16))
        assert diff.mean() < 3.0, (name, diff.mean())  # a shifted crop or wrong colours give >> 5


def test_decode_stops_at_the_limit_and_at_the_end(demo_dir):
    assert len(list(iter_frames(str(demo_dir / "chelsea_cat.mp4"), 7))) == 7
    assert len(list(iter_frames(str(demo_dir / "chelsea_cat_5s.mp4"), 1000))) == 50  # 5 s at 10 fps
    with pytest.raises(DecodeError):
        list(iter_frames(str(demo_dir / "broken_upload.mp4"), 5))


def test_center_crop_uses_torchvision_offsets():
    image = np.arange(256 * 455).reshape(256, 455, 1)
    crop = center_crop(image)
    assert crop.shape == (224, 224, 1) and crop[0, 0, 0] == image[16, 116, 0]  # round(115.5) == 116


def test_decode_errors_are_reported_per_clip(lite0, demo_dir):
    scans = scan_clips(lite0, [(str(demo_dir / "broken_upload.mp4"), {1}), (str(demo_dir / "chelsea_cat.mp4"), {285})],
                       SCAN_FRAMES, SCAN_CHUNK)
    assert scans[0].error and not scans[0].top1
    assert scans[1].error is None and 285 in scans[1].top1
