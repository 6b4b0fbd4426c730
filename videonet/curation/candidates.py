"""Candidates: from one class's search hits to the clips worth fetching (the rules, as pure functions).

A hit becomes a candidate (one class, one video) when its title contains the class name or a
synonym as whole words, or (``--title-match inflected``, the default) one of their plurals; one
class's candidates are deduplicated by video and capped at ``--per-class`` as the search pages
arrive (:class:`ClassCandidates`, which also tells the search when to stop); a clip the metadata
already says is shorter than ``--min-duration`` is dropped before anything is downloaded. Each
function returns rows: a row with a ``status`` is an audit row (the candidate stops there), any
other row goes on. The Beam graph (``videonet.pipelines.curate``) only maps them; the rules are
tested without Beam.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, NamedTuple

from videonet.curation.vocabulary.classes import ImageNetClass
from videonet.curation.rundir import (
    DUPLICATE, LIVE_STREAM, NOT_A_VIDEO, OTHER_CLASS, OVER_CAP, TITLE_MISMATCH, TOO_SHORT, UPCOMING_STREAM, audit_row,
)
from videonet.errors import UserError

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
INFLECTED, STRICT = "inflected", "strict"
NOUN_EXCEPTIONS = "noun_exc.tsv"  # WordNet 3.0's irregular noun forms, shipped in videonet.synonyms


@dataclass(frozen=True)
class CandidateSettings:
    """Which hits become candidates: the paper's cap of 5,000 per class and its 10 s minimum."""

    per_class: int = field(default=5000, metadata={"help": "At most this many unique candidates per class.", "min": 1})
    min_duration: float = field(default=10.0, metadata={
        "help": "Drop clips shorter than this many seconds (a clip of exactly this length is kept).", "min": 0})
    title_match: str = field(default=INFLECTED, metadata={
        "help": "inflected: a title may hold a term or its plural (cats, ostriches, puppies, WordNet's irregular "
                "geese, mice; a multi-word term inflects its last word); strict: the term's own words only."})

    def __post_init__(self) -> None:
        if self.title_match not in (INFLECTED, STRICT):
            raise UserError(f"--title-match {self.title_match!r}: expected {INFLECTED} or {STRICT}")


def normalize_words(text: str) -> str:
    """Casefold, strip accents and turn every run of punctuation/space into one space.

    Word boundaries are then plain spaces, so 'Tabby-cat!' and 'tabby cat' compare equal and
    "jack-o'-lantern" matches "jack o lantern".
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


@lru_cache(maxsize=1)
def irregular_plurals() -> dict[str, tuple[str, ...]]:
    """Base noun -> its irregular forms (goose -> geese), normalized, from WordNet 3.0's ``noun.exc``.

    Read from the copy shipped as package data (``videonet synonyms build`` writes it), so workers
    match titles without WordNet installed.
    """
    text = resources.files("videonet.synonyms").joinpath(NOUN_EXCEPTIONS).read_text(encoding="utf-8")
    forms: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines()[1:]:  # header: form, base
        form, base = line.split("\t")
        forms[normalize_words(base)].append(normalize_words(form))
    return {base: tuple(found) for base, found in forms.items()}


def regular_plurals(word: str) -> tuple[str, ...]:
    """The regular English plurals of a noun: -es after a sibilant (ostriches, goldfishes), -ies after
    a consonant + y (puppies), both -s and -es after o (mosquitos and mosquitoes are both written),
    -s elsewhere (hens). Only these, so that 'pin' does not match 'pines'."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return (word + "es",)
    if len(word) > 1 and word[-1] == "y" and word[-2] not in "aeiou":
        return (word[:-1] + "ies",)
    if word.endswith("o"):
        return (word + "s", word + "es")
    return (word + "s",)


@lru_cache(maxsize=1 << 16)
def term_forms(term: str, inflect: bool = True) -> tuple[str, ...]:
    """The normalized word sequences that count as ``term`` in a title, the term itself first.

    Inflected, a term also stands for the plurals of its last word ('golden retrievers', 'Canada
    geese') and for WordNet's irregular plural of the whole term ('attorneys general').
    """
    words = normalize_words(term)
    if not words or not inflect:
        return (words,) if words else ()
    head, _, last = words.rpartition(" ")
    prefix = f"{head} " if head else ""
    irregular = irregular_plurals()
    lasts = (*irregular.get(last, ()), *regular_plurals(last))
    return tuple(dict.fromkeys((words, *irregular.get(words, ()), *(prefix + form for form in lasts))))


class TitleMatch(NamedTuple):
    """Which query term a title matched, and the words of the title that matched it (normalized:
    the term itself or one of its inflections)."""

    term: str
    form: str


def title_match(title: str, terms: Iterable[str], inflect: bool = True) -> TitleMatch | None:
    """The first term (in table order) that occurs in the title as whole words, case-, accent- and
    punctuation-insensitive; ``inflect`` also accepts its plurals (:func:`term_forms`)."""
    padded = f" {normalize_words(title)} "
    for term in terms:
        for form in term_forms(term, inflect):
            if f" {form} " in padded:
                return TitleMatch(term, form)
    return None


MAX_SECONDS = 1e6  # about 11.6 days: a longer duration is a broken header or a hostile row, not a video


def implausible_duration(seconds: float) -> str | None:
    """Why ``seconds`` cannot be a video's duration, or None: a catalog row saying so is invalid, a
    container saying so does not know its duration (nothing infinite or absurd reaches the metadata,
    nor the report's hours)."""
    if not math.isfinite(seconds):
        return f"duration is not a finite number: {seconds}"
    if seconds < 0:
        return f"negative duration: {seconds:g}"
    if seconds > MAX_SECONDS:
        return f"duration {seconds:g} s is not plausible (over {MAX_SECONDS:g} s)"
    return None


def duration_verdict(duration: float | None, min_duration: float) -> bool | None:
    """True if long enough, False if too short, None if unknown (probe the file later).

    A clip of exactly ``min_duration`` seconds is kept (the paper drops clips *shorter* than 10 s).
    """
    if duration is None or duration != duration or duration < 0:  # unknown, NaN or nonsense
        return None
    return duration >= min_duration - 1e-6


def class_fields(cls: ImageNetClass) -> dict:
    return {"wnid": cls.wnid, "class_index": cls.index, "name": cls.name}


def hit_candidates(cls: ImageNetClass, term: str, hits: list[dict], source: str, run_id: str) -> list[dict]:
    """Tag one page of a term's search hits with the class and the term that retrieved them."""
    return [{**hit, **class_fields(cls), "term": term, "source": source, "run_id": run_id} for hit in hits]


def match_title(candidate: dict, terms: Iterable[str], inflect: bool = True) -> dict:
    """Keep the hit if its title contains the class name or a synonym (or, inflected, a plural of one)
    as whole words; the term and the matched words go with it into the metadata and the audit."""
    found = title_match(candidate["title"], terms, inflect)
    if found is None:
        return audit_row(candidate, TITLE_MISMATCH, f"title has none of the terms of {candidate['name']!r}")
    return {**candidate, "term": found.term, "matched_form": found.form}


NOT_VIDEO_KINDS = ("channel", "playlist", "page")  # search results that name no single video (page: a hashtag...)


def check_kind(candidate: dict) -> dict:
    """Only single videos become candidates: a channel or playlist among the results is audited
    ``not_a_video`` (downloading one would fetch whatever it holds); a live stream (its length is
    unknown until it ends) ``live_stream`` and a scheduled one ``upcoming_stream``, neither fetched
    in this run: a later run searches them again and takes the recording. A hit without ``kind``
    (a catalog row) is a video."""
    kind = candidate.get("kind") or "video"
    if kind in NOT_VIDEO_KINDS:
        return audit_row(candidate, NOT_A_VIDEO,
                         f"a {kind} in the search results, not a single video: never downloaded")
    if kind == "live":
        return audit_row(candidate, LIVE_STREAM,
                         "live now: its length is unknown until it ends; a later run looks again")
    if kind == "upcoming":
        return audit_row(candidate, UPCOMING_STREAM, "a scheduled stream, not yet started; a later run looks again")
    return candidate


@dataclass
class ClassCandidates:
    """One class's candidates, admitted one hit at a time in retrieval order (term order, then rank).

    Retrieval order makes the result deterministic without sorting: the search of a class runs in
    one place, page after page, and stops as soon as :attr:`full`. A channel, playlist or stream is
    audited as such (:func:`check_kind`) and never counts; a video already admitted is a
    ``duplicate``; a title-matched new video once the class holds ``cap`` candidates is ``over_cap``
    (so over-cap hits only come from the page that filled the class: no later page is asked for).
    """

    terms: tuple[str, ...]
    cap: int
    inflect: bool = True
    admitted: int = 0
    seen: set[str] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return self.admitted >= self.cap

    def admit(self, candidate: dict) -> dict:
        """The candidate, or its audit row (not_a_video, title_mismatch, live/upcoming stream, duplicate
        or over_cap)."""
        if candidate.get("kind") in NOT_VIDEO_KINDS:
            return check_kind(candidate)
        row = match_title(candidate, self.terms, self.inflect)
        if "status" in row:
            return row
        video = youtube_video_id(row.get("url")) or row["id"]  # a catalog may list one video by two URL forms
        if video in self.seen:
            return audit_row(row, DUPLICATE, f"video {video} already a candidate of {row['wnid']}")
        self.seen.add(video)  # a stream met again is a duplicate: one row per video says what it is
        row = check_kind(row)
        if "status" in row:
            return row
        if self.full:
            return audit_row(row, OVER_CAP, f"class already has {self.cap} candidates (--per-class)")
        self.admitted += 1
        return row


def check_duration(candidate: dict, min_duration: float) -> dict:
    """Drop clips the metadata already says are too short, before anything is downloaded."""
    if duration_verdict(candidate.get("duration"), min_duration) is False:
        return audit_row(candidate, TOO_SHORT,
                         f"duration {candidate['duration']:.2f} s < {min_duration:g} s (from metadata)")
    return candidate


@lru_cache(maxsize=1 << 16)
def youtube_video_id(url: str | None) -> str | None:
    """The YouTube video id a URL names (watch, Shorts, youtu.be, embed, m.youtube forms alike), by
    yt-dlp's own YouTube URL pattern; None for a channel, a playlist or another site."""
    if not url or "youtu" not in url:
        return None
    from yt_dlp.extractor.youtube import YoutubeIE

    match = YoutubeIE._match_valid_url(url)
    return match.group("id") if match else None


def video_identity(candidate: dict) -> str:
    """Candidates pointing at the same video are fetched, decoded and classified once: a YouTube
    video by its id whatever its URL form, anything else by its file or URL."""
    video = youtube_video_id(candidate.get("url"))
    return f"youtube:{video}" if video else candidate.get("path") or candidate.get("url") or candidate["id"]


def kept_elsewhere(candidate: dict, kept: Iterable[dict]) -> dict:
    """One class per video across runs too: a video an earlier run of the run directory kept under
    another class (``kept``: its metadata rows, same :func:`video_identity`) is not fetched again."""
    other = next((k for k in kept if k["wnid"] != candidate["wnid"]), None)
    if other is None:
        return candidate
    return audit_row(candidate, OTHER_CLASS,
                     f"video kept under {other['wnid']} ({other['name']}) by run {other['run_id']}")
