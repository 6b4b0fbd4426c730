"""Scan a clip's first N frames with the classifier (per-frame top-1): the fast path and the naive one.

Fast path (:func:`scan_clips`): several clips at once; each round decodes the next chunk of every
undecided clip in a thread pool (PyAV and torchcodec release the GIL) while the previous round is classified,
concatenates the chunks into one batch, and drops a clip queried for one class as soon as that
class has been top-1 on some frame (early exit). Rejected clips, and clips queried for several
classes (one class per video goes to the class top-1 on the most frames), are scanned to N frames,
so the keep decision is exactly the rule's. The frames come from a pluggable source
(:mod:`~videonet.curation.judge.decoders`): PyAV on the CPU, or torchcodec on the classifier's device
(NVDEC on a GPU), whose frames stay there up to the classifier. Each scan also keeps a small JPEG of
the first frame of every top-1 label it saw: the frames behind a verdict (the first match of a kept class, the most
frequent label of a rejected clip) for the report, without decoding the clip a second time. Naive path (:func:`naive_scan`): one clip, full-size decode,
one frame per forward pass, fp32, all N frames; the reference for tests and benchmarks.
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from videonet.curation.judge.classifier import Classifier
from videonet.curation.judge.decoders import Batch, concat, frame_source, host
from videonet.curation.judge.frames import DecodeError, naive_frames

THUMB_PX = 112  # side of a verdict's thumbnail: small enough for a contact sheet of hundreds


def most_frequent(top1: Sequence[int]) -> int:
    """The label a rejected clip mostly showed the classifier (ties: the smallest label)."""
    return max(sorted(set(top1)), key=list(top1).count)


def jpeg_thumb(frame: np.ndarray, size: int = THUMB_PX) -> bytes:
    """A ``size`` px JPEG of a decoded frame (a few KB: a clip's worth of them fits in memory)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).resize((size, size), Image.Resampling.BOX).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Scan:
    """What was learned about one clip: per-frame top-1 labels/scores, or the decode error."""

    top1: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    error: str | None = None
    decoded: int = 0  # frames decoded (>= classified: a speculative chunk may be dropped on early exit)
    exhausted: bool = False  # the clip ran out of frames before N
    firsts: dict[int, bytes] = field(default_factory=dict)  # label -> JPEG of its first top-1 frame

    @property
    def frames_classified(self) -> int:
        return len(self.top1)

    def add(self, frames: Batch, labels: list[int], scores: list[float]) -> None:
        """Record a classified chunk, keeping a thumbnail of each label's first frame (only those
        frames are copied to the host when the chunk is on the GPU)."""
        for frame, label in zip(frames, labels):
            if label not in self.firsts:
                self.firsts[label] = jpeg_thumb(host(frame))
        self.top1 += labels
        self.scores += scores


@dataclass
class _Clip:
    wanted: set[int]
    chunks: Iterator[Batch]
    scan: Scan = field(default_factory=Scan)
    done: bool = False


def _take(clip: _Clip) -> Batch | str | None:
    """The clip's next chunk (maybe short at the end), None past its end, or the decode error text."""
    try:
        got = next(clip.chunks, None)
    except DecodeError as exc:
        return str(exc)
    clip.scan.decoded += 0 if got is None else len(got)
    return got


def scan_clips(classifier: Classifier, clips: Sequence[tuple[str, set[int]]], frames: int,
               chunk: int, pool: ThreadPoolExecutor | None = None,
               decode_timeout_s: float | None = None, early_exit: bool = True, decoder: str = "auto") -> list[Scan]:
    """Scan ``(local_path, wanted_class_indices)`` clips together; see the module docstring.
    ``decoder``: auto, pyav or torchcodec (:func:`~videonet.curation.judge.decoders.resolve_decoder`)."""
    source = frame_source(decoder, classifier.device)
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=max(1, min(4, len(clips))))
    state = [_Clip(set(wanted), source(path, frames, chunk, decode_timeout_s)) for path, wanted in clips]
    pending: dict[int, Future] = {}
    abandoned: list[Future] = []  # speculative decodes of clips that exited early
    try:
        pending = {i: pool.submit(_take, c) for i, c in enumerate(state)}
        while pending:
            ready = {i: f.result() for i, f in pending.items()}
            pending = {}
            arrays = []
            for i, got in ready.items():
                if isinstance(got, str):
                    state[i].scan.error, state[i].done = got, True
                elif got is None:
                    state[i].done = state[i].scan.exhausted = len(state[i].scan.top1) < frames
                else:
                    arrays.append((i, got))
            # Decode the following chunk while this one is classified (speculative for early exits).
            for i, got in arrays:
                if len(state[i].scan.top1) + len(got) >= frames:
                    continue
                if len(got) < chunk:
                    state[i].scan.exhausted = True
                else:
                    pending[i] = pool.submit(_take, state[i])
            if not arrays:
                continue
            labels, scores = classifier.top1(concat([a for _, a in arrays]))
            offset = 0
            for i, got in arrays:
                clip = state[i]
                clip.scan.add(got, labels[offset:offset + len(got)].tolist(),
                              scores[offset:offset + len(got)].tolist())
                offset += len(got)
                # Stop once the verdict cannot change: a clip wanted by several classes that all pass is
                # scanned to N, since one class per video goes to the class top-1 on the most frames.
                if early_exit and len(clip.wanted) == 1 and clip.wanted <= set(clip.scan.top1):
                    clip.done = True
                    if i in pending:
                        abandoned.append(pending.pop(i))
    finally:
        for future in [*pending.values(), *abandoned]:  # a generator must not be closed mid-decode
            future.cancel() or future.exception()
        if own_pool:
            pool.shutdown(wait=True)
        for clip in state:
            clip.chunks.close()  # type: ignore[attr-defined]  # releases the file and the decoder
    return [c.scan for c in state]


def naive_scan(classifier: Classifier, path: str, frames: int) -> Scan:
    """The reference: full-size decode, torchvision resize, one frame per forward, no early exit."""
    try:
        decoded = naive_frames(path, frames)
    except DecodeError as exc:
        return Scan(error=str(exc))
    scan = Scan(decoded=len(decoded), exhausted=len(decoded) < frames)
    for frame in decoded:
        label, score = classifier.top1(frame[None])
        scan.top1.append(int(label[0]))
        scan.scores.append(float(score[0]))
    return scan
