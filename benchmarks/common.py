"""Shared by the filter benchmarks: machine/version line, the real demo clips, catalogs, timing.

Every benchmark prints :func:`machine_line` first and a ``RATIO ...`` line last. Timings on a
shared machine are noisy, so the sides being compared are run interleaved (A, B, A, B, ...) in
one process and the median of each side is reported, with process CPU time next to wall time.
"""

from __future__ import annotations

import csv
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

# (demo clip, ImageNet class it is queried for): the demo's real verdict pairs, kept and rejected.
QUERIES = [
    ("chelsea_cat.mp4", 285),   # Egyptian cat: kept
    ("coffee_cup.mp4", 967),    # espresso: kept
    ("bikes.mp4", 671),         # mountain bike
    ("chelsea_cat.mp4", 1),     # goldfish: rejected, all N frames
    ("coffee_cup.mp4", 849),    # teapot: rejected, all N frames
    ("bigbuckbunny.mp4", 332),  # Angora (rabbit-ish cartoon, 1280x720): most likely rejected
]
DECODE_CLIPS = ["chelsea_cat.mp4", "coffee_cup.mp4", "bikes.mp4", "bigbuckbunny.mp4"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line: CPU, cores, load, GPU if any, and the versions of what is measured."""
    import apache_beam
    import av
    import numpy
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {_cpu_model()}, {os.cpu_count()} cores (load {load}), {gpu} | python {platform.python_version()}"
            f", torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}"
            f", av {av.__version__}, numpy {numpy.__version__}, apache-beam {apache_beam.__version__}")


def demo_clips(directory: str | None = None) -> Path:
    """The real demo clips (built once into ``directory`` or a cache dir); returns their folder."""
    from videonet.curation.search.demo import build_demo_catalog

    path = Path(directory or Path(tempfile.gettempdir()) / "videonet-bench-demo")
    return build_demo_catalog(path).parent


def queries(clips: Path, count: int) -> list[tuple[str, set[int]]]:
    """``count`` (path, {class}) scan jobs cycling through :data:`QUERIES`."""
    return [(str(clips / QUERIES[i % len(QUERIES)][0]), {QUERIES[i % len(QUERIES)][1]}) for i in range(count)]


def catalog(clips: Path, count: int, directory: Path) -> Path:
    """A catalog csv of ``count`` distinct clips (copies of kept demo clips under distinct paths).

    Copies, not symlinks: the pipeline resolves paths and dedups by file, as it should.
    """
    directory.mkdir(parents=True, exist_ok=True)
    sources = [("chelsea_cat.mp4", "Egyptian cat"), ("coffee_cup.mp4", "espresso"), ("chelsea_cat.mp4", "goldfish")]
    path = directory / f"catalog-{count}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "path", "duration"])
        writer.writeheader()
        for i in range(count):
            name, term = sources[i % len(sources)]
            target = directory / f"clip{i:04d}-{name}"
            if not target.exists():
                try:
                    os.link(clips / name, target)
                except OSError:
                    shutil.copyfile(clips / name, target)
            writer.writerow({"id": f"bench-{i:04d}", "title": f"{term} video number {i}", "path": str(target),
                             "duration": 12.0})
    return path


def interleaved(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Run each side ``repeats`` times, interleaved; median wall and process-CPU seconds per side."""
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]),
                "best": min(wall[k])} for k in sides}


def target_line(name: str, ratio: float, target: float, unit: str = "x") -> str:
    met = "met" if ratio >= target else "MISSED"
    return f"RATIO {name}: {ratio:.2f}{unit} (target >= {target:g}{unit}: {met})"
