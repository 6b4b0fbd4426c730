"""How videonet talks to a video site (through yt-dlp): its options, failure classes, pacing and retries.

At the paper's scale the downloads, not the classifier, are the wall: YouTube answers a session that
asks too fast with 429 "Too Many Requests" or "Sign in to confirm you're not a bot", and blocks IPs
that ignore it. So every search request and every download goes through a :class:`Pacer` (one per
worker process and stage) that

* spaces requests to ``--max-downloads-per-hour`` / ``--max-searches-per-hour`` (a token bucket);
* backs off as the share of rate-limited answers rises (Beam's ``AdaptiveThrottler``, the
  client-side throttling of Google's SRE book, which Beam's own IOs use);
* retries a *retriable* failure (429, 5xx, timeouts, dropped connections, bot checks) with
  exponential backoff that honours ``Retry-After`` up to ``--retry-max-wait``, and never retries a
  *permanent* one (404/410, private, removed, age-restricted, geo-blocked, unsupported URL).

A failure still retriable after ``--retry-attempts`` is audited with a retriable status, which a
rerun retries (the resume join does not count it as done). The rules (:func:`classify`,
:func:`backoff_seconds`, :func:`ydl_params`) are pure functions; the pacer only applies them.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable, TypeVar

import pyarrow as pa

from videonet.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class ClientSettings:
    """How yt-dlp reaches the site (search and download alike): identity, pacing, retries, any option."""

    cookies: str | None = field(default=None, metadata={
        "help": "Netscape cookies.txt for yt-dlp (a logged-in browser session; see README: Downloading at scale)."})
    proxy: str | None = field(default=None, metadata={
        "help": "Proxy URL, or a comma list spread over worker processes (each uses one, by its pid)."})
    player_client: str | None = field(default=None, metadata={
        "help": "yt-dlp YouTube player client(s), comma list (e.g. web,mweb; needs a PO token for some)."})
    sleep_interval: float = field(default=0.0, metadata={
        "help": "yt-dlp's sleep before each download (seconds), on top of the rate limit.", "min": 0})
    ytdlp: tuple[str, ...] = field(default=(), metadata={
        "help": "Any yt-dlp option as KEY=VALUE (Python API name; VALUE read as JSON if it parses), repeatable."})
    ytdlp_options: str | None = field(default=None, metadata={
        "help": "A JSON or YAML file of yt-dlp options (Python API names); --ytdlp pairs override it."})
    max_downloads_per_hour: float = field(default=0.0, metadata={
        "help": "Downloads per hour per worker process (0: unlimited). YouTube allows about 300 per session.",
        "min": 0})
    max_searches_per_hour: float = field(default=0.0, metadata={
        "help": "Search requests (result pages) per hour per worker process (0: unlimited).", "min": 0})
    retry_attempts: int = field(default=4, metadata={
        "help": "Tries of a request whose failure is retriable (429, 5xx, timeout, reset, bot check) within a run; "
                "then it is audited as retriable and a rerun tries again.", "min": 1})
    retry_backoff: float = field(default=5.0, metadata={
        "help": "First wait before a retry (seconds); doubles each retry.", "min": 0})
    retry_max_wait: float = field(default=300.0, metadata={
        "help": "Longest single wait before a retry, Retry-After included (seconds).", "min": 0})
    # Beam's AdaptiveThrottler: over the last window, throttle once requests exceed
    # overload_ratio x the requests not rate-limited; a throttled request waits throttle_delay.
    throttle_window_s: float = field(default=300.0, metadata={"cli": False})
    overload_ratio: float = field(default=1.25, metadata={"cli": False})
    throttle_delay_s: float = field(default=5.0, metadata={"cli": False})


# -- yt-dlp options -------------------------------------------------------------------------------

def parse_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as yt-dlp params; a VALUE that parses as JSON is that value (numbers, lists)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--ytdlp {pair!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def read_options_file(path: str) -> dict[str, Any]:
    """A JSON or YAML mapping of yt-dlp params (``--ytdlp-options``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise UserError(f"--ytdlp-options {path}: {exc.strerror}") from None
    try:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            options = yaml.safe_load(text)
        else:
            options = json.loads(text)
    except Exception as exc:
        raise UserError(f"--ytdlp-options {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(options, dict):
        raise UserError(f"--ytdlp-options {path}: expected a mapping of yt-dlp options")
    return options


def pick_proxy(proxies: str | None, worker: int) -> str | None:
    """One proxy of the comma list for this worker (spread by pid: a process keeps its proxy, so its
    session and its IP stay together)."""
    choices = [p.strip() for p in (proxies or "").split(",") if p.strip()]
    return choices[worker % len(choices)] if choices else None


def ydl_params(settings: ClientSettings, worker: int | None = None) -> dict[str, Any]:
    """The yt-dlp params these settings add (JSON-serialisable: they travel to the download child).

    Order: the named options, then the options file, then ``--ytdlp`` pairs (the last word wins).
    """
    params: dict[str, Any] = {}
    if settings.cookies:
        params["cookiefile"] = settings.cookies
    proxy = pick_proxy(settings.proxy, os.getpid() if worker is None else worker)
    if proxy:
        params["proxy"] = proxy
    if settings.player_client:
        params["extractor_args"] = {"youtube": {"player_client": settings.player_client.split(",")}}
    if settings.sleep_interval:
        params["sleep_interval"] = settings.sleep_interval
    if settings.ytdlp_options:
        params.update(read_options_file(settings.ytdlp_options))
    params.update(parse_pairs(settings.ytdlp))
    return params


# -- failure classes ------------------------------------------------------------------------------

RETRIABLE_STATUS = frozenset({403, 408, 425, 429}) | frozenset(range(500, 600))  # YouTube's 403: an expired session
BOT_CHECK = "not a bot"
# Message patterns, checked in this order when no HTTP status decides (yt-dlp's wording).
_PERMANENT = re.compile(
    r"private video|video unavailable|this video (?:is no longer|has been removed|is not available)|removed by|"
    r"account associated with this video has been terminated|copyright|confirm your age|age.restricted|"
    r"inappropriate for some users|not available in your country|geo.?restrict|unsupported url|"
    r"is not a valid url|members.only|size limit|larger than|no video formats|requested format is not available",
    re.I)
_RETRIABLE = re.compile(
    r"not a bot|too many requests|timed out|timeout|took longer than|connection (?:reset|refused|aborted)|"
    r"remote end closed|remotedisconnected|broken pipe|incompleteread|bytes read|temporar(?:y|ily)|"
    r"name resolution|network is unreachable|try again later|rate.?limit",
    re.I)


@dataclass(frozen=True)
class Failure:
    """One failed request, classified: what the audit says, whether trying again can help, and the
    server's own word on when (``Retry-After``, seconds)."""

    reason: str
    retriable: bool
    status: int | None = None
    retry_after: float | None = None

    @property
    def rate_limited(self) -> bool:
        """The site said "too fast" (429 or a bot check): the signal the adaptive throttle counts."""
        return self.status == 429 or BOT_CHECK in self.reason.lower() or "too many requests" in self.reason.lower()


def classify(reason: str, status: int | None = None) -> bool:
    """Whether a failure is retriable: by HTTP status when there is one, else by yt-dlp's message.

    An unknown failure is permanent (an extractor bug is not fixed by asking again).
    """
    if status is not None and status >= 400:
        return status in RETRIABLE_STATUS
    if _PERMANENT.search(reason):
        return False
    if _RETRIABLE.search(reason):
        return True
    match = re.search(r"HTTP Error (\d{3})", reason)
    return bool(match) and int(match.group(1)) in RETRIABLE_STATUS


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, IndexError):
        return None


def one_line(text: str) -> str:
    """An error as one short audit reason (yt-dlp's "ERROR: " prefix and line breaks dropped)."""
    return " ".join(str(text).replace("ERROR: ", "").split())[:300]


def failure_of(exc: BaseException) -> Failure:
    """Classify an exception from yt-dlp (or anything else): the HTTP status and ``Retry-After`` are
    looked for along its chain (yt-dlp wraps ``HTTPError`` in ``ExtractorError`` in ``DownloadError``)."""
    known = getattr(exc, "failure", None)
    if isinstance(known, Failure):
        return known
    status = retry_after = None
    seen, chain = set(), [exc]
    while chain:
        cause = chain.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        code = getattr(cause, "status", None)
        if isinstance(code, int) and code >= 400 and status is None:
            status = code
            headers = getattr(getattr(cause, "response", None), "headers", None) or {}
            retry_after = retry_after_seconds(headers.get("Retry-After"))
        exc_info = getattr(cause, "exc_info", None)
        chain += [getattr(cause, "cause", None), cause.__cause__, cause.__context__,
                  exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None]
    reason = one_line(str(exc) or type(exc).__name__)
    return Failure(reason, classify(reason, status), status, retry_after)


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Wait before retry ``attempt`` (0 = the first retry): ``base * 2**attempt``, at least the
    server's ``Retry-After``, at most ``cap`` (a hostile Retry-After cannot park a worker)."""
    return min(cap, max(base * 2 ** attempt, retry_after or 0.0))


# -- pacing ---------------------------------------------------------------------------------------

class TokenBucket:
    """At most ``per_hour`` admissions per hour, one at a time (a bucket of one token: no bursts).

    Hand-written because Beam's only rate limiter (``apache_beam.io.components.rate_limiter``) asks an
    external Envoy service, and yt-dlp has no request rate option (only sleeps). Thread-safe: the
    DoFn threads of one worker process share it.
    """

    def __init__(self, per_hour: float):
        self.interval = 3600.0 / per_hour if per_hour > 0 else 0.0
        self.next_free = 0.0
        self.lock = threading.Lock()

    def take(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_free)
            self.next_free = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
        return slot - now


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


@dataclass
class Tally:
    """What one unit of work (a class's search, a batch of downloads) cost in requests: a row of
    ``requests/<run_id>.parquet``, from which the report shows requests, 429s and the effective rate."""

    stage: str
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    waited_s: float = 0.0
    started: float | None = None
    ended: float | None = None

    def sent(self) -> None:
        now = time.time()
        self.requests += 1
        self.started = now if self.started is None else self.started
        self.ended = now

    def not_sent(self) -> None:
        """The last call asked the site nothing (a source's results had already ended)."""
        self.requests -= 1

    def row(self, run_id: str) -> dict:
        return {"run_id": run_id, "stage": self.stage, "requests": self.requests, "rate_limited": self.rate_limited,
                "retries": self.retries, "waited_s": round(self.waited_s, 3), "started": self.started,
                "ended": self.ended}


class Pacer:
    """One worker process's pacing of one stage: token bucket, adaptive throttle, retries."""

    def __init__(self, per_hour: float, settings: ClientSettings):
        from apache_beam.io.components.adaptive_throttler import AdaptiveThrottler

        self.settings = settings
        self.bucket = TokenBucket(per_hour)
        window_ms = int(settings.throttle_window_s * 1000)
        self.throttler = AdaptiveThrottler(window_ms, max(1, window_ms // 10), settings.overload_ratio)
        self.lock = threading.Lock()

    def _admit(self, tally: Tally) -> None:
        tally.waited_s += self.bucket.take()
        while True:
            with self.lock:
                throttled = self.throttler.throttle_request(time.time() * 1000)
            if not throttled:
                return
            time.sleep(self.settings.throttle_delay_s)
            tally.waited_s += self.settings.throttle_delay_s

    def _answered(self, rate_limited: bool) -> None:
        if not rate_limited:  # only "too fast" answers count against the site's capacity
            with self.lock:
                self.throttler.successful_request(time.time() * 1000)

    def call(self, request: Callable[[], T], tally: Tally) -> T:
        """``request()`` paced, retried while its failure is retriable; the last failure is raised
        (classify it with :func:`failure_of`)."""
        s, attempt = self.settings, 0
        while True:
            self._admit(tally)
            tally.sent()
            try:
                result = request()
            except Exception as exc:
                failure = failure_of(exc)
                tally.rate_limited += failure.rate_limited
                self._answered(failure.rate_limited)
                if not failure.retriable or attempt + 1 >= s.retry_attempts:
                    raise
                wait = backoff_seconds(attempt, s.retry_backoff, s.retry_max_wait, failure.retry_after)
                tally.retries, tally.waited_s, attempt = tally.retries + 1, tally.waited_s + wait, attempt + 1
                time.sleep(wait)
                continue
            self._answered(False)
            return result


_pacers: dict[tuple[str, ClientSettings], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer(stage: str, settings: ClientSettings) -> Pacer:
    """This process's pacer of ``stage`` (``search`` or ``download``): the rate is per worker process,
    shared by all its DoFn instances and threads."""
    per_hour = settings.max_searches_per_hour if stage == "search" else settings.max_downloads_per_hour
    with _pacers_lock:
        if (stage, settings) not in _pacers:
            _pacers[stage, settings] = Pacer(per_hour, settings)
        return _pacers[stage, settings]


@dataclass
class Session:
    """A unit of work's use of the site: this process's pacer, the yt-dlp params, and the tally of
    what its requests cost."""

    pacer: Pacer
    params: dict[str, Any]
    tally: Tally

    def call(self, request: Callable[[], T]) -> T:
        return self.pacer.call(request, self.tally)


def session(stage: str, settings: ClientSettings) -> Session:
    """A fresh tally on this process's pacer of ``stage`` (yt-dlp params read once per unit of work)."""
    return Session(pacer(stage, settings), ydl_params(settings), Tally(stage))
