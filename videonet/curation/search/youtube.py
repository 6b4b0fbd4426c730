"""The ``youtube`` source: title search through yt-dlp (flat extraction: titles and durations, no download).

YouTube answers one search query with roughly 500-1,000 results however deep it is paged (yt-dlp's
users report it: yt-dlp#9264, #10039, ytdl-org#30795), so one query per term cannot fill a class
of 5,000. Each term is therefore searched as the queries of :data:`QUERY_PLAN`, in its order: the
plain query, then YouTube's own search filters (sort orders, upload-date windows, duration buckets,
each restricted to videos), as its results page writes them in ``sp``. yt-dlp's search-URL
extractor (``youtube:search_url``) reads each one, lazily, about 20 results per request, following
YouTube's continuation tokens; :func:`videonet.curation.search.search_class` stops asking once the
class is full.

Every HTTP request yt-dlp makes goes through the search session (:class:`_SessionYDL`): paced
(``--max-searches-per-hour``), retried where the failure is retriable (a 429 is re-sent with the same
continuation token, so a query resumes where it stopped rather than from its first page) and
counted, so a class's requests are the real ones, config page and retries included.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import quote_plus

from videonet.curation.candidates import youtube_video_id
from videonet.curation.client import ClientSettings, Session, ydl_params
from videonet.curation.search import Query, SearchSettings, stable_id

RESULTS_URL = "https://www.youtube.com/results?search_query={term}"
# The query plan: every term is searched with these filters, in this order, until the class is full.
# (words, sp): sp is YouTube's own filter parameter as its results page puts it in the URL (a
# base64 protobuf: sort order; then upload date, type, duration); None is the plain query. Every
# filtered query is restricted to videos (type: video), so no result slot goes to a channel.
QUERY_PLAN: tuple[tuple[str, str | None], ...] = (
    ("no filter", None),
    ("videos only", "EgIQAQ=="),
    ("videos by upload date", "CAISAhAB"),
    ("videos by view count", "CAMSAhAB"),
    ("videos by rating", "CAESAhAB"),
    ("videos uploaded this year", "EgQIBRAB"),
    ("videos uploaded this month", "EgQIBBAB"),
    ("videos uploaded this week", "EgQIAxAB"),
    ("videos uploaded today", "EgQIAhAB"),
    ("videos uploaded in the last hour", "EgQIARAB"),
    ("videos under 4 minutes", "EgQQARgB"),
    ("videos 4-20 minutes", "EgQQARgD"),
    ("videos over 20 minutes", "EgQQARgC"),
    ("videos under 4 minutes, by upload date", "CAISBBABGAE="),
    ("videos under 4 minutes, by view count", "CAMSBBABGAE="),
    ("videos under 4 minutes, by rating", "CAESBBABGAE="),
    ("videos 4-20 minutes, by upload date", "CAISBBABGAM="),
    ("videos 4-20 minutes, by view count", "CAMSBBABGAM="),
    ("videos 4-20 minutes, by rating", "CAESBBABGAM="),
    ("videos over 20 minutes, by upload date", "CAISBBABGAI="),
    ("videos over 20 minutes, by view count", "CAMSBBABGAI="),
    ("videos over 20 minutes, by rating", "CAESBBABGAI="),
    ("videos uploaded this year, under 4 minutes", "EgYIBRABGAE="),
    ("videos uploaded this year, 4-20 minutes", "EgYIBRABGAM="),
    ("videos uploaded this year, over 20 minutes", "EgYIBRABGAI="),
    ("videos uploaded this month, under 4 minutes", "EgYIBBABGAE="),
    ("videos uploaded this month, 4-20 minutes", "EgYIBBABGAM="),
    ("videos uploaded this month, over 20 minutes", "EgYIBBABGAI="),
    ("videos uploaded this week, under 4 minutes", "EgYIAxABGAE="),
    ("videos uploaded this week, 4-20 minutes", "EgYIAxABGAM="),
    ("videos uploaded this week, over 20 minutes", "EgYIAxABGAI="),
    ("videos uploaded today, under 4 minutes", "EgYIAhABGAE="),
    ("videos uploaded today, 4-20 minutes", "EgYIAhABGAM="),
    ("videos uploaded today, over 20 minutes", "EgYIAhABGAI="),
    ("videos uploaded in the last hour, under 4 minutes", "EgYIARABGAE="),
    ("videos uploaded in the last hour, 4-20 minutes", "EgYIARABGAM="),
    ("videos uploaded in the last hour, over 20 minutes", "EgYIARABGAI="),
    ("videos uploaded this year, by upload date", "CAISBAgFEAE="),
    ("videos uploaded this year, by view count", "CAMSBAgFEAE="),
    ("videos uploaded this year, by rating", "CAESBAgFEAE="),
    ("videos uploaded this month, by upload date", "CAISBAgEEAE="),
    ("videos uploaded this month, by view count", "CAMSBAgEEAE="),
    ("videos uploaded this month, by rating", "CAESBAgEEAE="),
    ("videos uploaded this week, by upload date", "CAISBAgDEAE="),
    ("videos uploaded this week, by view count", "CAMSBAgDEAE="),
    ("videos uploaded this week, by rating", "CAESBAgDEAE="),
    ("videos uploaded today, by upload date", "CAISBAgCEAE="),
    ("videos uploaded today, by view count", "CAMSBAgCEAE="),
    ("videos uploaded today, by rating", "CAESBAgCEAE="),
    ("videos uploaded in the last hour, by upload date", "CAISBAgBEAE="),
    ("videos uploaded in the last hour, by view count", "CAMSBAgBEAE="),
    ("videos uploaded in the last hour, by rating", "CAESBAgBEAE="),
)
# yt-dlp's flat-entry live_status values that are not a finished video yet (was_live is one: a VOD)
LIVE_STATUSES = {"is_live": "live", "post_live": "live", "is_upcoming": "upcoming"}


def plan_queries(term: str) -> tuple[Query, ...]:
    """``term`` as the queries of :data:`QUERY_PLAN`, in order (the key is the results URL)."""
    base = RESULTS_URL.format(term=quote_plus(term))
    return tuple(Query(term, words, base + (f"&sp={quote_plus(sp)}" if sp else "")) for words, sp in QUERY_PLAN)


_CHANNEL_URL = re.compile(r"youtube\.com/(?:channel/|c/|user/|@)")


def entry_kind(entry: dict) -> str:
    """What a flat yt-dlp entry is: ``video``, ``live``, ``upcoming`` (by its ``live_status``), or,
    for a YouTube URL that names no single video, ``playlist``, ``channel`` or ``page`` (a hashtag
    page...); a URL of another site is a ``video`` (a feed's entry)."""
    url = entry.get("webpage_url") or entry.get("url") or ""
    if youtube_video_id(url) is None and ("youtube.com/" in url or entry.get("ie_key") == "YoutubeTab"):
        return "playlist" if "list=" in url else "channel" if _CHANNEL_URL.search(url) else "page"
    return LIVE_STATUSES.get(entry.get("live_status") or "", "video")


def entry_hit(entry: dict) -> dict | None:
    """A hit from one flat yt-dlp playlist entry; None for an entry without a URL or a title.

    A YouTube video's id is its video id and its URL the canonical watch URL, whatever form the
    results gave (watch, Shorts, youtu.be): one video is one candidate.
    """
    url = entry.get("webpage_url") or entry.get("url")
    if not url or not entry.get("title"):
        return None
    video = youtube_video_id(url)
    return {
        "id": video or str(entry.get("id") or stable_id(url)),
        "title": str(entry["title"]),
        "url": f"https://www.youtube.com/watch?v={video}" if video else url,
        "path": None,
        "duration": float(entry["duration"]) if entry.get("duration") is not None else None,
        "uploader": entry.get("uploader") or entry.get("channel"),
        "kind": entry_kind(entry),
    }


_local = threading.local()  # this thread's YoutubeDL per option set (making one costs ~0.1 s)


def _session_ydl(key, params: Callable[[], dict], site: Session):
    """This thread's ``yt_dlp.YoutubeDL`` for the options ``key`` names, whose every HTTP request goes
    through ``site``: paced, retried while retriable, counted (``YoutubeDL.urlopen`` is the one door
    of every extractor request). One per thread, so its cookies carry from query to query as a
    browser's would."""
    import yt_dlp

    class _SessionYDL(yt_dlp.YoutubeDL):
        site: Session

        def urlopen(self, req):
            return self.site.call(lambda: super(_SessionYDL, self).urlopen(req))

    ydls = _local.__dict__.setdefault("ydls", {})
    if key not in ydls:
        ydls[key] = _SessionYDL(params())
    ydls[key].site = site
    return ydls[key]


@dataclass
class YoutubeSource:
    """yt-dlp search (flat extraction: titles and durations, no download at this stage).

    Without ``template`` each term runs :data:`QUERY_PLAN`; with one (``--search-template``, any
    yt-dlp URL with ``{term}``, e.g. a feed), each term is that one query. ``client``: cookies,
    proxy (picked by the worker process that searches), player client, ``--ytdlp`` options.
    """

    template: str | None = None
    client: ClientSettings = field(default_factory=ClientSettings)
    socket_timeout: float = 30.0
    name: str = "youtube"

    def queries(self, term: str) -> tuple[Query, ...]:
        if self.template is None:
            return plan_queries(term)
        spelled = term if self.template.startswith("ytsearch") else quote_plus(term)
        return (Query(term, "template", self.template.format(n="all", term=spelled)),)

    def params(self) -> dict:
        """yt-dlp's options: the client's, flat extraction, and "Incomplete data received" as an
        error (by default yt-dlp ends the query there with a warning, as if the results had ended)."""
        from videonet.curation.judge.fetch import QuietLogger

        params = ydl_params(self.client)
        extractor_args = {**params.get("extractor_args", {})}
        extractor_args["youtube"] = {**extractor_args.get("youtube", {}), "raise_incomplete_data": [""]}
        return {"socket_timeout": self.socket_timeout, **params, "extractor_args": extractor_args,
                "extract_flat": "in_playlist", "skip_download": True, "quiet": True, "no_warnings": True,
                "logger": QuietLogger()}

    def pages(self, query: Query, size: int, site: Session) -> Iterator[list[dict]]:
        """The query's results one hit at a time (the class stops at exactly its cap; yt-dlp asks
        YouTube for the next ~20 only when the entries before them have been read)."""
        ydl = _session_ydl((self.client, self.socket_timeout), self.params, site)
        # process=False: the playlist's entries stay yt-dlp's lazy generator.
        info = ydl.extract_info(query.key, download=False, process=False) or {}
        for entry in info.get("entries") or ():
            hit = entry_hit(entry)
            if hit is not None:
                yield [hit]

    def prepare(self) -> None:
        """Refuse to start, in one line, when yt-dlp sees no JavaScript runtime: without one it falls back
        to a client with few formats, and a whole crawl would fail video by video."""
        from videonet.curation.client import js_runtime_problem
        from videonet.errors import UserError

        problem = js_runtime_problem(ydl_params(self.client))
        if problem:
            raise UserError(problem)

    def invalid_rows(self) -> list[dict]:
        return []

    def fingerprint(self) -> str:
        return ""


def source(arg: str | None, settings: SearchSettings, client: ClientSettings) -> YoutubeSource:
    """``--source youtube``: YouTube's query plan (or ``--search-template``), reaching YouTube as ``client`` says."""
    return YoutubeSource(template=settings.search_template, client=client)
