"""Search: the title queries of each class, answered by a source (YouTube, a catalog, the demo).

A source answers ``search(term, limit)`` with raw hits (dicts with ``id``, ``title`` and ``url``
or ``path``, optionally ``duration`` and ``uploader``), like a search engine would: the whole-word
title rule is applied afterwards by :func:`videonet.curation.candidates.title_match`, so a hit the
engine returned loosely is audited as ``title_mismatch`` rather than silently vanishing.

Sources are a registry: a new one is one module with a ``source(arg, settings)`` factory plus one
entry in :data:`SOURCES`.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Protocol

from videonet.errors import UserError

Hit = dict  # id, title, url | path, duration?, uploader?


class Source(Protocol):
    """What the pipeline needs from a place to search titles in."""

    name: str

    def prepare(self) -> None:
        """Driver-side work before a run (validate a catalog, build the demo clips); never on --dry-run."""

    def search(self, term: str, limit: int) -> list[Hit]: ...

    def invalid_rows(self) -> list[dict]: ...


@dataclass(frozen=True)
class SearchSettings:
    """Where titles are searched and how deep."""

    source: str = field(default="youtube", metadata={
        "help": "youtube (yt-dlp search), catalog:PATH (parquet/csv/jsonl), or demo."})
    per_term: int = field(default=100, metadata={"help": "Search results asked for per query term.", "min": 1})
    search_template: str = field(default="ytsearch{n}:{term}", metadata={"help": "yt-dlp query for the youtube source."})
    catalog_root: str | None = field(default=None, metadata={"help": "Catalog paths must stay under this directory."})
    demo_dir: str | None = field(default=None, metadata={
        "help": "Where the demo source writes its clips (default: cache)."})


# name -> module with a ``source(arg: str | None, settings: SearchSettings) -> Source`` factory
SOURCES = {
    "youtube": "videonet.curation.search.youtube",
    "catalog": "videonet.curation.search.catalog",
    "demo": "videonet.curation.search.demo",
}


def make_source(settings: SearchSettings) -> Source:
    """The source named by ``--source NAME`` or ``--source NAME:ARG`` (nothing is read or written yet)."""
    name, _, arg = settings.source.partition(":")
    if name not in SOURCES or (name == "catalog") != bool(arg):
        raise UserError(f"--source {settings.source!r}: expected youtube, catalog:PATH or demo")
    return importlib.import_module(SOURCES[name]).source(arg or None, settings)


def stable_id(text: str) -> str:
    """An id for a hit that has none (a catalog row without ``id``): a hash of its url or path."""
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
