"""Download only what is needed: a prefix to judge (--judge-prefix), the whole video only for kept clips.

    python benchmarks/download.py [--videos 5] [--seconds 180] [--prefix 20] [--kept-share 0.24] [--mbps 40]

Serves a long H.264 clip (the demo's bikes clip looped to ``--seconds`` by ffmpeg, stream copy) from
the loopback server of ``tests/flakyserver.py`` (byte ranges, as video hosts serve; ``--mbps`` per
connection, a network's bandwidth, so that time means something and socket buffers do not hide what a
client left unread), then fetches it
``--videos`` times whole and ``--videos`` times as a ``--prefix`` s prefix, interleaved, through the
real yt-dlp path (``fetched_video``). It reports bytes the server sent and wall time per video for
each side, and the cost of a judged candidate with and without a prefix when ``--kept-share`` of the
candidates are kept (the paper kept about 24%): without, every candidate costs a whole video; with,
every candidate costs a prefix and a kept one a whole video too. Last line: ``RATIO``.

    python benchmarks/download.py --pacing [--rounds 2] [--cap 300]

instead measures what a burst of rate-limited answers costs a worker: the five flaky URLs of the
issue that found the stall (429 with Retry-After: 1 twice, 503 twice, a connection dropped twice, a
404, a plain clip), fetched in turn through the pacer as it is (it waits what the site states) and
through the pacer as it was (Beam's ``AdaptiveThrottler``, which counted its own throttled attempts as
requests), the same retry settings on both sides, ``--rounds`` times each, interleaved; a side still
stuck after ``--cap`` seconds is stopped and counted as taking the cap (the ratio is then a lower bound).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import demo_clips, machine_line, target_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import flakyserver  # noqa: E402  (tests/flakyserver.py: the loopback web of the tests)


class Stuck(Exception):
    """The side ran past its cap."""


def pacing(rounds: int, cap: float) -> int:
    """The five flaky URLs through the pacer as it is and as it was; RATIO: time as it was / as it is."""
    from apache_beam.io.components.adaptive_throttler import AdaptiveThrottler

    from videonet.curation.client import ClientSettings, Pacer, Session, Tally, ydl_params
    from videonet.curation.judge.fetch import FetchError, FetchSettings, fetched_video

    class ThrottledPacer(Pacer):
        """The pacer before the fix: every admission asks Beam's AdaptiveThrottler (300 s window,
        overload ratio 1.25), a throttled one sleeps 5 s and asks again; answers that were not "too
        fast" count as successes."""

        def __init__(self, settings: ClientSettings):
            super().__init__(0.0, settings)
            self.throttler = AdaptiveThrottler(300_000, 30_000, 1.25)
            self.deadline = time.monotonic() + cap

        def _admit(self, tally: Tally) -> None:
            while self.throttler.throttle_request(time.time() * 1000):
                if time.monotonic() > self.deadline:
                    raise Stuck()
                time.sleep(5.0)
                tally.waited_s += 5.0

        def _hold(self, seconds: float) -> None:
            pass

        def call(self, request, tally):
            def counted():
                try:
                    result = request()
                except FetchError as exc:
                    if not exc.failure.rate_limited:
                        self.throttler.successful_request(time.time() * 1000)
                    raise
                self.throttler.successful_request(time.time() * 1000)
                return result
            return super().call(counted, tally)

    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="videonet-bench-pacing-"))
    clip = demo_clips() / "chelsea_cat.mp4"
    base, log, stop = flakyserver.serve(work, clip)
    settings = ClientSettings()  # the defaults: 4 tries, backoff from 2 s, Retry-After as said
    limits = FetchSettings(socket_timeout=2.0, retries=0)
    paths = ["flaky/429-2/{n}.mp4", "flaky/503-2/{n}.mp4", "flaky/drop-2/{n}.mp4", "gone/{n}.mp4", "clip.mp4?{n}"]
    seconds: dict[str, list[float]] = {"as it is": [], "as it was": []}
    try:
        with fetched_video(f"{base}/clip.mp4?warm", None, limits):  # the downloader is started
            pass
        for n in range(rounds):
            for side, make in (("as it is", lambda: Pacer(0.0, settings)), ("as it was", lambda: ThrottledPacer(settings))):
                site, started = Session(make(), ydl_params(settings), Tally("download")), time.perf_counter()
                try:
                    for path in paths:
                        try:
                            with fetched_video(f"{base}/" + path.format(n=f"{side[-3:]}{n}"), None, limits, site):
                                pass
                        except FetchError:
                            pass  # the 404
                    stuck = ""
                except Stuck:
                    stuck = f" (stopped at the {cap:g} s cap, still throttled)"
                seconds[side].append(time.perf_counter() - started)
                print(f"round {n + 1}, {side}: {seconds[side][-1]:.1f} s{stuck}, {site.tally.requests} requests, "
                      f"{site.tally.rate_limited} rate-limited, {site.tally.waited_s:.0f} s waited", flush=True)
    finally:
        stop()
    now, before = statistics.median(seconds["as it is"]), statistics.median(seconds["as it was"])
    print(f"median: as it is {now:.1f} s, as it was {before:.1f} s (the failures ask for 14 s of waiting)")
    print(target_line("five flaky URLs, time with the AdaptiveThrottler / time now", before / now, 2.0))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pacing", action="store_true", help="Measure a burst of failures through the pacer.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cap", type=float, default=300.0, help="Seconds after which a stuck side is stopped.")
    parser.add_argument("--videos", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--prefix", type=float, default=20.0)
    parser.add_argument("--kept-share", type=float, default=0.24)
    parser.add_argument("--mbps", type=float, default=40.0, help="Megabits per second per connection.")
    args = parser.parse_args()
    if args.pacing:
        return pacing(args.rounds, args.cap)
    from videonet.curation.judge.fetch import FetchSettings, fetched_video
    from videonet.curation.judge.frames import probe

    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="videonet-bench-download-"))
    clip = work / "long.mp4"
    loops = int(args.seconds // probe(str(demo_clips() / "bikes.mp4")).duration)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-stream_loop", str(loops), "-i", str(demo_clips() / "bikes.mp4"),
                    "-c", "copy", "-movflags", "+faststart", str(clip)], check=True)
    info = probe(str(clip))
    print(f"clip: {info.duration:.0f} s, {info.width}x{info.height} at {info.fps:g} fps, "
          f"{clip.stat().st_size / 1e6:.1f} MB (H.264 mp4, index first), served at {args.mbps:g} Mbit/s")
    base, log, stop = flakyserver.serve(work, clip, bytes_per_s=args.mbps * 1e6 / 8)
    cost: dict[str, list[tuple[int, float]]] = {"whole": [], "prefix": []}
    try:
        for n in range(args.videos):
            for side, prefix in (("whole", 0.0), ("prefix", args.prefix)):
                before, started = log.sent_bytes, time.perf_counter()
                with fetched_video(f"{base}/clip.mp4?{side}={n}", None, FetchSettings(), prefix=prefix) as got:
                    frames = probe(got.path)
                cost[side].append((log.sent_bytes - before, time.perf_counter() - started))
            if n == 0:
                print(f"prefix file: {frames.duration:.1f} s at {frames.fps:g} fps "
                      f"({frames.duration * frames.fps:.0f} frames >= the 100 the judge classifies)")
    finally:
        stop()
    med = {side: (statistics.median(b for b, _ in rows), statistics.median(t for _, t in rows))
           for side, rows in cost.items()}
    for side, (nbytes, seconds) in med.items():
        print(f"{side:>6}: {nbytes / 1e6:7.2f} MB sent, {seconds:6.2f} s per video (median of {args.videos})")
    k = args.kept_share
    for i, unit in ((0, "bytes"), (1, "time")):
        without, with_prefix = med["whole"][i], med["prefix"][i] + k * med["whole"][i]
        print(f"per judged candidate ({unit}), {k:.0%} kept: whole videos {without:.3g}, prefix + kept whole "
              f"{with_prefix:.3g} ({1 - with_prefix / without:.0%} saved)")
    ratio = med["whole"][0] / (med["prefix"][0] + k * med["whole"][0])
    print(target_line(f"bytes per judged candidate, whole / prefix ({args.prefix:g} s) + {k:.0%} kept whole",
                      ratio, 2.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
