"""Search: the title queries of each class, answered page by page by a source (YouTube, a catalog, the demo).

A source answers ``pages(term, size)`` with successive pages of raw hits (dicts with ``id``,
``title`` and ``url`` or ``path``, optionally ``duration`` and ``uploader``), like a search engine
would: the title rule is applied afterwards by :func:`videonet.curation.candidates.match_title`, so
a hit the engine returned loosely is audited as ``title_mismatch`` rather than silently vanishing.
:func:`search_class` asks for pages only until the class is full (``--per-class`` unique
title-matched candidates), so the depth per term adapts: a class with one term reads deep, a class
whose first term fills it never queries the others.

Sources are a registry: a new one is one module with a ``source(arg, settings, client)`` factory plus
one entry in :data:`SOURCES` (``client``: how to reach a site, for sources that do).
"""

from __future__ import annotations

import hashlib
import importlib
from contextlib import closing
from dataclasses import dataclass, field
from typing import Generator, Protocol

import pyarrow as pa

from videonet.curation.candidates import ClassCandidates, class_fields, hit_candidates
from videonet.curation.client import ClientSettings, Failure, Session, failure_of, session
from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.write.records import AUDIT_SCHEMA, SEARCH_ERROR, SEARCH_RETRIABLE, audit_row
from videonet.errors import UserError

Hit = dict  # id, title, url | path, duration?, uploader?

CAP_REACHED, EXHAUSTED, SEARCH_FAILED = "cap reached", "exhausted", "search error"
# One row per class and run under search/<run_id>.parquet: why the search of the class stopped and
# what it cost (requests count against the source's rate limits). The report keeps each class's latest.
SEARCH_SCHEMA = pa.schema([AUDIT_SCHEMA.field(name) for name in ("run_id", "source", "wnid", "class_index", "name")] + [
    ("search_stop", pa.string()),
    ("search_requests", pa.int64()),
    ("search_hits", pa.int64()),
])


class Source(Protocol):
    """What the pipeline needs from a place to search titles in."""

    name: str

    def prepare(self) -> None:
        """Driver-side work before a run (validate a catalog, build the demo clips); never on --dry-run."""

    def pages(self, term: str, size: int) -> Generator[list[Hit], None, None]:
        """The results for ``term``, one page of at most ``size`` hits per search request, read lazily
        (the caller stops pulling when the class is full); at least one page, possibly empty."""

    def invalid_rows(self) -> list[dict]: ...

    def fingerprint(self) -> str:
        """What the source holds now, for a finished run's marks: a rerun searches again the classes of
        a source whose content changed (a catalog's digest; '' for a live engine, searched again only
        where its search did not finish)."""


@dataclass(frozen=True)
class SearchSettings:
    """Where titles are searched and how deep."""

    source: str = field(default="youtube", metadata={
        "help": "youtube (yt-dlp search), catalog:PATH (parquet/csv/jsonl), or demo."})
    search_page: int = field(default=100, metadata={
        "help": "Results per search request. A class's terms are searched in table order, page by page, until "
                "the class holds --per-class unique title-matched candidates or every term is exhausted.",
        "min": 1})
    search_template: str = field(default="ytsearch{n}:{term}", metadata={
        "help": "yt-dlp query for the youtube source ({n} becomes 'all': results are read lazily, page by page)."})
    catalog_root: str | None = field(default=None, metadata={"help": "Catalog paths must stay under this directory."})
    demo_dir: str | None = field(default=None, metadata={
        "help": "Where the demo source writes its clips (default: cache)."})


# name -> module with a ``source(arg: str | None, settings: SearchSettings, client: ClientSettings) -> Source`` factory
SOURCES = {
    "youtube": "videonet.curation.search.youtube",
    "catalog": "videonet.curation.search.catalog",
    "demo": "videonet.curation.search.demo",
}


def make_source(settings: SearchSettings, client: ClientSettings = ClientSettings()) -> Source:
    """The source named by ``--source NAME`` or ``--source NAME:ARG`` (nothing is read or written yet)."""
    name, _, arg = settings.source.partition(":")
    if name not in SOURCES or (name == "catalog") != bool(arg):
        raise UserError(f"--source {settings.source!r}: expected youtube, catalog:PATH or demo")
    return importlib.import_module(SOURCES[name]).source(arg or None, settings, client)


def stable_id(text: str) -> str:
    """An id for a hit that has none (a catalog row without ``id``): a hash of its url or path."""
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def search_error_row(cls: ImageNetClass, term: str, source: str, run_id: str, failure: Failure) -> dict:
    """The audit row of a failed search request (network, extractor or catalog failure): the run goes
    on; a retriable failure (429, 5xx, timeout, bot check) is ``search_retriable``, which a rerun retries."""
    row = {**class_fields(cls), "term": term, "id": f"search:{term}", "source": source, "run_id": run_id}
    return audit_row(row, SEARCH_RETRIABLE if failure.retriable else SEARCH_ERROR, failure.reason)


class _TermPages:
    """A term's pages as paced, retried requests: a generator that raised is finished, so a retry
    reopens the term's results and skips the pages already read (a source that pages by offset
    answers that without asking the site again; yt-dlp's search asks again for them)."""

    def __init__(self, source: Source, term: str, size: int):
        self.source, self.term, self.size = source, term, size
        self.pages: Generator[list[Hit], None, None] | None = None
        self.read = 0

    def next(self) -> list[Hit] | None:
        if self.pages is None:
            self.pages = self.source.pages(self.term, self.size)
            for _ in range(self.read):
                next(self.pages)
        try:
            page = next(self.pages, None)
        except Exception:
            self.close()
            raise
        self.read += page is not None
        return page

    def close(self) -> None:
        if self.pages is not None:
            self.pages.close()
            self.pages = None


def search_class(cls: ImageNetClass, source: Source, candidates: ClassCandidates, page_size: int,
                 run_id: str, site: Session | None = None) -> tuple[list[dict], dict]:
    """Search one class until it is full: its terms in table order, each page by page.

    Stops when ``candidates`` holds its cap (``cap reached``), else when every term has run out of
    results (``exhausted``) or failed (``search error``: a request that still fails after ``site``'s
    retries ends that term, audited, and the next term is tried). Returns the candidate and audit
    rows, and the class's search facts (a :data:`SEARCH_SCHEMA` row); ``site`` (default: one try,
    no rate limit) paces the requests and tallies them, retries and failed ones included.
    """
    site = site or session("search", ClientSettings(retry_attempts=1))
    rows: list[dict] = []
    hits = 0
    failed = False
    for term in cls.terms:
        if candidates.full:
            break
        with closing(_TermPages(source, term, page_size)) as pages:
            while not candidates.full:
                try:
                    page = site.call(pages.next)
                except Exception as exc:
                    rows.append(search_error_row(cls, term, source.name, run_id, failure_of(exc)))
                    failed = True
                    break
                if page is None:  # the term's results ended with the previous page: nothing was asked
                    site.tally.not_sent()
                    break
                hits += len(page)
                rows += [candidates.admit(c) for c in hit_candidates(cls, term, page, source.name, run_id)]
    stop = CAP_REACHED if candidates.full else SEARCH_FAILED if failed else EXHAUSTED
    facts = {**class_fields(cls), "run_id": run_id, "source": source.name, "search_stop": stop,
             "search_requests": site.tally.requests, "search_hits": hits}
    return rows, facts
