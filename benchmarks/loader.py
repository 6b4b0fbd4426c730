"""VITO's training loader per CPU core: views/s through seek + decode + augment, next to decoding every frame.

Why: a GPU trains far faster than one core decodes, so the question for sizing a training machine
is how many loader cores one GPU needs. VITO decodes only the frames it uses (per clip, 3 times in
a 2.56 s window: one seek to the keyframe before the first, then forward decoding), so its cost
per view is not that of decoding the video.

- ``loader``: :meth:`videonet.vito.data.ClipStream.make_views` on the real demo clips (the exact
  loader code: metadata, frame times from the sampler, :func:`~videonet.vito.data.decode_frames`,
  BYOL's augmentations at ``--image-size``), split into ``seek + decode`` and ``augment``;
- ``decode every frame``: the baseline, every frame of each clip decoded and converted to RGB,
  the way a loader that reads whole clips would; in views/s that is ``--views`` views per clip
  decoded, the ratio's denominator.

Per core = per second of this process's CPU time (one torch thread; the loader's DataLoader
workers each run one). Clips and sides are interleaved; the whole set is run ``--repeats`` times.

Usage: ``python benchmarks/loader.py [--samples 24] [--image-size 224] [--views 3] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path

from common import DECODE_CLIPS, demo_clips, machine_line


def cpu_seconds(fn) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=24, help="clips drawn per side and repeat")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    import av
    import torch

    from videonet.vito.data import ClipStream, decode_frames, video_duration

    torch.set_num_threads(1)
    print(machine_line())
    clips = demo_clips(args.demo_dir)
    videos = {name: Path(clips / name).read_bytes() for name in DECODE_CLIPS}
    durations = {name: video_duration(data) for name, data in videos.items()}
    stream = ClipStream([], views=args.views, image_size=args.image_size)
    raws = [{"__key__": name, "mp4": data, "json": json.dumps({"duration": durations[name]}).encode()}
            for name, data in videos.items()]

    def decode_all(data: bytes) -> int:
        """Frames decoded, each converted to RGB as the loader converts the frames it keeps."""
        count = 0
        with av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                count += 1
        return count

    spent = {"loader": 0.0, "seek + decode": 0.0, "decode every frame": 0.0}
    views = frames = whole_clips = 0
    for repeat in range(args.repeats):
        for i in range(args.samples):
            raw = raws[i % len(raws)]
            seed = f"bench-{repeat}-{i}"
            spent["loader"] += cpu_seconds(lambda: stream.make_views(raw, seed))
            times = stream.sampler(durations[raw["__key__"]], args.views, random.Random(seed), stream.window)
            spent["seek + decode"] += cpu_seconds(lambda: decode_frames(raw["mp4"], times))
            views += args.views
            if i < len(raws):  # each clip once per repeat: whole clips are long
                counted = []
                spent["decode every frame"] += cpu_seconds(lambda: counted.append(decode_all(raw["mp4"])))
                frames += counted[0]
                whole_clips += 1
    loader_rate = views / spent["loader"]
    print(f"{args.samples} clips x {args.repeats} repeats, {args.views} views each at {args.image_size} px "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in durations.items())})")
    print("| side | per CPU-second (one core) |")
    print("|---|---:|")
    print(f"| loader: seek + decode + augment | {loader_rate:.1f} views/s |")
    print(f"|   seek + decode only | {views / spent['seek + decode']:.1f} views/s |")
    print(f"|   augment only (loader - seek + decode) | {views / (spent['loader'] - spent['seek + decode']):.1f} views/s |")
    baseline = args.views * whole_clips / spent["decode every frame"]
    print(f"| decode every frame (baseline) | {frames / spent['decode every frame']:.1f} frames/s = "
          f"{baseline:.1f} views/s ({args.views} per clip) |")
    print(f"  a GPU training at G images/s needs G / {loader_rate:.1f} loader cores (one view = one image)")
    print(f"RATIO loader views/s / decode-every-frame views/s per core: {loader_rate / baseline:.2f}x")


if __name__ == "__main__":
    main()
