"""Fault suite as a report: curate a hostile catalog and print what happened to every fault.

    python benchmarks/faults.py [--keep DIR]

Builds the catalog of ``tests/faultkit.py`` (the good demo clips plus corrupt/truncated/zero-byte/
audio-only/huge/variable-frame-rate files, unreadable paths, HTTP 404/500/trickle/endless URLs on a
local server, malformed rows, shell metacharacters, a class with no candidates), runs a clean
curation and the hostile one with the offline classifier, then prints one row per fault (expected
status, got status, reason) and the summary: faults tried, crashes, kept clips lost, clips
duplicated, audit rows without a reason; the last line is the share of faults handled as expected.
Exit code 1 if any count is off.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import faultkit  # noqa: E402  (tests/faultkit.py: shared with tests/test_faults.py)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="Work in this directory and keep it (default: a temporary one, removed).")
    args = parser.parse_args()
    from videonet.curation.run import curate
    from videonet.curation.search.demo import build_demo_catalog

    work = Path(args.keep or tempfile.mkdtemp(prefix="videonet-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    base, stop = faultkit.serve(www)
    try:
        build_demo_catalog(work / "demo")
        started = time.monotonic()
        kit = faultkit.build(work / "kit", work / "demo", base, www)
        print(f"built {len(kit.faults)} catalog rows in {time.monotonic() - started:.1f} s", flush=True)
        clean = work / "clean-run"
        shutil.rmtree(clean, ignore_errors=True)
        curate(*faultkit.options(clean, kit, kit.clean, faultkit.GOOD_CLASSES))
        hostile = work / "fault-run"
        shutil.rmtree(hostile, ignore_errors=True)
        crashed = None
        started = time.monotonic()
        try:
            curate(*faultkit.options(hostile, kit, kit.faults_csv, faultkit.FAULT_CLASSES))
        except Exception as exc:  # the count the suite exists for: this must never happen
            traceback.print_exc()
            crashed = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        seconds = time.monotonic() - started
        results, summary = faultkit.check(hostile, kit, clean, crashed)
    finally:
        stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nhostile run: {seconds:.1f} s\n")
    print(faultkit.format_table(results, summary))
    bad = summary["crashes"] or summary["kept clips lost"] or summary["clips duplicated"] \
        or summary["audit rows without a reason"] or summary["wrong status or reason"] or kit.canary.exists()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
