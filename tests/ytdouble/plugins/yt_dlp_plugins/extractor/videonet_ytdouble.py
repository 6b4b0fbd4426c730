"""The YouTube double's yt-dlp side (tests/ytdouble/download.py): a plugin extractor for YouTube
video URLs that asks the double's server instead of YouTube, and raises what yt-dlp's YouTube
extractor raises for the same answer (its messages, built as ``extractor/youtube/_video.py`` builds
them, and its exception classes). Loaded by yt-dlp's plugin mechanism (``yt_dlp_plugins`` on the
path) only where the double's base URL is in the environment."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import ExtractorError, GeoRestrictedError, remove_end

COOKIE_HOWTO_WIKI_URL = "https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies"
RATE_LIMIT_TAIL = (  # _video.py, "This content isn't available, try again later"
    "has been rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep` to add a delay "
    "between video requests to avoid exceeding the rate limit. For more information, refer to  "
    "https://github.com/yt-dlp/yt-dlp/wiki/Extractors#this-content-isnt-available-try-again-later")


class YoutubeDoubleIE(InfoExtractor):
    IE_NAME = "youtube:double"
    _VALID_URL = r"https?://(?:www\.)?youtube\.com/watch\?v=(?P<id>[0-9A-Za-z_-]{11})"
    _ENABLED = bool(os.environ.get("VIDEONET_YTDOUBLE"))

    @classmethod
    def suitable(cls, url):
        return bool(os.environ.get("VIDEONET_YTDOUBLE")) and super().suitable(url)

    def _session(self) -> tuple[str, str | None, str | None]:
        """Who asks, as YouTube tells sessions apart: the proxy's user, else the SID cookie, else "direct"."""
        proxy = self.get_param("proxy")
        sid = next((c.value for c in self._downloader.cookiejar if c.name == "SID"), None)
        if proxy:
            return f"proxy:{urlsplit(proxy).username or urlsplit(proxy).hostname}", proxy, sid
        return (f"cookie:{sid}" if sid else "direct"), proxy, sid

    def _instance(self) -> str:
        """A name for the YoutubeDL asking, unique for its life (an id() can be reused after it is gone)."""
        if not hasattr(self._downloader, "_double_name"):
            self._downloader._double_name = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return self._downloader._double_name

    @property
    def _youtube_login_hint(self):
        return (f'{self._login_hint(method="cookies")}. Also see  {COOKIE_HOWTO_WIKI_URL}  '
                "for tips on effectively exporting YouTube cookies")

    def _real_extract(self, url):
        video_id = self._match_id(url)
        base = os.environ["VIDEONET_YTDOUBLE"]
        session, proxy, sid = self._session()
        headers = {"X-Double-Session": session}
        try:
            answer = self._download_json(f"{base}/player?v={video_id}", video_id,
                                         headers={**headers, "X-Double-Ydl": self._instance()},
                                         note="Downloading player API JSON")
        except ExtractorError as e:
            if getattr(e.cause, "status", None) == 429:  # _video.py: a player request's error is a warning,
                self.report_warning(e)                    # then no player response at all
                raise ExtractorError("Failed to extract any player response")
            raise
        kind, reason = answer["kind"], answer.get("reason")
        if kind == "ip_blocked":
            raise ExtractorError(
                "All player responses are invalid. Your IP is likely being blocked by Youtube", expected=True)
        if kind == "geo":
            raise GeoRestrictedError(reason, countries=["US"])
        if kind == "leaky":  # an error that echoes the session's secrets (a proxy error quoting its URL)
            raise ExtractorError(f"Unable to connect to proxy {proxy} with cookie SID={sid}", expected=True)
        if kind == "no_formats":  # what a missing JS runtime leaves: formats skipped, then none
            return {"id": video_id, "title": answer["title"], "formats": []}
        if reason:
            if "sign in" in reason.lower():
                reason = remove_end(reason, "This helps protect our community. Learn more")
                reason = f'{remove_end(reason.strip(), ".")}. {self._youtube_login_hint}'
            elif "This content isn't available, try again later" in reason:
                reason = f'{remove_end(reason.strip(), ".")}. The current session {RATE_LIMIT_TAIL}'
            self.raise_no_formats(reason, expected=True)
        return {
            "id": video_id,
            "title": answer["title"],
            "duration": answer["duration"],
            "formats": [{**f, "ext": "mp4", "vcodec": "avc1.4d401e", "acodec": "none", "http_headers": headers}
                        for f in answer["formats"]],
        }
