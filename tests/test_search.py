"""Search until the class is full: page by page over a class's terms, the stop rule, what it cost,
the title forms it matched, and how the report counts it (search errors apart from retention).

The catalogs are metadata only: every row is shorter than --min-duration, so every candidate drops
as too_short before anything is fetched (the paths need not exist) and a run is all search.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import curate_options
from videonet.curation.report import chart_classes, format_summary, retention_table, summary
from videonet.curation.rundir import SEARCH_SCHEMA
from videonet.curation.vocabulary.classes import parse_classes
from videonet.curation.rundir import AUDIT_SCHEMA, KEPT, REJECTED, SEARCH_ERROR, audit_row
from videonet.curation.rundir import SEARCH
from videonet.curation.rundir.files import read_audit, read_table

TENCH, GOLDFISH = "n01440764", "n01443537"  # terms: tench | Tinca tinca; goldfish | Carassius auratus


def _catalog(path, titles: list[str], duration: float = 5.0) -> str:
    rows = [{"id": f"v{i}", "title": t, "path": f"clips/{i}.mp4", "duration": duration} for i, t in enumerate(titles)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return f"catalog:{path}"


def _curate(out, demo_dir, **settings) -> dict:
    from videonet.curation.run import curate

    return curate(*curate_options(out, demo_dir, **settings))


def _classes(out) -> pd.DataFrame:
    return pd.read_csv(out / "report" / "retention.csv").set_index("wnid")


@pytest.mark.slow
def test_a_class_fills_to_exactly_the_cap_at_default_settings(demo_dir, tmp_path):
    """5,150 goldfish titles: the default --per-class 5000 is reached in 50 requests of the default
    page of 100, and nothing past the cap is read (the second term is never asked); 30 tench titles
    exhaust both tench terms in one request each."""
    source = _catalog(tmp_path / "crawl.csv", [f"goldfish clip {i}" for i in range(5150)]
                      + [f"tench clip {i}" for i in range(30)])
    out = tmp_path / "run"
    facts = _curate(out, demo_dir, source=source, classes=f"{TENCH},{GOLDFISH}")
    classes = _classes(out)
    goldfish, tench = classes.loc[GOLDFISH], classes.loc[TENCH]
    assert (goldfish["candidates"], goldfish["too_short"], goldfish["over_cap"]) == (5000, 5000, 0)
    assert (goldfish["search_stop"], goldfish["search_requests"]) == ("cap reached", 50)
    assert (tench["candidates"], tench["search_stop"], tench["search_requests"]) == (30, "exhausted", 2)
    assert (goldfish["stopped"], tench["stopped"]) == ("cap reached after 1 query (50 requests)",
                                                       "exhausted after 2 queries (2 requests)")
    audit = read_audit(str(out))
    assert len(audit) == 5030 and set(audit["status"]) == {"too_short"}
    assert set(audit[audit["wnid"] == GOLDFISH]["id"]) == {f"v{i}" for i in range(5000)}  # retrieval order
    assert (facts["search_requests"], facts["classes_cap_reached"], facts["classes_exhausted"]) == (52, 1, 1)
    text = format_summary(facts)
    assert ("Search: 2 classes searched with 3 queries and 52 requests; 1 reached the cap (--per-class), "
            "1 exhausted every query, 0 stopped with a failed query.") in text
    assert "Search requests: 52 (0 rate-limited, 0 retried); no rate: " in text  # a catalog answers in ms
    assert not re.search(r"[a-z]_[a-z]", text)  # words, not field names
    page = (out / "report" / "report.html").read_text()
    in_words = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "<th>search queries run</th><td>3</td>" in in_words and not re.search(r"<th>[a-z]+_[a-z_]+</th>", in_words)


@pytest.mark.slow
def test_paging_dedup_over_cap_and_resume(demo_dir, tmp_path):
    """--per-class 9 in pages of 4: 'goldfish' gives 7 videos in 2 requests, 'Carassius auratus' a
    duplicate and 2 new ones on its first page, then one over the cap on that same page; the search
    stops there. A rerun searches again and its facts win, writing no audit row twice."""
    titles = ([f"goldfish {i}" for i in range(6)] + ["goldfish, or Carassius auratus"]
              + [f"Carassius auratus {i}" for i in range(5)] + ["auratus alone"])
    source = _catalog(tmp_path / "crawl.csv", titles)
    out = tmp_path / "run"
    options = dict(source=source, classes=GOLDFISH, per_class=9, search_page=4)
    facts = _curate(out, demo_dir, **options)
    audit = read_audit(str(out)).set_index("id")
    assert sorted(audit.loc["v6", "status"]) == ["duplicate", "too_short"]  # met again by the second term
    assert audit.loc["v9", "status"] == "over_cap" and "9 candidates" in audit.loc["v9", "reason"]
    assert {f"v{i}" for i in range(9)} - {"v6"} <= set(audit[audit["status"] == "too_short"].index)
    assert not {"v10", "v11", "v12"} & set(audit.index)  # the next page was never asked for
    row = _classes(out).loc[GOLDFISH]
    assert (row["search_stop"], row["search_requests"], row["candidates"], row["retrieved"]) == ("cap reached", 3, 11, 9)
    assert (facts["over_cap"], facts["search_errors"]) == (1, 0)
    assert "beyond the cap: 1;" in format_summary(facts)

    before = read_audit(str(out))
    _curate(out, demo_dir, **{**options, "per_class": 20})  # resume with a larger cap: reads on to the end
    after = read_audit(str(out))
    assert len(read_table(str(out), SEARCH, SEARCH_SCHEMA)) == 2  # one facts row per class and run
    row = _classes(out).loc[GOLDFISH]
    assert (row["search_stop"], row["search_requests"]) == ("exhausted", 4)  # the latest run's facts
    assert len(after) == len(before) + 3 and set(after["id"]) - set(before["id"]) == {"v10", "v11", "v12"}
    assert after[after["id"] == "v12"]["status"].tolist() == ["title_mismatch"]  # 'auratus' alone
    assert after[after["id"] == "v9"]["status"].tolist() == ["over_cap"]  # audited once: resume is a join


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inflected", "strict"])
def test_plural_titles_are_candidates_with_their_form_unless_strict(demo_dir, tmp_path, mode):
    titles = ["Ostriches running at the zoo", "Baby goldfishes in my pond", "My hens laying eggs",
              "Canada geese at dawn", "Two wireless mice compared", "An ostrich up close"]
    source = _catalog(tmp_path / "crawl.csv", titles)
    out = tmp_path / "run"
    wnids = {c.name: c.wnid for c in parse_classes("8,9,1,99,673")}  # hen, ostrich, goldfish, goose, mouse
    _curate(out, demo_dir, source=source, classes=",".join(wnids.values()), title_match=mode)
    audit = read_audit(str(out))
    by_class = audit[~audit["status"].isin(["title_mismatch", "duplicate"])].set_index(["wnid", "id"])
    expected = {("ostrich", "v0"): "ostriches", ("goldfish", "v1"): "goldfishes", ("hen", "v2"): "hens",
                ("goose", "v3"): "geese", ("mouse", "v4"): "mice", ("ostrich", "v5"): "ostrich"}
    for (name, ident), form in expected.items():
        if mode == "inflected" or form == name:
            row = by_class.loc[(wnids[name], ident)]
            assert (row["status"], row["matched_form"]) == ("too_short", form)
        else:  # the catalog still returns the plural title (an engine stems); the strict rule refuses it
            row = audit[(audit["wnid"] == wnids[name]) & (audit["id"] == ident)].iloc[0]
            assert row["status"] == "title_mismatch" and pd.isna(row["matched_form"])


def _audit_frame(rows: list[dict]) -> pd.DataFrame:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA).to_pandas()


def test_retention_excludes_search_errors_and_the_latest_facts_win():
    cat = {"wnid": "n02124075", "class_index": 285, "name": "Egyptian cat", "title": "Egyptian cat"}
    audit = _audit_frame([audit_row({**cat, "id": "a"}, KEPT, "top-1"),
                          audit_row({**cat, "id": "b"}, REJECTED, "never top-1"),
                          audit_row({**cat, "id": "search:Egyptian cat"}, SEARCH_ERROR, "HTTP Error 429"),
                          audit_row({**cat, "id": "search:Egyptian kitty"}, SEARCH_ERROR, "HTTP Error 429")])
    searches = pd.DataFrame([
        {"run_id": "20250101T000000-aaaaaa", "wnid": cat["wnid"], "class_index": 285, "name": cat["name"],
         "search_stop": "exhausted", "search_queries": 2, "search_requests": 9, "search_hits": 2},
        {"run_id": "20250102T000000-bbbbbb", "wnid": cat["wnid"], "class_index": 285, "name": cat["name"],
         "search_stop": "search error", "search_queries": 2, "search_requests": 3, "search_hits": 2},
        {"run_id": "20250101T000000-cccccc", "wnid": "n01443537", "class_index": 1, "name": "goldfish",
         "search_stop": "exhausted", "search_queries": 1, "search_requests": 2, "search_hits": 0},
    ])
    table = retention_table(audit, searches).set_index("wnid")
    row = table.loc[cat["wnid"]]
    assert (row["candidates"], row["search_error"], row["retrieved"], row["retention_pct"]) == (2, 2, 2, 50.0)
    assert (row["search_stop"], row["search_requests"]) == ("search error", 3)
    assert row["stopped"] == "search error after 2 queries (3 requests)"
    assert table.loc["n01443537", "candidates"] == 0 and table.loc["n01443537", "search_stop"] == "exhausted"
    assert list(chart_classes(table.reset_index())["wnid"]) == [cat["wnid"]]  # searched in vain: no bar
    facts = summary(audit, pd.DataFrame({"shard": ["s"], "duration": [12.0]}), table.reset_index())
    assert (facts["retention_pct"], facts["search_errors"], facts["candidates"], facts["retrieved"]) == (50.0, 2, 2, 2)
    assert (facts["classes"], facts["classes_searched"], facts["classes_search_failed"]) == (1, 2, 1)
    text = format_summary(facts)
    assert "Failed queries: 2 (not candidates" in text and "retention 50.0%" in text
    assert "search error" not in text.split("Dropped:")[1]


class FlakySource:
    """A source whose results for one term fail at a given page (a rate limit, a network error)."""

    name = "flaky"

    def __init__(self, results: dict[str, list[str]], fail: tuple[str, int]):
        self.results, self.fail = results, fail

    def queries(self, term: str):
        from videonet.curation.search import Query

        return (Query(term, "plain", term),)

    def pages(self, query, size: int, site):
        titles = self.results.get(query.term, [])
        for page, start in enumerate(range(0, max(len(titles), 1), size)):
            def read(page=page, start=start):
                if (query.term, page) == self.fail:
                    raise OSError("HTTP Error 429: Too Many Requests")
                return [{"id": t, "title": t, "url": f"https://example.org/{t}"} for t in titles[start:start + size]]
            yield site.call(read)


def test_a_failed_request_ends_its_query_is_audited_and_counted():
    from videonet.curation.candidates import ClassCandidates
    from videonet.curation.search import search_class

    [goldfish] = parse_classes(GOLDFISH)
    source = FlakySource({"goldfish": [f"goldfish {i}" for i in range(5)], "Carassius auratus": ["Carassius auratus"]},
                         fail=("goldfish", 1))
    rows, facts = search_class(goldfish, source, ClassCandidates(goldfish.terms, cap=10), 2, "run")
    # page 0, the failure (a 429: retriable, a rerun searches again), the next term's query
    assert [r.get("status") for r in rows] == [None, None, "search_retriable", None]
    assert rows[2]["id"] == "search:goldfish" and "429" in rows[2]["reason"] and "'plain'" in rows[2]["reason"]
    assert (facts["search_stop"], facts["search_requests"], facts["search_hits"]) == ("search error", 3, 3)
    assert [(q["term"], q["requests"], q["hits"], q["new"], q["matched"]) for q in facts["queries"]] == [
        ("goldfish", 2, 2, 2, 2), ("Carassius auratus", 1, 1, 1, 1)]
    rows, facts = search_class(goldfish, source, ClassCandidates(goldfish.terms, cap=2), 2, "run")
    assert len(rows) == 2 and (facts["search_stop"], facts["search_requests"], facts["search_queries"]) == (
        "cap reached", 1, 1)


@pytest.mark.slow
def test_a_video_kept_by_an_earlier_run_under_another_class_is_not_fetched_again(demo_dir, tmp_path):
    """Run 1 keeps the cat clip under Egyptian cat; run 2, in the same run directory, meets the same
    file as a tabby candidate: audited kept_for_other_class naming the class and the run that kept
    it, never judged (no frame classified); the clip stays once in the metadata."""
    from videonet.curation.rundir.files import read_metadata

    clip = str(demo_dir / "chelsea_cat.mp4")
    out = tmp_path / "run"
    first = tmp_path / "first.csv"
    pd.DataFrame([{"id": "a", "title": "Egyptian cat at home", "path": clip, "duration": 12.0}]).to_csv(first, index=False)
    _curate(out, demo_dir, source=f"catalog:{first}", classes="n02124075")
    [kept] = read_metadata(str(out)).to_dict("records")
    assert kept["wnid"] == "n02124075"
    second = tmp_path / "second.csv"
    pd.DataFrame([{"id": "b", "title": "tabby cat napping", "path": clip, "duration": 12.0}]).to_csv(second, index=False)
    facts = _curate(out, demo_dir, source=f"catalog:{second}", classes="n02123045")
    audit = read_audit(str(out))
    [row] = audit[(audit["id"] == "b") & (audit["status"] != "duplicate")].to_dict("records")  # 'tabby cat' meets it again
    assert row["status"] == "kept_for_other_class" and pd.isna(row["frames_classified"])
    assert f"n02124075 (Egyptian cat) by run {kept['run_id']}" in row["reason"]
    assert len(read_metadata(str(out))) == 1 and facts["by_status"]["kept_for_other_class"] == 1
