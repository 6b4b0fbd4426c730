"""Contact sheets: per class, its kept clips and a sample of its rejected ones, each with the frame
behind its verdict (see :mod:`videonet.curation.write.thumbs`).

Shared by the HTML report and ``videonet show``, so the page and the terminal tell the same story.
Built from the audit and metadata tables plus the thumbnails' facts, all on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import pandas as pd

from videonet.curation.rundir import REJECTED, clip_key
from videonet.curation.write.thumbs import read_thumb_facts

KEPT_SHOWN = 24  # per class in the report: enough to judge a class at a glance
REJECTED_SHOWN = 8


@dataclass(frozen=True)
class Clip:
    """One clip of a sheet: its metadata (kept) or audit (rejected) row, its key, its thumbnail facts."""

    row: dict
    key: str
    facts: dict | None  # {"label", "frame", "score"}; None when no thumbnail was written


@dataclass(frozen=True)
class Sheet:
    """One class: the clips shown and how many there are in all."""

    class_index: int
    wnid: str
    name: str
    kept: list[Clip]
    kept_total: int
    rejected: list[Clip]
    rejected_total: int


def contact_sheets(out: str, audit: pd.DataFrame, metadata: pd.DataFrame, wnids: Collection[str] | None = None,
                   kept_shown: int = KEPT_SHOWN, rejected_shown: int = REJECTED_SHOWN) -> list[Sheet]:
    """Sheets of the classes (all, or ``wnids``) with kept or rejected clips, in class order.

    Kept clips come least confident first (the likeliest false positives); rejected ones are a
    sample ordered by key, a hash: arbitrary but the same at every rebuild.
    """
    rejected = audit[audit["status"] == REJECTED]
    if wnids is not None:
        rejected, metadata = rejected[rejected["wnid"].isin(wnids)], metadata[metadata["wnid"].isin(wnids)]
    kept_rows = {w: g.sort_values(["top1_score", "key"]).to_dict("records") for w, g in metadata.groupby("wnid")}
    rejected_rows = {w: sorted(g.to_dict("records"), key=clip_key) for w, g in rejected.groupby("wnid")}
    shown = {w: rows[:kept_shown] for w, rows in kept_rows.items()}
    sampled = {w: rows[:rejected_shown] for w, rows in rejected_rows.items()}
    facts = read_thumb_facts(out, [clip_key(r) for rows in (*shown.values(), *sampled.values()) for r in rows])
    sheets = []
    for wnid in sorted(set(kept_rows) | set(rejected_rows)):
        first = (kept_rows.get(wnid) or rejected_rows[wnid])[0]
        clips = {part: [Clip(r, clip_key(r), facts.get(clip_key(r))) for r in rows.get(wnid, [])]
                 for part, rows in (("kept", shown), ("rejected", sampled))}
        sheets.append(Sheet(int(first["class_index"]), wnid, first["name"], clips["kept"],
                            len(kept_rows.get(wnid, [])), clips["rejected"], len(rejected_rows.get(wnid, []))))
    return sorted(sheets, key=lambda s: s.class_index)
