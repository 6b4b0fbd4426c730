"""The ``youtube`` source: title search through yt-dlp (flat extraction: titles and durations, no download)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Generator

from videonet.curation.client import ClientSettings, ydl_params
from videonet.curation.search import SearchSettings, stable_id


def entry_hit(entry: dict) -> dict | None:
    """A hit from one flat yt-dlp playlist entry; None for an entry without a URL or a title."""
    url = entry.get("webpage_url") or entry.get("url")
    if not url or not entry.get("title"):
        return None
    return {
        "id": str(entry.get("id") or stable_id(url)),
        "title": str(entry["title"]),
        "url": url,
        "path": None,
        "duration": float(entry["duration"]) if entry.get("duration") is not None else None,
        "uploader": entry.get("uploader") or entry.get("channel"),
    }


@dataclass
class YoutubeSource:
    """yt-dlp search (flat extraction: titles and durations, no download at this stage).

    ``template`` (``--search-template``) is any yt-dlp URL with ``{n}`` and ``{term}``: ``ytsearch{n}:{term}`` by default,
    ``ytsearchdate{n}:{term}`` for recency, or a feed URL that yt-dlp's extractors understand. ``{n}``
    becomes ``all``: the results are one lazy yt-dlp playlist per term, read page by page, so yt-dlp
    fetches each results page of YouTube once and only as deep as the class needs. ``client``: cookies,
    proxy (picked by the worker process that searches), player client, ``--ytdlp`` options.
    """

    template: str
    client: ClientSettings = field(default_factory=ClientSettings)
    socket_timeout: float = 30.0
    name: str = "youtube"

    def pages(self, term: str, size: int) -> Generator[list[dict], None, None]:
        from urllib.parse import quote_plus

        import yt_dlp

        from videonet.curation.judge.fetch import QuietLogger

        query = self.template.format(n="all", term=term if self.template.startswith("ytsearch") else quote_plus(term))
        options = {"socket_timeout": self.socket_timeout, **ydl_params(self.client), "extract_flat": "in_playlist",
                   "skip_download": True, "quiet": True, "no_warnings": True, "logger": QuietLogger()}
        with yt_dlp.YoutubeDL(options) as ydl:
            # process=False: the playlist's entries stay yt-dlp's lazy generator (a search extractor
            # requests its next results page only when the entries before it have been read).
            info = ydl.extract_info(query, download=False, process=False) or {}
            entries = iter(info.get("entries") or ())
            while True:
                raw = list(islice(entries, size))
                yield [hit for hit in map(entry_hit, raw) if hit is not None]
                if len(raw) < size:
                    return

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
    """``--source youtube``: yt-dlp search with ``--search-template``, reaching YouTube as ``client`` says."""
    return YoutubeSource(template=settings.search_template, client=client)
