"""``videonet show OUT CLASS_OR_CLIP``: the verdicts behind one class or one clip, in a terminal.

The report's contact sheets for a curator in a shell: a class (wnid, index or name) shows how its
search stopped (after how many queries and requests), its counts per status, its kept clips with
the frames the classifier matched and their shards, and a few rejected clips with their reasons; a clip (video id or key) shows each of its candidates'
status, reason, matched frames and shard. Every line is read from the run directory, and reaches
the terminal with its control characters escaped (titles and reasons come from anyone).
"""

from __future__ import annotations

import re

import pandas as pd

from videonet.curation.report.sheets import Clip, contact_sheets
from videonet.curation.vocabulary.classes import class_name
from videonet.curation.rundir import KEPT, REJECTED, STATUSES, clip_key
from videonet.curation.rundir import SEARCH, SHARDS, join
from videonet.curation.rundir.files import final_rows, read_audit, read_metadata, read_table
from videonet.curation.rundir import thumb_path
from videonet.curation.write.thumbs import read_thumb_facts
from videonet.errors import UserError, printable

KEPT_SHOWN = 20  # a screenful; the report and the metadata have the rest
REJECTED_SHOWN = 5
_KEY = re.compile(r"(n\d{8})_[0-9a-f]{16}")  # records.clip_key


def _frame(out: str, clip: Clip) -> str:
    """Where the frame behind a verdict is, and what the classifier said on it."""
    if clip.facts is None:
        return "no frame kept (judged before thumbnails existed)"
    facts = clip.facts
    return (f"frame {facts['frame']}: {class_name(facts['label'])} ({facts['label']}) score {facts['score']:.2f}"
            f"  {thumb_path(out, clip.key)}")


def _kept_lines(out: str, clip: Clip) -> list[str]:
    """How a kept clip matched its class, the frame that shows it, and where the clip is stored."""
    row = clip.row
    return [f"      matched {row['matched_frames']} of {row['frames_classified']} classified frames, first at frame "
            f"{row['first_match']}, best score {row['top1_score']:.2f}",
            f"      {_frame(out, clip)}",
            f"      shard {join(out, SHARDS, row['shard'] + '.tar')}  key {clip.key}"]


def _class_matches(audit: pd.DataFrame, query: str) -> list[str]:
    """wnids of the run's classes whose wnid, index or name (any case) is ``query``."""
    q = query.strip().lower()
    classes = audit[audit["wnid"].notna() & (audit["wnid"] != "")].drop_duplicates("wnid")
    hit = (classes["wnid"].str.lower() == q) | (classes["class_index"].astype(str) == q) | \
        (classes["name"].str.lower() == q)
    return sorted(classes.loc[hit, "wnid"])


def _search_lines(out: str, wnid: str) -> list[str]:
    """How the class's latest search went: why it stopped, after how many queries and requests."""
    from videonet.curation.report import latest_searches, stop_words
    from videonet.curation.rundir import SEARCH_SCHEMA

    searches = read_table(out, SEARCH, SEARCH_SCHEMA)
    if wnid not in set(searches["wnid"]):
        return []
    row = latest_searches(searches).loc[wnid]
    return [f"search: {stop_words(row['search_stop'], row['search_queries'], row['search_requests'])}, "
            f"{row['search_hits']:,} results read"]


def _class_view(out: str, audit: pd.DataFrame, metadata: pd.DataFrame, wnid: str) -> str:
    rows = audit[audit["wnid"] == wnid]
    counts = rows["status"].value_counts()
    first = rows.iloc[0]
    lines = [f"{first['class_index']} {wnid} {first['name']}", *_search_lines(out, wnid),
             f"candidates {len(rows)}: " + ", ".join(f"{s} {counts[s]}" for s in STATUSES if s in counts)]
    for sheet in contact_sheets(out, audit, metadata, {wnid}, KEPT_SHOWN, REJECTED_SHOWN):  # none: none judged
        if sheet.kept_total:
            lines.append(f"kept ({len(sheet.kept)} of {sheet.kept_total} shown, least confident first):")
            for clip in sheet.kept:
                lines += [f"  {clip.row['id']}  {clip.row.get('title') or ''}", *_kept_lines(out, clip)]
        if sheet.rejected_total:
            lines.append(f"rejected by the classifier ({len(sheet.rejected)} of {sheet.rejected_total} shown):")
            for clip in sheet.rejected:
                lines += [f"  {clip.row['id']}  {clip.row['reason']}", f"      {_frame(out, clip)}"]
    return "\n".join(map(printable, lines))


def _clip_rows(audit: pd.DataFrame, query: str) -> pd.DataFrame:
    """The audit rows of a clip (all its classes) given by video id or by key (``<wnid>_<hash>``)."""
    rows = audit[audit["id"] == query]
    if len(rows) or not _KEY.fullmatch(query):
        return rows
    of_class = audit[audit["wnid"] == query[:9]]
    keyed = of_class[of_class.apply(clip_key, axis=1) == query]
    return audit[audit["id"].isin(keyed["id"])]


def _clip_view(out: str, rows: pd.DataFrame, metadata: pd.DataFrame) -> str:
    records = sorted(rows.to_dict("records"), key=lambda r: STATUSES.index(r["status"]))  # verdicts before drops
    first = records[0]
    lines = [f"{first['id']}  {first.get('title') or ''}", f"  {first.get('path') or first.get('url') or ''}"]
    facts = read_thumb_facts(out, [clip_key(r) for r in records if r["status"] in (KEPT, REJECTED)])
    kept = metadata.set_index("key")
    for row in records:
        cls = f"{row['class_index']} {row['wnid']} {row['name']}" if row.get("wnid") else "(no class)"
        lines.append(f"{cls}: {row['status']}: {row['reason']}")
        key = clip_key(row) if row.get("wnid") else None
        if row["status"] == KEPT and key in kept.index:  # not an extra label (--multi-label): its own shard row
            lines += _kept_lines(out, Clip(kept.loc[key].to_dict(), key, facts.get(key)))
        elif row["status"] == REJECTED:
            lines.append(f"      {_frame(out, Clip(row, key, facts.get(key)))}")
    return "\n".join(map(printable, lines))


def show(out: str, query: str) -> str:
    """The terminal view of the class or clip ``query`` in the run ``out``."""
    audit = final_rows(read_audit(out))  # a candidate retried by a rerun shows its final verdict
    metadata = read_metadata(out)
    wnids = _class_matches(audit, query)
    if wnids:  # a name shared by two classes (crane, the bird and the machine) shows both
        return "\n\n".join(_class_view(out, audit, metadata, wnid) for wnid in wnids)
    rows = _clip_rows(audit, query)
    if len(rows):
        return _clip_view(out, rows, metadata)
    raise UserError(f"no class or clip {query!r} in {out} (give a wnid, class index or name, a video id or a clip key)")
