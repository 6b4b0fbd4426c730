"""Clips/s of a local curation at 1 and 2 DirectRunner workers (multi_processing mode).

Same catalog of distinct clip files for every run (see ``common.catalog``), each run a fresh
output directory; the Beam flags ``--direct_num_workers=N --direct_running_mode=multi_processing``
go through ``CurateSettings.beam_args`` exactly as ``videonet curate ... -- <beam flags>`` passes
them. Wall time covers the whole ``curate`` call (search, decode, classify, shards, report).

Usage: ``python benchmarks/scale.py [--clips 12] [--frames 4] [--workers 1 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import catalog, demo_clips, machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--classifier", default="efficientnet-lite0")
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()

    from videonet.curation.run import CurateSettings, curate

    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="videonet-scale-"))
    cat = catalog(demo_clips(args.demo_dir), args.clips, work / "clips")
    rates = {}
    for workers in args.workers:
        options = CurateSettings.of(classes="285,967,1", source=f"catalog:{cat}",
                                    classifier=args.classifier, device="cpu", frames=args.frames, chunk=args.chunk,
                                    min_duration=1.0, progress=False, clip_batch=2,
                                    beam_args=[f"--direct_num_workers={workers}",
                                               "--direct_running_mode=multi_processing"])
        started = time.perf_counter()
        facts = curate(str(work / f"run-{workers}"), options)
        seconds = time.perf_counter() - started
        rates[workers] = args.clips / seconds
        print(f"  {workers} worker(s): {seconds:.1f} s, {rates[workers]:.3f} clips/s; kept {facts.get('kept')}")
    base = args.workers[0]
    summary = ", ".join(f"{w} workers {rates[w] / rates[base]:.2f}x" for w in args.workers[1:])
    print(f"RATIO clips/s vs {base} worker: {summary} (no target; 2 cores shared with other jobs)")


if __name__ == "__main__":
    main()
