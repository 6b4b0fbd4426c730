"""The curation at the real job's size, metadata only: wall time, candidates/s and peak RSS per runner.

A search engine stand-in (the ``scale`` source, registered by this script) answers every term of the
1000 ImageNet classes page by page, lazily, holding nothing: ``rows / terms`` hits per term, of which
20% have titles that do not match (``title_mismatch``) and 5% repeat the previous video
(``duplicate``); classes that share a term get the same videos, as on YouTube. Every hit carries a
duration under ``--min-duration`` in its metadata, so every unique match drops as ``too_short``
before any download: the judge gets nothing and what is measured is the pipeline itself (search,
dedup, the resume join, the audit write, the report). Each size runs on a fresh ``--out``, then once
more on the same ``--out`` (a resume of a finished run).

Each runner, size and phase (first run, resume) runs in a fresh process of its own; its peak RSS is the largest sum, sampled
every 0.5 s, of the resident memory of that process and all its descendants (the Flink job server's
JVM with its embedded Flink, SDK workers).

Usage: ``python benchmarks/scale.py [--rows 50000 500000 5000000] [--runners direct flink]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Generator

from common import machine_line

TOO_SHORT_S = 5.0  # under the default --min-duration of 10 s
PER_TERM_ENV = "VIDEONET_SCALE_PER_TERM"
PHASES = ("first", "resume")


class ScaleSource:
    """A deterministic, memoryless search engine: ``per_term`` hits for every term."""

    name = "scale"

    def __init__(self, per_term: int):
        self.per_term = per_term

    def prepare(self) -> None:
        pass

    def invalid_rows(self) -> list[dict]:
        return []

    def pages(self, term: str, size: int) -> Generator[list[dict], None, None]:
        tag = hashlib.sha1(term.encode()).hexdigest()[:10]
        for start in range(0, max(self.per_term, 1), size):
            page = []
            for i in range(start, min(start + size, self.per_term)):
                # 5%: the engine returns the previous (title-matched) video again; 20%: loose matches
                video = i - 1 if i % 20 == 18 else i
                title = f"unrelated upload {i}" if i % 5 == 4 else f"{term} video {video}"
                page.append({"id": f"{tag}-{video}", "title": title, "url": f"https://example.invalid/{tag}/{video}",
                             "path": None, "duration": TOO_SHORT_S, "uploader": None})
            yield page


def source(arg: str | None, settings, client=None) -> ScaleSource:
    """``--source scale`` (this script registers it in ``SOURCES``; hits per term from :data:`PER_TERM_ENV`)."""
    return ScaleSource(int(os.environ[PER_TERM_ENV]))


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/status") as fh:
                rss[int(entry)] = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


class PeakRss:
    """Samples :func:`_tree_rss_kb` of this process in a thread; ``peak_gb`` after the block."""

    def __enter__(self) -> "PeakRss":
        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))
            if self._stop.wait(0.5):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self) -> float:
        return self.peak_kb / 1024 ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 500_000, 5_000_000])
    parser.add_argument("--runners", nargs="+", default=["direct", "flink"], choices=["direct", "flink"])
    parser.add_argument("--work", default=None, help="Where the run directories go (default: a temp dir).")
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)  # one runner, size and phase
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="videonet-scale-"))
    if args.child:
        return measure(args.runners[0], args.rows[0], work, args.child)
    from videonet.curation.vocabulary.classes import imagenet1k

    print(machine_line())
    print(f"1000 classes, {sum(len(c.terms) for c in imagenet1k())} terms; work dir {work}")
    print("| runner | rows | run | wall s | candidates | candidates/s | peak RSS GB |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |", flush=True)
    for rows in args.rows:
        for runner in args.runners:
            for phase in PHASES:
                subprocess.run([sys.executable, __file__, "--child", phase, "--rows", str(rows), "--runners", runner,
                                "--work", str(work)], check=True)


def measure(runner: str, rows: int, work: Path, phase: str) -> None:
    """One table row: a fresh run of ``rows`` hits on ``runner``, or the resume of that finished run."""
    from videonet.curation.run import CurateSettings, curate
    from videonet.curation.search import SOURCES
    from videonet.curation.vocabulary.classes import imagenet1k

    SOURCES["scale"] = __name__  # this module's source() factory
    out = work / f"{runner}-{rows}"
    os.environ[PER_TERM_ENV] = str(max(rows // sum(len(c.terms) for c in imagenet1k()), 1))
    settings = CurateSettings.of(source="scale", classifier="efficientnet-lite0", device="cpu", progress=False,
                                 runner="FlinkRunner" if runner == "flink" else "DirectRunner")
    started = time.perf_counter()
    with PeakRss() as rss:
        facts = curate(str(out), settings)
    seconds = time.perf_counter() - started
    candidates = facts["candidates"]
    print(f"| {runner} | {rows:,} | {phase} | {seconds:.1f} | {candidates:,} | "
          f"{candidates / seconds:,.0f} | {rss.peak_gb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
