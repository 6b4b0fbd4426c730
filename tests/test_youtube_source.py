"""The yt-dlp code paths (search and download) for real, against a local HTTP stand-in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import curate_options
from localserver import serve
from videonet.curation.judge.fetch import FETCH_PREFIX, FetchError, FetchSettings, local_video, sweep_stale_downloads
from videonet.curation.rundir.files import read_audit, read_metadata
from videonet.curation.client import ClientSettings, session
from videonet.curation.search.youtube import YoutubeSource


SEARCHES: list[str] = []  # the feed requests the server answered


@pytest.fixture(scope="module")
def server(demo_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    shutil.copy(demo_dir / "chelsea_cat.mp4", root / "cat.mp4")
    catalog = [
        {"title": "Chelsea the Egyptian cat at home", "file": "cat.mp4", "duration": "12"},
        {"title": "Egyptian cat, the lost upload", "file": "status/404", "duration": "30"},
        {"title": "Egyptian cat in five seconds", "file": "cat.mp4?short", "duration": "4"},
        {"title": "Funny cat compilation", "file": "cat.mp4?other", "duration": "12"},
    ]
    base, stop = serve(root, catalog, SEARCHES)
    yield base
    stop()


def _feed_hits(server, term: str, site=None) -> list[dict]:
    source = YoutubeSource(template=server + "/search.rss?q={term}")
    [query] = source.queries(term)
    site = site or session("search", ClientSettings(retry_attempts=1))
    return [hit for page in source.pages(query, 10, site) for hit in page]


def test_search_through_yt_dlp(server):
    titles = {h["title"]: h for h in _feed_hits(server, "Egyptian cat")}
    assert "Chelsea the Egyptian cat at home" in titles
    assert titles["Chelsea the Egyptian cat at home"]["duration"] == 12.0


def test_a_template_query_is_one_lazy_extraction_counted_by_its_requests(server):
    """The feed's 4 results come from one request, which the session counts (yt-dlp's urlopen goes
    through it): the count is what reached the server, not pages of hits."""
    del SEARCHES[:]
    site = session("search", ClientSettings(retry_attempts=1))
    hits = _feed_hits(server, "cat", site)
    assert len({h["id"] for h in hits}) == 4 and {h["kind"] for h in hits} == {"video"}
    assert SEARCHES == ["cat"] and site.tally.requests == 1


@pytest.mark.slow
def test_curate_with_the_youtube_source_stops_when_the_class_is_full(server, demo_dir, tmp_path):
    """--per-class 2: the two first matching videos fill the class from the feed's one request and the
    rest of the results is never admitted (every clip is too short here, so nothing is fetched)."""
    from videonet.curation.run import curate

    out = tmp_path / "yt-pages"
    facts = curate(*curate_options(out, demo_dir, source="youtube", classes="n02124075", per_class=2,
                                  search_page=1, min_duration=1000, search_template=server + "/search.rss?q={term}"))
    audit = read_audit(str(out))
    assert sorted(audit["title"]) == ["Chelsea the Egyptian cat at home", "Egyptian cat, the lost upload"]
    assert set(audit["status"]) == {"too_short"} and set(audit["matched_form"]) == {"egyptian cat"}
    assert (facts["search_requests"], facts["search_queries"], facts["classes_cap_reached"]) == (1, 1, 1)


def test_download_through_yt_dlp_and_cleanup(server):
    with local_video(server + "/cat.mp4", None) as path:
        with open(path, "rb") as fh:
            assert fh.read(12)[4:8] == b"ftyp"
    assert not shutil.os.path.exists(path)  # the temporary download is gone


def test_a_killed_download_is_swept_by_the_next_run(server, tmp_path):
    """SIGKILL skips the ``finally`` that removes a download; the next run's sweep removes it instead."""
    holder = ("import sys, time\nfrom videonet.curation.judge.fetch import local_video\n"
              "with local_video(sys.argv[1], None) as path:\n    print(path, flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, server + "/cat.mp4"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    video = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = os.path.dirname(video)
    assert os.path.getsize(video) > 1000 and os.path.dirname(left) == str(tmp_path)  # the kill left it behind
    live = tmp_path / f"{FETCH_PREFIX}{os.uname().nodename}-{os.getpid()}-abc"  # this process: alive
    other_host = tmp_path / f"{FETCH_PREFIX}elsewhere-{proc.pid}-abc"  # same dead pid, another machine
    for keep in (live, other_host):
        keep.mkdir()
    assert sweep_stale_downloads(str(tmp_path)) == [os.path.basename(left)]
    assert not os.path.exists(left) and live.exists() and other_host.exists()


@pytest.mark.parametrize("suffix, needle", [("/status/404", "404"), ("/status/500", "500"), ("/nothing.mp4", "404")])
def test_failed_downloads_are_fetch_errors(server, suffix, needle):
    with pytest.raises(FetchError, match=needle):
        with local_video(server + suffix, None):
            pass


def test_download_size_limit(server):
    with pytest.raises(FetchError, match="larger than|max|nothing downloaded|File is larger"):
        with local_video(server + "/cat.mp4", None, FetchSettings(max_download_mb=1000 / 2**20)):
            pass


@pytest.mark.slow
def test_curate_with_the_youtube_source(server, demo_dir, tmp_path):
    from videonet.curation.run import curate

    out = tmp_path / "yt"
    facts = curate(*curate_options(out, demo_dir, source="youtube", classes="n02124075",
                                  search_template=server + "/search.rss?q={term}"))
    audit = read_audit(str(out)).set_index("title")
    assert audit.loc["Chelsea the Egyptian cat at home", "status"] == "kept"
    assert audit.loc["Egyptian cat, the lost upload", "status"] == "download_error"
    assert "404" in audit.loc["Egyptian cat, the lost upload", "reason"]
    assert audit.loc["Egyptian cat in five seconds", "status"] == "too_short"
    assert audit.loc["Funny cat compilation", "status"] == "title_mismatch"
    metadata = read_metadata(str(out))
    assert facts["kept"] == len(metadata) == 1
    assert metadata.iloc[0]["url"].startswith(server)
    assert not (out / "_work" / "staging").exists()  # staged downloads were moved into shards
