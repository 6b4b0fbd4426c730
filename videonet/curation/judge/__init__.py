"""Judge: fetch each candidate clip, probe it, classify its first frames and decide per query class.

``fetch`` (catalog files, remote files, yt-dlp downloads) -> ``frames`` (PyAV decode at classifier
size) or ``decoders`` (the choice of source; torchcodec's NVDEC with the resize on the GPU) -> ``scan``
(batched per-frame top-1, early exit) with ``classifier`` (+ ``models/`` registry,
``cpu_graph`` fast path) -> ``verdicts`` (the keep rule, typed results, the scan cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videonet.curation.judge.decoders import DECODERS, resolve_decoder


@dataclass(frozen=True)
class JudgeSettings:
    """How much of each clip the classifier sees (the paper: the first 100 frames) and in what batches."""

    frames: int = field(default=100, metadata={"help": "Classify (at most) the first N frames of each clip.", "min": 1})
    chunk: int = field(default=25, metadata={
        "help": "Frames per clip per classifier round (early exit between rounds).", "min": 1})
    clip_batch: int = field(default=8, metadata={"help": "Clips classified together in one batch.", "min": 1})
    decode_timeout: float = field(default=120.0, metadata={
        "help": "Give up decoding a clip after this many seconds.", "min": 0})
    multi_label: bool = field(default=False, metadata={
        "help": "Keep a video for every class it passes, listed in its metadata `labels` (default: one class "
                "per video, the one top-1 on the most frames; the others are audited as kept_for_other_class)."})
    decoder: str = field(default="auto", metadata={
        "help": "auto (torchcodec's NVDEC with GPU resize when the classifier runs on CUDA and torchcodec is "
                "installed, else PyAV), pyav (CPU) or torchcodec (on the classifier's device).", "choices": DECODERS})

    def __post_init__(self) -> None:
        if self.decoder != "auto":  # an unknown name or a missing torchcodec: one line now, not on a worker
            resolve_decoder(self.decoder, "cpu")
