"""The filter's frame sources: which decoder feeds the classifier (PyAV on the CPU, torchcodec's NVDEC on a GPU).

:func:`~videonet.curation.judge.scan.scan_clips` reads every clip through a :data:`FrameSource`: a
generator of chunks of 224x224 uint8 NHWC frames, the first ``limit`` frames of the clip at most.
:func:`~videonet.curation.judge.frames.pyav_chunks` decodes on the CPU and scales inside swscale
(numpy chunks); :func:`torchcodec_chunks` decodes with torchcodec on the classifier's device (on a
GPU: NVDEC) and resizes + centre-crops with torch ops there, so the frames never leave the GPU
before the classifier sees them. Both keep the same contract: ``DecodeError`` with a one-line
reason (missing, not a video, too large, corrupt, too slow), an exhausted clip ends early, closing
the generator releases the file. A clip torchcodec fails on goes on with PyAV
(:func:`torchcodec_or_pyav_chunks`): the CPU fallback, per clip.

:func:`resolve_decoder` reads the ``--decoder`` setting (``auto`` is torchcodec where it pays: the
classifier on CUDA and torchcodec importable; PyAV elsewhere) and :func:`frame_source` hands
:func:`~videonet.curation.judge.scan.scan_clips` the source, saying which and why once per process.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from functools import lru_cache, partial
from itertools import islice
from typing import Callable, Iterator, Union

import numpy as np

from videonet.curation.judge.frames import CROP, DecodeError, DecodeTimeout, pyav_chunks, too_large
from videonet.errors import UserError
from videonet.torch_utils import scaled_size

log = logging.getLogger(__name__)

DECODERS = ("auto", "pyav", "torchcodec")
Batch = Union[np.ndarray, "torch.Tensor"]  # noqa: F821 - (n, 224, 224, 3) uint8, on the host or the classifier's device
FrameSource = Callable[[str, int, int, Union[float, None]], Iterator[Batch]]  # (path, limit, chunk, timeout_s)


def host(frames: Batch) -> np.ndarray:
    """Frames as a host numpy array (a device tensor is copied back: only for the few that need it)."""
    if isinstance(frames, np.ndarray):
        return frames
    return np.ascontiguousarray(frames.cpu().numpy())


def concat(batches: list[Batch]) -> Batch:
    """One batch of the chunks of several clips, where the chunks live (all numpy or all on one device)."""
    if isinstance(batches[0], np.ndarray):
        return np.concatenate(batches)
    import torch

    return torch.cat(batches)


def resize_crop(frames: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """(n, 3, H, W) uint8 -> (n, 224, 224, 3) uint8 on the same device: short side to 256 (bilinear,
    antialiased, the size :func:`~videonet.torch_utils.scaled_size` gives the CPU path), then the
    centre crop with torchvision's offsets, which :func:`~videonet.curation.judge.frames.center_crop` shares."""
    from torchvision.transforms.v2 import functional as F

    width, height = scaled_size(frames.shape[-1], frames.shape[-2])
    resized = F.resize(frames, [height, width], antialias=True)
    return F.center_crop(resized, [CROP, CROP]).permute(0, 2, 3, 1)


@lru_cache(maxsize=None)
def _say(level: int, message: str) -> None:
    """Log a line once per process."""
    log.log(level, message)


def _reason(exc: Exception) -> str:
    """torchcodec's error in one line, without its C++ source location (``SingleStreamDecoder, x.cpp:41, ``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.split(".cpp:", 1)[1].split(", ", 1)[-1] if ".cpp:" in text else text


def _open(path: str, device: str):
    """A torchcodec decoder of the clip's video stream; the same one-line reasons as PyAV's ``_open``."""
    from torchcodec.decoders import VideoDecoder

    try:
        # approximate: the frame count comes from the header, without a scan of the whole file
        # (check_complete has already refused a file holding fewer packets than its header lists).
        decoder = VideoDecoder(path, device=device, seek_mode="approximate", num_ffmpeg_threads=0)
        if decoder.metadata.num_frames_from_header is None:  # mkv/webm: only an estimate, so count them
            decoder = VideoDecoder(path, device=device, seek_mode="exact", num_ffmpeg_threads=0)
    except (RuntimeError, ValueError) as exc:
        reason = _reason(exc)
        if "No such file or directory" in reason:
            raise DecodeError(f"file not found: {path}") from None
        if "video stream" in reason:
            raise DecodeError("no video stream (audio-only or not a video)") from None
        raise DecodeError(f"cannot open container: {reason}") from None
    meta = decoder.metadata
    if reason := too_large(meta.width, meta.height):
        raise DecodeError(reason)
    if device != "cpu" and decoder.cpu_fallback:
        _say(logging.WARNING, f"torchcodec decodes some clips on the CPU, not NVDEC ({decoder.cpu_fallback})")
    return decoder


def torchcodec_chunks(path: str, limit: int, chunk: int, timeout_s: float | None = None,
                      device: str = "cpu") -> Iterator["torch.Tensor"]:  # noqa: F821
    """Yield the first ``limit`` frames in chunks of ``chunk``, as (n, 224, 224, 3) uint8 on ``device``.

    Each chunk is decoded in one ``get_frames_in_range`` call (on CUDA: NVDEC, then torchcodec's
    colour conversion on the GPU) and resized on the device. The timeout counts decode time only,
    checked after each chunk (a decoder call cannot be interrupted; PyAV's is per frame).

    torchcodec has no pixel limit to hand FFmpeg (PyAV's ``max_pixels``): a stream that changes size
    fails here on its first frame of another size (torchcodec's output keeps the header's size) and
    :func:`torchcodec_or_pyav_chunks` gives it to PyAV, which refuses an oversized frame before it
    is allocated; every chunk's size is checked too, for a torchcodec that would hand it on.
    """
    decoder = _open(path, device)
    end = min(limit, decoder.metadata.num_frames)
    produced, spent = 0, 0.0
    try:
        while produced < end:
            started = time.monotonic()
            try:
                batch = decoder.get_frames_in_range(produced, min(produced + chunk, end)).data
            except (RuntimeError, IndexError, ValueError) as exc:  # a broken stream is not a clip to keep
                raise DecodeError(f"corrupt video stream after {produced} frames: {_reason(exc)}") from None
            if len(batch) == 0:
                break
            if reason := too_large(batch.shape[-1], batch.shape[-2]):
                raise DecodeError(f"{reason} at frame {produced}")
            frames = resize_crop(batch)
            spent += time.monotonic() - started
            if timeout_s is not None and spent > timeout_s:
                raise DecodeTimeout(f"decoding took longer than {timeout_s:g} s")
            produced += len(batch)
            yield frames
    finally:
        del decoder  # torchcodec has no close(): dropping the last reference releases the file and NVDEC
    if produced == 0:
        raise DecodeError("no decodable video frames")


def torchcodec_or_pyav_chunks(path: str, limit: int, chunk: int, timeout_s: float | None = None,
                              device: str = "cpu") -> Iterator["torch.Tensor"]:  # noqa: F821
    """:func:`torchcodec_chunks`, and where torchcodec fails on a clip, PyAV from the chunk where it stopped.

    The CPU fallback per clip: a clip NVDEC cannot finish (a GPU error, a file torchcodec reads less
    leniently, such as one cut off after its header) is decoded as a CPU worker would, so no clip is
    lost to the GPU path and an undecodable clip is audited with PyAV's reason, the same on every worker.
    """
    produced = 0
    try:
        with closing(torchcodec_chunks(path, limit, chunk, timeout_s, device)) as chunks:
            for batch in chunks:
                produced += len(batch)  # whole chunks: only the last one can be short, and nothing follows it
                yield batch
        return
    except DecodeTimeout:
        raise
    except DecodeError as exc:
        _say(logging.WARNING, "torchcodec could not decode some clips: PyAV decodes each from where it stopped")
        log.debug("torchcodec failed on %s, PyAV goes on: %s", path, exc)
    import torch

    with closing(pyav_chunks(path, limit, chunk, timeout_s)) as chunks:
        for batch in islice(chunks, produced // chunk, None):
            yield torch.from_numpy(batch).to(device)  # one source, one place: its chunks join the others' on the device


def torchcodec_error() -> str | None:
    """Why torchcodec cannot be used here (not installed, or its FFmpeg libraries missing), or None."""
    try:
        import torchcodec.decoders  # noqa: F401 - loads the core library against the system FFmpeg
    except (ImportError, OSError, RuntimeError) as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def resolve_decoder(decoder: str, device: str) -> tuple[str, str]:
    """``(pyav | torchcodec, why)`` for the ``--decoder`` setting and the classifier's device.

    ``auto``: torchcodec when the classifier runs on CUDA (NVDEC decodes there and the frames stay
    on the GPU) and torchcodec imports, else PyAV (on a CPU its in-decoder scaling was measured the
    faster; benchmarks/README.md). ``torchcodec`` where it cannot import is a one-line error, not a
    silent fallback.
    """
    if decoder not in DECODERS:
        raise UserError(f"--decoder {decoder!r}: expected {', '.join(DECODERS)}")
    if decoder == "pyav":
        return decoder, "asked for"
    if decoder == "auto" and not device.startswith("cuda"):  # decided without loading torchcodec (41 MB)
        return "pyav", f"the classifier runs on {device}; NVDEC needs CUDA"
    error = torchcodec_error()
    if decoder == "torchcodec":
        if error:
            raise UserError(f"--decoder torchcodec needs `pip install 'videonet[gpu]'` and FFmpeg's shared "
                            f"libraries (apt install ffmpeg): {error}")
        return decoder, f"asked for, decoding on {device}"
    if error:
        return "pyav", f"decoding on the CPU, not NVDEC: torchcodec unavailable ({error})"
    return "torchcodec", f"NVDEC on {device}, resize and crop on the GPU"


def frame_source(decoder: str, device: str) -> FrameSource:
    """The frame source for the ``--decoder`` setting; torchcodec decodes on the classifier's ``device``.
    Says which and why, once per process: a worker judges thousands of batches."""
    name, why = resolve_decoder(decoder, device)
    fell_back = device.startswith("cuda") and name == "pyav"
    _say(logging.WARNING if fell_back else logging.INFO, f"--decoder {decoder}: {name} ({why})")
    return pyav_chunks if name == "pyav" else partial(torchcodec_or_pyav_chunks, device=device)
