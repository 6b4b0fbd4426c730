"""The filter and VITO training on one GPU: what decodes, classifies and trains how fast (run by gpu.sh).

Sections, each printed as soon as it is done, each with the GPU's mean utilisation (SM and NVDEC,
sampled from ``nvidia-smi`` while it ran):

- ``decode``: the first ``--frames`` frames of the demo clips repeated to ``--clips`` clips, at
  224 px, with the filter's two frame sources (:mod:`~videonet.curation.judge.decoders`): PyAV on
  the CPU in one thread per core, and torchcodec's NVDEC decoder with the resize and centre crop on
  the GPU (when torchcodec is installed; one clip after another, as the decode alone);
- ``classify``: the filter's classifier, ResNet-50 (random weights; speed only), 256 frames per
  forward, bf16 channels-last: eager and ``--compile`` (on CUDA: CUDA graphs, fixed 256-frame
  batches) on uint8 frames in host memory, ``--compile`` on frames already on the GPU (as NVDEC's
  are); TensorRT through torch-tensorrt when it is installed, and the best videonet row's ratio to it;
- ``filter (NVDEC)`` and ``filter (CPU decode)``:
  :func:`~videonet.curation.judge.scan.scan_clips`, what the pipeline runs (decode in a thread pool
  overlapped with classification, early exit), with ``--decoder torchcodec`` and ``pyav``, over the
  same clips in batches of ``--clip-batch``, with the best classifier of ``classify``; each with its
  ratio to the best classify alone (target >= 0.8);
- ``train``: VITO training steps (:func:`videonet.vito.train.train_step`, ResNet-50, 224 px, bf16,
  3 views) at the largest batch of clips that fits (doubling until out of memory), images/s and
  peak memory;
- ``train, loader-fed``: the same steps at that batch (at most 256 clips) fed by the real loader
  (4 shards of ``benchmarks/loader.py``'s 480p clips with their trainer-ready copies, one DataLoader
  worker per spare core, the augmentations on the GPU), with ``--decoder auto`` (NVDEC when
  torchcodec is installed) and ``--decoder pyav``, against synthetic input: ``RATIO loader-fed /
  synthetic`` (target >= 0.9: not input-bound) and, when below, the loader cores this GPU needs.

``--dry-cpu`` runs every section tiny on the CPU (torchcodec decoding on the CPU, eager classify only,
64 px training), to check the script, not to measure anything.

Usage: ``python benchmarks/gpu.py [--clips 2000] [--frames 25] [--clip-batch 64] [--dry-cpu]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from common import demo_clips, machine_line, queries


class Utilisation:
    """Mean GPU (SM) and NVDEC utilisation while a section runs, from ``nvidia-smi`` every 0.5 s."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,utilization.decoder", "--format=csv,noheader,nounits"]
        while not self.stop.wait(0.5):
            line = subprocess.run(query, capture_output=True, text=True).stdout.splitlines()[:1]
            if line:
                self.samples.append(tuple(float(x) for x in line[0].split(",")))

    def __str__(self) -> str:
        if not self.samples:
            return "GPU utilisation: n/a"
        return (f"GPU utilisation {statistics.mean(s[0] for s in self.samples):.0f}%, "
                f"NVDEC {statistics.mean(s[1] for s in self.samples):.0f}%")


@contextmanager
def section(name: str) -> Iterator[dict]:
    """Time a section and sample the GPU meanwhile; the body fills ``facts`` with what to print."""
    util, facts = Utilisation(), {}
    if shutil.which("nvidia-smi"):
        util.thread.start()
    started = time.perf_counter()
    try:
        yield facts
    finally:
        util.stop.set()
        print(f"[{name}] {time.perf_counter() - started:.1f} s; {util}; "
              + "; ".join(f"{k}: {v}" for k, v in facts.items()), flush=True)


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(count: int, fn: Callable[[], object]) -> float:
    """``count`` / seconds of one call of ``fn`` (the GPU's queue drained before and after)."""
    synchronize()
    started = time.perf_counter()
    fn()
    synchronize()
    return count / (time.perf_counter() - started)


def torchcodec_row(device: str, fn: Callable[[], float]) -> tuple[str, str]:
    """``(label, frames/s)`` of a torchcodec run, or why it was not measured (not installed, no CUDA)."""
    from videonet.curation.judge.decoders import torchcodec_error

    label = f"torchcodec {'NVDEC' if device == 'cuda' else 'on ' + device} + resize/crop there frames/s"
    error = torchcodec_error()
    return (label, f"not measured ({error[:120]})") if error else (label, f"{fn():.0f}")


def decode_section(jobs: list[tuple[str, set[int]]], frames: int, device: str) -> None:
    from videonet.curation.judge.decoders import torchcodec_chunks
    from videonet.curation.judge.frames import iter_frames

    paths = [p for p, _ in jobs]
    with section("decode") as facts:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            started = time.perf_counter()
            count = sum(pool.map(lambda p: sum(1 for _ in iter_frames(p, frames, threads=False)), paths))
            facts["CPU (PyAV, one thread per core) frames/s"] = f"{count / (time.perf_counter() - started):.0f}"

        def nvdec() -> float:
            decode = lambda path: list(torchcodec_chunks(path, frames, frames, device=device))  # noqa: E731
            decode(paths[0])  # opens the CUDA context and the decoder once
            return rate(count, lambda: [decode(p) for p in paths])

        label, got = torchcodec_row(device, nvdec)
        facts[label] = got


def classify_section(classifier_for: Callable[[bool], object], batch: np.ndarray, repeats: int, gpu: bool):
    """Frames/s of each way to run the classifier on ``batch``; returns the best videonet rate and its
    classifier (the filter sections reuse it: no second compile). Without a GPU only eager runs:
    compiling on a small CPU takes minutes (benchmarks/README.md)."""
    import torch

    best = (0.0, None)
    with section("classify") as facts:
        for label, compile in (("eager", False), ("compiled (CUDA graphs)", True))[:2 if gpu else 1]:
            classifier = classifier_for(compile)
            frames = [("", batch)] + ([(", frames already on the GPU", torch.from_numpy(batch).to("cuda"))]
                                      if compile else [])
            for where, x in frames:
                classifier.top1(x)  # compile / capture / first kernels
                got = statistics.median(rate(len(batch), lambda: classifier.top1(x)) for _ in range(repeats))
                facts[f"videonet {label}{where} frames/s"] = f"{got:.0f}"
                best = max(best, (got, classifier), key=lambda b: b[0])
        if not gpu:
            return best
        eager = classifier_for(False)
        x = torch.from_numpy(batch).to(eager.device).permute(0, 3, 1, 2).float().div(255)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            import torch_tensorrt

            trt = torch_tensorrt.compile(eager.model.float(), inputs=[x], enabled_precisions={torch.bfloat16})
            with torch.inference_mode():
                trt(x)
                got = statistics.median(rate(len(batch), lambda: trt(x)) for _ in range(repeats))
            facts["TensorRT frames/s, frames already on the GPU"] = f"{got:.0f}"
            facts["RATIO videonet best / TensorRT"] = f"{best[0] / got:.2f}x"
        except Exception as exc:  # not installed, or the model does not convert: say why, go on
            facts["TensorRT"] = f"not measured ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    return best


def filter_section(classifier, jobs: list[tuple[str, set[int]]], frames: int, chunk: int, clip_batch: int,
                   classify_rate: float) -> None:
    """The filter as the pipeline runs it, with each frame source, against the best classify alone."""
    from videonet.curation.judge.decoders import torchcodec_error
    from videonet.curation.judge.scan import scan_clips

    for name, decoder in (("NVDEC" if classifier.device.startswith("cuda") else "torchcodec", "torchcodec"),
                          ("CPU decode", "pyav")):
        with section(f"filter ({name})") as facts, ThreadPoolExecutor(os.cpu_count()) as pool:
            if decoder == "torchcodec" and torchcodec_error():
                facts["not measured"] = torchcodec_error()
                continue
            scans: list = []
            got = rate(1, lambda: [scans.extend(scan_clips(classifier, jobs[i:i + clip_batch], frames, chunk, pool,
                                                           decoder=decoder))
                                   for i in range(0, len(jobs), clip_batch)])
            classified = sum(s.frames_classified for s in scans)
            facts["clips/s"] = f"{got * len(jobs):.1f}"
            facts["classified frames/s"] = f"{got * classified:.0f}"
            facts["decode errors"] = sum(s.error is not None for s in scans)
            facts["RATIO filter / classify alone"] = f"{got * classified / classify_rate:.2f} (target >= 0.8)"


def train_section(size: int, arch: str, batches: list[int], steps: int) -> int:
    """Synthetic-input VITO steps at growing batches until out of memory; returns the largest batch that fit."""
    import copy

    import torch

    from videonet.vito.lars import LARS, param_groups
    from videonet.vito.train import TrainConfig, train_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    largest = batches[0]
    with section("train") as facts:
        for batch in batches:  # clips per step, 3 views each
            try:
                cfg = TrainConfig(data="", out="", arch=arch, batch_size=batch)
                online = cfg.build_online().to(device).to(memory_format=torch.channels_last)
                target = copy.deepcopy(online.net).requires_grad_(False)
                lars = LARS(param_groups(online, cfg.weight_decay), lr=0.01, eta=cfg.lars_eta)
                views = torch.randn(batch, 3, 3, size, size, device=device)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                train_step(online, target, lars, views, cfg.tau, 0.996, device == "cuda")  # warm-up
                got = statistics.median(rate(3 * batch, lambda: train_step(online, target, lars, views, cfg.tau, 0.996,
                                                                           device == "cuda")) for _ in range(steps))
                peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
                facts[f"batch {batch} clips x 3 views"] = f"{got:.0f} images/s, peak {peak:.1f} GiB"
                largest = batch
            except torch.OutOfMemoryError:
                facts[f"batch {batch}"] = "out of memory: the largest batch is the one before"
                break
            finally:
                online = target = lars = views = None
                if device == "cuda":
                    torch.cuda.empty_cache()
    return largest


def loader_fed_section(size: int, arch: str, batch: int, steps: int, seconds: str, samples: int,
                       decoders: tuple[str, ...] = ("auto", "pyav")) -> None:
    """VITO steps fed by the real loader (shards of 480p clips with trainer-ready copies, DataLoader
    workers, device augmentations) against the same steps on synthetic input: target >= 0.9, i.e.
    not input-bound. Each decoder the machine has: NVDEC (``--decoder auto`` on CUDA) and PyAV."""
    import copy
    import json
    import tempfile

    import torch
    import webdataset as wds

    from loader import clips
    from videonet.curation.judge.decoders import resolve_decoder
    from videonet.vito.augment import DeviceAugment
    from videonet.vito.data import ClipStream, make_loader, video_duration, worker_count
    from videonet.vito.lars import LARS, param_groups
    from videonet.vito.train import TrainConfig, train_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shards = Path(tempfile.mkdtemp(prefix="videonet-gpu-shards-"))
    made = clips(Path(tempfile.gettempdir()) / "videonet-bench-loader", [float(s) for s in seconds.split(",")], None)
    for shard in range(4):
        with wds.TarWriter(str(shards / f"shard-{shard:06d}.tar")) as sink:
            for i in range(samples // 4):
                name, original, trainer = made[(shard + i) % len(made)]
                meta = {"id": f"{name}-{shard}-{i}", "duration": video_duration(original)}
                sink.write({"__key__": f"{name}-{shard}-{i}", "mp4": original, "train.mp4": trainer,
                            "json": json.dumps(meta).encode()})
    cfg = TrainConfig(data="", out="", arch=arch, batch_size=batch, image_size=size)
    online = cfg.build_online().to(device).to(memory_format=torch.channels_last)
    target = copy.deepcopy(online.net).requires_grad_(False)
    lars = LARS(param_groups(online, cfg.weight_decay), lr=0.01, eta=cfg.lars_eta)
    augment, amp, workers = DeviceAugment(size), device == "cuda", worker_count(None)
    synthetic = torch.randn(batch, 3, 3, size, size, device=device)
    with section("train, loader-fed") as facts:
        train_step(online, target, lars, synthetic, cfg.tau, 0.996, amp)  # warm-up
        base = statistics.median(rate(3 * batch, lambda: train_step(online, target, lars, synthetic, cfg.tau, 0.996,
                                                                    amp)) for _ in range(steps))
        facts["synthetic input images/s"] = f"{base:.0f}"
        for name in decoders:
            decoder, _ = resolve_decoder(name, device)
            stream = ClipStream(sorted(map(str, shards.glob("*.tar"))), image_size=size, batch_size=batch,
                                decoder=decoder)
            batches = iter(make_loader(stream, workers, pin_memory=amp, device=device))

            def step() -> None:
                crops, params = next(batches)
                views = augment(crops.to(device, non_blocking=True), params.to(device, non_blocking=True))
                train_step(online, target, lars, views, cfg.tau, 0.996, amp)

            step()  # starts the workers, fills their prefetch queues
            got = rate(3 * batch * steps, lambda: [step() for _ in range(steps)])
            label = f"--decoder {name} ({decoder}), {workers} workers"
            facts[f"{label}: images/s"] = f"{got:.0f}"
            facts[f"{label}: RATIO loader-fed / synthetic"] = f"{got / base:.2f} (target >= 0.9)"
            if got < 0.9 * base:  # input-bound: the workers' rate, scaled to the GPU's
                facts[f"{label}: loader cores this GPU needs (measured)"] = f"{workers * base / got:.0f}"
            del batches
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--clip-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dry-cpu", action="store_true", help="tiny sizes on the CPU: checks the script only")
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    import torch
    import torchvision

    from videonet.curation.judge.classifier import load_classifier
    from videonet.curation.judge.frames import iter_frames

    print(machine_line(), flush=True)
    if args.dry_cpu:
        args.clips, args.frames, args.chunk, args.clip_batch, args.repeats = 8, 4, 4, 4, 1
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-cpu to check the script on a CPU")
    device = "cpu" if args.dry_cpu else "cuda"
    jobs = queries(demo_clips(args.demo_dir), args.clips)
    decode_section(jobs, args.frames, device)

    weights = Path(os.environ.get("TMPDIR", "/tmp")) / "videonet-gpu-resnet50-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), weights)

    def classifier_for(compile: bool):
        return load_classifier("resnet50", str(weights), device=device, precision="bf16", compile=compile,
                               engine="torch")

    batch = np.stack([f for p, _ in jobs[:16] for f in iter_frames(p, 16)])[:8 if args.dry_cpu else 256]
    best, classifier = classify_section(classifier_for, batch, args.repeats, gpu=not args.dry_cpu)
    filter_section(classifier, jobs, args.frames, args.chunk, args.clip_batch, best)
    if args.dry_cpu:
        train_section(64, "resnet18", [1, 2], 1)
        loader_fed_section(64, "resnet18", 2, 2, "10", 8, ("torchcodec", "pyav"))  # torchcodec on the CPU
    else:
        largest = train_section(224, "resnet50", [32, 64, 128, 256, 384, 512, 768, 1024], 5)
        loader_fed_section(224, "resnet50", min(largest, 256), 10, "10,20,30,60", 256)


if __name__ == "__main__":
    main()
