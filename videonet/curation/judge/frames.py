"""Decode the first N frames of a clip with PyAV, already at classifier resolution.

The fast path scales inside the decoder's swscale step (``to_ndarray(width=, height=)``), uses
frame threading, and stops demuxing once N frames are out; :func:`naive_frames` is the reference
(full-resolution RGB, resized afterwards with torchvision) that the benchmarks compare against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

import numpy as np

from videonet.curation.candidates import implausible_duration
from videonet.torch_utils import scaled_size

RESIZE = 256  # short side before the centre crop, as in torchvision's ImageNet eval transforms
CROP = 224
MAX_PIXELS = 4096 * 2160  # larger frames are refused rather than decoded (bounded memory/time)
# Decoder threads per clip, the same on every machine: H.264 allocates its per-macroblock tables for a
# new size in every frame thread before the picture itself (which max_pixels refuses), about 80 MB per
# thread for a stream switching to 16000x16000, so FFmpeg's automatic count (cores + 1) made a hostile
# clip cost 1.4 GB on a 16-core worker. Clips are decoded in parallel besides (scan_clips), so three
# lose no speed; with fewer than three, FFmpeg reports a stream cut off mid-packet as invalid data at
# its end instead of ending the clip there, so the count also decided a cut clip's verdict.
FRAME_THREADS = 3


class DecodeError(Exception):
    """The clip cannot be decoded; the message is the audit reason."""


class DecodeTimeout(DecodeError):
    """Decoding the clip took longer than its budget (another decoder would not be faster)."""


def too_large(width: int, height: int) -> str | None:
    """Why a frame of this size is refused, or None: the one pixel rule of every decoder."""
    if width * height > MAX_PIXELS:
        return f"resolution {width}x{height} above the {MAX_PIXELS} pixel limit"
    return None


def plausible_seconds(value: float | None) -> float | None:
    """A container's duration, or None where it cannot be one (:func:`implausible_duration`): the clip
    is then judged as one of unknown length, as for a container that does not say."""
    return None if value is None or implausible_duration(value) else value


@dataclass(frozen=True)
class ClipInfo:
    """What a probe learns about a clip without decoding it."""

    duration: float | None
    fps: float | None
    width: int
    height: int


def _open(path: str):
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except FileNotFoundError:
        raise DecodeError(f"file not found: {path}") from None
    except (av.FFmpegError, OSError, ValueError) as exc:  # FFmpeg's words, without the name it was opened by
        raise DecodeError(f"cannot open container: {getattr(exc, 'strerror', None) or exc}") from None
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream (audio-only or not a video)")
    return container


def probe(path: str) -> ClipInfo:
    """Duration (s), frame rate and size from the container headers."""
    with _open(path) as container:
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        rate = stream.average_rate or stream.guessed_rate
        return ClipInfo(plausible_seconds(duration), float(rate) if rate else None, stream.codec_context.width,
                        stream.codec_context.height)


def center_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    """Centre crop with torchvision's offsets (``round((h - size) / 2)``), so both paths agree."""
    h, w = image.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image[top:top + size, left:left + size]


def iter_frames(path: str, limit: int, timeout_s: float | None = None, threads: bool = True) -> Iterator[np.ndarray]:
    """Yield up to ``limit`` frames as 224x224x3 uint8, scaled by the decoder, then stop demuxing.

    One swscale context serves the whole clip (``frame.to_ndarray(width=...)`` would build a
    new one, with its filter tables and a thread pool, for every frame) and it runs
    single-threaded: clips are decoded in parallel by :func:`videonet.curation.judge.scan.scan_clips`.

    The size the header declares says nothing of the frames: an H.264 stream may switch to another
    size at any keyframe (320x240, then 16000x16000: gigabytes per frame). FFmpeg itself is told the
    pixel limit (``max_pixels``: it refuses to allocate a larger picture, the stream then fails as
    invalid data) and every decoded frame is checked again here, whatever the codec; the decoder
    runs :data:`FRAME_THREADS` frame threads, which bounds what a size switch costs before that.
    """
    import av
    from av.video.reformatter import VideoReformatter

    spent, resumed = 0.0, time.monotonic()  # decode time only: not the time the consumer holds a frame
    with _open(path) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        if reason := too_large(context.width, context.height):
            raise DecodeError(reason)
        context.options = {**context.options, "max_pixels": str(MAX_PIXELS)}
        if threads:
            stream.thread_type, context.thread_count = "AUTO", FRAME_THREADS
        produced = 0
        scaler = VideoReformatter()
        try:
            for frame in container.decode(stream):
                if reason := too_large(frame.width, frame.height):
                    raise DecodeError(f"{reason} at frame {produced} (the header says "
                                      f"{context.width}x{context.height})")
                w, h = scaled_size(frame.width, frame.height)
                image = center_crop(scaler.reformat(frame, width=w, height=h, format="rgb24", threads=1).to_ndarray())
                spent += time.monotonic() - resumed
                if timeout_s is not None and spent > timeout_s:
                    raise DecodeTimeout(f"decoding took longer than {timeout_s:g} s")
                yield image
                resumed = time.monotonic()
                produced += 1
                if produced >= limit:
                    return
        except av.FFmpegError as exc:  # a broken or cut-off stream is not a clip to keep, whatever came first
            if reason := too_large(context.width, context.height):  # FFmpeg refused a picture over max_pixels
                raise DecodeError(f"{reason} at frame {produced} (the stream changed size)") from None
            raise DecodeError(f"corrupt video stream after {produced} frames: {exc}") from None
        if produced == 0:
            raise DecodeError("no decodable video frames")


def pyav_chunks(path: str, limit: int, chunk: int, timeout_s: float | None = None) -> Iterator[np.ndarray]:
    """:func:`iter_frames` in chunks of ``chunk`` frames, (n, 224, 224, 3) uint8: the CPU frame source of
    :func:`~videonet.curation.judge.scan.scan_clips` (:mod:`~videonet.curation.judge.decoders`)."""
    frames = iter_frames(path, limit, timeout_s)
    try:
        while batch := list(islice(frames, chunk)):
            yield np.stack(batch)
    finally:
        frames.close()  # closes the PyAV container, also when the scan stops early


def check_complete(path: str) -> None:
    """Refuse a truncated file: fewer video packets than its header lists (demuxed, not decoded).

    A download or copy cut off after a 'moov first' header still probes as the whole clip and
    decodes cleanly up to the cut; this reads every packet once (cheap: no decoding) to tell.
    """
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        listed, held = stream.frames, 0
        if not listed:  # the container does not say (fragmented mp4, webm): nothing to compare
            return
        try:
            for packet in container.demux(stream):
                held += packet.size > 0
        except av.FFmpegError as exc:
            raise DecodeError(f"corrupt container after {held} of {listed} video packets: {exc}") from None
        if held < listed:
            raise DecodeError(f"truncated file: header lists {listed} video frames, the file holds {held}")


def naive_frames(path: str, limit: int) -> np.ndarray:
    """Reference decode: full-size RGB frames, then torchvision resize + centre crop, one by one."""
    import torch
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize(RESIZE, antialias=True), v2.CenterCrop(CROP)])
    out = []
    with _open(path) as container:
        for frame in container.decode(video=0):
            tensor = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            out.append(transform(tensor).permute(1, 2, 0).numpy())
            if len(out) >= limit:
                break
    if not out:
        raise DecodeError("no decodable video frames")
    return np.stack(out)
