"""A local HTTP stand-in for the web: real mp4 files, an RSS search feed, and failing URLs."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape


class Handler(SimpleHTTPRequestHandler):
    """Serves files from a directory; /search.rss?q=TERM lists every file whose title has TERM."""

    catalog: list[dict] = []  # title, file, duration
    searches: list[str] = []  # the q of every feed request, in order (each serve() has its own list)

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/search.rss":
            self.searches.append(parse_qs(url.query).get("q", [""])[0])
            return self._feed(self.searches[-1])
        if url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self.send_error(code)
            return
        if url.path == "/slow.mp4":
            time.sleep(3)
            self.send_error(503)
            return
        return super().do_GET()

    def _feed(self, query: str) -> None:
        host = f"http://{self.headers['Host']}"
        items = "".join(
            f"<item><title>{escape(item['title'])}</title><link>{host}/{item['file']}</link>"
            f"<guid>{host}/{item['file']}</guid><pubDate>{formatdate()}</pubDate>"
            f"<enclosure url=\"{host}/{item['file']}\" type=\"video/mp4\" length=\"1\"/>"
            f"<itunes:duration>{item['duration']}</itunes:duration></item>"
            for item in self.catalog if any(w in item["title"].lower() for w in query.lower().split()))
        body = ('<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
                f"<channel><title>search {escape(query)}</title><link>{host}/</link>{items}</channel></rss>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(directory: Path, catalog: list[dict], searches: list[str] | None = None):
    """Start a server on 127.0.0.1 (random port); returns (base_url, stop). ``searches`` (if given)
    receives the query of every feed request."""
    handler = type("CatalogHandler", (Handler,), {"catalog": catalog, "searches": [] if searches is None else searches})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop
