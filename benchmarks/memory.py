"""Peak RSS of a local curation run: 10 clips vs 100 clips (target: within 10%).

Each run is ``videonet.curation.run.curate`` on the DirectRunner in a fresh child process (so peaks do
not mix), over a catalog of distinct clip files (copies of the demo's cat and coffee clips, titled
so that some are kept and some rejected); each child reports its own peak RSS
(``getrusage`` of itself and of any process it waited for) as it finishes.

Usage: ``python benchmarks/memory.py [--small 10] [--large 100] [--frames 2] [--classifier efficientnet-lite0]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, catalog, demo_clips, machine_line, target_line

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from videonet.curation.run import CurateSettings, curate
facts = curate({out!r}, CurateSettings.of(classes="285,967,1", source="catalog:" + {cat!r},
                                          classifier={clf!r}, device="cpu", frames={frames}, chunk={chunk},
                                          min_duration=1.0, progress=False, shard_size={shard}))
print("FACTS " + json.dumps({{k: v for k, v in facts.items() if isinstance(v, (int, float, str))}}))
print("PEAK_KIB", max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
"""


def run_child(count: int, args, work: Path) -> tuple[float, float, str]:
    cat = catalog(demo_clips(args.demo_dir), count, work / f"clips-{count}")
    code = CHILD.format(root=str(ROOT), out=str(work / f"run-{count}"), cat=str(cat), clf=args.classifier,
                        frames=args.frames, chunk=args.chunk, shard=args.shard_size)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"curation of {count} clips failed:\n{done.stderr[-3000:]}")
    peak = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_KIB ")))
    facts = next((line[6:] for line in done.stdout.splitlines() if line.startswith("FACTS ")), "{}")
    return peak / 1024, seconds, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=100)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--classifier", default="efficientnet-lite0")
    parser.add_argument("--demo-dir", default=None)
    args = parser.parse_args()
    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="videonet-mem-"))
    small, small_s, small_facts = run_child(args.small, args, work)
    print(f"  {args.small:4d} clips: peak RSS {small:.0f} MiB, {small_s:.0f} s; {small_facts}")
    large, large_s, large_facts = run_child(args.large, args, work)
    print(f"  {args.large:4d} clips: peak RSS {large:.0f} MiB, {large_s:.0f} s; {large_facts}")
    growth = large / small - 1
    met = "met" if growth <= 0.10 else "MISSED"
    print(f"RATIO peak RSS {args.large} clips / {args.small} clips: {large / small:.3f} "
          f"(+{growth:.1%}; target within 10%: {met})")


if __name__ == "__main__":
    main()
