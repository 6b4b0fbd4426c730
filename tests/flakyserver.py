"""A loopback web that fails like YouTube at scale: 429 with Retry-After, 503, dropped connections,
stalls and 404, each for the first N requests of a URL, then the real clip; every request is logged
with its time, so tests measure retries and rates at the server. Serves byte ranges (206), as real
video hosts do: ffmpeg reads a prefix (``--judge-prefix``) with them.

URLs: ``/flaky/<kind>-<n>/<name>.mp4`` fails the first ``n`` requests with ``kind`` (429, 503, drop,
stall), then serves ``clip.mp4``; ``/gone/<name>.mp4`` is always 404; ``/clip.mp4`` always works;
``/search.rss?q=`` is tests/localserver.py's feed, and ``/flakysearch-<n>.rss?q=`` answers its first
``n`` requests with 429.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from localserver import Handler

STALL_S = 3.0  # longer than the tests' socket timeout
_FLAKY = re.compile(r"/flaky/(429|503|drop|stall)-(\d+)/[^/]+\.mp4")
_FLAKY_SEARCH = re.compile(r"/flakysearch-(\d+)\.rss")


@dataclass
class Log:
    """Every request the server saw: (monotonic time, path without query), in order."""

    requests: list[tuple[float, str]] = field(default_factory=list)
    sent_bytes: int = 0  # clip bytes written to clients (what a download really cost)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> int:
        """Record a request; returns how many requests this path had before it."""
        with self.lock:
            before = sum(1 for _, p in self.requests if p == path)
            self.requests.append((time.monotonic(), path))
            return before

    def count(self, needle: str) -> int:
        return sum(1 for _, p in self.requests if needle in p)

    def times(self, needle: str) -> list[float]:
        return [t for t, p in self.requests if needle in p]


class FlakyHandler(Handler):
    log: Log
    clip: bytes
    bytes_per_s: float = 0.0  # 0: as fast as the loopback goes; else a network's bandwidth per connection

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlparse(self.path)
        before = self.log.add(url.path)
        if url.path.startswith("/gone/"):
            return self.send_error(404)
        if match := _FLAKY_SEARCH.fullmatch(url.path):
            if before < int(match.group(1)):
                return self._too_many()
            self.path = "/search.rss" + ("?" + url.query if url.query else "")
            return super().do_GET()
        if match := _FLAKY.fullmatch(url.path):
            kind, failing = match.group(1), before < int(match.group(2))
            if failing and kind == "429":
                return self._too_many()
            if failing and kind == "503":
                return self.send_error(503)
            if failing and kind == "drop":  # the connection closes before any answer
                self.close_connection = True
                return None
            if failing and kind == "stall":
                time.sleep(STALL_S)
                self.close_connection = True
                return None
            return self._clip()
        if url.path == "/clip.mp4":
            return self._clip()
        return super().do_GET()

    def _too_many(self) -> None:
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _clip(self) -> None:
        """The clip, or the byte range asked for (206)."""
        data, start, end = self.clip, 0, len(self.clip) - 1
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if wanted and (wanted.group(1) or wanted.group(2)):
            if wanted.group(1):
                start, end = int(wanted.group(1)), min(end, int(wanted.group(2) or end))
            else:
                start = max(0, len(data) - int(wanted.group(2)))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command != "HEAD":
            try:
                for block in range(start, end + 1, 65536):  # in blocks: a client that hangs up is charged what it got
                    self.wfile.write(data[block:min(block + 65536, end + 1)])
                    self.log.sent_bytes += min(65536, end + 1 - block)
                    if self.bytes_per_s:
                        time.sleep(65536 / self.bytes_per_s)
            except OSError:  # the client read what it needed (ffmpeg, a prefix)
                pass


def serve(directory: Path, clip: Path, catalog: list[dict] | None = None, bytes_per_s: float = 0.0):
    """Start the flaky web on 127.0.0.1; returns (base_url, log, stop)."""
    log = Log()
    handler = type("Flaky", (FlakyHandler,), {"catalog": catalog or [], "searches": [], "log": log,
                                               "clip": clip.read_bytes(), "bytes_per_s": bytes_per_s})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", log, stop
