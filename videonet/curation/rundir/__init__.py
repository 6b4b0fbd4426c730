"""The run directory, the ground floor of the curation: every path in it, every table's schema, the
audit's statuses and the rows the stages write. Every stage imports it; it imports no stage, and no
Beam, torch or pandas (reading and writing the files is :mod:`videonet.curation.rundir.files`).

Layout under ``--out`` (any Beam filesystem: local, gs://, s3://)::

    shards/<part>.tar            WebDataset: <key>.mp4 + <key>.json per kept clip
    metadata/<part>.parquet      one row per kept clip (METADATA_SCHEMA; the commit marker of <part>)
    audit/<part>.parquet         the 'kept' audit rows of <part> (AUDIT_SCHEMA)
    audit/drops-<run>-*.parquet  every dropped candidate with its status and reason
    search/<run>.parquet         per class: why its search stopped and what it cost (SEARCH_SCHEMA)
    search/<run>.finished.json   the classes a finished run completed (``write.resume``)
    requests/<run>.parquet       what the requests cost, per class searched and per download (REQUESTS_SCHEMA)
    report/                      retention tables, summary and report.html
    report/thumbs/<key>.jpg|json the frame behind a verdict and its facts
    _work/scans/                 the judge's cache: one typed result per clip
    _work/staging/               kept downloads, until their shard is committed
    _work/prefixes/              the download stage's prefixes (--judge-prefix)
    _work/sessions/              the download sessions' parking, shared by every worker and the next run
    _lock                        one live run per run directory (``write.lock``)

Rows are plain dicts (cheap to pickle between Beam workers); the schemas make the Parquet files typed
and stable, and :func:`audit_row` / :func:`kept_row` are the only places audit and kept rows are made.
The audit keeps its history: a candidate whose download failed retriably in one run and was kept in
the next has both rows (``files.final_rows`` gives each candidate's latest).
"""

from __future__ import annotations

import hashlib
import posixpath

import pyarrow as pa

SHARDS, METADATA, AUDIT, SEARCH, REPORT, WORK = "shards", "metadata", "audit", "search", "report", "_work"
REQUESTS = "requests"
THUMBS = "thumbs"
LOCK = "_lock"  # one live run per run directory
FINISHED = ".finished.json"  # search/<run_id>.finished.json: the classes a finished run completed


def join(*parts: str) -> str:
    """A path under the run directory, local or on any Beam filesystem."""
    if "://" not in parts[0]:
        return posixpath.join(*parts)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(*parts)


def _digest(identity: str) -> str:
    return hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def cache_path(out: str, identity: str) -> str:
    return join(out, WORK, "scans", f"{_digest(identity)}.json")


def staging_dir(out: str) -> str:
    """Kept downloads waiting for their shard: removed once every shard is committed."""
    return join(out, WORK, "staging")


def staging_path(out: str, identity: str) -> str:
    return join(staging_dir(out), f"{_digest(identity)}.mp4")


def fetched_path(out: str, identity: str, prefix: bool) -> str:
    """Where the download stage puts a URL clip's file for the judge (any worker reads it): the whole
    video where the shard writer takes a kept one, a prefix beside it."""
    return join(out, WORK, "prefixes", f"{_digest(identity)}.mp4") if prefix else staging_path(out, identity)


def sessions_dir(out: str) -> str:
    """Where the sessions' parking is shared by every worker and the next run."""
    return join(out, WORK, "sessions")


def thumb_path(out: str, key: str, ext: str = "jpg") -> str:
    return join(out, REPORT, THUMBS, f"{key}.{ext}")


# --- the audit's statuses ------------------------------------------------------------------------

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


# The statuses no rerun changes: a class all of whose rows have one is finished (``write.resume``).
# Unsettled (a rerun asks again): the retriable failures and the streams not finished yet; a search
# error is final for its query but not for its class, whose search a rerun runs again.
UNSETTLED_STATUSES = RETRIABLE_STATUSES + LATER_STATUSES
FINAL_STATUSES = frozenset(s for s in STATUSES if s not in UNSETTLED_STATUSES and s != SEARCH_ERROR)


def settles(status: str) -> bool:
    """Whether an audit row decides its candidate for good, so that a rerun skips it: not a retriable
    failure nor a stream not finished yet (a rerun tries again), nor a ``duplicate`` row (it says only
    that the video was met again; the candidate's own row decides)."""
    return status not in UNSETTLED_STATUSES and status != DUPLICATE


# --- the tables -----------------------------------------------------------------------------------

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
QUERY_FACTS = pa.struct([
    ("term", pa.string()),
    ("query", pa.string()),  # the plan row's words, e.g. "videos uploaded this week"
    ("requests", pa.int64()),  # HTTP requests it cost, retries included
    ("hits", pa.int64()),  # raw results read
    ("new", pa.int64()),  # results this class had not met in an earlier query
    ("matched", pa.int64()),  # of those, title-matched videos admitted as candidates
])
# One row per class and run under search/<run_id>.parquet: why the search of the class stopped and
# what it cost (requests count against the source's rate limits), query by query. The report keeps
# each class's latest.
SEARCH_SCHEMA = pa.schema([AUDIT_SCHEMA.field(name) for name in ("run_id", "source", "wnid", "class_index", "name")] + [
    ("search_stop", pa.string()),
    ("search_queries", pa.int64()),
    ("search_requests", pa.int64()),
    ("search_hits", pa.int64()),
    ("queries", pa.list_(QUERY_FACTS)),
])
REQUESTS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("stage", pa.string()),  # search | download
    ("requests", pa.int64()),  # every request sent, retries included
    ("rate_limited", pa.int64()),  # answered 429 or a bot check
    ("retries", pa.int64()),
    ("waited_s", pa.float64()),  # rate limit, adaptive throttle and backoff together
    ("started", pa.float64()),  # wall clock (epoch s) of the first and last request of this tally
    ("ended", pa.float64()),
])


# --- the rows -------------------------------------------------------------------------------------

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
    digest = hashlib.sha1(str(candidate["id"]).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{candidate['wnid']}_{digest}"


EXTRA_LABELS = "extra_labels"  # kept row field (not a column): the --multi-label candidates audited with its commit
# Kept row field (not a column): the audit rows of the clip's other candidates (its other classes, rejected or
# kept_for_other_class), committed with the clip's shard part, so that no kill can leave the clip committed and
# its other classes unaudited (a rerun would audit them kept_for_other_class, the run across runs' rule).
COMPANIONS = "companions"


def kept_row(candidate: dict, **facts) -> dict:
    row = {**_fields(candidate, METADATA_SCHEMA.names), **facts}
    row["key"] = clip_key(candidate)
    return row
