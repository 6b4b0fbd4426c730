"""YouTube's video pages as yt-dlp meets them when downloading, offline: the failures a crawl meets,
in yt-dlp's own words, and a rate limit per session.

:class:`DownloadDouble` is a loopback HTTP server holding what YouTube decides per video and per
session; its yt-dlp side is the extractor plugin in ``plugins/yt_dlp_plugins/extractor/`` (loaded by
yt-dlp's own plugin mechanism in the download child when :meth:`DownloadDouble.environ` is in its
environment). For a ``https://www.youtube.com/watch?v=ID`` URL the plugin asks the double for the
video's player answer, naming the session it asks from (the proxy user or the cookie yt-dlp holds),
and turns the answer into what yt-dlp's YouTube extractor raises for it: the same messages (built
as ``extractor/youtube/_video.py`` builds them) and exception classes (``ExtractorError``,
``GeoRestrictedError``; a 429 on the player API ends as "Failed to extract any player response", as
there). The media bytes come from the same server, as a format's URL, through the session's proxy
when it has one (the double answers proxied requests too).

Each session has a budget (``per_hour`` player requests in any ``window`` of seconds, YouTube's
~300/h scaled down); a session over it gets YouTube's "rate-limited for up to an hour" answer until
its window clears. Every player and media request is logged with its time and session.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import flakyserver

PLUGINS = Path(__file__).resolve().parent / "plugins"
ENV = "VIDEONET_YTDOUBLE"  # the double's base URL, for the plugin in the download child

# What YouTube answers in its player response (playabilityStatus reason / subreason), by kind; the
# plugin adds what yt-dlp adds (the login hint after "sign in", the rate-limit explanation).
PLAIN, RATE_LIMITED, BOT_CHECK, IP_BLOCKED, PLAYER_429, PRIVATE, REMOVED, MEMBERS, AGE, GEO, COPYRIGHT, \
    NO_FORMATS, UNAVAILABLE_503, LEAKY, PORTRAIT, BIG = (
        "plain", "rate_limited", "bot_check", "ip_blocked", "player_429", "private", "removed", "members", "age",
        "geo", "copyright", "no_formats", "http_503", "leaky", "portrait", "big")
# The formats a video offers (all H.264 mp4, video only): id, width, height, filesize (None: unknown).
# A portrait video / Short at 270x480, 480x854 and 720x1280; a big one whose preferred format is far
# over any size limit, with a small one beside it.
FORMATS = {
    PLAIN: [("134", 480, 360, None)],
    PORTRAIT: [("160", 270, 480, None), ("135", 480, 854, None), ("136", 720, 1280, None)],
    BIG: [("135", 480, 854, 50_000_000), ("160", 144, 256, None)],
}
REASONS = {
    RATE_LIMITED: "Video unavailable. This content isn't available, try again later.",
    BOT_CHECK: "Sign in to confirm you’re not a bot. This helps protect our community. Learn more",
    PRIVATE: "Private video. Sign in if you've been granted access to this video",
    REMOVED: "Video unavailable. This video has been removed by the uploader",
    MEMBERS: "Join this channel to get access to members-only content like this video, and other exclusive perks.",
    AGE: "Sign in to confirm your age. This video may be inappropriate for some users.",
    GEO: "The uploader has not made this video available in your country",
    COPYRIGHT: "Video unavailable. This video contains content from SME, who has blocked it on copyright grounds.",
}


@dataclass(frozen=True)
class Video:
    """One video of the double: how it answers its first ``times`` player requests (``kind``; -1:
    always), then plainly."""

    id: str  # 11 characters, as YouTube's
    kind: str = PLAIN
    times: int = -1
    duration: float = 12.0

    @property
    def url(self) -> str:
        return f"https://www.youtube.com/watch?v={self.id}"


@dataclass
class Request:
    at: float  # monotonic
    session: str
    video: str
    what: str  # "player" | "media"
    answer: str  # the kind answered ("plain" when it served); for media, the format id fetched
    ydl: str = ""  # which YoutubeDL asked (process and instance): a downloader keeps one per option set


@dataclass
class Log:
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def player(self, video: str | None = None, session: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.what == "player" and video in (None, r.video)
                and session in (None, r.session)]

    def max_in_window(self, session: str, window: float) -> int:
        """The most player requests ``session`` made within any ``window`` seconds (measured here)."""
        times = sorted(r.at for r in self.player(session=session))
        return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


class DownloadHandler(flakyserver.FlakyHandler):
    videos: dict[str, Video]
    budget: tuple[float, float]  # (requests, per seconds) per session; (0, x): unlimited
    dlog: Log

    def do_GET(self):
        url = urlparse(self.path)  # an absolute URI when asked through a proxy
        session = self.headers.get("X-Double-Session", "direct")
        if url.path == "/player":
            return self._player(parse_qs(url.query)["v"][0], session)
        if url.path.startswith("/media/"):
            video = url.path.rsplit("/", 1)[1].split(".")[0]
            fmt = parse_qs(url.query).get("f", [""])[0]
            with self.dlog.lock:
                self.dlog.requests.append(Request(time.monotonic(), session, video, "media", fmt))
            kind = self.videos[video].kind if video in self.videos else PLAIN
            size = next((size for f, _, _, size in FORMATS.get(kind, ()) if f == fmt), None)
            return self._clip() if not size or size <= len(self.clip) else self._large(size)
        return self.send_error(404)

    def _player(self, video_id: str, session: str) -> None:
        video = self.videos.get(video_id)
        with self.dlog.lock:
            now, (allowed, seconds) = time.monotonic(), self.budget
            recent = sum(1 for r in self.dlog.player(session=session) if now - r.at < seconds)
            asked = len(self.dlog.player(video=video_id))
            if video is None:
                answer = REMOVED
            elif allowed and recent >= allowed:
                answer = RATE_LIMITED  # what YouTube says to a session over its budget
            elif video.kind not in FORMATS and (video.times < 0 or asked < video.times):
                answer = video.kind
            else:
                answer = PLAIN
            self.dlog.requests.append(Request(now, session, video_id, "player", answer,
                                              self.headers.get("X-Double-Ydl", "")))
        if answer in (PLAYER_429, UNAVAILABLE_503):
            self.send_response(429 if answer == PLAYER_429 else 503)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        host = self.headers["Host"]
        formats = FORMATS.get(video.kind if video else PLAIN, FORMATS[PLAIN])
        body = {"kind": answer, "reason": REASONS.get(answer), "title": f"video {video_id}",
                "duration": video.duration if video else None,
                "formats": [{"format_id": f, "width": w, "height": h, "filesize": size,
                             "url": f"http://{host}/media/{video_id}.mp4?f={f}"} for f, w, h, size in formats]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


    def _large(self, size: int) -> None:
        """A format as large as it says (the clip's bytes over and over): a client bounded by size stops."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for start in range(0, size, len(self.clip)):
                self.wfile.write(self.clip[:min(len(self.clip), size - start)])
        except OSError:
            pass


class DownloadDouble:
    """The double's server; ``per_hour`` player requests per session in any ``window`` seconds
    (0: unlimited). A context manager: started on enter, stopped on exit."""

    def __init__(self, clip: Path, videos: list[Video], per_hour: float = 0.0, window: float = 3600.0):
        self.videos = {v.id: v for v in videos}
        self.log = Log()
        self.clip = clip
        self.budget = (per_hour * window / 3600.0, window)

    def __enter__(self) -> "DownloadDouble":
        handler = type("Double", (DownloadHandler,), {
            "videos": self.videos, "budget": self.budget, "dlog": self.log, "log": flakyserver.Log(),
            "clip": self.clip.read_bytes(), "bytes_per_s": 0.0, "catalog": [], "searches": []})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(self.clip.parent)))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def proxy_address(self) -> str:
        """host:port: a proxy URL naming it reaches the double (which answers proxied requests)."""
        return self.base.split("://", 1)[1]

    def environ(self) -> dict[str, str]:
        """What a download child needs in its environment to meet the double instead of YouTube."""
        import os

        path = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)
        return {ENV: self.base, "PYTHONPATH": path}


def catalog(path: Path, videos: list[Video], title: str = "Egyptian cat") -> Path:
    """A catalog (csv) of the videos' URLs, each titled for the test class."""
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "url", "duration"])
        for v in videos:
            writer.writerow([v.id, f"{title} {v.kind} {v.id}", v.url, v.duration])
    return path
