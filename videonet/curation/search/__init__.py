"""Search: the title queries of each class, answered page by page by a source (YouTube, a catalog, the demo).

Each term of a class is searched as the source's *queries* (:meth:`Source.queries`, in a fixed
order: YouTube's query plan splits a term into many filtered queries, because YouTube answers one
query with only ~500-1,000 results however deep it is paged; a catalog has one query per term).
A query answers pages of raw hits (dicts with ``id``, ``title`` and ``url`` or ``path``, optionally
``duration``, ``uploader`` and ``kind``), like a search engine would: the rules are applied
afterwards by :class:`videonet.curation.candidates.ClassCandidates`, so a hit the engine returned
loosely is audited as ``title_mismatch``, and a channel, playlist or live stream with its own status,
rather than silently vanishing. :func:`search_class` runs queries only until the class is full
(``--per-class`` unique title-matched videos), so the depth per term adapts: a class with one term
reads deep, a class whose first query fills it never runs another.

Sources are a registry: a new one is one module with a ``source(arg, settings, client)`` factory plus
one entry in :data:`SOURCES` (``client``: how to reach a site, for sources that do).
"""

from __future__ import annotations

import hashlib
import importlib
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol


from videonet.curation.candidates import ClassCandidates, class_fields, hit_candidates
from videonet.curation.client import ClientSettings, Failure, Session, failure_of, session
from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.rundir import SEARCH_ERROR, SEARCH_RETRIABLE, audit_row
from videonet.errors import UserError

Hit = dict  # id, title, url | path, duration?, uploader?, kind? (video, channel, playlist, live, upcoming)

CAP_REACHED, EXHAUSTED, SEARCH_FAILED = "cap reached", "exhausted", "search error"


@dataclass(frozen=True)
class Query:
    """One query of a term: what the source is asked (``key``: a URL for YouTube, the term for a
    catalog; a query's identity within a run) and its plan row in words (``label``)."""

    term: str
    label: str
    key: str


class Source(Protocol):
    """What the pipeline needs from a place to search titles in."""

    name: str

    def prepare(self) -> None:
        """Driver-side work before a run (validate a catalog, build the demo clips); never on --dry-run."""

    def queries(self, term: str) -> tuple[Query, ...]:
        """The queries that search ``term``, in the order they are run."""

    def pages(self, query: Query, size: int, site: Session) -> Iterator[list[Hit]]:
        """The results of ``query``, page by page, read lazily (the caller stops pulling when the
        class is full); every request goes through ``site`` (paced, retried, counted). ``size``:
        hits per page where the source decides it (a catalog); YouTube pages as it pleases."""

    def invalid_rows(self) -> list[dict]: ...

    def fingerprint(self) -> str:
        """What the source holds now, for a finished run's marks: a rerun searches again the classes of
        a source whose content changed (a catalog's digest; '' for a live engine, searched again only
        where its search did not finish)."""


@dataclass(frozen=True)
class SearchSettings:
    """Where titles are searched and how deep."""

    source: str = field(default="youtube", metadata={
        "help": "youtube (yt-dlp search, YouTube's query plan), catalog:PATH (parquet/csv/jsonl), or demo."})
    search_page: int = field(default=100, metadata={
        "help": "Results per request of a catalog source (YouTube answers about 20 per request, its own page). "
                "A class's queries run in order until the class holds --per-class unique title-matched "
                "candidates or every query is exhausted.",
        "min": 1})
    search_template: str | None = field(default=None, metadata={
        "help": "youtube source: instead of YouTube's query plan, one yt-dlp URL per term with {term} "
                "(e.g. a feed that another yt-dlp extractor reads; {n} becomes 'all')."})
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


def search_error_row(cls: ImageNetClass, query: Query, source: str, run_id: str, failure: Failure) -> dict:
    """The audit row of a failed query (network, extractor or catalog failure, after the retries): the
    run goes on with the next query; a retriable failure (429, 5xx, timeout, bot check, incomplete
    data) is ``search_retriable``, which a rerun retries."""
    row = {**class_fields(cls), "term": query.term, "id": f"search:{query.key}", "source": source, "run_id": run_id}
    return audit_row(row, SEARCH_RETRIABLE if failure.retriable else SEARCH_ERROR,
                     f"query {query.label!r}: {failure.reason}")


@dataclass
class QueryRun:
    """What one query cost and brought (a :data:`QUERY_FACTS` item)."""

    term: str
    query: str
    requests: int = 0
    hits: int = 0
    new: int = 0
    matched: int = 0


def search_class(cls: ImageNetClass, source: Source, candidates: ClassCandidates, page_size: int,
                 run_id: str, site: Session | None = None) -> tuple[list[dict], dict]:
    """Search one class until it is full: its terms in table order, each as the source's queries in
    plan order, each page by page.

    Stops when ``candidates`` holds its cap (``cap reached``), else when every query has run out of
    results (``exhausted``) or some failed (``search error``: a request that still fails after
    ``site``'s retries ends that query, audited, and the next query is run). A query already run
    for this class (two terms with the same words) is not run again. Returns the candidate and audit
    rows, and the class's search facts (a :data:`SEARCH_SCHEMA` row); ``site`` (default: one try,
    no rate limit) paces the requests and tallies them, retries and failed ones included.
    """
    site = site or session("search", ClientSettings(retry_attempts=1))
    rows: list[dict] = []
    runs: list[QueryRun] = []
    asked: set[str] = set()
    met: set[str] = set()
    failed = False
    for query in (q for term in cls.terms for q in source.queries(term)):
        if candidates.full:
            break
        if query.key in asked:
            continue
        asked.add(query.key)
        run, before = QueryRun(query.term, query.label), site.tally.requests
        try:
            with closing(source.pages(query, page_size, site)) as pages:
                for page in pages:
                    run.hits += len(page)
                    run.new += len({h["id"] for h in page} - met)
                    met |= {h["id"] for h in page}
                    admitted = [candidates.admit(c) for c in hit_candidates(cls, query.term, page, source.name, run_id)]
                    run.matched += sum("status" not in r for r in admitted)
                    rows += admitted
                    if candidates.full:
                        break
        except Exception as exc:
            rows.append(search_error_row(cls, query, source.name, run_id, failure_of(exc)))
            failed = True
        run.requests = site.tally.requests - before
        runs.append(run)
    stop = CAP_REACHED if candidates.full else SEARCH_FAILED if failed else EXHAUSTED
    facts = {**class_fields(cls), "run_id": run_id, "source": source.name, "search_stop": stop,
             "search_queries": len(runs), "search_requests": site.tally.requests,
             "search_hits": sum(r.hits for r in runs), "queries": [asdict(r) for r in runs]}
    return rows, facts
