"""Frames/s of the classifier on the same frames, threads and batch: videonet against the engines a user could pick.

Engines (each classifies the same decoded demo frames, in forwards of ``--batch`` frames, with
``--threads`` threads; bf16 only where this CPU computes it natively):

- ``torch eager fp32``: the plain torchvision / lite module (``fold=False``), the naive reference;
- ``ONNX Runtime fp32``: the same module exported with ``torch.onnx.export``;
- ``OpenVINO fp32`` / ``OpenVINO bf16``: the module converted with ``openvino.convert_model``,
  compiled with the inference precision hint, fed normalised float NCHW frames as a user would;
- ``videonet torch fp32`` / ``videonet torch bf16``: ``--engine torch``, the oneDNN fast path;
- ``videonet auto``: :class:`~videonet.curation.judge.classifier.ClassifierSettings` defaults,
  exactly what ``videonet curate`` runs here (``--engine auto``, ``--precision auto``).

The sides run interleaved, round after round, and the median round is reported. Per engine the
per-frame top-1 agreement with the fp32 reference and the keep decisions of the demo queries
(``common.QUERIES``, on the frames classified) are printed. ResNet-50 has random weights (its
real ones need a download), so its agreement only shows numerical closeness; EfficientNet-lite0
has its real ImageNet weights. Last line: ``RATIO videonet / best other engine: N.NNx``, for the
slower of the models measured.

Usage: ``python benchmarks/engines.py [--classifier resnet50 efficientnet-lite0] [--frames 24] [--rounds 3]
[--batch 8] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from common import QUERIES, demo_clips, machine_line
from videonet.curation.judge.verdicts import keep_decision  # imported first: fail before minutes of timing

Top1 = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC batch -> top-1 labels


def _normalised(frames: np.ndarray, mean, std) -> np.ndarray:
    """Float NCHW frames normalised as the model expects: the input a plain engine user feeds."""
    x = frames.transpose(0, 3, 1, 2).astype(np.float32) / 255
    return (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]


def onnxruntime_engine(model, mean, std, threads: int, tmp: Path) -> Top1:
    import onnxruntime as ort
    import torch

    path = tmp / "model.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 224, 224),), str(path), input_names=["x"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), dynamo=True, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda frames: session.run(None, {name: _normalised(frames, mean, std)})[0].argmax(1)


def openvino_engine(model, mean, std, threads: int, precision: str) -> Top1:
    import torch

    from videonet.curation.judge.openvino_engine import import_openvino

    ov = import_openvino()  # without OpenVINO's telemetry, as the engine itself
    converted = ov.convert_model(model, example_input=torch.zeros(2, 3, 224, 224))
    compiled = ov.Core().compile_model(converted, "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    return lambda frames: np.asarray(request.infer([_normalised(frames, mean, std)])[0]).argmax(1)


def engines(name: str, weights: str | None, threads: int, bf16: bool, tmp: Path) -> dict[str, Top1]:
    """Every engine of the module docstring for one registry model, in table order."""
    from videonet.curation.judge.classifier import ClassifierSettings, load_classifier

    plain = load_classifier(name, weights, device="cpu", precision="fp32", fold=False)
    mean, std = plain.mean, plain.std
    out: dict[str, Top1] = {"torch eager fp32": lambda f: plain.top1(f)[0]}
    out["ONNX Runtime fp32"] = onnxruntime_engine(plain.model, mean, std, threads, tmp)
    for precision in ["f32"] + ["bf16"] * bf16:
        out[f"OpenVINO {precision.replace('f32', 'fp32')}"] = openvino_engine(plain.model, mean, std, threads, precision)
    for precision in ["fp32"] + ["bf16"] * bf16:
        fast = load_classifier(name, weights, device="cpu", precision=precision, engine="torch")
        out[f"videonet torch {precision}"] = lambda f, c=fast: c.top1(f)[0]
    auto = ClassifierSettings(classifier=name, weights=weights, device="cpu").load()
    out[f"videonet auto ({auto.engine} {auto.precision})"] = lambda f: auto.top1(f)[0]
    return out


def decisions(labels: np.ndarray, clip_frames: dict[str, slice]) -> list[bool]:
    """Keep decision of each demo query (``common.QUERIES``) on the frames classified."""
    return [keep_decision(labels[clip_frames[clip]].tolist(), wanted).kept for clip, wanted in QUERIES]


def measure(name: str, weights: str | None, frames: np.ndarray, clip_frames: dict[str, slice],
            args: argparse.Namespace, tmp: Path) -> tuple[float, float]:
    """Print one model's table; return (videonet auto frames/s, best other engine's frames/s)."""
    from videonet.curation.judge.classifier import cpu_has_bf16

    sides = engines(name, weights, args.threads, cpu_has_bf16(), tmp)
    batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
    labels, times = {}, {k: [] for k in sides}
    for side in sides.values():  # warm-up: first-call kernel selection and buffers
        side(batches[0])
    for _ in range(args.rounds):
        for key, side in sides.items():
            started = time.perf_counter()
            labels[key] = np.concatenate([side(b) for b in batches])
            times[key].append(time.perf_counter() - started)
    reference = labels["torch eager fp32"]
    keep = decisions(reference, clip_frames)
    rate = {k: len(frames) / statistics.median(t) for k, t in times.items()}
    print(f"[{name}] {len(frames)} frames, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds "
          f"(median); reference: torch eager fp32; weights: {weights or 'shipped (real)'}")
    print("| engine | frames/s | vs torch eager | top-1 agreement | keep decisions identical |")
    print("|---|---:|---:|---:|---|")
    for key in sides:
        agree = int((labels[key] == reference).sum())
        print(f"| {key} | {rate[key]:.1f} | {rate[key] / rate['torch eager fp32']:.2f}x | "
              f"{agree}/{len(reference)} | {decisions(labels[key], clip_frames) == keep} |")
    ours = next(k for k in sides if k.startswith("videonet auto"))
    best = max((k for k in sides if not k.startswith("videonet")), key=rate.__getitem__)
    print(f"  {ours} / {best}: {rate[ours] / rate[best]:.2f}x; videonet's own torch path / {best}: "
          f"{max(v for k, v in rate.items() if k.startswith('videonet torch')) / rate[best]:.2f}x")
    return rate[ours], rate[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", nargs="+", default=["resnet50", "efficientnet-lite0"])
    parser.add_argument("--frames", type=int, default=24, help="first frames of each demo clip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    import torch
    import torchvision

    from videonet.curation.judge.frames import iter_frames

    torch.set_num_threads(args.threads)
    print(machine_line())
    clips = demo_clips(args.demo_dir)
    decoded, clip_frames = [], {}
    for clip in dict.fromkeys(c for c, _ in QUERIES):
        got = list(iter_frames(str(clips / clip), args.frames))
        clip_frames[clip] = slice(len(decoded), len(decoded) + len(got))
        decoded += got
    frames = np.stack(decoded)
    tmp = Path(tempfile.mkdtemp(prefix="videonet-engines-"))
    ratios = []
    for name in args.classifier:
        weights = None
        if name == "resnet50":  # random weights through the file path (the real ones need a download)
            torch.manual_seed(0)
            weights = str(tmp / "resnet50-random.pth")
            torch.save(torchvision.models.resnet50().state_dict(), weights)
        ours, best = measure(name, weights, frames, clip_frames, args, tmp)
        ratios.append((ours / best, name))
    ratio, name = min(ratios)
    print(f"RATIO videonet / best other engine: {ratio:.2f}x ({name}; target >= 1.0x: "
          f"{'met' if ratio >= 1.0 else 'MISSED'})")


if __name__ == "__main__":
    main()
