"""Downloading at scale (#17): failure classes, retries that lose nothing, the rate limit, prefixes.

Through yt-dlp's real code path against tests/flakyserver.py (429 + Retry-After, 503, dropped
connections, stalls, 404), with tiny backoffs so that the whole file stays well under a minute or two.
"""

from __future__ import annotations

import os
import shutil

import pytest

import flakyserver
from conftest import curate_options
from videonet.curation.client import (
    ClientSettings, Failure, backoff_seconds, classify, failure_of, parse_pairs, read_sessions, retry_after_seconds,
    session, ydl_params,
)
from videonet.curation.judge.fetch import FetchError, FetchSettings, fetched_video
from videonet.curation.write.rundir import final_rows, read_audit, read_metadata

CAT = "n02124075"
FAST = dict(retry_backoff=0.05, retry_max_wait=1.5)
LIMITS = FetchSettings(socket_timeout=1.0, retries=0)


@pytest.fixture(scope="module")
def web(demo_dir, tmp_path_factory):
    www = tmp_path_factory.mktemp("flaky")
    shutil.copy(demo_dir / "chelsea_cat.mp4", www / "clip.mp4")
    catalog = [{"title": f"Egyptian cat {name}", "file": path, "duration": "12"} for name, path in [
        ("rate limited twice", "flaky/429-2/a.mp4"), ("dropped once", "flaky/drop-1/b.mp4"),
        ("stalled once", "flaky/stall-1/c.mp4"), ("unavailable five times", "flaky/503-5/d.mp4"),
        ("removed", "gone/e.mp4")]]
    base, log, stop = flakyserver.serve(www, www / "clip.mp4", catalog)
    yield base, log
    stop()


@pytest.mark.parametrize("reason, status, retriable", [
    ("HTTP Error 429: Too Many Requests", None, True),
    ("Unable to download webpage", 503, True),
    ("Unable to download webpage", 404, False),
    ("Unable to download webpage", 410, False),
    ("Sign in to confirm you're not a bot. Use --cookies-from-browser", None, True),
    ("Sign in to confirm your age. This video may be inappropriate for some users.", None, False),
    ("Private video. Sign in if you've been granted access to this video", None, False),
    ("Video unavailable. This video has been removed by the uploader", None, False),
    ("The uploader has not made this video available in your country", None, False),
    ("Unsupported URL: https://example.org/page", None, False),
    ("Read timed out.", None, True),
    ("[Errno 104] Connection reset by peer", None, True),
    ("download took longer than 300 s (stopped)", None, True),
    ("download exceeded the size limit of 1024 bytes", None, False),
    ("KeyError: 'formats'", None, False),  # an extractor bug: asking again does not fix it
])
def test_failures_are_classified(reason, status, retriable):
    assert classify(reason, status) is retriable


def test_backoff_doubles_honours_retry_after_and_is_bounded():
    assert [backoff_seconds(a, 2.0, 60.0) for a in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_seconds(0, 2.0, 60.0, retry_after=30) == 30.0
    assert backoff_seconds(0, 2.0, 60.0, retry_after=86400) == 60.0  # a hostile Retry-After cannot park a worker
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None


def test_failure_of_finds_the_status_and_retry_after_along_the_chain():
    class Response:
        headers = {"Retry-After": "7"}

    class HTTPError(Exception):
        status, response = 429, Response()

    class ExtractorError(Exception):
        def __init__(self, cause):
            super().__init__("Unable to download webpage: HTTP Error 429: Too Many Requests")
            self.cause = cause

    class DownloadError(Exception):
        def __init__(self, inner):
            super().__init__("ERROR: " + str(inner))
            self.exc_info = (type(inner), inner, None)

    failure = failure_of(DownloadError(ExtractorError(HTTPError())))
    assert failure == Failure("Unable to download webpage: HTTP Error 429: Too Many Requests", True, 429, 7.0,
                              "too_many_requests", True)


def test_ytdlp_params_from_the_options(tmp_path):
    options = tmp_path / "ytdlp.yaml"
    options.write_text("ratelimit: 500000\nformat: worst\n")
    settings = ClientSettings(cookies="/secrets/cookies.txt", proxy="http://a:1, http://b:2", player_client="web,mweb",
                              sleep_interval=2, ytdlp_options=str(options),
                              ytdlp=("format=best", "retries=3", 'extractor_args={"youtube": {"po_token": ["web.gvs+T"]}}'))
    first, second = read_sessions(settings)
    assert (first.name, second.name, second.proxy, second.cookies) == ("proxy1", "proxy2", "http://b:2",
                                                                       "/secrets/cookies.txt")
    params = ydl_params(settings, second)
    # extractor_args from --ytdlp is merged into --player-client's, not a replacement of it
    assert params == {"cookiefile": "/secrets/cookies.txt", "proxy": "http://b:2", "sleep_interval": 2,
                      "extractor_args": {"youtube": {"player_client": ["web", "mweb"], "po_token": ["web.gvs+T"]}},
                      "ratelimit": 500000, "format": "best", "retries": 3}
    assert parse_pairs(("http_headers={\"X\": \"1\"}",)) == {"http_headers": {"X": "1"}}


def test_retriable_downloads_are_retried_honouring_retry_after_and_permanent_ones_are_not(web, demo_dir):
    base, log = web
    site = session("download", ClientSettings(retry_attempts=3, **FAST))
    for name in ("429-2/x.mp4", "drop-1/x.mp4", "stall-1/x.mp4", "503-2/x.mp4"):
        with fetched_video(f"{base}/flaky/{name}", None, LIMITS, site) as got:
            assert os.path.getsize(got.path) == (demo_dir / "chelsea_cat.mp4").stat().st_size
    retried = log.times("/flaky/429-2/x.mp4")
    assert retried[2] - retried[1] >= 1.0  # the second try waited for Retry-After: 1, not the 0.05 s backoff
    with pytest.raises(FetchError) as gone:
        with fetched_video(f"{base}/gone/x.mp4", None, LIMITS, site):
            pass
    assert not gone.value.failure.retriable and gone.value.failure.status == 404
    assert log.count("/gone/x.mp4") == 1  # never retried
    with pytest.raises(FetchError) as down:
        with fetched_video(f"{base}/flaky/503-9/x.mp4", None, LIMITS, site):
            pass
    assert down.value.failure.retriable and log.count("/flaky/503-9/x.mp4") == 3  # the bound: 3 tries
    assert site.tally.rate_limited == 2 and site.tally.retries >= 6


def test_a_prefix_is_enough_to_judge_and_smaller(web):
    if shutil.which("ffmpeg") is None:
        pytest.skip("yt-dlp's download ranges need ffmpeg (install.sh installs it)")
    from videonet.curation.judge.frames import probe

    base, _ = web
    with fetched_video(f"{base}/clip.mp4", None, LIMITS, prefix=3.0) as part, \
            fetched_video(f"{base}/clip.mp4", None, LIMITS) as whole:
        assert part.prefix and os.path.getsize(part.path) < 0.6 * os.path.getsize(whole.path)
        assert 2.9 <= probe(part.path).duration < 4.0 and probe(whole.path).duration == 12.0


@pytest.mark.slow
def test_flaky_urls_end_kept_after_one_rerun_and_permanent_ones_are_asked_once(web, demo_dir, tmp_path):
    """Two tries per run. Run 1: the dropped and the stalled clip are kept after one retry; the clip
    rate-limited twice and the one unavailable five times are audited retriable; the 404 is permanent.
    Run 2 keeps the rate-limited clip, run 3 the other. The 404 is never asked again, nothing is
    duplicated, and every candidate counts once, with its final status."""
    from videonet.curation.report import build_report
    from videonet.curation.run import curate

    base, log = web
    out = tmp_path / "run"

    def run(attempts: int) -> dict:
        return curate(*curate_options(out, demo_dir, source="youtube", classes=CAT, per_class=10,
                                      search_template=base + "/search.rss?q={term}", retry_attempts=attempts,
                                      socket_timeout=1.0, retries=0, **FAST))

    first = run(2)
    status = final_rows(read_audit(str(out))).set_index("title")["status"]
    assert status["Egyptian cat dropped once"] == status["Egyptian cat stalled once"] == "kept"
    assert status["Egyptian cat rate limited twice"] == status["Egyptian cat unavailable five times"] == \
        "download_retriable"
    assert status["Egyptian cat removed"] == "download_error"
    assert (first["kept"], first["download_retriable"], first["download_errors"]) == (2, 2, 1)
    assert first["download_429s"] == 2 and first["download_requests"] >= 9 and first["download_per_hour"]

    second = run(2)  # the 429 clip: its counter is past 2, kept; the 503 clip: tries 3 and 4 fail
    third = run(2)  # tries 5 and 6: the sixth request answers
    audit = read_audit(str(out))
    status = final_rows(audit).set_index("title")["status"]
    assert set(status.drop("Egyptian cat removed")) == {"kept"} and status["Egyptian cat removed"] == "download_error"
    assert (second["kept"], third["kept"], third["download_retriable"]) == (3, 4, 0)
    assert log.count("/gone/e.mp4") == 1  # permanent: asked once across three runs
    metadata = read_metadata(str(out))
    assert len(metadata) == metadata["key"].nunique() == 4  # nothing duplicated
    assert (audit["status"] == "kept").sum() == 4  # each kept once; the retriable rows stay as history
    assert (audit["status"] == "download_retriable").sum() == 3
    assert build_report(str(out))["kept"] == 4 and third["by_status"]["kept"] == 4
