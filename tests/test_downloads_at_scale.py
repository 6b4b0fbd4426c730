"""Downloading at scale: failure classes from yt-dlp's own messages, retries that lose nothing, sessions
paced across the fleet, the circuit breaker, secrets, formats, prefixes.

Through yt-dlp's real code path against tests/flakyserver.py (429 + Retry-After, 503, dropped
connections, stalls, 404) and the YouTube double (tests/ytdouble/download.py: YouTube's answers as
yt-dlp raises them, a rate limit per session), with tiny backoffs and time scaled down (a session's
hour is seconds) so that each test takes seconds; the whole-pipeline ones are marked slow.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

import flakyserver
from conftest import curate_options
from videonet.curation.client import (
    ClientSettings, Failure, backoff_seconds, classify, failure_of, parse_pairs, read_sessions, retry_after_seconds,
    session, ydl_params,
)
from videonet.curation.judge.fetch import FetchError, FetchSettings, fetched_video
from videonet.curation.rundir.files import final_rows, read_audit, read_metadata

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


HINT = ("Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ"
        "#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass cookies")


@pytest.mark.parametrize("reason, status, kind, retriable, rate_limit", [
    # YouTube's answers as yt-dlp words them (reason + what _video.py appends)
    ("Video unavailable. This content isn't available, try again later. The current session has been rate-limited by "
     "YouTube for up to an hour. It is recommended to use `-t sleep`", None, "session_rate_limited", True, True),
    (f"Sign in to confirm you’re not a bot. {HINT}", None, "bot_check", True, True),
    ("Sign in to confirm you're not a bot. This helps protect our community. YouTube is requiring a captcha challenge "
     "before playback", None, "bot_check", True, True),
    ("All player responses are invalid. Your IP is likely being blocked by Youtube", None, "ip_blocked", True, True),
    ("Failed to extract any player response", 429, "no_player_response", True, True),
    ("HTTP Error 403: Forbidden", None, "http_403", True, True),  # the media of a flagged session
    ("HTTP Error 429: Too Many Requests", None, "too_many_requests", True, True),
    (f"Private video. Sign in if you've been granted access to this video. {HINT}", None, "private", False, False),
    ("Join this channel to get access to members-only content like this video, and other exclusive perks.", None,
     "members_only", False, False),
    (f"Sign in to confirm your age. This video may be inappropriate for some users. {HINT}", None, "age_restricted",
     False, False),
    ("The uploader has not made this video available in your country This video is available in United States.",
     None, "geo_blocked", False, False),
    ("Video unavailable. This video contains content from SME, who has blocked it on copyright grounds.", None,
     "copyright", False, False),
    ("Video unavailable. This video has been removed by the uploader", None, "removed", False, False),
    ("Video unavailable. This video is no longer available because the YouTube account associated with this video has "
     "been terminated.", None, "removed", False, False),
    # what a missing JS runtime or an outdated yt-dlp leads to: retriable (capped by --retry-runs), the breaker's business
    ("Requested format is not available. Use --list-formats for a list of available formats", None, "js_challenge",
     True, False),
    ("No video formats found!", None, "js_challenge", True, False),
    ("Cannot identify player 'https://www.youtube.com/s/player/x/base.js'", None, "extractor_outdated", True, False),
    ("Unable to download webpage", 503, "http_503", True, False),
    ("Unable to download webpage", 404, "http_404", False, False),
    ("Unable to download webpage", 410, "http_410", False, False),
    ("Unsupported URL: https://example.org/page", None, "bad_url", False, False),
    ("Read timed out.", None, "timeout", True, False),
    ("[Errno 104] Connection reset by peer", None, "connection", True, False),
    ("download took longer than 300 s (stopped)", None, "timeout", True, False),
    ("download exceeded the size limit of 1024 bytes", None, "size_limit", False, False),
    ("KeyError: 'formats'", None, "unknown", False, False),  # an extractor bug: asking again does not fix it
])
def test_failures_are_classified(reason, status, kind, retriable, rate_limit):
    failure = Failure.of(reason, status)
    assert (failure.kind, failure.retriable, failure.rate_limited) == (kind, retriable, rate_limit)
    assert classify(reason, status) is retriable


def _extractor_messages() -> list[tuple[str, str]]:
    """(where, message) of every error the installed yt-dlp's YouTube extractor can raise, read from its
    source: the literal (or f-string, its fields as {}) of each ExtractorError / raise_no_formats /
    raise_login_required / raise_geo_restricted, each ``reason`` it builds for one, and its warnings
    about JavaScript runtimes and challenge solving (what precedes "Requested format is not available")."""
    import ast
    from pathlib import Path

    import yt_dlp

    raising = {"ExtractorError", "GeoRestrictedError", "raise_no_formats", "raise_login_required",
               "raise_geo_restricted"}

    def text(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = text(node.left), text(node.right)
            return (left or "{}") + (right or "{}") if left or right else None
        return None

    found = []
    for path in sorted((Path(yt_dlp.__file__).parent / "extractor" / "youtube").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            message = None
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                said = text(node.args[0])
                if name in raising or (name == "report_warning" and said and re.search(
                        r"javascript runtime|challenge solving|signature solving", said, re.I)):
                    message = said
            elif isinstance(node, (ast.Assign, ast.AugAssign)) and any(
                    getattr(t, "id", None) in ("reason", "error_msg")
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                message = text(node.value)
            if message and len(message.replace("{}", "").split()) >= 2:
                found.append((f"{path.name}:{node.lineno}", message))
    return found


def test_every_message_the_installed_youtube_extractor_raises_is_classified_deliberately():
    """A yt-dlp upgrade that adds or rewords a message fails here until a rule in client.RULES says what
    it is: nothing is written off (or retried forever) by a default."""
    from videonet.curation.client import message_rule

    messages = _extractor_messages()
    assert len(messages) >= 20  # the parse found the extractor's errors
    unclassified = [(where, m) for where, m in messages if message_rule(m.replace("{}", "x")) is None]
    assert not unclassified, unclassified
    said = " | ".join(m for _, m in messages)
    for wording in ("has been rate-limited by YouTube for up to an hour",
                    "All player responses are invalid. Your IP is likely being blocked by Youtube",
                    "Failed to extract any player response", "captcha challenge"):
        assert wording in said  # the double raises these texts: they must still be yt-dlp's


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


# -- pacing: the site's word, no longer ----------------------------------------------------------

def test_a_burst_of_429s_holds_a_worker_for_the_stated_wait_and_no_longer(web):
    """Three 429s with Retry-After: 1 cost about 3 s (the wait as said, not the 30 s backoff), and the
    next request goes at once. (Beam's AdaptiveThrottler counted its own throttled attempts: after a
    handful of 429s it held a worker for minutes, a random time.)"""
    base, log = web
    site = session("download", ClientSettings(retry_attempts=5, retry_backoff=30.0, retry_max_wait=60.0))
    with fetched_video(f"{base}/clip.mp4?warm", None, LIMITS, site):  # the downloader is started
        pass
    started = time.monotonic()
    with fetched_video(f"{base}/flaky/429-3/burst.mp4", None, LIMITS, site):
        burst = time.monotonic() - started
    with fetched_video(f"{base}/clip.mp4?after", None, LIMITS, site):
        after = time.monotonic() - started - burst
    tries = log.times("/flaky/429-3/burst.mp4")
    # three 429s, then the answer (yt-dlp's generic extractor reads it, then downloads it: two requests)
    assert len(tries) == 5 and all(b - a >= 0.95 for a, b in zip(tries[:4], tries[1:4]))  # each wait as asked
    assert 2.9 <= burst < 5.0, burst
    assert after < 1.5, after  # the hold ended with the stated wait
    assert site.tally.rate_limited == 3


def test_sessions_table_and_its_one_line_errors(tmp_path):
    from videonet.errors import UserError

    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\tsecretvalue\n")
    table = tmp_path / "sessions.csv"
    table.write_text(f"name,proxy,cookies,per_hour\nhome,,{cookies},\nnl,http://u:pw@10.0.0.1:3128,,300\n")
    home, nl = read_sessions(ClientSettings(sessions=str(table), max_downloads_per_hour=120))
    assert (home.name, home.proxy, home.cookies, home.per_hour) == ("home", None, str(cookies), 120.0)
    assert (nl.proxy, nl.per_hour, nl.interval) == ("http://u:pw@10.0.0.1:3128", 300.0, 12.0)
    assert set(home.secrets()) == {"secretvalue"} and set(nl.secrets()) == {"pw", "u:pw"}
    assert read_sessions(ClientSettings()) == (read_sessions(ClientSettings())[0],)  # none given: one session
    for text, error in [("name,proxy,budget\nx,,1\n", "unknown column 'budget'"),
                        ("name,per_hour\nx,-1\n", "line 2: per_hour must be a number >= 0"),
                        ("name\nx\nx\n", "line 3: name must be unique"),
                        ("name,cookies\nx,/nowhere/cookies.txt\n", "line 2: cookies file not found")]:
        table.write_text(text)
        with pytest.raises(UserError, match=re.escape(error)):
            read_sessions(ClientSettings(sessions=str(table)))


def test_session_rules_spread_park_jitter_and_break():
    from videonet.curation.client import SiteSession, breaker_trips, home_session, jittered, redact

    sessions = tuple(SiteSession(n) for n in ("a", "b", "c"))
    homes = [home_session(f"video{i}", sessions).name for i in range(300)]
    assert {homes.count(n) for n in "abc"} and min(homes.count(n) for n in "abc") > 60  # spread, by video
    assert home_session("video1", sessions) == home_session("video1", sessions)  # the same on every worker
    assert all(home_session(f"video{i}", sessions, frozenset({"a", "b"})).name == "c" for i in range(20))
    assert all(home_session(f"v{i}", sessions, frozenset("abc")).name in "abc" for i in range(5))  # all parked
    assert home_session("v", sessions, turn=1) != home_session("v", sessions)  # the next pass: another session
    assert jittered(12.0, 0.3, 0.0) == 12.0 and jittered(12.0, 0.3, 0.999) < 15.6  # never shorter
    kind = "js_challenge"
    assert breaker_trips([kind] * 2 + [None] * 2, 4, 0.75) is None
    assert breaker_trips([None] + [kind] * 3, 4, 0.75) == kind  # 3 of the last 4: the boundary
    assert breaker_trips([kind] * 3, 4, 0.75) is None  # not yet a window
    assert breaker_trips(["private"] * 4, 4, 0.75) is None  # about the videos, not the set-up
    assert redact("proxy http://u:pw@h:1 said SID=abcdef", ("abcdef",)) == "proxy http://***@h:1 said SID=***"


def test_js_runtime_check():
    from videonet.curation.client import js_runtime_problem

    assert js_runtime_problem({}) is None  # videonet depends on Deno and yt-dlp's default extra
    problem = js_runtime_problem({"js_runtimes": {"deno": {"path": "/nowhere/deno"}}})
    assert "no supported JavaScript runtime" in problem and "install Deno" in problem and "\n" not in problem
    from videonet.curation.search.youtube import YoutubeSource
    from videonet.errors import UserError

    YoutubeSource().prepare()  # the youtube source starts
    without = ClientSettings(ytdlp=('js_runtimes={"deno": {"path": "/nowhere/deno"}}',))
    with pytest.raises(UserError, match="no supported JavaScript runtime"):
        YoutubeSource(client=without).prepare()  # and refuses, in one line, where yt-dlp would see none


# -- the YouTube double ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def double_env(demo_dir):
    """Download children that meet the YouTube double (started afresh, with its plugin on their path)."""
    from videonet.curation.judge import fetch

    saved = dict(os.environ)
    yield lambda double: (fetch._close_idle(), os.environ.update(double.environ()))
    fetch._close_idle()
    os.environ.clear()
    os.environ.update(saved)


def test_format_sort_takes_480_of_a_portrait_video_and_a_smaller_format_over_the_limit(demo_dir, double_env):
    from ytdouble.download import BIG, PORTRAIT, DownloadDouble, Video

    portrait, big = Video("portrait001", PORTRAIT), Video("bigvideo001", BIG)
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", [portrait, big]) as double:
        double_env(double)
        for video in (portrait, big):
            with fetched_video(video.url, None, FetchSettings(max_download_mb=1.0)) as got:
                assert os.path.getsize(got.path) == (demo_dir / "chelsea_cat.mp4").stat().st_size
        media = {r.video: r.answer for r in double.log.requests if r.what == "media"}
    assert media == {"portrait001": "135", "bigvideo001": "160"}  # 480x854, not 270x480; the one that fits


def test_a_downloader_keeps_one_youtubedl_per_option_set(demo_dir, double_env):
    """YouTube's player script and its solved challenges live in a YoutubeDL: three videos with the
    same options are asked by one instance; other options (another session) get another."""
    from ytdouble.download import DownloadDouble, Video

    videos = [Video(f"samevideo{i:02d}") for i in range(4)]
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        for video, proxy in zip(videos, [None, None, None, f"http://other:pw@{double.proxy_address}"]):
            site = session("download", ClientSettings())
            if proxy:
                site.params["proxy"] = proxy
            with fetched_video(video.url, None, LIMITS, site):
                pass
        instances = [r.ydl for r in double.log.player()]
    assert len(set(instances[:3])) == 1 and instances[3] != instances[0], instances


def _catalog_run(out, demo_dir, catalog, **options):
    """One curation of a URL catalog with the offline classifier (few frames), through the download stage."""
    from videonet.curation.run import curate

    return curate(*curate_options(out, demo_dir, source=f"catalog:{catalog}", classes=CAT, per_class=50, **options))


def _status(out) -> dict:
    return final_rows(read_audit(str(out))).set_index("id")["status"].to_dict()


@pytest.mark.slow
def test_five_flaky_clips_finish_in_the_time_their_failures_ask(web, demo_dir, tmp_path):
    """429 with Retry-After: 1 twice, 503 twice, a connection dropped twice, a 404 and a plain clip, with
    the default retry settings: seconds of waiting (1 + 1, 2 + 4, 2 + 4), not minutes; everything but the
    404 kept in one run; the 404 never asked again."""
    base, log = web
    rows = [("limited", "flaky/429-2/five.mp4"), ("unavailable", "flaky/503-2/five.mp4"),
            ("dropped", "flaky/drop-2/five.mp4"), ("gone", "gone/five.mp4"), ("plain", "clip.mp4?five")]
    catalog = tmp_path / "five.csv"
    catalog.write_text("id,title,url,duration\n" + "".join(f"{i},Egyptian cat {i},{base}/{path},12\n" for i, path in rows))
    out = tmp_path / "five"
    started = time.monotonic()
    facts = _catalog_run(out, demo_dir, catalog)
    seconds = time.monotonic() - started
    status = _status(out)
    assert {i: status[i] for i, _ in rows} == {"limited": "kept", "unavailable": "kept", "dropped": "kept",
                                              "gone": "download_error", "plain": "kept"}
    assert seconds < 60, seconds  # waits of 14 s and a run's start-up; the throttler's stall took minutes
    assert facts["download_429s"] == 2
    _catalog_run(out, demo_dir, catalog)
    assert log.count("/gone/five.mp4") <= 3  # over two runs (yt-dlp reads the page, then would fetch)
    assert len(read_metadata(str(out))) == 4


def _double_catalog(tmp_path, videos):
    from ytdouble.download import catalog

    return catalog(tmp_path / "double.csv", videos)


def _sessions(tmp_path, double, names, per_hour=0.0, cookies=None) -> str:
    table = tmp_path / "sessions.csv"
    table.write_text("name,proxy,cookies,per_hour\n" + "".join(
        f"{n},http://{n}:pw-{n}@{double.proxy_address},{cookies or ''},{per_hour or ''}\n" for n in names))
    return str(table)


@pytest.mark.slow
def test_rate_limit_signals_park_the_session_and_end_kept_permanent_failures_asked_once(demo_dir, double_env,
                                                                                       tmp_path):
    """Two sessions; a video that meets YouTube's session rate limit, a bot check and a blocked IP once
    each, a private and a removed one, and plain ones. A rate-limit signal parks its session for the
    cool-down (no request from it meanwhile) and its videos move to the other session or wait for the
    rerun (download_deferred, not a try); reruns keep the three; private and removed are asked at most
    once per run and never more than 3 times, and end download_error."""
    from ytdouble.download import BOT_CHECK, IP_BLOCKED, PRIVATE, RATE_LIMITED, REMOVED, DownloadDouble, Video

    cooldown = 2.0
    signals = [Video("ratelimit01", RATE_LIMITED, 1), Video("botcheck001", BOT_CHECK, 1),
               Video("ipblocked01", IP_BLOCKED, 1)]
    final = [Video("private0001", PRIVATE), Video("removed0001", REMOVED)]
    videos = signals + final + [Video(f"plainvideo{i}") for i in range(3)]
    out = tmp_path / "signals"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        sessions = _sessions(tmp_path, double, ["s1", "s2"])
        asked, runs = {v.id: [] for v in final}, 0
        while runs < 5:
            before = {v: len(double.log.player(video=v)) for v in asked}
            _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos), sessions=sessions, cooldown=cooldown,
                         retry_attempts=2, retry_backoff=0.05)
            runs += 1
            for v in asked:
                asked[v].append(len(double.log.player(video=v)) - before[v])
            status = _status(out)
            if all(status.get(v.id) in ("kept", "download_error") for v in videos):
                break
            time.sleep(cooldown)
        requests = list(double.log.player())
    assert all(status[v.id] == "kept" for v in signals), status
    assert all(status[v.id] == "download_error" for v in final), status
    assert all(max(n) <= 1 and sum(n) <= 3 for n in asked.values()), asked
    parked = [(r.at, r.session) for r in requests if r.answer in (RATE_LIMITED, BOT_CHECK, IP_BLOCKED)]
    assert len(parked) == 3
    for at, who in parked:  # the parked session asked nothing during its cool-down (within the run)
        assert not [r for r in requests if r.session == who and at < r.at < at + cooldown - 0.2], who
    assert len(read_metadata(str(out))) == 6


@pytest.mark.slow
def test_an_always_failing_503_is_given_up_by_the_fourth_run(demo_dir, double_env, tmp_path):
    from videonet.curation.report import build_report, format_summary
    from ytdouble.download import UNAVAILABLE_503, DownloadDouble, Video

    videos = [Video("always50301", UNAVAILABLE_503), Video("plainvideo0")]
    out = tmp_path / "give-up"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        seen = []
        for _ in range(4):
            _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos), retry_attempts=2, retry_backoff=0.05)
            seen.append((_status(out)["always50301"], len(double.log.player(video="always50301"))))
    assert [s for s, _ in seen] == ["download_retriable", "download_retriable", "gave_up", "gave_up"]
    assert [n for _, n in seen] == [2, 4, 6, 6]  # two tries a run, three runs; the fourth asks nothing
    facts = build_report(str(out))
    assert facts["gave_up"] == 1 and facts["gave_up_by_reason"] == {"http_503": 1}
    assert "Gave up after --retry-runs runs failing retriably: 1 (http 503 1)" in format_summary(facts)
    reason = final_rows(read_audit(str(out))).set_index("id").loc["always50301", "reason"]
    assert reason.startswith("gave up after 3 runs failing retriably; last: ") and "503" in reason


@pytest.mark.slow
def test_two_sessions_hold_their_rate_across_four_workers(demo_dir, double_env, tmp_path):
    """2 sessions at 3600 requests/hour each (YouTube's ~300/h scaled down), 4 worker threads: at the
    double, neither session ever asks twice within 0.8 s (its budget there: a second request would be
    answered "rate-limited"), and both work."""
    from ytdouble.download import DownloadDouble, Video

    videos = [Video(f"ratevideo{i:02d}") for i in range(8)]
    out = tmp_path / "rate"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos, per_hour=3600, window=0.8) as double:
        double_env(double)
        _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos),
                     sessions=_sessions(tmp_path, double, ["s1", "s2"], per_hour=3600),
                     beam_args=["--direct_num_workers=4", "--direct_running_mode=multi_threading"])
        log = double.log
    assert {r.answer for r in log.player()} == {"plain"}  # nobody was told to slow down
    for who in ("proxy:s1", "proxy:s2"):
        assert 1 <= len(log.player(session=who)) and log.max_in_window(who, 0.8) == 1, who
    assert len(read_metadata(str(out))) == 8


@pytest.mark.slow
def test_the_circuit_breaker_stops_the_run_in_one_line_and_writes_nothing_off(demo_dir, double_env, tmp_path):
    from videonet.errors import UserError
    from ytdouble.download import NO_FORMATS, DownloadDouble, Video

    videos = [Video(f"noformats{i:02d}", NO_FORMATS) for i in range(6)]
    out = tmp_path / "breaker"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        with pytest.raises(UserError) as stopped:
            _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos), retry_attempts=1, breaker_window=4)
        asked = len(double.log.player())
    line = str(stopped.value)
    assert "\n" not in line and "4 of the last 4 downloads of session local failed" in line
    assert "js_challenge" in line and "install Deno" in line and "Nothing was written off" in line
    assert asked == 4  # it stopped at the fourth
    audit = read_audit(str(out))
    assert not len(audit) or not audit["status"].str.startswith(("download", "gave")).any()


@pytest.mark.slow
def test_no_proxy_credential_or_cookie_value_reaches_any_output(demo_dir, double_env, tmp_path, capfd):
    """An error that quotes the session's proxy URL and cookie, a bot check and a kept video: the run's
    every file, its summary and its logs hold neither secret; the cookies file is read, never written."""
    from ytdouble.download import BOT_CHECK, LEAKY, DownloadDouble, Video

    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tC00kieValue42\n")
    cookies.chmod(0o444)
    before = (cookies.read_bytes(), cookies.stat().st_mtime)
    videos = [Video("leakyvideo1", LEAKY), Video("botcheck002", BOT_CHECK, 1), Video("plainvideo9")]
    out = tmp_path / "secrets"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        facts = _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos), retry_attempts=1,
                             sessions=_sessions(tmp_path, double, ["s1"], cookies=str(cookies)))
        sessions_seen = {r.session for r in double.log.requests}
    captured = capfd.readouterr()
    assert sessions_seen == {"proxy:s1"}
    secrets = [b"pw-s1", b"C00kieValue42"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 5
    leaks = [str(p) for p in files for s in secrets if s in p.read_bytes()]
    assert not leaks, leaks
    said = (captured.out + captured.err + repr(facts)).encode()
    assert not [s for s in secrets if s in said]
    reason = final_rows(read_audit(str(out))).set_index("id").loc["leakyvideo1", "reason"]
    assert "http://***@127.0.0.1" in reason and "SID=***" in reason
    assert (cookies.read_bytes(), cookies.stat().st_mtime) == before


@pytest.mark.slow
def test_wait_parked_waits_out_the_cool_down_instead_of_deferring(demo_dir, double_env, tmp_path):
    from ytdouble.download import RATE_LIMITED, DownloadDouble, Video

    videos = [Video("waitlimit01", RATE_LIMITED, 1), Video("waitplain01"), Video("waitplain02")]
    out = tmp_path / "wait"
    with DownloadDouble(demo_dir / "chelsea_cat.mp4", videos) as double:
        double_env(double)
        _catalog_run(out, demo_dir, _double_catalog(tmp_path, videos), cooldown=2.0, wait_parked=True)
        asked = double.log.player()
    assert set(_status(out).values()) == {"kept"}  # one run: nothing deferred
    [limited] = [r for r in asked if r.answer == RATE_LIMITED]
    after = [r.at - limited.at for r in asked if r.at > limited.at]
    assert after and min(after) >= 1.9  # the next request waited for the cool-down
