"""Clips/s through decode + classify + keep decision: fast path vs a naive per-clip loop.

- fast: :func:`videonet.curation.judge.scan.scan_clips` over all clips at once (decoder-side scaling, decode
  in a thread pool overlapped with batched inference, chunks of --chunk frames, early exit),
  BatchNorm folded into the convolutions (on CPU: weights laid out once for oneDNN, convolutions
  fused with their activation / residual add, 8 frames per forward),
  at the precision ``--precision`` (default ``auto``: what the pipeline uses on this device: bf16
  on GPUs and on CPUs with native bf16).
- naive: :func:`videonet.curation.judge.scan.naive_scan` clip after clip (full-size decode + torchvision
  resize, the plain torchvision/lite module, one frame per forward pass, fp32, all N frames).

Same clips (real demo clips queried for classes they show and classes they do not, so both
early-exit keeps and full-length rejections occur), same weights, interleaved in this process.
The keep decisions of both sides are compared (they must be identical at fp32); with
``--compare-bf16`` the fast path also runs in bf16 and its per-frame top-1 and per-clip decision
agreement with fp32 is reported, with its speed. ResNet-50 uses random weights unless --resnet-weights is given: timing only, and with no
class ever matched every clip is scanned to N frames (no early exit: the fast path's worst case).

Usage: ``python benchmarks/filter.py [--classifier efficientnet-lite0 resnet50] [--clips 6]
[--frames 100] [--chunk 25] [--compare-bf16]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import demo_clips, interleaved, machine_line, queries, target_line


def load(name: str, precision: str, tmp: Path, fold: bool = True, resnet_weights: str | None = None):
    import torch
    import torchvision

    from videonet.curation.judge.classifier import load_classifier

    if name == "resnet50" and resnet_weights:
        return load_classifier("resnet50", resnet_weights, device="auto", precision=precision, fold=fold)
    if name == "resnet50":  # random weights through the file-weights path (no download)
        weights = tmp / "resnet50-random.pth"
        if not weights.exists():
            torch.manual_seed(0)
            torch.save(torchvision.models.resnet50().state_dict(), weights)
        return load_classifier("resnet50", str(weights), device="auto", precision=precision, fold=fold)
    return load_classifier(name, device="auto", precision=precision, fold=fold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", nargs="+", default=["efficientnet-lite0", "resnet50"])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare-bf16", action="store_true")
    parser.add_argument("--resnet-weights", default=None,
                        help="e.g. IMAGENET1K_V2 (needs the download) for real ResNet-50 verdicts; default random")
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    from videonet.curation.judge.scan import naive_scan, scan_clips
    from videonet.curation.judge.verdicts import keep_decision

    print(machine_line())
    jobs = queries(demo_clips(args.demo_dir), args.clips)
    tmp = Path(tempfile.mkdtemp(prefix="videonet-bench-"))
    ratios = []
    for name in args.classifier:
        fast_clf, naive_clf = (load(name, args.precision, tmp, resnet_weights=args.resnet_weights),
                              load(name, "fp32", tmp, fold=False, resnet_weights=args.resnet_weights))
        print(f"[{name}] device {fast_clf.device}, fast precision {fast_clf.precision}, naive fp32; "
              f"{len(jobs)} clips x first {args.frames} frames, chunk {args.chunk}")
        fast_clf.top1(__import__("numpy").zeros((2, 224, 224, 3), "uint8"))  # warm-up (oneDNN kernels)
        naive_clf.top1(__import__("numpy").zeros((1, 224, 224, 3), "uint8"))
        got: dict[str, list] = {}

        def fast():
            got["fast"] = scan_clips(fast_clf, jobs, args.frames, args.chunk)

        def naive():
            got["naive"] = [naive_scan(naive_clf, path, args.frames) for path, _ in jobs]

        timing = interleaved({"fast": fast, "naive": naive}, args.repeats)
        decisions = {side: [keep_decision(s.top1, next(iter(w))).kept for s, (_, w) in zip(got[side], jobs)]
                     for side in ("fast", "naive")}
        classified = {side: sum(s.frames_classified for s in got[side]) for side in got}
        frame_agree = sum(a == b for f, n in zip(got["fast"], got["naive"]) for a, b in zip(f.top1, n.top1))
        compared = sum(min(len(f.top1), len(n.top1)) for f, n in zip(got["fast"], got["naive"]))
        same = decisions["fast"] == decisions["naive"]
        ratio = timing["naive"]["wall"] / timing["fast"]["wall"]
        print(f"  kept (fast/naive): {sum(decisions['fast'])}/{sum(decisions['naive'])} of {len(jobs)}; "
              f"decisions identical: {same}; per-frame top-1 agreement {frame_agree}/{compared}")
        print(f"  frames classified: fast {classified['fast']} (early exit), naive {classified['naive']}")
        print(f"  fast  {len(jobs) / timing['fast']['wall']:.3f} clips/s ({timing['fast']['wall']:.1f} s wall, "
              f"{timing['fast']['cpu']:.1f} s cpu)")
        print(f"  naive {len(jobs) / timing['naive']['wall']:.3f} clips/s ({timing['naive']['wall']:.1f} s wall, "
              f"{timing['naive']['cpu']:.1f} s cpu)")
        print(f"  ratio {ratio:.2f}x wall, {timing['naive']['cpu'] / timing['fast']['cpu']:.2f}x cpu time")
        if not same:
            print("  WARNING: decisions differ between the fast and the naive path")
        if args.compare_bf16:
            other = load(name, "fp32" if fast_clf.precision == "bf16" else "bf16", tmp,
                         resnet_weights=args.resnet_weights)
            other.top1(__import__("numpy").zeros((2, 224, 224, 3), "uint8"))
            bf16, fp32 = (fast_clf, other) if fast_clf.precision == "bf16" else (other, fast_clf)
            started = time.perf_counter()
            half = scan_clips(bf16, jobs, args.frames, args.chunk, early_exit=False)
            bf16_s = time.perf_counter() - started
            started = time.perf_counter()
            full = scan_clips(fp32, jobs, args.frames, args.chunk, early_exit=False)
            fp32_s = time.perf_counter() - started
            agree = sum(a == b for h, f in zip(half, full) for a, b in zip(h.top1, f.top1))
            total = sum(len(f.top1) for f in full)
            dec = [keep_decision(h.top1, next(iter(w))).kept == keep_decision(f.top1, next(iter(w))).kept
                   for h, f, (_, w) in zip(half, full, jobs)]
            flips = [(f.scores[i], h.scores[i]) for h, f in zip(half, full) for i in range(len(f.top1))
                     if h.top1[i] != f.top1[i]]
            print(f"  bf16 vs fp32 (no early exit, same clips): {fp32_s / bf16_s:.2f}x speed "
                  f"(fp32 {fp32_s:.1f} s, bf16 {bf16_s:.1f} s); per-frame top-1 agreement {agree}/{total} "
                  f"({agree / total:.1%}); clip decisions agree {sum(dec)}/{len(dec)}")
            if flips:
                print(f"  frames whose top-1 flips: fp32 top-1 softmax score median "
                      f"{sorted(s for s, _ in flips)[len(flips) // 2]:.3f}")
        ratios.append((name, ratio))
    summary = ", ".join(f"{n} {r:.2f}x" for n, r in ratios)
    print(f"clips/s fast/naive: {summary}")
    print(target_line(f"filter fast/naive clips/s (min over {', '.join(n for n, _ in ratios)})",
                      min(r for _, r in ratios), 5.0))


if __name__ == "__main__":
    main()
