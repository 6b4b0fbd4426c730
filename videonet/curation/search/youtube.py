"""The ``youtube`` source: title search through yt-dlp (flat extraction: titles and durations, no download)."""

from __future__ import annotations

from dataclasses import dataclass

from videonet.curation.search import SearchSettings, stable_id


@dataclass
class YoutubeSource:
    """yt-dlp search (flat extraction: titles and durations, no download at this stage).

    ``template`` (``--search-template``) is any yt-dlp URL with ``{n}`` and ``{term}``: ``ytsearch{n}:{term}`` by default,
    ``ytsearchdate{n}:{term}`` for recency, or a feed URL that yt-dlp's extractors understand.
    """

    template: str
    socket_timeout: float = 30.0
    name: str = "youtube"

    def search(self, term: str, limit: int) -> list[dict]:
        from urllib.parse import quote_plus

        import yt_dlp

        from videonet.curation.judge.fetch import QuietLogger

        query = self.template.format(n=limit, term=term if self.template.startswith("ytsearch") else quote_plus(term))
        options = {"extract_flat": "in_playlist", "skip_download": True, "quiet": True, "no_warnings": True,
                   "socket_timeout": self.socket_timeout, "playlistend": limit, "logger": QuietLogger()}
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(query, download=False) or {}
        hits = []
        for entry in (info.get("entries") or [])[:limit]:
            url = entry.get("webpage_url") or entry.get("url")
            if not url or not entry.get("title"):
                continue
            hits.append({
                "id": str(entry.get("id") or stable_id(url)),
                "title": str(entry["title"]),
                "url": url,
                "path": None,
                "duration": float(entry["duration"]) if entry.get("duration") is not None else None,
                "uploader": entry.get("uploader") or entry.get("channel"),
            })
        return hits

    def prepare(self) -> None:
        pass

    def invalid_rows(self) -> list[dict]:
        return []



def source(arg: str | None, settings: SearchSettings) -> YoutubeSource:
    """``--source youtube``: yt-dlp search with ``--search-template``."""
    return YoutubeSource(template=settings.search_template)
