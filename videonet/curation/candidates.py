"""Candidates: from one class's search hits to the clips worth fetching (the rules, as pure functions).

A hit becomes a candidate (one class, one video) when its title contains the class name or a
synonym as whole words; one class's candidates are deduplicated by video and capped at
``--per-class``; a clip the metadata already says is shorter than ``--min-duration`` is dropped
before anything is downloaded. Each function returns rows: a row with a ``status`` is an audit row
(the candidate stops there), any other row goes on. The Beam graph (``videonet.pipelines.curate``)
only maps them; the rules are tested without Beam.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.write.records import DUPLICATE, OVER_CAP, TITLE_MISMATCH, TOO_SHORT, audit_row

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class CandidateSettings:
    """Which hits become candidates: the paper's cap of 5,000 per class and its 10 s minimum."""

    per_class: int = field(default=5000, metadata={"help": "At most this many unique candidates per class.", "min": 1})
    min_duration: float = field(default=10.0, metadata={
        "help": "Drop clips shorter than this many seconds (a clip of exactly this length is kept).", "min": 0})


def normalize_words(text: str) -> str:
    """Casefold, strip accents and turn every run of punctuation/space into one space.

    Word boundaries are then plain spaces, so 'Tabby-cat!' and 'tabby cat' compare equal and
    "jack-o'-lantern" matches "jack o lantern".
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def title_match(title: str, terms: Iterable[str]) -> str | None:
    """The first term that occurs in the title as whole words (case/punctuation-insensitive)."""
    padded = f" {normalize_words(title)} "
    for term in terms:
        norm = normalize_words(term)
        if norm and f" {norm} " in padded:
            return term
    return None


def duration_verdict(duration: float | None, min_duration: float) -> bool | None:
    """True if long enough, False if too short, None if unknown (probe the file later).

    A clip of exactly ``min_duration`` seconds is kept (the paper drops clips *shorter* than 10 s).
    """
    if duration is None or duration != duration or duration < 0:  # unknown, NaN or nonsense
        return None
    return duration >= min_duration - 1e-6


@dataclass(frozen=True)
class Ranked:
    """A candidate with its retrieval position: (term order, rank within that term's results)."""

    video_id: str
    term_order: int
    rank: int
    item: object


def dedup_and_cap(ranked: Iterable[Ranked], cap: int) -> tuple[list, list, list]:
    """Deterministically deduplicate one class's candidates by video id and cap their number.

    Candidates are ordered by (term order, rank, id), so the same search results always give the
    same kept set whatever order the workers delivered them in. Returns (kept, duplicates, over_cap).
    """
    ordered = sorted(ranked, key=lambda r: (r.term_order, r.rank, r.video_id))
    seen: set[str] = set()
    kept, duplicates, over_cap = [], [], []
    for r in ordered:
        if r.video_id in seen:
            duplicates.append(r.item)
        elif len(kept) >= cap:
            seen.add(r.video_id)
            over_cap.append(r.item)
        else:
            seen.add(r.video_id)
            kept.append(r.item)
    return kept, duplicates, over_cap


def class_fields(cls: ImageNetClass) -> dict:
    return {"wnid": cls.wnid, "class_index": cls.index, "name": cls.name}


def hit_candidates(cls: ImageNetClass, term_order: int, term: str, hits: list[dict], source: str,
                   run_id: str) -> list[dict]:
    """Tag one term's search hits with the class, the term and their retrieval rank."""
    return [{**hit, **class_fields(cls), "term": term, "term_order": term_order, "rank": rank,
             "source": source, "run_id": run_id} for rank, hit in enumerate(hits)]


def match_title(candidate: dict, terms: Iterable[str]) -> dict:
    """Keep the hit if its title contains the class name or a synonym as whole words."""
    term = title_match(candidate["title"], terms)
    if term is None:
        return audit_row(candidate, TITLE_MISMATCH, f"title has none of the terms of {candidate['name']!r}")
    return {**candidate, "term": term}


def dedup_class(candidates: Iterable[dict], cap: int) -> list[dict]:
    """One class's title-matched hits, deduplicated by video id and capped, deterministically."""
    ranked = [Ranked(c["id"], c["term_order"], c["rank"], c) for c in candidates]
    kept, duplicates, over_cap = dedup_and_cap(ranked, cap)
    return (kept
            + [audit_row(c, DUPLICATE, f"video {c['id']} already a candidate of {c['wnid']}") for c in duplicates]
            + [audit_row(c, OVER_CAP, f"class already has {cap} candidates (--per-class)") for c in over_cap])


def check_duration(candidate: dict, min_duration: float) -> dict:
    """Drop clips the metadata already says are too short, before anything is downloaded."""
    if duration_verdict(candidate.get("duration"), min_duration) is False:
        return audit_row(candidate, TOO_SHORT,
                         f"duration {candidate['duration']:.2f} s < {min_duration:g} s (from metadata)")
    return candidate


def video_identity(candidate: dict) -> str:
    """Candidates pointing at the same file or URL are fetched, decoded and classified once."""
    return candidate.get("path") or candidate.get("url") or candidate["id"]
