"""Per-class retention report: how many candidates each class had, why they dropped, what stayed.

Built from the audit and metadata tables (and the thumbnails the judge wrote beside them, see
:mod:`videonet.curation.write.thumbs`; what the requests cost, from ``requests/``), so it can be
rebuilt at any time (``videonet report OUT``) and always agrees with what is on disk. Each candidate
counts once, with its final status (its latest audit row: a download that failed retriably and was
kept by a rerun is kept). report.html shows, per class, the frames behind its
verdicts and a per-class table that sorts and filters with a script shipped in ``assets/``.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd

from videonet.curation.client import rule_of
from videonet.curation.rundir import REQUESTS_SCHEMA
from videonet.curation.rundir import SEARCH_SCHEMA
from videonet.curation.search import CAP_REACHED, EXHAUSTED, SEARCH_FAILED
from videonet.curation.rundir import REPORT, REQUESTS, SEARCH, join
from videonet.curation.rundir.files import final_rows, read_audit, read_metadata, read_table, write_atomic
from videonet.curation.rundir import (
    DOWNLOAD_DEFERRED, DOWNLOAD_ERROR, DOWNLOAD_RETRIABLE, DUPLICATE, GAVE_UP, KEPT, LIVE_STREAM, NOT_A_VIDEO, OVER_CAP,
    SEARCH_ERROR, SEARCH_RETRIABLE, STATUSES, TITLE_MISMATCH, UPCOMING_STREAM,
)
from videonet.curation.judge.scan import THUMB_PX
from videonet.curation.report.sheets import Clip, Sheet, contact_sheets
from videonet.curation.vocabulary.classes import class_name, imagenet1k
from videonet.curation.rundir.integrity import unfinished_run
from videonet.curation.rundir import THUMBS
from videonet.errors import printable

# Hits that are not retrieved videos of the class: loose titles, repeats, beyond the cap, channels and
# playlists, streams not finished yet.
RETRIEVED_EXCLUDES = (TITLE_MISMATCH, DUPLICATE, OVER_CAP, NOT_A_VIDEO, LIVE_STREAM, UPCOMING_STREAM)
SEARCH_FAILURES = (SEARCH_ERROR, SEARCH_RETRIABLE)  # failed requests, not videos
PAPER_RETENTION_PCT = 24.0  # VITO/VideoNet kept about 24% of retrieved videos
# A rate over fewer seconds of requests than this says nothing (a local catalog answers a page in
# microseconds: 0.08 s of requests once read as 82 million an hour): the summary then gives none.
MIN_RATE_SPAN_S = 60.0
# The audit columns the report reads (the counts, and the rejected clips' captions): a 5M-hit run's
# audit holds millions of rows, and every other column would cost memory and nothing else.
REPORT_COLUMNS = ["run_id", "wnid", "class_index", "name", "id", "title", "status", "reason"]


def latest_searches(searches: pd.DataFrame) -> pd.DataFrame:
    """Each class's search facts from the latest run that searched it (a resumed run searches again)."""
    return searches.sort_values("run_id").drop_duplicates("wnid", keep="last").set_index("wnid")


def current_rows(audit: pd.DataFrame, searches: pd.DataFrame) -> pd.DataFrame:
    """Each candidate's final row; a class's search failures only from its latest search (a rerun
    searches every class again, and a term that succeeds then leaves no row to supersede the old one)."""
    final = final_rows(audit)
    latest = latest_searches(searches)["run_id"] if len(searches) else pd.Series(dtype=object)
    stale = final["status"].isin(SEARCH_FAILURES) & final["wnid"].isin(latest.index) & \
        (final["run_id"] != final["wnid"].map(latest))
    return final[~stale]


def request_facts(requests: pd.DataFrame) -> dict:
    """Per stage (search, download): requests sent (retries included), 429s and bot checks, retries,
    and the effective rate: requests per hour of the stage's span in each run (first to last request
    of any worker), over all runs (the summary shows it only over :data:`MIN_RATE_SPAN_S` seconds or more)."""
    facts = {}
    for stage in ("search", "download"):
        rows = requests[requests["stage"] == stage]
        spans = rows.groupby("run_id").agg(start=("started", "min"), end=("ended", "max"))
        hours = float((spans["end"] - spans["start"]).sum()) / 3600
        sent = int(rows["requests"].sum())
        facts[f"{stage}_requests"] = sent
        facts[f"{stage}_429s"] = int(rows["rate_limited"].sum())
        facts[f"{stage}_retries"] = int(rows["retries"].sum())
        facts[f"{stage}_per_hour"] = round(sent / hours, 1) if hours > 0 else None
        facts[f"{stage}_seconds"] = round(hours * 3600, 2)  # the span the rate is measured over
    return facts


def stop_words(stop: str | None, queries, requests) -> str:
    """Why a class's search stopped, in words: "exhausted after 3 queries (95 requests)"."""
    if stop is None or pd.isna(stop):
        return "not searched in this run directory"
    spent = "" if pd.isna(queries) else f" after {_count(queries, 'query', 'queries')}"
    return f"{stop}{spent}" + ("" if pd.isna(requests) else f" ({_count(requests, 'request', 'requests')})")


def _count(n, one: str, many: str) -> str:
    return f"{int(n):,} {one if int(n) == 1 else many}"


def retention_table(audit: pd.DataFrame, searches: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per class: candidates, a count per status, retrieved (unique title matches), kept, %,
    and why its search stopped and how many requests it spent (``searches``: :data:`SEARCH_SCHEMA` rows).

    A search_error or search_retriable row is a failed request, not a video: it has its column but counts
    neither as a candidate nor as retrieved, so failed searches do not lower retention. A class that was searched
    but found nothing still gets its row.
    """
    per_class = audit[audit["wnid"].notna() & (audit["wnid"] != "")]
    counts = (per_class.groupby(["wnid", "status"]).size()
              .unstack("status", fill_value=0).reindex(columns=list(STATUSES), fill_value=0))
    names = per_class.drop_duplicates("wnid").set_index("wnid")[["class_index", "name"]]
    searched = latest_searches(searches if searches is not None else SEARCH_SCHEMA.empty_table().to_pandas())
    table = counts.reindex(counts.index.union(searched.index), fill_value=0)
    table.insert(0, "class_index", names["class_index"].combine_first(searched["class_index"]).astype(int))
    table.insert(1, "name", names["name"].combine_first(searched["name"]))
    table.insert(2, "candidates", table[[s for s in STATUSES if s not in SEARCH_FAILURES]].sum(axis=1))
    table = table.reset_index()
    table.columns.name = None
    table = table[["class_index", "wnid", *table.columns.drop(["class_index", "wnid"])]]
    table["retrieved"] = table["candidates"] - table[list(RETRIEVED_EXCLUDES)].sum(axis=1)
    table["retention_pct"] = (100.0 * table[KEPT] / table["retrieved"].where(table["retrieved"] > 0)).round(2)
    table["search_stop"] = table["wnid"].map(searched["search_stop"])
    table["search_queries"] = table["wnid"].map(searched["search_queries"]).astype("Int64")
    table["search_requests"] = table["wnid"].map(searched["search_requests"]).astype("Int64")
    table["stopped"] = [stop_words(stop, queries, requests) for stop, queries, requests in
                        zip(table["search_stop"], table["search_queries"], table["search_requests"])]
    # Ambiguous query terms (e.g. 'crane': bird and machine) explain low retention: show them.
    shared = {c.wnid: " | ".join(c.shared_terms) for c in imagenet1k()}
    table["shared_terms"] = table["wnid"].map(shared).fillna("")
    return table.sort_values("class_index").reset_index(drop=True)


def gave_up_by_reason(audit: pd.DataFrame) -> dict[str, int]:
    """The candidates given up on, counted by the class of their last failure (e.g. ``http_503``,
    ``bot_check``), most first: which of the site's answers a crawl kept meeting."""
    reasons = audit.loc[audit["status"] == GAVE_UP, "reason"].fillna("")
    kinds = reasons.map(lambda r: rule_of(r.split("; last: ", 1)[-1]).kind).value_counts()
    return {str(k): int(v) for k, v in kinds.items()}


def summary(audit: pd.DataFrame, metadata: pd.DataFrame, table: pd.DataFrame,
            requests: pd.DataFrame | None = None) -> dict:
    """The run in numbers; search errors and over-cap hits are shown apart (neither is in retention);
    ``requests`` (:data:`REQUESTS_SCHEMA` rows) adds what the searches and downloads cost."""
    by_status = audit["status"].value_counts().reindex(list(STATUSES), fill_value=0)
    durations = metadata["duration"]
    retrieved = int(table["retrieved"].sum())
    stops = table["search_stop"].value_counts()
    return {
        "classes": int((table["candidates"] > 0).sum()),
        "classes_with_kept_clips": int((table[KEPT] > 0).sum()),
        "classes_searched": int(table["search_stop"].notna().sum()),
        "classes_cap_reached": int(stops.get(CAP_REACHED, 0)),
        "classes_exhausted": int(stops.get(EXHAUSTED, 0)),
        "classes_search_failed": int(stops.get(SEARCH_FAILED, 0)),
        "search_queries": int(table["search_queries"].sum()),
        "search_requests": int(table["search_requests"].sum()),
        "search_errors": int(by_status[SEARCH_ERROR] + by_status[SEARCH_RETRIABLE]),
        "search_retriable": int(by_status[SEARCH_RETRIABLE]),
        "download_errors": int(by_status[DOWNLOAD_ERROR]),
        "download_retriable": int(by_status[DOWNLOAD_RETRIABLE]),
        "download_deferred": int(by_status[DOWNLOAD_DEFERRED]),
        "gave_up": int(by_status[GAVE_UP]),
        "gave_up_by_reason": gave_up_by_reason(audit),
        **request_facts(requests if requests is not None else REQUESTS_SCHEMA.empty_table().to_pandas()),
        "candidates": int(table["candidates"].sum()),
        "over_cap": int(by_status[OVER_CAP]),
        "not_videos": int(by_status[NOT_A_VIDEO]),
        "streams": int(by_status[LIVE_STREAM] + by_status[UPCOMING_STREAM]),
        "retrieved": retrieved,
        "kept": int(len(metadata)),
        "retention_pct": round(100.0 * len(metadata) / retrieved, 2) if retrieved else None,
        "paper_retention_pct": PAPER_RETENTION_PCT,
        "by_status": {k: int(v) for k, v in by_status.items()},
        "shards": int(metadata["shard"].nunique()) if len(metadata) else 0,
        # a run written before durations were checked may hold an infinite one: it counts as unknown
        "hours_kept": round(float(durations.where(np.isfinite(durations)).fillna(0).sum()) / 3600, 3),
    }


def chart_classes(table: pd.DataFrame, limit: int = 60) -> pd.DataFrame:
    """The classes the chart shows: those with candidates (a class searched in vain has no bar to
    draw), the ``limit`` with the most retrieved, bottom to top."""
    with_candidates = table[table["candidates"] > 0]
    return with_candidates.sort_values(["retrieved", "candidates"], ascending=False).head(limit).iloc[::-1]


def _plot_png(table: pd.DataFrame, limit: int = 60) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = chart_classes(table, limit)
    drops = [s for s in STATUSES if s != KEPT and s in shown and shown[s].sum() > 0]
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.28 * len(shown) + 1.2)))
    left = pd.Series(0, index=shown.index)
    for status in [KEPT, *drops]:
        ax.barh(shown["name"], shown[status], left=left, label=status.replace("_", " "))
        left = left + shown[status]
    for y, (_, row) in enumerate(shown.iterrows()):
        if pd.notna(row["retention_pct"]):
            ax.text(left.iloc[y], y, f"  {row['retention_pct']:.0f}%", va="center", fontsize=8)
    ax.set_xlabel("candidates (label: kept / retrieved)")
    ax.set_title(f"Per-class retention ({len(shown)} of the {int((table['candidates'] > 0).sum())} classes with "
                 "candidates, most retrieved first)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _asset(name: str) -> str:
    """A file of the package's report assets (inlined: the page works offline and from any bucket)."""
    from importlib.resources import files

    return files("videonet.curation.report").joinpath("assets", name).read_text(encoding="utf-8")


def _class_table(table: pd.DataFrame, linked: set[str]) -> str:
    """The per-class table, sortable and filterable by assets/report.js; a class name links to its
    contact sheet when it has one."""
    numeric = {c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
    head = "".join(f'<th data-type="number">{html.escape(c)}</th>' if c in numeric else f"<th>{html.escape(c)}</th>"
                   for c in table.columns)
    rows = []
    for record in table.to_dict("records"):
        cells = []
        for column, value in record.items():
            text = "" if pd.isna(value) else html.escape(str(value))
            if column == "name" and record["wnid"] in linked:
                text = f'<a href="#{html.escape(record["wnid"])}">{text}</a>'
            cells.append(f'<td class="number">{text}</td>' if column in numeric else f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="classes"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _figure(clip: Clip, kept: bool) -> str:
    """One thumbnail, loaded lazily from thumbs/, captioned with what the classifier saw there."""
    row, facts = clip.row, clip.facts
    verdict = f"shard {row['shard']}" if kept else row["reason"]
    tip = html.escape(f"{row['id']}: {row.get('title') or ''}\n{verdict}", quote=True)
    ident = html.escape(row["id"])
    if facts is None:  # judged before thumbnails existed
        return (f'<figure title="{tip}"><div class="missing">no frame</div>'
                f"<figcaption><span>{ident}</span></figcaption></figure>")
    seen = "" if kept else f"<span><b>{html.escape(class_name(facts['label']))}</b></span>"
    return (f'<figure title="{tip}"><img loading="lazy" width="{THUMB_PX}" height="{THUMB_PX}" '
            f'src="{THUMBS}/{html.escape(clip.key)}.jpg" alt="frame {facts["frame"]} of {ident}">'
            f"<figcaption>{seen}<span>frame {facts['frame']} · score {facts['score']:.2f}</span>"
            f"<span>{ident}</span></figcaption></figure>")


def _sheet_html(sheet: Sheet) -> str:
    strips = []
    for label, clips, total, kept in (("kept", sheet.kept, sheet.kept_total, True),
                                      ("rejected", sheet.rejected, sheet.rejected_total, False)):
        if clips:
            figures = "".join(_figure(c, kept) for c in clips)
            strips.append(f'<div class="strip {label}"><div class="label">{label}<br>{len(clips)} of {total}</div>'
                          f"{figures}</div>")
    search = html.escape(f"{sheet.class_index} {sheet.wnid} {sheet.name}".lower(), quote=True)
    return (f'<section class="sheet" id="{html.escape(sheet.wnid)}" data-filter="{search}">'
            f"<h3>{sheet.class_index} {html.escape(sheet.wnid)} {html.escape(sheet.name)}: kept {sheet.kept_total}, "
            f"rejected by the classifier {sheet.rejected_total}</h3>{''.join(strips)}</section>")


# summary.json's keys as the HTML summary words them
LABELS = {
    "classes": "classes with candidates", "classes_with_kept_clips": "classes with kept clips",
    "classes_searched": "classes searched", "classes_cap_reached": "classes that reached the cap",
    "classes_exhausted": "classes that exhausted every query",
    "classes_search_failed": "classes stopped with a failed query", "search_queries": "search queries run",
    "search_requests": "search requests (HTTP, retries included)", "search_errors": "failed queries",
    "search_retriable": "failed queries a rerun runs again", "download_errors": "permanent download failures",
    "download_retriable": "download failures a rerun retries", "search_429s": "search requests rate-limited",
    "search_retries": "search requests retried", "search_per_hour": "search requests an hour",
    "search_seconds": "seconds of search requests", "download_requests": "download requests",
    "download_429s": "download requests rate-limited", "download_retries": "download requests retried",
    "download_per_hour": "download requests an hour", "download_seconds": "seconds of downloads",
    "candidates": "candidates", "over_cap": "title matches beyond the cap", "not_videos": "channels and playlists",
    "streams": "live or upcoming streams", "retrieved": "retrieved videos (unique title matches)",
    "kept": "kept clips", "retention_pct": "retention, % of retrieved",
    "paper_retention_pct": "the paper's retention, %",
    "shards": "shards", "hours_kept": "hours kept",
}


def _html(table: pd.DataFrame, facts: dict, png: bytes, sheets: list[Sheet]) -> str:
    rates = {f"{stage}_per_hour": _rate(facts, stage) for stage in ("search", "download") if facts[f"{stage}_requests"]}
    shown = {k: rates.get(k, v) for k, v in facts.items() if k != "by_status"}
    rows = "".join(f"<tr><th>{html.escape(LABELS.get(k, k.replace('_', ' ')))}</th>"
                   f"<td>{html.escape('' if v is None else _n(v))}</td></tr>" for k, v in shown.items())
    statuses = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_n(v)}</td></tr>"
                       for k, v in facts["by_status"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>videonet retention report</title>
<style>{_asset("report.css")}</style></head><body>
<h1>videonet retention report</h1>
<p>Kept {facts['kept']} of {facts['retrieved']} retrieved videos ({facts['retention_pct']}%); the paper kept about
{PAPER_RETENTION_PCT:g}%.</p>
<h2>Summary</h2><table>{rows}</table>
<h2>Candidates by status</h2><table>{statuses}</table>
<h2>Per-class retention</h2><img alt="per-class retention" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Per-class table</h2>
<p class="note">Click a column header to sort, type to filter; a class name leads to its frames.</p>
<input id="filter" type="search" placeholder="filter: wnid, name, term" aria-label="filter classes">
<span id="shown" class="note"></span>
<div class="wide">{_class_table(table, {s.wnid for s in sheets})}</div>
<h2>Frames behind the verdicts</h2>
<p class="note">Kept (green): the first frame whose top-1 was the class, with its score. Rejected (red, a
sample): the first frame of the clip's most frequent top-1 class, named with its score. Hover a frame for
the video, its title and shard or reason; <code>videonet show DIR CLASS_OR_CLIP</code> prints the same in a
terminal.</p>
{"".join(_sheet_html(s) for s in sheets)}
<script>{_asset("report.js")}</script>
</body></html>"""


def build_report(out: str) -> dict:
    """(Re)write ``report/`` from the tables on disk and return the summary."""
    searches = read_table(out, SEARCH, SEARCH_SCHEMA)
    audit, metadata = current_rows(read_audit(out, REPORT_COLUMNS), searches), read_metadata(out)
    table = retention_table(audit, searches)
    facts = summary(audit, metadata, table, read_table(out, REQUESTS, REQUESTS_SCHEMA))
    facts["unfinished_run"] = unfinished_run(out)  # a killed run's figures are partial: say so
    parquet = io.BytesIO()
    table.to_parquet(parquet, index=False)
    write_atomic(join(out, REPORT, "retention.parquet"), parquet.getvalue())
    write_atomic(join(out, REPORT, "retention.csv"), table.to_csv(index=False).encode())
    write_atomic(join(out, REPORT, "summary.json"), json.dumps(facts, indent=2, allow_nan=False).encode())
    png = _plot_png(table)
    write_atomic(join(out, REPORT, "retention.png"), png)
    sheets = contact_sheets(out, audit, metadata)
    write_atomic(join(out, REPORT, "report.html"), _html(table, facts, png, sheets).encode())
    return facts


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _rate(facts: dict, stage: str) -> str:
    """The effective rate, or why there is none (too short a span for a rate to mean anything)."""
    seconds = facts[f"{stage}_seconds"]
    if facts[f"{stage}_per_hour"] is None or seconds < MIN_RATE_SPAN_S:
        return f"no rate: {seconds:g} s of requests is too short a span for one"
    span = f"{seconds / 60:.1f} minutes" if seconds < 7200 else f"{seconds / 3600:.1f} hours"
    return f"{facts[f'{stage}_per_hour']:,.0f} an hour over {span} of requests"


def format_summary(facts: dict) -> str:
    """The one-screen summary printed at the end of a run and by ``videonet report``: sentences and
    labelled figures (summary.json keeps the raw keys)."""
    apart = (KEPT, OVER_CAP, SEARCH_ERROR, SEARCH_RETRIABLE, NOT_A_VIDEO, LIVE_STREAM, UPCOMING_STREAM)
    lines = [
        *([f"Incomplete: run {facts['unfinished_run']} started and never finished, so these figures are partial; "
           "rerun the same command to resume."] if facts.get("unfinished_run") else []),
        f"Search: {_n(facts['classes_searched'])} classes searched with {_n(facts['search_queries'])} queries and "
        f"{_n(facts['search_requests'])} requests; {_n(facts['classes_cap_reached'])} reached the cap "
        f"(--per-class), {_n(facts['classes_exhausted'])} exhausted every query, "
        f"{_n(facts['classes_search_failed'])} stopped with a failed query.",
        f"Failed queries: {_n(facts['search_errors'])} (not candidates; {_n(facts['search_retriable'])} retriable, "
        f"which a rerun runs again).",
        *(f"{stage.title()} requests: {_n(facts[f'{stage}_requests'])} ({_n(facts[f'{stage}_429s'])} rate-limited, "
          f"{_n(facts[f'{stage}_retries'])} retried); {_rate(facts, stage)}."
          for stage in ("search", "download") if facts[f"{stage}_requests"]),
        f"Download failures: {_n(facts['download_errors'])} permanent, {_n(facts['download_retriable'])} retriable "
        f"(a rerun retries them).",
        *([f"Gave up after --retry-runs runs failing retriably: {facts['gave_up']} ("
           + ", ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in facts["gave_up_by_reason"].items()) + ")"]
          if facts["gave_up"] else []),
        *([f"Not asked (every session able to was rate-limited; a rerun asks): {facts['download_deferred']}"]
          if facts["download_deferred"] else []),
        f"Classes: {_n(facts['classes'])} with candidates, {_n(facts['classes_with_kept_clips'])} with kept clips.",
        f"Candidates: {_n(facts['candidates'])}; retrieved videos (unique title matches): {_n(facts['retrieved'])}; "
        f"beyond the cap: {_n(facts['over_cap'])}; channels and playlists: {_n(facts['not_videos'])}; "
        f"live or upcoming streams (a later run looks again): {_n(facts['streams'])}.",
        f"Kept: {_n(facts['kept'])} clips in {_n(facts['shards'])} shards ({facts['hours_kept']} h); retention "
        f"{facts['retention_pct']}% of retrieved videos (the paper: about {PAPER_RETENTION_PCT:g}%).",
        "Dropped: " + (", ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in facts["by_status"].items()
                                  if k not in apart and v) or "none") + ".",
    ]
    return "\n".join(map(printable, lines))  # reasons quote servers' and catalogs' words: escaped for a terminal
