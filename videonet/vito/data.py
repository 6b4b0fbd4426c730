"""Training data: the WebDataset shards of ``videonet curate`` -> batches of augmented multi-view clips.

Shards are tar files (``<run>/shards/*.tar``, local or any fsspec URL such as ``gs://``) whose samples
are ``<key>.mp4`` (the clip) + ``<key>.json`` (metadata with at least ``id``, ``wnid``,
``class_index``, ``name``, ``duration``, ``fps``). Per clip a :mod:`~videonet.vito.sampling` sampler
picks one time per view and :func:`decode_frames` decodes *only those frames* with PyAV: one seek
to the keyframe before the earliest time, then forward decoding to the first frame at/after each
time (the views lie inside one 2.56 s window, so one seek serves all of them).

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
import os
import random
import warnings
from typing import Iterator, NamedTuple, Sequence

import av
import braceexpand
import fsspec
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videonet.errors import UserError
from videonet.vito.augment import ViewAugment
from videonet.vito.sampling import SAMPLERS, WINDOW_S


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


def _frame_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """``(3, H, W)`` uint8 RGB."""
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)


def decode_frames(video: bytes, times: list[float]) -> list[torch.Tensor]:
    """For each time (s from the stream start), the first frame at/after it (the last frame past the end).

    One seek to the keyframe before ``min(times)``, then forward decoding; identical frames are
    converted once and shared.
    """
    order = sorted(range(len(times)), key=times.__getitem__)
    out: list[torch.Tensor | None] = [None] * len(times)
    with av.open(io.BytesIO(video), mode="r") as container:
        stream = container.streams.video[0]
        base = stream.time_base
        start = stream.start_time or 0
        container.seek(start + int(times[order[0]] / base), stream=stream, backward=True, any_frame=False)
        pos, previous = 0, None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float((frame.pts - start) * base)
            tensor = None
            while pos < len(order) and t >= times[order[pos]] - 1e-6:
                tensor = tensor if tensor is not None else _frame_tensor(frame)
                out[order[pos]] = tensor
                pos += 1
            if pos == len(order):
                break
            previous = frame
        if pos < len(order):
            if previous is None:
                raise ValueError("video has no decodable frame after the seek point")
            tail = _frame_tensor(previous)
            for i in order[pos:]:
                out[i] = tail
    return out  # type: ignore[return-value]


def video_duration(video: bytes) -> float:
    """Duration in seconds from the container (used when the metadata lacks ``duration``)."""
    with av.open(io.BytesIO(video), mode="r") as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / av.time_base


class Sample(NamedTuple):
    """One clip's views and where it lies in its stream (batched by the ``DataLoader`` field by field)."""

    views: torch.Tensor  # (views, 3, size, size)
    stream: int  # global stream id: rank * loader workers per rank + worker
    position: int  # raw samples the stream has consumed up to and including this one


class ClipStream(IterableDataset):
    """Infinite, deterministic stream of :class:`Sample` s, one per decodable clip.

    ``positions`` (one raw-sample count per global stream, as :attr:`ClipLoader.positions` saved
    them) says where each stream resumes; without it a stream resumes after ``batch_size`` raw
    samples per batch before ``start_batch``, exact only when no clip was skipped.
    ``start_batch`` also maps the loader workers of a restarted ``DataLoader`` to their streams.
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
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.shards, self.views, self.window = list(shards), views, window
        self.sampler = SAMPLERS[sampler]
        if min_scale is None:
            min_scale = 0.08 if sampler == "single" else 0.4
        self.augment = ViewAugment(image_size, min_scale)
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
            views = self.make_views(raw, f"{self.seed}-{worker}-{index}")
            if views is not None:
                yield Sample(views, worker, index + 1)

    def make_views(self, raw: dict, seed: str) -> torch.Tensor | None:
        """Sample times, decode those frames, augment; ``None`` (with a warning) for an undecodable clip."""
        rng = random.Random(seed)
        try:
            meta = json.loads(raw["json"])
            video = raw["mp4"]
            duration = float(meta.get("duration") or video_duration(video))
            frames = decode_frames(video, self.sampler(duration, self.views, rng, self.window))
        except (KeyError, ValueError, av.FFmpegError) as exc:
            warnings.warn(f"skipping sample {raw.get('__key__')!r} of {raw.get('__url__')}: {exc}")
            return None
        return self.augment(frames, rng.getrandbits(63))


def _worker_init(_: int) -> None:
    """One intra-op thread per loader worker: the workers themselves are the parallelism."""
    torch.set_num_threads(1)


class ClipLoader:
    """Iterates the batches ``(B, views, 3, size, size)`` of a :class:`ClipStream`'s ``DataLoader``.

    ``positions`` maps each of this rank's streams to the raw samples it has consumed up to the
    end of the last batch handed out (prefetched batches do not count): what a checkpoint saves
    so that a resumed run starts with the next batch whatever clips were skipped.
    """

    def __init__(self, loader: DataLoader, positions: dict[int, int]) -> None:
        self.loader, self.positions = loader, positions

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.loader:
            self.positions[int(batch.stream[-1])] = int(batch.position[-1])
            yield batch.views


def make_loader(stream: ClipStream, workers: int, pin_memory: bool = False) -> ClipLoader:
    """Batches of ``stream`` from ``workers`` processes (0: in-process), starting at its start positions."""
    per_rank = max(workers, 1)
    loader = DataLoader(
        stream,
        batch_size=stream.batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    starts = {stream.rank * per_rank + local: stream.start_position(local, per_rank) for local in range(per_rank)}
    return ClipLoader(loader, starts)


def worker_count(requested: int | None) -> int:
    """``requested`` or, by default, one loader worker per spare core (at most 8)."""
    if requested is not None:
        return max(requested, 0)
    return max(min(8, (os.cpu_count() or 1) - 1), 0)
