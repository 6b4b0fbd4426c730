"""Stages from search hits to the clips worth fetching, as pure functions over row dicts.

Each function returns rows: a row with a ``status`` is an audit row (the candidate stops there),
any other row is a candidate that goes on. The Beam pipeline maps them one to one.
"""

from __future__ import annotations

from typing import Iterable

from videonet.records import DUPLICATE, OVER_CAP, TITLE_MISMATCH, TOO_SHORT, audit_row, candidate_key
from videonet.rules import Ranked, dedup_and_cap, duration_verdict, title_match
from videonet.vocab import ImageNetClass


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


def not_done(candidate: dict, done: set[str]) -> bool:
    """Resume: a candidate a previous run already audited is not processed again."""
    return candidate_key(candidate) not in done


def video_identity(candidate: dict) -> str:
    """Candidates pointing at the same file or URL are fetched, decoded and classified once."""
    return candidate.get("path") or candidate.get("url") or candidate["id"]
