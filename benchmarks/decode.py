"""Decode the first N frames at classifier resolution: fast path vs naive, frames/s and the ratio.

- fast: :func:`videonet.curation.judge.frames.iter_frames` (one swscale context per clip doing YUV->RGB and
  the resize in one pass, decoder frame threading, stop after N frames).
- naive: :func:`videonet.curation.judge.frames.naive_frames` (full-resolution RGB numpy frames, then a
  torchvision antialiased resize + centre crop per frame).

Both run on the same real demo clips (320x240 photo pans, bikes 640x272, Big Buck Bunny
1280x720), interleaved in this one process; medians of --repeats passes. The mean absolute pixel
difference between the two outputs is printed too (they use different bilinear filters).

Usage: ``python benchmarks/decode.py [--frames 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse

import numpy as np

from common import DECODE_CLIPS, demo_clips, interleaved, machine_line, target_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    from videonet.curation.judge.frames import iter_frames, naive_frames

    print(machine_line())
    clips = demo_clips(args.demo_dir)
    paths = [str(clips / name) for name in DECODE_CLIPS]
    counts = {}
    for path in paths:  # warm-up (imports, page cache) and the fidelity check
        fast, naive = np.stack(list(iter_frames(path, args.frames))), naive_frames(path, args.frames)
        assert fast.shape == naive.shape, (fast.shape, naive.shape)
        counts[path] = len(fast)
        diff = np.abs(fast.astype(np.int16) - naive.astype(np.int16)).mean()
        print(f"  {path.rsplit('/', 1)[-1]:18s} {len(fast)} frames {fast.shape[1:]}  mean |fast - naive| = {diff:.2f}"
              " (0-255)")
    total = sum(counts.values())
    per_clip = {}
    for path in paths:
        per_clip[path] = interleaved({"fast": lambda p=path: list(iter_frames(p, args.frames)),
                                      "naive": lambda p=path: naive_frames(p, args.frames)}, args.repeats)
        r = per_clip[path]
        print(f"  {path.rsplit('/', 1)[-1]:18s} fast {counts[path] / r['fast']['wall']:7.1f} frames/s  "
              f"naive {counts[path] / r['naive']['wall']:7.1f} frames/s  "
              f"ratio {r['naive']['wall'] / r['fast']['wall']:.2f}x (cpu-time ratio "
              f"{r['naive']['cpu'] / r['fast']['cpu']:.2f}x)")
    fast_s = sum(r["fast"]["wall"] for r in per_clip.values())
    naive_s = sum(r["naive"]["wall"] for r in per_clip.values())
    fast_cpu = sum(r["fast"]["cpu"] for r in per_clip.values())
    naive_cpu = sum(r["naive"]["cpu"] for r in per_clip.values())
    print(f"all clips ({total} frames): fast {total / fast_s:.1f} frames/s, naive {total / naive_s:.1f} frames/s; "
          f"cpu-time ratio {naive_cpu / fast_cpu:.2f}x")
    print(target_line(f"decode fast/naive frames/s ({args.frames} frames)", naive_s / fast_s, 2.0))


if __name__ == "__main__":
    main()
