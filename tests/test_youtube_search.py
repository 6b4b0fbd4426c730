"""YouTube search as YouTube answers it: the query plan, only single videos, one video one candidate,
truthful request counts, continuation after a failure, against the offline double (tests/ytdouble):
yt-dlp's own youtube:search_url extractor and request machinery run for real over loopback HTTP.

The fast tests call the search stage itself; the ``slow`` ones run whole curations.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from conftest import curate_options
from ytdouble.search import serve
from ytdouble.world import CHANNEL, LIVE, PLAYLIST, UPCOMING, Filters, World
from videonet.curation.candidates import ClassCandidates, kept_elsewhere, video_identity, youtube_video_id
from videonet.curation.client import ClientSettings, session
from videonet.curation.search import search_class
from videonet.curation.search.youtube import QUERY_PLAN, YoutubeSource, plan_queries
from videonet.curation.vocabulary.classes import parse_classes
from videonet.curation.rundir import LIVE_STREAM, NOT_A_VIDEO, OTHER_CLASS, UPCOMING_STREAM, settles

STINGRAY, MAGPIE = "n01498041", "n01582220"  # classes with one query term each
QUICK = ClientSettings(retry_attempts=2, retry_backoff=0.0)


def _search(wnid: str, cap: int):
    """One class searched on the running double: (rows, facts, the session that made the requests)."""
    [cls] = parse_classes(wnid)
    site = session("search", QUICK)
    rows, facts = search_class(cls, YoutubeSource(), ClassCandidates(cls.terms, cap), 100, "run", site)
    return rows, facts, site


def _fetched(rows: list[dict]) -> list[dict]:
    """The rows that go on towards the fetch stage: candidates, not audit rows."""
    return [r for r in rows if "status" not in r]


# -- the plan --------------------------------------------------------------------------------------

def test_the_query_plan_is_one_table_whose_filters_say_what_its_words_say():
    """Every sp of the table, decoded by the double (independently of the table), is the filter its
    words name; the plain query comes first and every other one is restricted to videos."""
    queries = plan_queries("manta ray")
    assert len(queries) == len(QUERY_PLAN) == len({q.key for q in queries}) == 52
    assert queries[0].key == "https://www.youtube.com/results?search_query=manta+ray" and queries[0].label == "no filter"
    sorts = {"by rating": 1, "by upload date": 2, "by view count": 3}
    windows = {"in the last hour": 1, "today": 2, "this week": 3, "this month": 4, "this year": 5}
    lengths = {"under 4 minutes": 1, "over 20 minutes": 2, "4-20 minutes": 3}
    for words, sp in QUERY_PLAN[1:]:
        f = Filters.of(sp)
        assert f.type == 1, words
        assert f.sort == next((v for k, v in sorts.items() if k in words), 0), words
        assert f.upload == next((v for k, v in windows.items() if f"uploaded {k}" in words), 0), words
        assert f.duration == next((v for k, v in lengths.items() if k in words), 0), words


def test_one_video_whatever_its_url_form():
    forms = ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://www.youtube.com/shorts/dQw4w9WgXcQ",
             "https://youtu.be/dQw4w9WgXcQ", "https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=10"]
    assert {youtube_video_id(u) for u in forms} == {"dQw4w9WgXcQ"}
    assert {video_identity({"id": str(i), "url": u}) for i, u in enumerate(forms)} == {"youtube:dQw4w9WgXcQ"}
    for other in ("https://www.youtube.com/channel/UCuAXFkgsw1L7xaCfnd5JJOw",
                  "https://www.youtube.com/playlist?list=PLFgquLnL59alCl_2TQvOiD5Vgm1hCaGSI",
                  "https://www.youtube.com/@SomeHandle", "http://127.0.0.1:8000/cat.mp4"):
        assert youtube_video_id(other) is None
    # a catalog listing one video under two URL forms (two row ids) gives one candidate
    [cls] = parse_classes(STINGRAY)
    candidates = ClassCandidates(cls.terms, cap=10)
    rows = [candidates.admit({"id": f"row{i}", "title": "stingray feeding", "url": u, "wnid": STINGRAY,
                              "name": "stingray"}) for i, u in enumerate(forms)]
    assert [r.get("status") for r in rows] == [None, "duplicate", "duplicate", "duplicate"]


def test_a_video_kept_under_another_class_by_an_earlier_run_is_not_fetched_again():
    kept = [{"wnid": "n01496331", "name": "electric ray", "run_id": "r1", "id": "x",
             "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "path": None}]
    shorts = {"id": "dQw4w9WgXcQ", "url": "https://www.youtube.com/shorts/dQw4w9WgXcQ", "wnid": STINGRAY,
              "name": "stingray", "title": "ray"}
    assert video_identity(shorts) == video_identity(kept[0])
    row = kept_elsewhere(shorts, kept)
    assert row["status"] == OTHER_CLASS and "n01496331 (electric ray) by run r1" in row["reason"]
    assert kept_elsewhere({**shorts, "wnid": "n01496331"}, kept) == {**shorts, "wnid": "n01496331"}  # its own class
    assert not settles(LIVE_STREAM) and not settles(UPCOMING_STREAM) and settles(NOT_A_VIDEO)


# -- search against the double ---------------------------------------------------------------------

def test_a_deep_class_runs_queries_until_exactly_its_cap_and_no_further():
    """A pool deeper than a query: the first query stops at the depth cap (100 here), so the class
    needs several; it stops at exactly the cap, and every query it ran but the last left it short."""
    world = World(pools={"stingray": 5000}, depth=100)
    with serve(world) as double:
        rows, facts, site = _search(STINGRAY, cap=300)
    candidates = _fetched(rows)
    assert len(candidates) == len({c["id"] for c in candidates}) == 300
    assert facts["search_stop"] == "cap reached"
    matched = [q["matched"] for q in facts["queries"]]
    assert sum(matched) == 300 and sum(matched[:-1]) < 300 and facts["search_queries"] == len(matched) > 3
    assert [q["query"] for q in facts["queries"]] == [words for words, _ in QUERY_PLAN[:len(matched)]]
    # truthful requests: what the double served, config pages included, per query and in all
    assert facts["search_requests"] == site.tally.requests == len(double.log) == sum(q["requests"] for q in facts["queries"])
    first = facts["queries"][0]
    assert (first["hits"], first["new"], first["requests"]) == (100, 100, 1 + 100 // world.page)
    pages = Counter((s.term, s.sp, s.offset) for s in double.searches())
    assert set(pages.values()) == {1}  # no query run twice, no page read twice
    # twice the cap costs more queries, and starts with the same ones
    with serve(world):
        _, bigger, _ = _search(STINGRAY, cap=600)
    assert bigger["search_queries"] > facts["search_queries"]


def test_channels_playlists_and_streams_never_become_candidates():
    world = World(pools={"stingray": 400}, depth=400, mix={CHANNEL: 0.1, PLAYLIST: 0.1, LIVE: 0.05, UPCOMING: 0.05})
    with serve(world):
        rows, facts, _ = _search(STINGRAY, cap=5000)
    kinds = {item.id: item.kind for item in world.pool("stingray")}
    met = {r["id"] for r in rows}
    for kind, statuses in ((CHANNEL, {NOT_A_VIDEO}), (PLAYLIST, {NOT_A_VIDEO}), (LIVE, {LIVE_STREAM, "title_mismatch"}),
                           (UPCOMING, {UPCOMING_STREAM, "title_mismatch"})):
        ids = {i for i, k in kinds.items() if k == kind} & met
        assert len(ids) > 5, kind  # the plain query's results hold them all
        assert {r["status"] for r in rows if r["id"] in ids} - {"duplicate"} <= statuses, kind
    assert not {c["id"] for c in _fetched(rows)} & {i for i, k in kinds.items() if k in (CHANNEL, PLAYLIST, LIVE, UPCOMING)}
    assert {c["url"].split("?")[0] for c in _fetched(rows)} == {"https://www.youtube.com/watch"}  # Shorts too
    assert facts["search_stop"] == "exhausted" and facts["search_queries"] == len(QUERY_PLAN)


def test_a_shallow_class_is_exhausted_after_every_query_once():
    world = World(pools={"magpie": 60}, depth=600)
    with serve(world) as double:
        rows, facts, _ = _search(MAGPIE, cap=5000)
    assert facts["search_stop"] == "exhausted" and facts["search_queries"] == len(QUERY_PLAN)
    assert len(_fetched(rows)) == len({c["id"] for c in _fetched(rows)}) < 60
    first_pages = Counter((s.term, s.sp) for s in double.searches() if s.offset == 0)
    assert len(first_pages) == len(QUERY_PLAN) and set(first_pages.values()) == {1}
    assert sum(q["new"] for q in facts["queries"]) == 60  # every item of the pool met once in all
    assert facts["queries"][0]["new"] == 60 and {q["new"] for q in facts["queries"][1:]} == {0}


def test_a_rate_limited_request_is_sent_again_where_the_query_stopped():
    """A 429 on the third results page: that request is sent again (same continuation), the pages
    before it are not read again, and the retry is counted."""
    world = World(pools={"stingray": 200}, depth=100)
    with serve(world) as double:
        double.fail(offset=40, status=429)
        rows, facts, site = _search(STINGRAY, cap=50)
    plain = [s for s in double.searches() if s.sp is None]
    # the class fills on the page at 60: the rest is never asked for
    assert [s.offset for s in plain] == [0, 20, 40, 40, 60] and [s.status for s in plain][2:4] == [429, 200]
    assert len(double.searches()) == 5 and facts["search_queries"] == 1
    assert (site.tally.retries, site.tally.rate_limited) == (1, 1) and facts["search_requests"] == 1 + 5
    assert facts["search_stop"] == "cap reached" and not [r for r in rows if r.get("status", "").startswith("search")]


def test_incomplete_data_is_asked_again_then_an_error_not_a_silent_end():
    """A 200 without results (yt-dlp's "Incomplete data received"): yt-dlp sends the same continuation
    again (its extractor retries); still incomplete after them, the query fails, audited as
    retriable, instead of ending as if the results were all read; the next query runs."""
    world = World(pools={"stingray": 40}, depth=100)
    with serve(world) as double:
        double.fail(offset=20, incomplete=True, times=2)
        rows, facts, _ = _search(STINGRAY, cap=5000)
    plain = [s.offset for s in double.searches() if s.sp is None]
    assert plain == [0, 20, 20, 20]  # resumed at its continuation, nothing read twice
    assert facts["queries"][0]["hits"] == 40
    with serve(world) as double:
        double.fail(offset=20, incomplete=True, times=4)  # yt-dlp's first try and its 3 extractor retries
        rows, facts, _ = _search(STINGRAY, cap=5000)
    assert [s.offset for s in double.searches() if s.sp is None] == [0, 20, 20, 20, 20]
    [error] = [r for r in rows if r.get("status", "").startswith("search")]
    assert error["status"] == "search_retriable" and "Incomplete data received" in error["reason"]
    assert "'no filter'" in error["reason"] and facts["queries"][0]["hits"] == 20
    assert facts["search_stop"] == "search error" and facts["search_queries"] == len(QUERY_PLAN)


# -- whole curations --------------------------------------------------------------------------------

@pytest.mark.slow
def test_curate_fills_a_deep_class_to_exactly_5000_and_says_why_each_class_stopped(demo_dir, tmp_path):
    """Default settings (--per-class 5000, YouTube's depth of 600 a query): the one-term class with a
    deep pool reaches exactly 5,000; the shallow one is exhausted after every query. Every clip is
    shorter than --min-duration here, so the run is all search and nothing is fetched."""
    from videonet.curation.run import curate
    from videonet.curation.rundir.files import read_audit

    world = World(pools={"stingray": 30000, "magpie": 90}, depth=600, shelf_every=0)  # every length known
    out = tmp_path / "run"
    with serve(world) as double:
        facts = curate(*curate_options(out, demo_dir, source="youtube", classes=f"{STINGRAY},{MAGPIE}",
                                       min_duration=1e5, retry_backoff=0.0))
    table = pd.read_csv(out / "report" / "retention.csv").set_index("wnid")
    deep, shallow = table.loc[STINGRAY], table.loc[MAGPIE]
    assert (deep["retrieved"], deep["too_short"], deep["search_stop"]) == (5000, 5000, "cap reached")
    assert (shallow["search_stop"], shallow["search_queries"]) == ("exhausted", len(QUERY_PLAN))
    assert shallow["stopped"].startswith(f"exhausted after {len(QUERY_PLAN)} queries (")
    assert deep["stopped"] == f"cap reached after {deep['search_queries']} queries ({deep['search_requests']:,} requests)"
    assert 5 < deep["search_queries"] < len(QUERY_PLAN)
    assert deep["search_requests"] + shallow["search_requests"] == facts["search_requests"] == len(double.log)
    assert set(Counter((s.term, s.sp, s.offset) for s in double.searches()).values()) == {1}  # nothing asked twice
    audit = read_audit(str(out))
    kinds = {i.id: i.kind for term in ("stingray", "magpie") for i in world.pool(term)}
    streams = audit[audit["id"].map(kinds).isin([CHANNEL, PLAYLIST, LIVE, UPCOMING])]
    assert len(streams) and set(streams["status"]) <= {NOT_A_VIDEO, LIVE_STREAM, UPCOMING_STREAM, "title_mismatch",
                                                        "duplicate"}
    assert set(audit["status"]) - {"title_mismatch", "duplicate", NOT_A_VIDEO, LIVE_STREAM, UPCOMING_STREAM} == {
        "too_short"}  # nothing reached the fetch stage
    from videonet.curation.report import format_summary
    from videonet.curation.report.show import show

    assert f"search: exhausted after {len(QUERY_PLAN)} queries (" in show(str(out), MAGPIE)

    text = format_summary(facts)
    assert f"2 classes searched with {facts['search_queries']} queries and {facts['search_requests']:,} requests" in text


def test_a_stream_met_by_two_queries_has_one_row_saying_what_it_is():
    [cls] = parse_classes(STINGRAY)
    candidates = ClassCandidates(cls.terms, cap=10)
    live = {"id": "dQw4w9WgXcQ", "title": "stingray live cam", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "kind": "live", "wnid": STINGRAY, "name": "stingray"}
    channel = {**live, "id": "UCuAXFkgsw1L7xaCfnd5JJOw", "kind": "channel", "title": "Stingray World",
               "url": "https://www.youtube.com/channel/UCuAXFkgsw1L7xaCfnd5JJOw"}
    assert [candidates.admit(r)["status"] for r in (live, live, channel)] == [LIVE_STREAM, "duplicate", NOT_A_VIDEO]
    assert candidates.admitted == 0


@pytest.mark.parametrize("entry, kind", [
    ({"url": "https://www.youtube.com/shorts/dQw4w9WgXcQ", "ie_key": "Youtube"}, "video"),
    ({"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "live_status": "was_live"}, "video"),  # a recording
    ({"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "live_status": "is_live"}, "live"),
    ({"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "live_status": "post_live"}, "live"),
    ({"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "live_status": "is_upcoming"}, "upcoming"),
    ({"url": "https://www.youtube.com/channel/UCuAXFkgsw1L7xaCfnd5JJOw", "ie_key": "YoutubeTab"}, "channel"),
    ({"url": "https://www.youtube.com/@SomeHandle", "ie_key": "YoutubeTab"}, "channel"),
    ({"url": "https://www.youtube.com/playlist?list=PLFgquLnL59alCl_2TQvOiD5Vgm1hCaGSI"}, "playlist"),
    ({"url": "https://www.youtube.com/hashtag/stingray", "ie_key": "YoutubeTab"}, "page"),
    ({"url": "http://127.0.0.1:8000/cat.mp4", "ie_key": "Generic"}, "video"),
])
def test_what_a_flat_entry_is(entry, kind):
    from videonet.curation.search.youtube import entry_kind

    assert entry_kind(entry) == kind
