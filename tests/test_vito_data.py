"""Data path of the VITO trainer on real clips: shard resolution, seek-decoding, deterministic stream.

The clips and their shards come from ``tests/vito_clips.py`` (the ``run_dir`` fixture of conftest.py);
with ``broken=True`` every shard also holds an undecodable clip, which the stream skips (the case that
resuming must count exactly).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import cut_after_moov
from vito_clips import FPS, SOURCES, encode, session_shards
from videonet.errors import UserError
from videonet.vito.augment import PARAMS, Box
from videonet.vito.data import (
    Clip, ClipStream, Sample, crop_resize, decode_frames, device_views, frame_tensor, make_loader, read_samples,
    resolve_shards,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def test_resolve_shards_accepts_dir_glob_and_braces(run_dir: Path) -> None:
    expected = [str(run_dir / "shards" / f"shard-00000{i}.tar") for i in range(2)]
    assert resolve_shards(str(run_dir)) == expected
    assert resolve_shards(str(run_dir / "shards" / "*.tar")) == expected
    assert resolve_shards(str(run_dir / "shards" / "shard-{000000..000001}.tar")) == expected
    assert resolve_shards(f"file://{run_dir}/shards/shard-000001.tar") == expected[1:]
    with pytest.raises(UserError):
        resolve_shards(str(run_dir / "nothing-here"))


@pytest.mark.parametrize("gop", [1, 8, FPS, 60])
def test_decode_frames_seeks_to_first_frame_at_or_after_time(gop: int) -> None:
    """Exactly the frames a full decode gives, whatever the GOP: B-frames skipped, keyframe jumps, the end."""
    # A synthetic clip whose frame i is filled with the value i, so the decoded frame tells its index.
    frames = [np.full((32, 32, 3), 4 * i, dtype=np.uint8) for i in range(60)]
    video = encode(frames, gop=gop)
    times = [1.5, 0.0, 2.01, 0.5, 100.0, 0.04, 0.0401, 2.36]  # unsorted, one past the end, one on a frame
    decoded = [frame_tensor(f) for f in decode_frames(video, times)]
    indices = [round(float(f.float().mean()) / 4) for f in decoded]
    assert indices == [min(int(np.ceil(t * FPS - 1e-6)), 59) for t in times]
    assert all(f.shape == (3, 32, 32) and f.dtype == torch.uint8 for f in decoded)
    assert indices[:2] == [38, 0]  # 1.5 s is frame 37.5 -> 38


def test_stream_is_deterministic_and_resumes_mid_stream(run_dir: Path) -> None:
    shards = resolve_shards(str(run_dir))
    kw = dict(views=3, image_size=32, seed=7, batch_size=2, shuffle_buffer=4)
    full = [b for _, b in zip(range(5), make_loader(ClipStream(shards, **kw), workers=2))]
    again = [b for _, b in zip(range(5), make_loader(ClipStream(shards, **kw), workers=2))]
    resumed = [b for _, b in zip(range(2), make_loader(ClipStream(shards, start_batch=3, **kw), workers=2))]
    assert full[0][0].shape == (2, 3, 3, 32, 32) and full[0][0].dtype == torch.uint8
    assert full[0][1].shape == (2, 3, len(PARAMS))

    def same(a: tuple, b: tuple) -> bool:
        return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    assert all(same(a, b) for a, b in zip(full, again))
    assert same(resumed[0], full[3]) and same(resumed[1], full[4])
    assert not torch.equal(full[0][0][:, 0], full[0][0][:, 1])  # views differ (time + crop)
    assert not torch.equal(full[0][1][:, 0], full[0][1][:, 1])  # and their augmentation parameters


def test_samples_cover_all_clips_across_shards(run_dir: Path) -> None:
    stream = ClipStream(resolve_shards(str(run_dir)), seed=1, shuffle_buffer=4)
    keys = [raw["__key__"] for _, raw in zip(range(16), stream._raw(0, 1))]
    assert set(keys) == {f"{Path(name).stem}_{c:02d}" for name, _, count in SOURCES for c in range(count)}
    assert keys[:8] != keys[8:]  # each epoch visits the shards in a new order


def test_single_frame_sampler_gives_views_of_one_frame(run_dir: Path) -> None:
    stream = ClipStream(resolve_shards(str(run_dir)), sampler="single", image_size=32, seed=3)
    raw = next(iter(stream._raw(0, 1)))
    times = stream.sampler(2.5, 3, random.Random(0))
    assert len(set(times)) == 1
    sample = stream.make_sample(raw, "x")
    assert sample.views.shape == (3, 3, 32, 32) and sample.views.dtype == torch.uint8
    assert sample.params.shape == (3, len(PARAMS))


KEY_BYTES = 32


class KeyedStream(ClipStream):
    """The real stream (decoding included), but each sample's views replaced by its key, so batches name their clips."""

    def make_sample(self, raw: dict, seed: str, stream: int = 0, position: int = 0) -> Sample | None:
        sample = super().make_sample(raw, seed, stream, position)
        if sample is None:
            return None
        return sample._replace(views=torch.tensor(list(raw["__key__"].encode().ljust(KEY_BYTES)), dtype=torch.uint8))


def batch_keys(loader, batches: int) -> list[list[str]]:
    """The clip keys of the first ``batches`` batches of a :class:`KeyedStream` loader."""
    return [[bytes(row.tolist()).decode().strip() for row in views] for _, (views, _) in zip(range(batches), loader)]


@pytest.mark.filterwarnings("ignore:skipping sample")
def test_resume_after_skipped_clips_continues_with_the_same_clips(tmp_path_factory: pytest.TempPathFactory) -> None:
    shards = resolve_shards(str(session_shards(tmp_path_factory, broken=True)))
    kw = dict(views=2, image_size=32, seed=5, batch_size=2, shuffle_buffer=1)
    full = batch_keys(make_loader(KeyedStream(shards, **kw), workers=2), 8)
    assert not any(key.startswith("broken") for batch in full for key in batch)

    for k in (1, 2, 3, 5):
        interrupted = make_loader(KeyedStream(shards, **kw), workers=2)
        assert batch_keys(interrupted, k) == full[:k]
        positions = [interrupted.positions[stream] for stream in sorted(interrupted.positions)]
        resumed = make_loader(KeyedStream(shards, start_batch=k, positions=positions, **kw), workers=2)
        assert batch_keys(resumed, 8 - k) == full[k:], k


def test_torchcodec_picks_the_frames_pyav_picks() -> None:
    """The device decoder (torchcodec, here on the CPU: the same code as NVDEC with another device
    string) takes the first frame at/after each time, as :func:`decode_frames` does."""
    frames = [np.full((32, 48, 3), 4 * i, dtype=np.uint8) for i in range(60)]
    video = encode(frames, gop=8)
    times = [1.5, 0.0, 2.01, 0.5, 100.0, 0.04, 0.0401, 2.36]
    whole = [Box(0.0, 0.0, 1.0, 1.0)] * len(times)
    views = device_views(Clip(video, times, whole), 32, "cpu")
    assert views.shape == (len(times), 3, 32, 32) and views.dtype == torch.uint8
    indices = [round(float(v.float().mean()) / 4) for v in views]
    assert indices == [round(float(frame_tensor(f).float().mean()) / 4) for f in decode_frames(video, times)]
    assert indices[:2] == [38, 0]


def test_torchcodec_loader_gives_the_pyav_loaders_views(run_dir: Path) -> None:
    shards = resolve_shards(str(run_dir))
    kw = dict(views=3, image_size=32, seed=7, batch_size=4, shuffle_buffer=4)
    cpu = [b for _, b in zip(range(2), make_loader(ClipStream(shards, **kw), workers=0))]
    device = [b for _, b in zip(range(2), make_loader(ClipStream(shards, decoder="torchcodec", **kw), workers=0))]
    for (a, pa), (b, pb) in zip(cpu, device):
        assert torch.equal(pa, pb) and a.shape == b.shape == (4, 3, 3, 32, 32)
        # Same frames and boxes. The CPU path slices the box out of a frame scaled to the output size, so
        # its box lands within half an output pixel of the device's: compared at 8x8 px blocks, a few
        # grey levels apart (measured: 1.6 and 3.1 on average, 6.8 at most on these 96 px frames).
        blocks = [torch.nn.functional.avg_pool2d(x.float().flatten(0, 1), 8) for x in (a, b)]
        diff = (blocks[0] - blocks[1]).abs().mean(dim=(1, 2, 3))
        assert float(diff.mean()) < 4.0 and float(diff.max()) < 10.0


def test_a_clip_torchcodec_cannot_decode_is_decoded_by_pyav(run_dir: Path, tmp_path: Path) -> None:
    """The per-clip CPU fallback: a file cut off after a 'moov first' header."""
    source_bytes = next(read_samples(resolve_shards(str(run_dir))[0]))["mp4"]
    cut = cut_after_moov(io.BytesIO(source_bytes), tmp_path / "faststart.mp4")
    times, boxes = [0.1, 2.0, 2.4], [Box(0.1, 0.1, 0.8, 0.8)] * 3  # the last two lie past the cut
    with pytest.warns(UserWarning, match="torchcodec could not decode a clip, PyAV decodes it"):
        views = device_views(Clip(cut, times, boxes), 32, "cpu")
    expected = torch.stack([crop_resize(f, b, 32) for f, b in zip(decode_frames(cut, times), boxes)])
    assert torch.equal(views, expected)


def test_trainer_copy_in_the_shard_keeps_the_frame_times_and_is_read_first(tmp_path: Path) -> None:
    """``--trainer-copy``: the shard writer adds ``<key>.train.mp4`` (short side 288, 0.5 s GOPs) beside the
    original; the loader decodes the copy, at the same instants."""
    from videonet.curation.write.shards import write_shard

    frames = [np.full((480, 854, 3), (4 * i) % 256, dtype=np.uint8) for i in range(50)]  # 2 s of 16:9 480p
    original = tmp_path / "clip.mp4"
    original.write_bytes(encode(frames, gop=50))
    shard = tmp_path / "shard.tar"
    write_shard(str(shard), [{"key": "clip", "path": str(original)}], "part", str(tmp_path / "_work"),
                trainer_copy=True)
    raw = next(read_samples(str(shard)))
    assert raw["mp4"] == original.read_bytes() and "train.mp4" in raw
    with av.open(io.BytesIO(raw["train.mp4"])) as copy, av.open(str(original)) as source:
        small, big = copy.streams.video[0], source.streams.video[0]
        assert (small.codec_context.width, small.codec_context.height) == (512, 288)
        times = [[float(p.pts * s.time_base) for p in c.demux(s) if p.pts is not None]
                 for c, s in ((copy, small), (source, big))]
    assert sorted(times[0]) == pytest.approx(sorted(times[1]))
    with av.open(io.BytesIO(raw["train.mp4"])) as copy:
        keys = [float(p.pts * copy.streams.video[0].time_base) for p in copy.demux(video=0) if p.is_keyframe]
    assert keys == pytest.approx([0.0, 0.48, 0.96, 1.44, 1.92])  # a keyframe every round(25 x 0.5) = 12 frames
    picked = [round(float(frame_tensor(f).float().mean()) / 4) for f in decode_frames(raw["train.mp4"], [0.3, 1.7])]
    assert picked == [8, 43]  # the same frames as in the original (frame i is grey 4i)
    stream = ClipStream([], views=2, image_size=32)
    marked = encode([np.full((48, 64, 3), 200, dtype=np.uint8)] * 50)  # a stand-in copy that shows when it is read
    meta = json.dumps({"duration": 2.0}).encode()
    views = stream.make_sample({"mp4": raw["mp4"], "train.mp4": marked, "json": meta}, "s").views
    assert (views.float() - 200).abs().max() <= 2
    views = stream.make_sample({"mp4": raw["mp4"], "json": meta}, "s").views
    assert (views.float() - 200).abs().min() > 2


@pytest.mark.filterwarnings("ignore:torchcodec could not decode")
def test_a_clip_neither_decoder_reads_keeps_its_batch_slot(run_dir: Path) -> None:
    """Every process must gather the same batch size: a clip no decoder reads (here cut after 2 KB, e.g.
    lost in transit after the worker read it) takes another clip's views, with a warning, instead of
    shrinking the batch."""
    from videonet.vito.data import Batch, ClipLoader

    good = next(read_samples(resolve_shards(str(run_dir))[0]))["mp4"]
    header_only = good[:2048]
    times, boxes = [0.1, 0.5], [Box(0.0, 0.0, 1.0, 1.0)] * 2
    with pytest.warns(UserWarning, match="skipping an undecodable clip"):
        assert device_views(Clip(header_only, times, boxes), 32, "cpu") is None
    params = torch.zeros(2, 2, len(PARAMS))
    batch = Batch(torch.empty(2, 0, dtype=torch.uint8), params, [0, 0], [1, 2],
                  [Clip(header_only, times, boxes), Clip(good, times, boxes)])
    with pytest.warns(UserWarning, match="skipping an undecodable clip"):
        views, _ = next(iter(ClipLoader([batch], {0: 0}, 32)))
    assert views.shape == (2, 2, 3, 32, 32) and torch.equal(views[0], views[1])


@pytest.mark.slow  # a demo curation
def test_a_curation_with_trainer_copy_writes_copies_the_loader_reads(demo_dir: Path, tmp_path: Path) -> None:
    from conftest import curate_options
    from videonet.curation.run import curate

    out = tmp_path / "run"
    curate(*curate_options(out, demo_dir, trainer_copy=True))
    shards = resolve_shards(str(out))
    samples = [s for url in shards for s in read_samples(url)]
    assert samples and all("train.mp4" in s and "mp4" in s for s in samples)
    for sample in samples:
        with av.open(io.BytesIO(sample["train.mp4"])) as copy:
            codec = copy.streams.video[0].codec_context
            assert min(codec.width, codec.height) <= 288
    stream = ClipStream(shards, views=2, image_size=32, shuffle_buffer=1)
    assert stream.make_sample(samples[0], "s").views.shape == (2, 3, 32, 32)
