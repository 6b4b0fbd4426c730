"""VITO's training loader per CPU core, next to decoding every frame; the device-side augmentations apart.

Why: a GPU trains a ResNet-50 at ~2,500-3,000 images/s, so the question for sizing a training
machine is how many loader cores one GPU needs. The loader's CPU side (one DataLoader worker, one
thread) samples a clip's times, crop boxes and augmentation parameters, decodes only the frames it
needs and crops + resizes them (:meth:`videonet.vito.data.ClipStream.make_sample`); flip, colour
jitter, greyscale, blur and solarise run on the training device
(:class:`videonet.vito.augment.DeviceAugment`).

Clips: kept clips as curation stores them, i.e. YouTube's encoding: 854x480 H.264 (x264, B-frames,
crf 23) at 30 fps with a keyframe every 2, 3, 4 or 5 s, made from the demo clips' real footage
(played back and forth to the length), ``--seconds`` long; and each one's trainer-ready copy
(:func:`videonet.vito.transcode.trainer_copy`: short side 288, a keyframe every 0.5 s).
Built once into ``--clip-dir``.

Sides (per second of this process's CPU time, one torch thread; samples interleaved):

- ``loader CPU side``: ``make_sample`` on the original clips (what a worker does per clip), and
  its parts: ``decode`` (:func:`~videonet.vito.data.decode_frames`: seek, demux, the frames needed)
  and ``convert + crop`` (:func:`~videonet.vito.data.crop_resize`);
- ``decode forward from the keyframe``: the decoding the loader did before (seek, then every frame
  up to the last time, no frame skipped), for the same times: what the skipping and jumps save;
- ``loader CPU side, trainer-ready copy``: ``make_sample`` on the copies;
- ``device augment``: ``DeviceAugment`` on ``--batch`` clips of views, on CUDA when present, else
  on this CPU (with its torch threads);
- ``decode every frame``: the baseline, every frame of the original clip decoded and converted to
  RGB; in views/s that is ``--views`` views per clip, the ratio's denominator.

Usage: ``python benchmarks/loader.py [--samples 48] [--seconds 10,20,30,60] [--image-size 224]``
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path

from common import DECODE_CLIPS, demo_clips, machine_line

GOPS_S = (2, 3, 4, 5)
FPS = 30


def cpu_seconds(fn) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def youtube_like(source: Path, seconds: float, gop_s: int) -> bytes:
    """854x480 H.264 at 30 fps, keyframe every ``gop_s`` s, from ``source``'s footage played back and forth."""
    import av

    with av.open(str(source)) as container:
        frames = [f.reformat(width=854, height=480, format="yuv420p").to_ndarray()
                  for f in container.decode(video=0)]
    frames += frames[::-1]
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as sink:
        stream = sink.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast",
                          "x264-params": f"keyint={gop_s * FPS}:min-keyint={gop_s * FPS}:scenecut=0:bframes=3"}
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="yuv420p")
            frame.pts = i
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode())
    return out.getvalue()


def clips(directory: Path, seconds: list[float], demo_dir: str | None) -> list[tuple[str, bytes, bytes]]:
    """(name, original, trainer-ready copy) per clip, built once into ``directory``."""
    from videonet.vito.transcode import trainer_copy

    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for i, length in enumerate(seconds):
        name = f"{Path(DECODE_CLIPS[i % len(DECODE_CLIPS)]).stem}-{length:g}s-gop{GOPS_S[i % len(GOPS_S)]}s"
        original, copy = directory / f"{name}.mp4", directory / f"{name}.train.mp4"
        if not original.is_file():
            original.write_bytes(youtube_like(demo_clips(demo_dir) / DECODE_CLIPS[i % len(DECODE_CLIPS)], length,
                                              GOPS_S[i % len(GOPS_S)]))
        if not copy.is_file():
            copy.write_bytes(trainer_copy(original.read_bytes()))
        made.append((name, original.read_bytes(), copy.read_bytes()))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=48, help="clips drawn per side")
    parser.add_argument("--seconds", default="10,20,30,60", help="lengths of the clips, comma-separated")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="clips per device-augment batch")
    parser.add_argument("--clip-dir", default="/tmp/videonet-bench-loader")
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    import av
    import torch

    from videonet.vito.augment import DeviceAugment, crop_box, draw_params, view_distribution
    from videonet.vito.data import ClipStream, crop_resize, decode_frames, video_duration

    print(machine_line())
    made = clips(Path(args.clip_dir), [float(s) for s in args.seconds.split(",")], args.demo_dir)
    durations = {name: video_duration(original) for name, original, _ in made}
    stream = ClipStream([], views=args.views, image_size=args.image_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def raw(name: str, video: bytes, copy: bytes | None = None) -> dict:
        sample = {"__key__": name, "mp4": video, "json": json.dumps({"duration": durations[name]}).encode()}
        return sample | ({"train.mp4": copy} if copy is not None else {})

    def forward_decode(video: bytes, times: list[float]) -> int:
        """The former decoding: one seek, then every frame up to the last time (RGB for the wanted ones)."""
        with av.open(io.BytesIO(video)) as container:
            video_stream = container.streams.video[0]
            video_stream.codec_context.thread_count = 1
            base = video_stream.time_base
            container.seek(int(min(times) / base), stream=video_stream, backward=True, any_frame=False)
            todo, count = sorted(times), 0
            for frame in container.decode(video_stream):
                count += 1
                while todo and float(frame.pts * base) >= todo[0] - 1e-6:
                    frame.to_ndarray(format="rgb24")
                    todo.pop(0)
                if not todo:
                    break
        return count

    def decode_all(video: bytes) -> int:
        """Every frame decoded and converted to RGB, as a loader reading whole clips would."""
        with av.open(io.BytesIO(video)) as container:
            container.streams.video[0].codec_context.thread_count = 1
            return sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24") is not None)

    keys = ["loader", "decode", "convert + crop", "forward", "copy", "baseline"]
    spent = dict.fromkeys(keys, 0.0)
    views = baseline_views = 0
    for i in range(args.samples):
        name, original, copy = made[i % len(made)]
        seed = f"bench-{i}"
        spent["loader"] += cpu_seconds(lambda: stream.make_sample(raw(name, original), seed))
        spent["copy"] += cpu_seconds(lambda: stream.make_sample(raw(name, original, copy), seed))
        rng = random.Random(seed)  # the draws make_sample makes, in its order: times, parameters, crops
        times = stream.sampler(durations[name], args.views, rng, stream.window)
        [draw_params(rng, view_distribution(v)) for v in range(args.views)]
        frames: list = []
        spent["decode"] += cpu_seconds(lambda: frames.extend(decode_frames(original, times)))
        boxes = [crop_box(rng, stream.min_scale, frames[0].width / frames[0].height) for _ in times]
        spent["convert + crop"] += cpu_seconds(lambda: [crop_resize(f, b, args.image_size)
                                                         for f, b in zip(frames, boxes)])
        spent["forward"] += cpu_seconds(lambda: forward_decode(original, times))
        views += args.views
        if i < len(made):  # each clip once: whole clips are long
            spent["baseline"] += cpu_seconds(lambda: decode_all(original))
            baseline_views += args.views

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rng = random.Random(0)
    crops = torch.randint(0, 256, (args.batch, args.views, 3, args.image_size, args.image_size), dtype=torch.uint8)
    params = torch.tensor([[draw_params(rng, view_distribution(v)) for v in range(args.views)]
                           for _ in range(args.batch)])
    augment = DeviceAugment(args.image_size)
    crops, params = crops.to(device), params.to(device)
    augment(crops, params)  # warm-up
    rounds, started = 3, time.perf_counter()
    for _ in range(rounds):
        augment(crops, params)
    if device == "cuda":
        torch.cuda.synchronize()
    device_rate = rounds * args.batch * args.views / (time.perf_counter() - started)

    rate = {k: views / spent[k] for k in keys if k != "baseline"}
    baseline = baseline_views / spent["baseline"]
    print(f"{args.samples} clips, {args.views} views each at {args.image_size} px; clips: "
          + ", ".join(f"{name} ({len(o) / 1e6:.1f} MB, copy {len(c) / 1e6:.1f} MB)" for name, o, c in made))
    print("| side | views/s per CPU core | ms per view |")
    print("|---|---:|---:|")
    for label, key in [("loader CPU side (original encoding)", "loader"),
                       ("  decode (seek, demux, needed frames)", "decode"),
                       ("  convert + crop at output size", "convert + crop"),
                       ("decode forward from the keyframe (before)", "forward"),
                       ("loader CPU side (trainer-ready copy)", "copy")]:
        print(f"| {label} | {rate[key]:.1f} | {1000 / rate[key]:.2f} |")
    print(f"| decode every frame (baseline, {args.views} views per clip) | {baseline:.1f} | {1000 / baseline:.2f} |")
    print(f"device augment on {device} ({threads if device == 'cpu' else 'GPU'} threads): {device_rate:.0f} views/s "
          f"(batch {args.batch} x {args.views} views)")
    for key, label in [("loader", "original encoding"), ("copy", "trainer-ready copy")]:
        print(f"  a GPU training at 2,750 images/s needs {2750 / rate[key]:.0f} loader cores ({label}; computed)")
    print(f"RATIO trainer-ready copy CPU views/s per core / decode-every-frame views/s: {rate['copy'] / baseline:.2f}x")
    print(f"RATIO loader CPU views/s per core / decode-every-frame views/s: {rate['loader'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
