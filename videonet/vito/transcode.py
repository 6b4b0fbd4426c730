"""The trainer-ready copy of a kept clip: smaller frames and short GOPs, the same timeline.

A kept clip as downloaded is YouTube's encoding (here up to 480p H.264 with a keyframe every 2-5 s).
The loader seeks to the keyframe before each view and decodes forward, so what a view costs is
about half a GOP of full-size frames. The copy re-encodes the clip once, at curation, with the
short side at ``short_side`` px (256-320 keeps 224 px crops sharp down to most of the crop range)
and a keyframe every ``gop_s`` seconds: a view then costs a few small frames
(``benchmarks/loader.py``). Frame times are kept (same frame rate and timestamps), so a sample's
times and crop boxes (fractions of the frame) pick the same instants and regions as in the original.

Written beside the original in the shard as ``<key>.train.mp4``; the loader prefers it when present
(:meth:`videonet.vito.data.ClipStream.make_sample`). PyAV only: no torch in the curation's writer.
"""

from __future__ import annotations

import io

import av

TRAIN_SHORT_SIDE = 288
TRAIN_GOP_S = 0.5
TRAIN_EXT = "train.mp4"


def trainer_copy(video: bytes, short_side: int = TRAIN_SHORT_SIDE, gop_s: float = TRAIN_GOP_S, crf: int = 23) -> bytes:
    """H.264 mp4 of ``video``'s first video stream, short side ``short_side`` (never upscaled), a
    keyframe every ``gop_s`` s, the same frame timestamps; no audio."""
    out = io.BytesIO()
    with av.open(io.BytesIO(video)) as source, av.open(out, mode="w", format="mp4") as sink:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = min(1.0, short_side / min(width, height))
        w, h = 2 * round(width * scale / 2), 2 * round(height * scale / 2)
        rate = stream.average_rate or stream.guessed_rate or 25
        encoder = sink.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
        encoder.time_base = stream.time_base
        keyint = max(1, round(float(rate) * gop_s))
        encoder.options = {"crf": str(crf), "preset": "veryfast",
                           "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        for frame in source.decode(stream):
            small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BICUBIC")
            small.pts, small.time_base = frame.pts, frame.time_base
            sink.mux(encoder.encode(small))
        sink.mux(encoder.encode())
    return out.getvalue()
