"""The curation rules as pure functions: title match, duration, dedup + cap, keep decision.

They hold the whole VideoNet procedure's logic so it is tested without Beam; the pipeline's
DoFns only call them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

MIN_DURATION_S = 10.0
PER_CLASS_CAP = 5000

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


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


def duration_verdict(duration: float | None, min_duration: float = MIN_DURATION_S) -> bool | None:
    """True if long enough, False if too short, None if unknown (probe the file later).

    A clip of exactly ``min_duration`` seconds is kept (the paper drops clips *shorter* than 10 s).
    """
    if duration is None or duration != duration or duration < 0:  # unknown, NaN or nonsense
        return None
    return duration >= min_duration - 1e-6


T = TypeVar("T")


@dataclass(frozen=True)
class Ranked:
    """A candidate with its retrieval position: (term order, rank within that term's results)."""

    video_id: str
    term_order: int
    rank: int
    item: object


def dedup_and_cap(ranked: Iterable[Ranked], cap: int = PER_CLASS_CAP) -> tuple[list, list, list]:
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


@dataclass(frozen=True)
class Decision:
    """The keep rule's verdict for one (clip, class) pair."""

    kept: bool
    matched_frames: int  # frames whose top-1 is the class, among those classified
    first_match: int  # index of the first such frame, -1 if none


def keep_decision(top1: Sequence[int], class_index: int) -> Decision:
    """Keep the clip iff ``class_index`` is the top-1 prediction on at least one frame."""
    matches = [i for i, label in enumerate(top1) if int(label) == class_index]
    return Decision(bool(matches), len(matches), matches[0] if matches else -1)
