"""Throughput of one VITO training step vs plain torchvision ResNet training on the same images.

What is compared (one process, same random batch of B clips x V views, steps interleaved so that
machine noise hits both sides alike; medians reported):

- ``vito``: :func:`videonet.vito.train.train_step`: the online network (ResNet + multi-scale
  attention pooling + projector + predictor) forward/backward on the V*B views, the EMA target
  forward on them, InfoNCE over all view pairs, LARS, EMA update.
- ``plain``: ``torchvision.models.<arch>()`` forward/backward (cross-entropy, SGD with momentum) on the
  same V*B images, i.e. what supervised training costs.
- ``plain+fwd``: ``plain`` plus one more no-grad forward of a second ResNet on the same images: the
  same backbone work as VITO (its target network is a forward-only pass by design).

The last line is the overhead per image through the backbone: time(vito) / time(plain+fwd); it
measures what VITO adds around the backbone (pooling, heads, loss, LARS, EMA), target <= 1.2x.
time(vito) / time(plain) is printed too; it also includes the target's forward (~1.3x by itself).

Usage: ``python benchmarks/train_step.py [--arch resnet50] [--batch 4] [--image-size 112] [--steps 6]``
(a couple of minutes on 2 CPU cores; on a GPU use e.g. ``--batch 64 --image-size 224``).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from typing import Callable

import torch
import torchvision
from torch import nn

from videonet.vito.lars import LARS, param_groups
from videonet.vito.train import TrainConfig, train_step


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch", type=int, default=4, help="clips per step (each with --views views)")
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    torch.manual_seed(0)
    views = torch.randn(args.batch, args.views, 3, args.image_size, args.image_size, device=device)
    images = views.transpose(0, 1).reshape(-1, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 1000, (images.shape[0],), device=device)

    cfg = TrainConfig(data="", out="", arch=args.arch, batch_size=args.batch)
    online = cfg.build_online().to(device)
    target = copy.deepcopy(online.net).requires_grad_(False)
    lars = LARS(param_groups(online, cfg.weight_decay), lr=0.01, eta=cfg.lars_eta)

    plain = getattr(torchvision.models, args.arch)().to(device)
    second = getattr(torchvision.models, args.arch)().to(device)
    sgd = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    if amp:
        for m in (online, target, plain, second):
            m.to(memory_format=torch.channels_last)

    def vito() -> None:
        train_step(online, target, lars, views, cfg.tau, 0.996, amp)

    def plain_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(plain(images).float(), labels)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()

    def plain_fwd() -> None:
        plain_step()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            second(images)

    sides = {"vito": vito, "plain": plain_step, "plain+fwd": plain_fwd}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for step in range(args.steps + 1):
        for name, fn in sides.items():
            elapsed = timed(fn, device)
            if step:  # the first round warms up allocators and kernels
                times[name].append(elapsed)

    n_images = images.shape[0]
    cpu = platform.processor() or platform.machine()
    name = torch.cuda.get_device_name(device) if amp else f"{cpu}, {os.cpu_count()} cores"
    print(f"machine: {platform.node()} {platform.system()} {platform.release()}; device {device} ({name}); "
          f"torch threads {torch.get_num_threads()}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}")
    print(f"config: {args.arch}, {args.batch} clips x {args.views} views = {n_images} images of "
          f"{args.image_size}px per step, {args.steps} timed steps (median){', bf16 autocast' if amp else ''}")
    median = {k: statistics.median(v) for k, v in times.items()}
    for k, t in median.items():
        print(f"{k:>10}: {t * 1000:9.1f} ms/step  {n_images / t:8.2f} images/s")
    print(f"vito / plain fwd+bwd (includes the target's forward): {median['vito'] / median['plain']:.2f}x")
    print(f"overhead ratio per image through the backbone (vito / plain+fwd): "
          f"{median['vito'] / median['plain+fwd']:.2f}x")


if __name__ == "__main__":
    main()
