"""The row types that flow out of the pipeline: audit rows (every candidate) and kept clips.

Rows are plain dicts (cheap to pickle between Beam workers); these schemas make the Parquet
files typed and stable, and :func:`audit_row` / :func:`kept_row` are the only places they are made.
"""

from __future__ import annotations

import pyarrow as pa

KEPT = "kept"
TITLE_MISMATCH = "title_mismatch"
DUPLICATE = "duplicate"
OVER_CAP = "over_cap"
TOO_SHORT = "too_short"
DOWNLOAD_ERROR = "download_error"
DECODE_ERROR = "decode_error"
REJECTED = "rejected_by_classifier"
INVALID_ROW = "invalid_catalog_row"
SEARCH_ERROR = "search_error"
OTHER_CLASS = "kept_for_other_class"  # one class per video: the video is kept under the class that won it
NOT_A_VIDEO = "not_a_video"  # a channel or playlist among the search results: never downloaded
# Streams not finished yet, never fetched in the run that met them: a later run searches again and
# takes the recording (like the retriable failures below, they are not a candidate's last word).
LIVE_STREAM = "live_stream"
UPCOMING_STREAM = "upcoming_stream"
# Failures that asking again may cure (429, 5xx, timeouts, resets, bot checks), still failing after
# --retry-attempts: a rerun tries them again, so they are never a candidate's last word on resume.
DOWNLOAD_RETRIABLE = "download_retriable"
SEARCH_RETRIABLE = "search_retriable"
# Not asked this run: every session that could fetch it was parked (rate-limited); a rerun asks, and
# it does not count as a try.
DOWNLOAD_DEFERRED = "download_deferred"
# Failed retriably in --retry-runs runs: no rerun asks again; the reason is the last failure's.
GAVE_UP = "gave_up"
RETRIABLE_STATUSES = (DOWNLOAD_RETRIABLE, SEARCH_RETRIABLE, DOWNLOAD_DEFERRED)
LATER_STATUSES = (LIVE_STREAM, UPCOMING_STREAM)
STATUSES = (KEPT, TITLE_MISMATCH, DUPLICATE, OVER_CAP, NOT_A_VIDEO, LIVE_STREAM, UPCOMING_STREAM, TOO_SHORT, DOWNLOAD_ERROR,
            DOWNLOAD_RETRIABLE, DOWNLOAD_DEFERRED, GAVE_UP, DECODE_ERROR, REJECTED, OTHER_CLASS, INVALID_ROW, SEARCH_ERROR,
            SEARCH_RETRIABLE)



def settles(status: str) -> bool:
    """Whether an audit row decides its candidate for good, so that a rerun skips it: not a retriable
    failure nor a stream not finished yet (a rerun tries again), nor a ``duplicate`` row (it says only
    that the video was met again; the candidate's own row decides)."""
    return status not in RETRIABLE_STATUSES and status not in LATER_STATUSES and status != DUPLICATE


_CANDIDATE_FIELDS = [
    ("run_id", pa.string()),
    ("source", pa.string()),
    ("wnid", pa.string()),
    ("class_index", pa.int64()),
    ("name", pa.string()),
    ("term", pa.string()),
    ("matched_form", pa.string()),  # the title's words that matched the term: the term or its plural
    ("id", pa.string()),
    ("title", pa.string()),
    ("url", pa.string()),
    ("path", pa.string()),
    ("uploader", pa.string()),
    ("duration", pa.float64()),
]
AUDIT_SCHEMA = pa.schema(_CANDIDATE_FIELDS + [
    ("status", pa.string()),
    ("reason", pa.string()),
    ("frames_classified", pa.int64()),
])
METADATA_SCHEMA = pa.schema(_CANDIDATE_FIELDS + [
    ("fps", pa.float64()),
    ("frames_decoded", pa.int64()),
    ("frames_classified", pa.int64()),
    ("matched_frames", pa.int64()),
    ("first_match", pa.int64()),
    ("top1_score", pa.float64()),
    ("shard", pa.string()),
    ("key", pa.string()),
    ("labels", pa.list_(pa.int64())),  # the classes the clip is kept for: its own first, then --multi-label extras
])


def candidate_key(row: dict) -> str:
    """A candidate is one (class, video) pair; this is its identity across runs."""
    return f"{row.get('wnid') or ''}/{row['id']}"


def _text(value):
    """Strings as valid UTF-8 for Parquet: undecodable bytes kept as surrogate escapes become U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _fields(row: dict, names) -> dict:
    return {name: _text(row.get(name)) for name in names}


def audit_row(candidate: dict, status: str, reason: str, frames_classified: int | None = None) -> dict:
    """One audit row; every status carries a human-readable reason."""
    assert status in STATUSES and reason, (status, reason)
    return {**_fields(candidate, AUDIT_SCHEMA.names), "status": status, "reason": _text(reason),
            "frames_classified": frames_classified}


def clip_key(candidate: dict) -> str:
    """WebDataset key: wnid + a hash of the video identity (no dots, safe for any id or url)."""
    import hashlib

    digest = hashlib.sha1(str(candidate["id"]).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{candidate['wnid']}_{digest}"


EXTRA_LABELS = "extra_labels"  # kept row field (not a column): the --multi-label candidates audited with its commit


def kept_row(candidate: dict, **facts) -> dict:
    row = {**_fields(candidate, METADATA_SCHEMA.names), **facts}
    row["key"] = clip_key(candidate)
    return row
