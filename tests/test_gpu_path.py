"""The GPU path of the filter, tested on the CPU (CI has no GPU): torchcodec decoding with torch
resize/crop (NVDEC's path, here on device="cpu") against PyAV on the real demo clips, the keep rule's
frame-N boundary through it, its decode errors, the ``--decoder`` choice, and fixed-size (padded) batches."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import QUERIES, SCAN_CHUNK, SCAN_FRAMES, cut_after_moov
from videonet.curation.judge.decoders import (
    frame_source, resolve_decoder, torchcodec_chunks, torchcodec_or_pyav_chunks,
)
from videonet.curation.judge.frames import CROP, DecodeError, naive_frames, pyav_chunks
from videonet.curation.judge.scan import scan_clips
from videonet.curation.judge.verdicts import JudgeSettings, keep_decision
from videonet.errors import UserError

DEMO = ("chelsea_cat.mp4", "coffee_cup.mp4", "bikes.mp4", "bigbuckbunny.mp4")


def _frames(source, path, limit, chunk=SCAN_CHUNK) -> np.ndarray:
    return np.concatenate([np.asarray(c) for c in source(path, limit, chunk)])


def test_torchcodec_frames_match_the_cpu_decoders(demo_dir):
    for name in DEMO:
        path = str(demo_dir / name)
        chunks = list(torchcodec_chunks(path, SCAN_FRAMES, SCAN_CHUNK))
        assert all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8 for c in chunks)
        assert [len(c) for c in chunks] == [SCAN_CHUNK] * (SCAN_FRAMES // SCAN_CHUNK)
        ours = torch.cat(chunks).numpy()
        assert ours.shape == (SCAN_FRAMES, CROP, CROP, 3)
        swscale = _frames(pyav_chunks, path, SCAN_FRAMES).astype(np.int16)
        reference = naive_frames(path, SCAN_FRAMES).astype(np.int16)  # full-size decode + torchvision resize
        # Same geometry as both: a shifted crop or swapped channels give a mean difference >> 5.
        assert np.abs(ours - swscale).mean() < 3.0, name
        assert np.abs(ours - reference).mean() < 1.5, name


@pytest.fixture(scope="module")
def scans(lite0, demo_dir):
    jobs = [(str(demo_dir / name), {cls}) for name, cls in QUERIES]
    return {decoder: (scan_clips(lite0, jobs, SCAN_FRAMES, SCAN_CHUNK, decoder=decoder),
                      scan_clips(lite0, jobs, SCAN_FRAMES, SCAN_CHUNK, early_exit=False, decoder=decoder))
            for decoder in ("pyav", "torchcodec")}


def test_torchcodec_and_pyav_keep_the_same_clips(scans):
    kept = {d: [keep_decision(s.top1, cls).kept for s, (_, cls) in zip(fast, QUERIES)]
            for d, (fast, _) in scans.items()}
    assert kept["torchcodec"] == kept["pyav"] == [True, True, False, False]
    pairs = [(a, b) for t, p in zip(scans["torchcodec"][1], scans["pyav"][1]) for a, b in zip(t.top1, p.top1)]
    assert len(pairs) == len(QUERIES) * SCAN_FRAMES
    agree = sum(a == b for a, b in pairs) / len(pairs)
    print(f"\nper-frame top-1 agreement, torchcodec + torch resize vs PyAV swscale: {agree:.3f} of {len(pairs)} frames")
    assert agree >= 0.9, agree
    for fast, full in scans.values():  # early exit and thumbnails behave the same through either source
        assert all(s.error is None and s.firsts and s.decoded >= s.frames_classified for s in fast + full)
        assert [s.frames_classified < SCAN_FRAMES for s in fast] == [True, True, False, False]


def test_keep_rule_boundary_at_frame_n_through_torchcodec(lite0, tmp_path):
    """At the paper's 100 frames: one cat frame among coffee frames keeps a clip at the 100th frame,
    not at the 101st, through either decoder (the premise, as in test_curate_e2e, checked first)."""
    import skimage.data

    from videonet.curation.search.demo import pan_zoom_frames, write_clip

    settings = JudgeSettings()
    cat = next(pan_zoom_frames(skimage.data.chelsea(), 1.0))
    cup = list(pan_zoom_frames(skimage.data.coffee(), 12.0))
    clips = {"hundredth": (99, 100), "hundred_first": (100, 120)}
    jobs = []
    for name, (at, length) in clips.items():
        path = tmp_path / f"{name}.mp4"
        write_clip(path, [cat if i == at else cup[i] for i in range(length)])
        jobs.append((str(path), {285}))
        frames = _frames(torchcodec_chunks, str(path), settings.frames + 1, settings.chunk)
        assert len(frames) == min(length, settings.frames + 1)
        assert [i for i, label in enumerate(lite0.top1(frames)[0].tolist()) if label == 285] == [at], name
    assert sum(len(c) for c in torchcodec_chunks(jobs[1][0], settings.frames, settings.chunk)) == settings.frames
    for decoder in ("torchcodec", "pyav"):
        hundredth, hundred_first = scan_clips(lite0, jobs, settings.frames, settings.chunk, decoder=decoder)
        assert (keep_decision(hundredth.top1, 285).first_match, hundredth.frames_classified) == (99, 100), decoder
        assert not keep_decision(hundred_first.top1, 285).kept and hundred_first.frames_classified == 100, decoder
        assert not hundredth.exhausted and not hundred_first.exhausted


def test_torchcodec_decode_contract(lite0, demo_dir):
    """Exhausted clips end early; missing, corrupt and too-slow clips are one-line DecodeErrors, per clip."""
    five_seconds = str(demo_dir / "chelsea_cat_5s.mp4")
    assert [len(c) for c in torchcodec_chunks(five_seconds, 1000, 25)] == [25, 25]  # 5 s at 10 fps
    for name, reason in (("broken_upload.mp4", "cannot open container"), ("missing.mp4", "file not found")):
        with pytest.raises(DecodeError, match=reason) as caught:
            list(torchcodec_chunks(str(demo_dir / name), 5, 5))
        assert "\n" not in str(caught.value) and ".cpp" not in str(caught.value)
    with pytest.raises(DecodeError, match="decoding took longer than 0 s"):
        list(torchcodec_chunks(str(demo_dir / "chelsea_cat.mp4"), 5, 5, timeout_s=0.0))
    short, broken, cat = scan_clips(lite0, [(five_seconds, {1}),
                                            (str(demo_dir / "broken_upload.mp4"), {1}),
                                            (str(demo_dir / "chelsea_cat.mp4"), {285})], 60, 25, decoder="torchcodec")
    assert short.exhausted and short.frames_classified == 50 and short.error is None
    assert broken.error.startswith("cannot open container") and not broken.top1
    assert cat.error is None and 285 in cat.top1


def test_a_clip_torchcodec_cannot_finish_goes_on_with_pyav(lite0, demo_dir, tmp_path):
    """The per-clip CPU fallback, on a file cut off after a 'moov first' header: PyAV decodes what is
    there (the clip ends early), torchcodec fails at the cut; the GPU path's source yields what PyAV does."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(cut_after_moov(str(demo_dir / "chelsea_cat.mp4"), tmp_path / "faststart.mp4"))
    with pytest.raises(DecodeError, match="corrupt video stream after 25 frames"):
        list(torchcodec_chunks(str(cut), 100, 25))
    pyav = _frames(pyav_chunks, str(cut), 100, 25)
    assert 25 < len(pyav) < 50
    chunks = list(torchcodec_or_pyav_chunks(str(cut), 100, 25))
    assert all(isinstance(c, torch.Tensor) for c in chunks) and sum(len(c) for c in chunks) == len(pyav)
    np.testing.assert_array_equal(chunks[1].numpy(), pyav[25:])  # torchcodec's first chunk, then PyAV's
    jobs = [(str(cut), {1}), (str(demo_dir / "coffee_cup.mp4"), {1})]  # rejected, all frames; rounds mix sources
    scans = {d: scan_clips(lite0, jobs, 100, 25, decoder=d) for d in ("torchcodec", "pyav")}
    outcomes = {d: [(s.error, s.exhausted, s.frames_classified) for s in got] for d, got in scans.items()}
    assert outcomes["torchcodec"] == outcomes["pyav"] == [(None, True, len(pyav)), (None, False, 100)]
    with pytest.raises(DecodeError, match="decoding took longer than 0 s"):  # a timeout is final: PyAV is no faster
        list(torchcodec_or_pyav_chunks(str(demo_dir / "chelsea_cat.mp4"), 5, 5, timeout_s=0.0))


def test_decoder_choice():
    assert resolve_decoder("auto", "cpu") == ("pyav", "the classifier runs on cpu; NVDEC needs CUDA")
    assert frame_source("auto", "cpu") is pyav_chunks
    assert resolve_decoder("auto", "cuda")[0] == "torchcodec"  # torchcodec imports here; CUDA is only named
    assert resolve_decoder("torchcodec", "cpu")[0] == "torchcodec" and JudgeSettings(decoder="torchcodec")
    with pytest.raises(UserError, match="--decoder 'nvdec': expected auto, pyav, torchcodec"):
        JudgeSettings(decoder="nvdec")


def test_torchcodec_that_cannot_import(monkeypatch):
    """Asked for, it is a one-line error naming the fix; under auto on CUDA, PyAV, saying why."""
    for module in [m for m in sys.modules if m == "torchcodec" or m.startswith("torchcodec.")]:
        monkeypatch.setitem(sys.modules, module, None)  # `import torchcodec.decoders` now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'videonet\[gpu\]'") as caught:
        JudgeSettings(decoder="torchcodec")
    assert "\n" not in str(caught.value)
    decoder, why = resolve_decoder("auto", "cuda")
    assert decoder == "pyav" and why.startswith("decoding on the CPU, not NVDEC: torchcodec unavailable (")


def test_padded_batches_give_the_same_labels(lite0, demo_dir):
    """Fixed-size batches (CUDA graphs) pad with black frames; every frame keeps its label and score,
    for numpy and tensor input, with the torch engine and the default (OpenVINO where installed)."""
    from videonet.curation.judge.classifier import load_classifier

    frames = np.concatenate([_frames(pyav_chunks, str(demo_dir / n), 4) for n in DEMO])[:13]  # 8 + 5: one padded
    for classifier in (lite0, load_classifier("efficientnet-lite0", device="cpu", engine="torch")):
        padded = replace(classifier, fixed_batch=True)
        labels, scores = classifier.top1(frames)
        tensor = torch.from_numpy(frames)
        for got in (padded.top1(frames), padded.top1(tensor), classifier.top1(tensor)):
            assert got[0].tolist() == labels.tolist()
            np.testing.assert_allclose(got[1], scores, atol=1e-3)


@pytest.mark.slow
def test_a_demo_curation_through_torchcodec_keeps_what_pyav_keeps(demo_run, demo_dir, tmp_path):
    """``--decoder torchcodec`` reaches the judge through the pipeline: the same kept clips and audit verdicts."""
    from conftest import curate_options
    from videonet.curation.run import curate
    from videonet.curation.rundir.files import read_audit, read_metadata

    out = tmp_path / "torchcodec"
    curate(*curate_options(out, demo_dir, decoder="torchcodec"))
    reference, _ = demo_run
    verdicts = [read_audit(str(run)).set_index(["id", "wnid"])["status"].sort_index() for run in (out, reference)]
    assert verdicts[0].equals(verdicts[1]) and (verdicts[0] == "kept").any()
    assert sorted(read_metadata(str(out))["id"]) == sorted(read_metadata(str(reference))["id"])
