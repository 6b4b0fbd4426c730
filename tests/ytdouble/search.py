"""YouTube search as yt-dlp meets it, offline: innertube JSON over loopback HTTP.

:class:`SearchDouble` serves a :class:`~ytdouble.world.World` the way www.youtube.com answers
yt-dlp's ``youtube:search_url`` extractor: the web client's config page, then ``POST
/youtubei/v1/search`` with the query and its ``sp`` filters, answered :attr:`World.page` results at
a time (``videoRenderer``, Shorts as ``videoRenderer`` with the SHORTS overlay or in a
``reelShelfRenderer``, live streams with the LIVE overlay, upcoming ones with ``upcomingEventData``,
``channelRenderer``, ``playlistRenderer``) and a continuation token while the query has more, until
its depth cap. Requests reach it through :class:`YoutubeDoubleRH`, a yt-dlp request handler that
sends what yt-dlp addresses to youtube.com to the loopback server instead, so yt-dlp's extractor,
request director, retries and exceptions all run as they do against YouTube.

Faults are programmed per request (:meth:`SearchDouble.fail`): an HTTP status (429 with YouTube's
JSON error body, 5xx) or a 200 answer without the results (what yt-dlp reports as "Incomplete data
received", ytdl-org#28194). Every request is logged (:attr:`SearchDouble.log`) so a test counts
what reached "YouTube".
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

from yt_dlp.networking._urllib import UrllibRH
from yt_dlp.networking.common import register_preference, register_rh
from yt_dlp.networking.exceptions import UnsupportedRequest

from ytdouble.world import CHANNEL, LIVE, PLAYLIST, SHORT, UPCOMING, Item, World

YOUTUBE_HOSTS = ("www.youtube.com", "youtube.com", "m.youtube.com")


@dataclass(frozen=True)
class Served:
    """One request the double answered: the config page or one results page of a query."""

    kind: str  # "config" | "search"
    term: str | None = None
    sp: str | None = None
    offset: int = 0  # the first result's position in the query's answer
    status: int = 200
    incomplete: bool = False


@dataclass
class Fault:
    """Answer the search request of ``term`` (any if None) at ``offset`` with ``status``, or with a
    200 lacking the results (``incomplete``), ``times`` times."""

    offset: int
    status: int = 200
    incomplete: bool = False
    term: str | None = None
    times: int = 1


def _text(text: str) -> dict:
    return {"runs": [{"text": text}]}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def renderer(item: Item, shelf: bool = False) -> dict:
    """An item as YouTube's web search renders it."""
    if item.kind == CHANNEL:
        return {"channelRenderer": {"channelId": item.id, "title": {"simpleText": item.title},
                                    "navigationEndpoint": {"browseEndpoint": {"browseId": item.id}}}}
    if item.kind == PLAYLIST:
        return {"playlistRenderer": {"playlistId": item.id, "title": {"simpleText": item.title}, "videoCount": "12"}}
    if item.kind == SHORT and shelf:
        return {"reelShelfRenderer": {"title": {"simpleText": "Shorts"}, "items": [{"reelItemRenderer": {
            "videoId": item.id, "headline": {"simpleText": item.title},
            "navigationEndpoint": {"commandMetadata": {"webCommandMetadata": {"url": f"/shorts/{item.id}"}}}}}]}}
    video = {
        "videoId": item.id,
        "title": _text(item.title),
        "ownerText": _text("A channel"),
        "publishedTimeText": {"simpleText": f"{max(1, int(item.age_days))} days ago"},
        "viewCountText": {"simpleText": f"{item.views:,} views"},
        "navigationEndpoint": {"commandMetadata": {"webCommandMetadata": {
            "url": f"/shorts/{item.id}" if item.kind == SHORT else f"/watch?v={item.id}"}}},
    }
    style = {SHORT: "SHORTS", LIVE: "LIVE"}.get(item.kind, "DEFAULT")
    overlay = {"style": style}
    if item.duration is not None:
        video["lengthText"] = {"simpleText": _clock(item.duration)}
        overlay["text"] = {"simpleText": _clock(item.duration)}
    video["thumbnailOverlays"] = [{"thumbnailOverlayTimeStatusRenderer": overlay}]
    if item.kind == UPCOMING:
        video["upcomingEventData"] = {"startTime": "1893456000"}
    return {"videoRenderer": video}


def _token(term: str, sp: str | None, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([term, sp, offset]).encode()).decode()


def _untoken(token: str) -> tuple[str, str | None, int]:
    term, sp, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    return term, sp, offset


def results_page(world: World, term: str, sp: str | None, offset: int) -> dict:
    """The JSON of one results response: the first page (``contents``) or a continuation."""
    found = world.results(term, sp)
    items = found[offset:offset + world.page]
    every = world.shelf_every
    rendered = [renderer(item, shelf=bool(every) and item.rank % every == 0) for item in items]
    section = [{"itemSectionRenderer": {"contents": rendered}}]
    if offset + world.page < len(found):
        section.append({"continuationItemRenderer": {"continuationEndpoint": {"continuationCommand": {
            "token": _token(term, sp, offset + world.page), "request": "CONTINUATION_REQUEST_TYPE_SEARCH"}}}})
    if offset == 0:
        return {"estimatedResults": str(len(world.pool(term)) * 20), "contents": {"twoColumnSearchResultsRenderer": {
            "primaryContents": {"sectionListRenderer": {"contents": section}}}}}
    return {"onResponseReceivedCommands": [{"appendContinuationItemsAction": {"continuationItems": section}}]}


@dataclass
class SearchDouble:
    """The loopback "youtube.com" of one test: its world, the requests it served, faults to play."""

    world: World
    log: list[Served] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, offset: int, status: int = 200, incomplete: bool = False, term: str | None = None,
             times: int = 1) -> None:
        self.faults.append(Fault(offset, status, incomplete, term, times))

    def searches(self) -> list[Served]:
        return [s for s in self.log if s.kind == "search"]

    def answer(self, path: str, body: bytes | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        if not path.startswith("/youtubei/v1/search"):
            with self.lock:
                self.log.append(Served("config"))
            return 200, "text/html; charset=utf-8", b"<!doctype html><html><head><title>YouTube</title></head></html>"
        query = json.loads(body or b"{}")
        if "continuation" in query:
            term, sp, offset = _untoken(query["continuation"])
        else:
            term, sp, offset = query["query"], query.get("params"), 0
        with self.lock:
            fault = next((f for f in self.faults if f.times > 0 and f.offset == offset
                          and f.term in (None, term)), None)
            if fault is not None:
                fault.times -= 1
            self.log.append(Served("search", term, sp, offset, fault.status if fault else 200,
                                   bool(fault and fault.incomplete)))
        if fault is not None and fault.status != 200:
            error = {"error": {"code": fault.status, "message": "The service is currently unavailable."
                               if fault.status >= 500 else "Too many requests, please try again later.",
                               "status": "UNAVAILABLE" if fault.status >= 500 else "RESOURCE_EXHAUSTED"}}
            return fault.status, "application/json", json.dumps(error).encode()
        if fault is not None:  # a 200 without the results: yt-dlp's "Incomplete data received"
            return 200, "application/json", json.dumps({"responseContext": {}}).encode()
        return 200, "application/json", json.dumps(results_page(self.world, term, sp, offset)).encode()


class YoutubeDoubleRH(UrllibRH):
    """yt-dlp's urllib handler, sending what yt-dlp addresses to youtube.com to the active double
    (and refusing everything else, so other hosts keep their usual handler)."""

    target: ClassVar[str | None] = None  # the active double's base URL

    def _validate(self, request):
        if not self.target or urlsplit(request.url).hostname not in YOUTUBE_HOSTS:
            raise UnsupportedRequest("not a youtube.com request, or no YouTube double running")
        super()._validate(request)

    def _send(self, request):
        parts = urlsplit(request.url)
        request = request.copy()
        request.url = f"{self.target}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return super()._send(request)


register_rh(YoutubeDoubleRH)


@register_preference(YoutubeDoubleRH)
def _prefer_the_double(handler, request) -> int:
    return 1000


class _Handler(BaseHTTPRequestHandler):
    double: SearchDouble

    def log_message(self, *args):
        pass

    def _reply(self, body: bytes | None) -> None:
        status, kind, payload = self.double.answer(self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._reply(None)

    def do_POST(self):
        self._reply(self.rfile.read(int(self.headers.get("Content-Length") or 0)))


class serve:
    """``with serve(world) as double:`` youtube.com is the double for yt-dlp in this process."""

    def __init__(self, world: World):
        self.double = SearchDouble(world)

    def __enter__(self) -> SearchDouble:
        handler = type("Handler", (_Handler,), {"double": self.double})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        YoutubeDoubleRH.target = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.double

    def __exit__(self, *exc) -> None:
        YoutubeDoubleRH.target = None
        self.server.shutdown()
        self.server.server_close()
