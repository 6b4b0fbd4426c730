"""Training data: the WebDataset shards of ``videonet curate`` -> batches of cropped multi-view clips.

Shards are tar files (``<run>/shards/*.tar``, local or any fsspec URL such as ``gs://``) whose samples
are ``<key>.mp4`` (the clip) + ``<key>.json`` (metadata with at least ``id``, ``wnid``,
``class_index``, ``name``, ``duration``, ``fps``), and ``<key>.train.mp4`` (the trainer-ready copy of
:mod:`~videonet.vito.transcode`, read instead of the original) when curated with ``--trainer-copy``.
Per clip a :mod:`~videonet.vito.sampling` sampler picks one time per view, and the sample's RNG draws
each view's crop box and augmentation parameters (:mod:`~videonet.vito.augment`). Then either

- a loader worker decodes *only those frames* with PyAV (:func:`decode_frames`) and crops them to the
  output size (:func:`crop_resize`), or
- with ``decoder="torchcodec"`` the worker hands the encoded clip on and the training device decodes
  and crops it (:func:`device_views`; NVDEC on CUDA).

Either way a batch is uint8 crops + parameters; the trainer's
:class:`~videonet.vito.augment.DeviceAugment` finishes the views on the device.

The stream is infinite and **deterministic**, which is what makes a resumed run bit-exact:

- epoch ``e`` visits the shards in a permutation drawn from ``(seed, e)``; with at least as many
  shards as loader workers in total (ranks x workers) each worker reads every ``total``-th shard of
  it, otherwise every worker reads all shards and keeps every ``total``-th sample;
- each worker mixes samples across shards with a seeded shuffle buffer;
- the frame times and augmentations of the ``i``-th sample of a worker come from an RNG seeded with
  ``(seed, worker, i)``, not from a running generator.

``DataLoader`` hands out the batches of its workers round-robin, so batch ``k`` of a rank is batch
``k // W`` of its worker ``k % W``. Every sample carries its stream and the number of raw samples
that stream has consumed up to and including it (undecodable ones, which yield nothing, too), and
:class:`ClipLoader` keeps, per stream, that count at the end of the last batch handed out: the
``positions`` a checkpoint saves. Resuming skips exactly that many raw (undecoded) samples per
stream, which costs reading the tar bytes but no decoding. Counting batches x batch size instead
would start early after a skipped clip.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import warnings
from fractions import Fraction
from typing import Iterator, NamedTuple, Sequence

import av
import braceexpand
import fsspec
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videonet.errors import UserError
from videonet.vito.augment import (
    IMAGE_MIN_SCALE, VIDEO_MIN_SCALE, Box, crop_box, draw_params, view_distribution,
)
from videonet.vito.sampling import SAMPLERS, WINDOW_S
from videonet.vito.transcode import TRAIN_EXT


def resolve_shards(source: str) -> list[str]:
    """Shard URLs from a run dir (``<dir>/shards/*.tar``), a glob, brace notation, or one tar (local or fsspec)."""
    urls: list[str] = []
    for pattern in braceexpand.braceexpand(source):
        fs, path = fsspec.core.url_to_fs(pattern)
        if any(c in path for c in "*?["):
            found = fs.glob(path)
        elif fs.isdir(path):
            found = fs.glob(path.rstrip("/") + "/shards/*.tar") or fs.glob(path.rstrip("/") + "/*.tar")
        else:
            found = [path] if fs.exists(path) else []
        urls += sorted(fs.unstrip_protocol(p) if _remote(pattern) else p for p in found)
    if not urls:
        raise UserError(f"no shards found at {source!r} (expected a run dir with shards/*.tar, a glob or a brace URL)")
    return urls


def _remote(url: str) -> bool:
    """Whether a URL names a non-local filesystem (so results must keep their protocol)."""
    return "://" in url and not url.startswith("file://")


def read_samples(url: str) -> Iterator[dict]:
    """Raw samples (``__key__``, ``mp4``, ``json`` bytes) of one shard, parsed by webdataset."""
    with fsspec.open(url, "rb") as stream:
        yield from wds.tariterators.group_by_keys(
            wds.tariterators.tar_file_expander([{"url": url, "stream": stream}])
        )


def frame_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """``(3, H, W)`` uint8 RGB of a whole frame."""
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)


def crop_resize(frame: av.VideoFrame, box: Box, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8 RGB of ``box`` (fractions of the frame), resized bicubically.

    One swscale pass converts and scales the whole frame so that the box becomes ``size x size``,
    then the box is sliced out: the colour conversion runs at the crop's output size, not the
    frame's (a 0.6-area crop of a 480p frame converts ~3x fewer pixels), and swscale's bicubic
    filter widens with the downscale factor (antialiased, as ``antialias=True`` was before).
    """
    width, height = max(size, round(size / box.width)), max(size, round(size / box.height))
    left = min(round(box.left * width), width - size)
    top = min(round(box.top * height), height - size)
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BICUBIC")
    return torch.from_numpy(rgb[top:top + size, left:left + size]).permute(2, 0, 1).contiguous()


def _seconds(pts: int | None, start: int, base: Fraction) -> float:
    return float((pts - start) * base) if pts is not None else -math.inf


def decode_frames(video: bytes, times: Sequence[float]) -> list[av.VideoFrame]:
    """For each time (s from the stream start), the first frame at/after it (the last frame past the end).

    Decodes only what those frames need, exactly (the same frames as decoding everything):

    - one seek to the keyframe before ``min(times)``, then the packets up to the first keyframe
      after ``max(times)`` are read (demuxing costs little next to decoding);
    - a time whose keyframe lies beyond the packets decoded so far starts there (decoder flushed)
      instead of decoding the whole gap: views further apart than a GOP cost a GOP each;
    - packets shown before the next wanted time are decoded with ``skip_frame=NONREF``: libavcodec
      drops the frames nothing references (H.264's non-reference B-frames), which are never wanted;
    - one decoder thread: the loader's workers are the parallelism.
    """
    order = sorted(range(len(times)), key=times.__getitem__)
    out: list[av.VideoFrame | None] = [None] * len(times)
    with av.open(io.BytesIO(video), mode="r") as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1
        base, start = stream.time_base, stream.start_time or 0
        container.seek(start + int(times[order[0]] / base), stream=stream, backward=True, any_frame=False)
        packets, stop_at, at_end = [], None, True
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            t = _seconds(packet.pts, start, base)
            if stop_at is not None and t >= stop_at:
                at_end = False  # leading frames of that GOP (open GOPs) are in, the rest is not wanted
                break
            packets.append(packet)
            if packet.is_keyframe and t > times[order[-1]] and len(packets) > 1:
                stop_at = t
        if not packets:
            raise ValueError("video has no packets after the seek point")
        keys = [(i, _seconds(p.pts, start, base)) for i, p in enumerate(packets) if p.is_keyframe]
        # Past the end means the last frame: aim at it, so NONREF skipping cannot drop it.
        last = max(_seconds(p.pts, start, base) for p in packets) if at_end else math.inf
        ready: list[av.VideoFrame] = []  # decoded, in presentation order, not yet passed
        position, drained, previous = 0, False, None
        for index in order:
            wanted = min(times[index], last) - 1e-6
            jump = max((i for i, t in keys if t <= wanted), default=0)
            if jump > position and not any(_seconds(f.pts, start, base) >= wanted for f in ready):
                codec.flush_buffers()  # the frames still in the decoder are all shown before the keyframe
                ready, position = [], jump
            while True:
                while ready and _seconds(ready[0].pts, start, base) < wanted:
                    previous = ready.pop(0)
                if ready or drained:
                    break
                if position < len(packets):
                    packet = packets[position]
                    position += 1
                    codec.skip_frame = "NONREF" if _seconds(packet.pts, start, base) < wanted else "DEFAULT"
                    try:
                        ready += [f for f in codec.decode(packet) if f.pts is not None]
                    except av.InvalidDataError:  # a cut-off or corrupt stream ends here, as PyAV's decode() would
                        position = len(packets)
                else:
                    codec.skip_frame = "DEFAULT"
                    ready += [f for f in codec.decode(None) if f.pts is not None]
                    drained = True
            frame = ready[0] if ready else previous
            if frame is None:
                raise ValueError("video has no decodable frame after the seek point")
            out[index] = frame
    return out  # type: ignore[return-value]


def frame_aspect(video: bytes) -> float:
    """Width / height of the video stream, from the container's header; ``ValueError`` without a video stream."""
    with av.open(io.BytesIO(video), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        codec = container.streams.video[0].codec_context
        if not codec.width or not codec.height:
            raise ValueError("video stream without a frame size")
        return codec.width / codec.height


def video_duration(video: bytes) -> float:
    """Duration in seconds from the container (used when the metadata lacks ``duration``)."""
    with av.open(io.BytesIO(video), mode="r") as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / av.time_base


class Clip(NamedTuple):
    """What the training device decodes itself (``decoder="torchcodec"``): the encoded clip and the
    frame times and crop boxes its worker drew."""

    video: bytes
    times: list[float]
    boxes: list[Box]


class Sample(NamedTuple):
    """One clip's views, their augmentation parameters, and where the clip lies in its stream."""

    views: torch.Tensor  # (views, 3, size, size) uint8 crops; empty when the device decodes (see clip)
    params: torch.Tensor  # (views, len(PARAMS)) float: the device half of the augmentations
    stream: int  # global stream id: rank * loader workers per rank + worker
    position: int  # raw samples the stream has consumed up to and including this one
    clip: Clip | None = None  # the encoded clip, when the device decodes


class Batch(NamedTuple):
    """The samples of one batch, stacked: ``views`` ``(B, V, 3, S, S)`` uint8, ``params`` ``(B, V, P)``."""

    views: torch.Tensor
    params: torch.Tensor
    streams: list[int]
    positions: list[int]
    clips: list[Clip] | None


def collate(samples: list[Sample]) -> Batch:
    """Stack a batch (the clips' bytes, when present, stay a list)."""
    clips = [s.clip for s in samples] if samples[0].clip is not None else None
    return Batch(torch.stack([s.views for s in samples]), torch.stack([s.params for s in samples]),
                 [s.stream for s in samples], [s.position for s in samples], clips)


class ClipStream(IterableDataset):
    """Infinite, deterministic stream of :class:`Sample` s, one per decodable clip.

    ``positions`` (one raw-sample count per global stream, as :attr:`ClipLoader.positions` saved
    them) says where each stream resumes; without it a stream resumes after ``batch_size`` raw
    samples per batch before ``start_batch``, exact only when no clip was skipped.
    ``start_batch`` also maps the loader workers of a restarted ``DataLoader`` to their streams.
    ``decoder="torchcodec"`` leaves the decoding to the training device (:class:`ClipLoader`): the
    worker then only reads the clip and draws its times, crops and augmentation parameters.
    """

    def __init__(
        self,
        shards: list[str],
        *,
        views: int = 3,
        sampler: str = "marginal",
        image_size: int = 224,
        min_scale: float | None = None,
        window: float = WINDOW_S,
        seed: int = 0,
        batch_size: int = 1,
        start_batch: int = 0,
        positions: Sequence[int] | None = None,
        shuffle_buffer: int = 256,
        rank: int = 0,
        world: int = 1,
        decoder: str = "pyav",
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.shards, self.views, self.window = list(shards), views, window
        self.sampler = SAMPLERS[sampler]
        if min_scale is None:
            min_scale = IMAGE_MIN_SCALE if sampler == "single" else VIDEO_MIN_SCALE
        self.image_size, self.min_scale, self.decoder = image_size, min_scale, decoder
        self.seed, self.batch_size, self.start_batch = seed, batch_size, start_batch
        self.positions = list(positions) if positions is not None else None
        self.shuffle_buffer, self.rank, self.world = shuffle_buffer, rank, world

    def _raw(self, worker: int, total: int) -> Iterator[dict]:
        """This worker's share of the shards, epoch after epoch, forever."""
        epoch = 0
        while True:
            order = list(self.shards)
            random.Random(f"shards-{self.seed}-{epoch}").shuffle(order)
            by_shard = len(order) >= total
            seen = 0
            for index, sample in enumerate(s for url in (order[worker::total] if by_shard else order)
                                           for s in read_samples(url)):
                if by_shard or index % total == worker:
                    seen += 1
                    yield sample
            if not seen:
                raise UserError(f"loader worker {worker} found no samples in {len(order)} shard(s)")
            epoch += 1

    def start_position(self, local: int, per_rank: int) -> int:
        """Raw samples that stream ``local`` of this rank (of ``per_rank``) consumed before this run."""
        if self.positions is not None:
            return self.positions[self.rank * per_rank + local]
        # The batches that stream produced before start_batch: local, local + W, ... < start_batch.
        return len(range(local, self.start_batch, per_rank)) * self.batch_size

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        loader_worker, per_rank = (info.id, info.num_workers) if info else (0, 1)
        # The DataLoader polls its workers from 0 again after a restart, so when resuming at batch k
        # its worker i continues the stream of the worker that would have produced batch k + i.
        local = (loader_worker + self.start_batch) % per_rank
        worker, total = self.rank * per_rank + local, self.world * per_rank
        skip = self.start_position(local, per_rank)
        mixed = wds.filters.shuffle(self.shuffle_buffer, self.shuffle_buffer,
                                    rng=random.Random(f"mix-{self.seed}-{worker}"))(self._raw(worker, total))
        for index, raw in enumerate(mixed):
            if index < skip:
                continue
            sample = self.make_sample(raw, f"{self.seed}-{worker}-{index}", worker, index + 1)
            if sample is not None:
                yield sample

    def make_sample(self, raw: dict, seed: str, stream: int = 0, position: int = 0) -> Sample | None:
        """Sample times, crops and augmentation parameters from ``seed``; decode and crop those frames
        (unless the device decodes). ``None`` (with a warning) for an undecodable clip."""
        rng = random.Random(seed)
        try:
            meta = json.loads(raw["json"])
            video = raw.get(TRAIN_EXT) or raw["mp4"]  # the trainer-ready copy when curation wrote one
            duration = float(meta.get("duration") or video_duration(video))
            times = self.sampler(duration, self.views, rng, self.window)
            params = torch.tensor([draw_params(rng, view_distribution(v)) for v in range(self.views)])
            if self.decoder == "torchcodec":  # the header gives the frame's shape (and skips what is no video)
                boxes = [crop_box(rng, self.min_scale, frame_aspect(video)) for _ in times]
                return Sample(torch.empty(0, dtype=torch.uint8), params, stream, position, Clip(video, times, boxes))
            frames = decode_frames(video, times)
            boxes = [crop_box(rng, self.min_scale, frames[0].width / frames[0].height) for _ in times]
            views = torch.stack([crop_resize(f, box, self.image_size) for f, box in zip(frames, boxes)])
        except (KeyError, ValueError, av.FFmpegError) as exc:
            warnings.warn(f"skipping sample {raw.get('__key__')!r} of {raw.get('__url__')}: {exc}")
            return None
        return Sample(views, params, stream, position)


def _worker_init(_: int) -> None:
    """One intra-op thread per loader worker: the workers themselves are the parallelism."""
    torch.set_num_threads(1)


class ClipLoader:
    """Iterates the batches of a :class:`ClipStream`'s ``DataLoader`` as ``(views, params)``.

    ``views`` are the ``(B, views, 3, size, size)`` uint8 crops (decoded on ``device`` by torchcodec
    when the stream leaves decoding to it), ``params`` their augmentation parameters; the trainer's
    :class:`~videonet.vito.augment.DeviceAugment` finishes the views on the device.
    ``positions`` maps each of this rank's streams to the raw samples it has consumed up to the
    end of the last batch handed out (prefetched batches do not count): what a checkpoint saves
    so that a resumed run starts with the next batch whatever clips were skipped.
    """

    def __init__(self, loader: DataLoader, positions: dict[int, int], size: int, device: str = "cpu") -> None:
        self.loader, self.positions, self.size, self.device = loader, positions, size, device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            self.positions[batch.streams[-1]] = batch.positions[-1]
            views = batch.views
            if batch.clips is not None:
                decoded = [device_views(clip, self.size, self.device) for clip in batch.clips]
                good = next((v for v in decoded if v is not None), None)
                if good is None:
                    raise ValueError(f"no clip of a batch of {len(decoded)} could be decoded")
                # An undecodable clip keeps its batch slot (every rank gathers the same batch size) with the
                # views of another clip: rare (the worker already skipped what does not open).
                views = torch.stack([v if v is not None else good for v in decoded])
            yield views, batch.params


def device_views(clip: Clip, size: int, device: str) -> torch.Tensor | None:
    """``(V, 3, size, size)`` uint8 crops of ``clip`` decoded by torchcodec on ``device`` (NVDEC on CUDA).

    The frame at/after each time is picked by index from the stream's frame rate (torchcodec's
    approximate seek mode, no scan of the file); crop and bicubic antialiased resize run on the
    device. A clip torchcodec cannot decode is decoded by PyAV instead (the CPU fallback, per clip,
    as the filter's), so a GPU error loses no sample and the sample stream stays the same; ``None``
    (with a warning) when PyAV cannot either.
    """
    from torchcodec.decoders import VideoDecoder
    from torchvision.transforms.v2 import functional as F

    try:
        decoder = VideoDecoder(clip.video, device=device, seek_mode="approximate", num_ffmpeg_threads=1)
        meta = decoder.metadata
        begin = meta.begin_stream_seconds_from_header or 0.0
        last = meta.num_frames - 1
        indices = [min(max(math.ceil((t - begin) * meta.average_fps - 1e-6), 0), last) for t in clip.times]
        frames = decoder.get_frames_at(indices).data
    except (RuntimeError, ValueError, IndexError) as exc:
        warnings.warn(f"torchcodec could not decode a clip, PyAV decodes it: {str(exc).splitlines()[0][:200]}")
        try:
            cpu = decode_frames(clip.video, clip.times)
            return torch.stack([crop_resize(f, box, size) for f, box in zip(cpu, clip.boxes)]).to(device)
        except (ValueError, av.FFmpegError) as again:
            warnings.warn(f"skipping an undecodable clip: {again}")
            return None
    height, width = frames.shape[-2:]
    crops = []
    for frame, box in zip(frames, clip.boxes):
        w, h = max(1, round(box.width * width)), max(1, round(box.height * height))
        left, top = min(round(box.left * width), width - w), min(round(box.top * height), height - h)
        crops.append(F.resized_crop(frame, top, left, h, w, [size, size],
                                    interpolation=F.InterpolationMode.BICUBIC, antialias=True))
    return torch.stack(crops)


def make_loader(stream: ClipStream, workers: int, pin_memory: bool = False, device: str = "cpu") -> ClipLoader:
    """Batches of ``stream`` from ``workers`` processes (0: in-process), starting at its start positions."""
    per_rank = max(workers, 1)
    loader = DataLoader(
        stream,
        batch_size=stream.batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    starts = {stream.rank * per_rank + local: stream.start_position(local, per_rank) for local in range(per_rank)}
    return ClipLoader(loader, starts, stream.image_size, device)


def worker_count(requested: int | None) -> int:
    """``requested`` or, by default, one loader worker per spare core (at most 8)."""
    if requested is not None:
        return max(requested, 0)
    return max(min(8, (os.cpu_count() or 1) - 1), 0)
