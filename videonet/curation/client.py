"""How videonet talks to a video site (through yt-dlp): its options, sessions, failure classes, pacing and retries.

At the paper's scale the downloads, not the classifier, are the wall: YouTube rate-limits each
*session* (an IP, an account) to a few hundred videos an hour, answers one that asks too fast with
"The current session has been rate-limited by YouTube for up to an hour", 429s or "Sign in to confirm
you're not a bot", and blocks IPs that ignore it. So

* every failure is classified from yt-dlp's own wording (:data:`RULES`): *permanent* (private,
  removed, members-only, age-restricted, geo-blocked, copyright, 404) is never asked again;
  *retriable* (5xx, timeouts, dropped connections, a set-up problem) is asked again, within a run up
  to ``--retry-attempts`` and across runs up to ``--retry-runs``; a *rate-limit signal* (the session
  rate limit, bot checks, captchas, a blocked IP, 429, 403 on the media) is retriable and parks its
  session (:class:`SiteSession`) for ``--cooldown`` unless the site said how long (``Retry-After``);
* downloads are paced per session across the whole fleet by the pipeline (a stateful DoFn keyed by
  session: ``pipelines/curate.py``), with jittered gaps (:func:`jittered`), parking shared through the
  run directory (:class:`SessionLedger`) and a circuit breaker (:func:`breaker_trips`);
* searches are paced per worker process by a :class:`Pacer`.

The rules are pure functions; the pipeline and the pacer only apply them. No proxy credential or
cookie value reaches a message: :func:`redact`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, TypeVar


from videonet.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class ClientSettings:
    """How yt-dlp reaches the site (search and download alike): identity, pacing, retries, any option."""

    cookies: str | None = field(default=None, metadata={
        "help": "Netscape cookies.txt for yt-dlp (a logged-in browser session; see README: Downloading at scale). "
                "Read only: each downloader process works on a private copy."})
    proxy: str | None = field(default=None, metadata={
        "help": "Proxy URL, or a comma list: one session per proxy (see --sessions)."})
    sessions: str | None = field(default=None, metadata={
        "help": "A csv/tsv of sessions (columns name, proxy, cookies, per_hour): each one identity the site "
                "rate-limits, its budget holding across the whole fleet (default: one session, this machine's IP)."})
    player_client: str | None = field(default=None, metadata={
        "help": "yt-dlp YouTube player client(s), comma list (e.g. web,mweb; needs a PO token for some)."})
    sleep_interval: float = field(default=0.0, metadata={
        "help": "yt-dlp's sleep before each download (seconds), on top of the rate limit.", "min": 0})
    ytdlp: tuple[str, ...] = field(default=(), metadata={
        "help": "Any yt-dlp option as KEY=VALUE (Python API name; VALUE read as JSON if it parses; a mapping such as "
                "extractor_args is merged into the others), repeatable."})
    ytdlp_options: str | None = field(default=None, metadata={
        "help": "A JSON or YAML file of yt-dlp options (Python API names); --ytdlp pairs override it."})
    max_downloads_per_hour: float = field(default=0.0, metadata={
        "help": "Downloads per hour per session, across all workers (0: unlimited), for sessions without their "
                "own per_hour. YouTube allows about 300 per session.", "min": 0})
    max_searches_per_hour: float = field(default=0.0, metadata={
        "help": "Search HTTP requests (results pages of ~20, config pages, retries) per hour per worker process "
                "(0: unlimited).", "min": 0})
    cooldown: float = field(default=3600.0, metadata={
        "help": "How long a session rests after a rate-limit signal that names no wait (YouTube's 'rate-limited for "
                "up to an hour', a bot check, a blocked IP); its videos move to the other sessions (seconds).",
        "min": 0})
    wait_parked: bool = field(default=False, metadata={
        "help": "When every session is parked, wait for one to come back (default: finish what can be, and leave "
                "the rest retriable for the rerun)."})
    retry_attempts: int = field(default=4, metadata={
        "help": "Tries of a request whose failure is retriable (429, 5xx, timeout, reset) within a run; "
                "then it is audited as retriable and a rerun tries again.", "min": 1})
    retry_runs: int = field(default=3, metadata={
        "help": "Runs in which a candidate may fail retriably; then it is audited gave_up (with its last reason) "
                "and no rerun asks again.", "min": 1})
    retry_backoff: float = field(default=2.0, metadata={
        "help": "First wait before a retry (seconds); doubles each retry.", "min": 0})
    retry_max_wait: float = field(default=300.0, metadata={
        "help": "Longest single wait before a retry (seconds); a longer Retry-After parks the session that long.",
        "min": 0})
    breaker_window: int = field(default=20, metadata={
        "help": "Circuit breaker: when 3/4 of a session's last N downloads fail alike for a reason that is the "
                "set-up's (no JS runtime, bot checks, an outdated yt-dlp), the run stops saying what to do "
                "and writes nothing off (0: off).", "min": 0})
    breaker_share: float = field(default=0.75, metadata={"cli": False})
    jitter: float = field(default=0.3, metadata={"cli": False})  # a session's gaps are 1 to 1.3 x its interval


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


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, mappings merged key by key (``extractor_args`` from ``--ytdlp`` adds
    to ``--player-client``'s instead of replacing it)."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def ydl_params(settings: ClientSettings, identity: "SiteSession | None" = None) -> dict[str, Any]:
    """The yt-dlp params these settings add for one session (default: the first), JSON-serialisable
    (they travel to the download child).

    Order: the named options, then the options file, then ``--ytdlp`` pairs; later ones win, mappings merge.
    """
    params: dict[str, Any] = (identity or read_sessions(settings)[0]).params()
    if settings.player_client:
        params["extractor_args"] = {"youtube": {"player_client": settings.player_client.split(",")}}
    if settings.sleep_interval:
        params["sleep_interval"] = settings.sleep_interval
    if settings.ytdlp_options:
        params = deep_merge(params, read_options_file(settings.ytdlp_options))
    return deep_merge(params, parse_pairs(settings.ytdlp))


def js_runtime_problem(params: dict[str, Any]) -> str | None:
    """Why yt-dlp cannot solve YouTube's player challenges with these params, or None when it can.

    Without a JavaScript runtime yt-dlp falls back, with only a warning, to a client with few
    formats, and what follows ("Requested format is not available") would look like a wave of bad
    videos. yt-dlp enables Deno unless ``js_runtimes`` says otherwise; the solver scripts come with
    ``yt-dlp[default]`` (the ``yt_dlp_ejs`` package).
    """
    import importlib.util

    from yt_dlp.globals import supported_js_runtimes  # filled in when the yt_dlp package is imported

    wanted = params.get("js_runtimes") or {"deno": {}}
    found = []
    for name, config in wanted.items():
        runtime = supported_js_runtimes.value.get(name)
        info = runtime((config or {}).get("path")).info if runtime else None
        if info is not None and info.supported:
            found.append(name)
    if not found:
        return (f"yt-dlp finds no supported JavaScript runtime ({', '.join(wanted)}), needed for YouTube's formats: "
                "install Deno (install.sh does: pip install deno 'yt-dlp[default]') or name one with "
                "--ytdlp 'js_runtimes={\"node\":{}}'")
    if importlib.util.find_spec("yt_dlp_ejs") is None and "ejs:github" not in (params.get("remote_components") or ()):
        return "yt-dlp's challenge solver scripts are missing: pip install 'yt-dlp[default]'"
    return None


# -- failure classes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One kind of failure, recognised by yt-dlp's own wording (read in the installed yt-dlp's YouTube
    extractor: ``tests/test_downloads_at_scale.py`` fails on a message no rule classifies).

    ``retriable``: asking again (later, from another session, or after fixing the set-up) may cure it;
    ``rate_limit``: the site is telling this *session* to slow down, so the session is parked;
    ``advice``: what to do when it repeats (the circuit breaker's line), for failures that say the
    set-up is wrong rather than the video.
    """

    kind: str
    pattern: str
    retriable: bool
    rate_limit: bool = False
    advice: str | None = None

    def matches(self, reason: str) -> bool:
        return re.search(self.pattern, reason, re.I) is not None


ADD_SESSIONS = "add sessions (--sessions: proxies and cookies) or lower --max-downloads-per-hour"
ADD_COOKIES = "add cookies of a logged-in throw-away account (--cookies or a cookies column in --sessions)"
UPGRADE = "upgrade yt-dlp (pip install -U 'yt-dlp[default]')"
INSTALL_DENO = "install Deno and yt-dlp's challenge solver (install.sh does: pip install deno 'yt-dlp[default]'), then " + UPGRADE
CHECK_OPTIONS = "check --player-client, --ytdlp and --ytdlp-options"

# First match wins: the order settles overlaps ("Video unavailable. ... rate-limited" is a rate limit;
# "Private video. Sign in if you've been granted access" is private, not a login wall).
RULES: tuple[Rule, ...] = (
    Rule("session_rate_limited", r"rate-limited by youtube|isn't available, try again later", True, True, ADD_SESSIONS),
    Rule("bot_check", r"not a bot", True, True, ADD_COOKIES),
    Rule("captcha", r"captcha", True, True, ADD_COOKIES),
    Rule("ip_blocked", r"ip is likely being blocked", True, True, "use other proxies (--sessions)"),
    Rule("no_player_response", r"failed to extract any player response", True, True, UPGRADE),
    Rule("private", r"private video", False),
    Rule("members_only", r"members.only|join this channel", False),
    Rule("age_restricted", r"confirm your age|age.restricted|inappropriate for some users", False),
    Rule("geo_blocked", r"available in your country|not available from your location|geo.?restrict", False),
    Rule("copyright", r"copyright", False),
    Rule("removed", r"has been removed|no longer available|account associated with this video has been terminated|"
                    r"video unavailable|this video is not available|removed by", False),
    Rule("cookies_expired", r"cookies are no longer valid", True, False, ADD_COOKIES),
    Rule("login_required", r"login details are needed|only available for registered users|sign in|"
                           r"require authentication|skip=authcheck", True, False, ADD_COOKIES),
    Rule("js_challenge", r"requested format is not available|no video formats|formats may be missing|"
                         r"challenge solving failed|signature solving failed|javascript runtime|po token", True, False,
         INSTALL_DENO),
    Rule("extractor_outdated", r"cannot identify player|cannot extract signature|unable to extract|unable to find|"
                               r"unable to recognize|failed to resolve|does not have a .* tab|"
                               r"redirected to youtube.com home page|cookie consent", True, False, UPGRADE),
    Rule("options", r"no player clients have been requested|unsupported language code|oauth|"
                    r"password is not supported", True, False, CHECK_OPTIONS),
    Rule("incomplete_data", r"incomplete (?:yt initial )?data", True),
    Rule("youtube_said", r"youtube said", True),  # an alert of YouTube's: capped by --retry-runs, not written off
    Rule("bad_url", r"invalid url|unsupported url|is not a valid url|incomplete youtube id|looks truncated|"
                    r"forget to quote the url|without video id", False),
    Rule("size_limit", r"size limit|larger than", False),
    Rule("timeout", r"timed out|timeout|took longer than", True),
    Rule("connection", r"connection (?:reset|refused|aborted)|remote end closed|remotedisconnected|broken pipe|"
                       r"incompleteread|bytes read|temporar(?:y|ily)|name resolution|network is unreachable|"
                       r"unable to connect to proxy", True),
    Rule("too_many_requests", r"too many requests|try again later|rate.?limit", True, True, ADD_SESSIONS),
)
UNKNOWN = Rule("unknown", "", False)  # an extractor bug: asking again does not fix it
_BY_KIND = {rule.kind: rule for rule in RULES}


def status_rule(status: int) -> Rule:
    """The class of an HTTP status: 429 and YouTube's 403 on the media (an expired or flagged session)
    are the site's "too fast"; 408, 425 and 5xx are worth another try; other 4xx are final."""
    if status == 429:
        return Rule("http_429", "", True, True, ADD_SESSIONS)
    if status == 403:
        return Rule("http_403", "", True, True, ADD_COOKIES)
    if status in (408, 425) or 500 <= status < 600:
        return Rule(f"http_{status}", "", True)
    return Rule(f"http_{status}", "", False)


def message_rule(reason: str) -> Rule | None:
    """The rule yt-dlp's message falls under, or None when none was written for it."""
    return next((rule for rule in RULES if rule.matches(reason)), None)


def rule_of(reason: str, status: int | None = None) -> Rule:
    """The class of a failure: yt-dlp's message first (it names the cause: a player-API 429 reads
    "Failed to extract any player response"), then the HTTP status, then an ``HTTP Error NNN`` in the text."""
    if (rule := message_rule(reason)) is not None:
        return rule
    if status is None and (match := re.search(r"HTTP Error (\d{3})", reason)):
        status = int(match.group(1))
    return status_rule(status) if status is not None and status >= 400 else UNKNOWN


def classify(reason: str, status: int | None = None) -> bool:
    """Whether a failure is retriable (see :func:`rule_of`); an unknown failure is permanent."""
    return rule_of(reason, status).retriable


@dataclass(frozen=True)
class Failure:
    """One failed request, classified: what the audit says, whether trying again can help, whether the
    site told the session to slow down, and the server's own word on when (``Retry-After``, seconds).
    JSON-serialisable: the download child sends it to its worker."""

    reason: str
    retriable: bool
    status: int | None = None
    retry_after: float | None = None
    kind: str = UNKNOWN.kind
    rate_limited: bool = False

    @classmethod
    def of(cls, text: str, status: int | None = None, retry_after: float | None = None) -> "Failure":
        """Classified by the whole message; the audit gets it as one short line."""
        rule = rule_of(text, status)
        return cls(one_line(text), rule.retriable, status, retry_after, rule.kind, rule.rate_limit)

    @property
    def advice(self) -> str | None:
        """What to do when this failure repeats (None for failures that are about the video)."""
        rule = _BY_KIND.get(self.kind) or (status_rule(self.status) if self.status else UNKNOWN)
        return rule.advice


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without credentials: a URL's user:password@ and each of ``secrets`` (cookie values,
    proxy passwords) become ``***``. Every reason and log line about a request goes through it."""
    text = _USERINFO.sub("***@", text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # a one-letter cookie value would blank out every "a" of a message
            text = text.replace(secret, "***")
    return text


def cookie_values(path: str | None) -> tuple[str, ...]:
    """The values in a Netscape cookies file (what :func:`redact` hides); none if it cannot be read."""
    if not path:
        return ()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ()
    fields = [line.split("\t") for line in lines if line.strip() and not line.startswith("# ")]
    return tuple(f[6] for f in fields if len(f) >= 7 and f[6])


def proxy_secrets(proxy: str | None) -> tuple[str, ...]:
    """A proxy URL's user info and password (hidden from every message)."""
    if not proxy:
        return ()
    from urllib.parse import urlsplit

    parts = urlsplit(proxy)
    return tuple(s for s in (parts.password, parts.username and parts.password and
                             f"{parts.username}:{parts.password}") if s)


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
    return Failure.of(" ".join((str(exc) or type(exc).__name__).replace("ERROR: ", "").split()), status, retry_after)


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Wait before retry ``attempt`` (0 = the first retry): the server's ``Retry-After`` as said, else
    ``base * 2**attempt``; at most ``cap`` (a hostile Retry-After cannot hold a worker)."""
    return min(cap, retry_after if retry_after is not None else base * 2 ** attempt)


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


def merge_rows(rows: Iterable[dict]) -> dict:
    """Tally rows of one run and stage added up (the download stage's per-video rows become one)."""
    rows = list(rows)
    merged = dict(rows[0])
    for key in ("requests", "rate_limited", "retries", "waited_s"):
        merged[key] = sum(r[key] for r in rows)
    merged["waited_s"] = round(merged["waited_s"], 3)
    starts, ends = [r["started"] for r in rows if r["started"]], [r["ended"] for r in rows if r["ended"]]
    merged["started"], merged["ended"] = (min(starts) if starts else None), (max(ends) if ends else None)
    return merged


class Pacer:
    """One worker process's pacing of one stage (the search; downloads are paced per session by the
    pipeline): a token bucket, retries, and a hold on every request of the process while the site's
    stated wait runs (``Retry-After``).

    A burst of 429s holds the process for the time the site asked and no longer. (Beam's
    ``AdaptiveThrottler`` was here; it counts every locally throttled attempt as a request, so with few
    successes in its window its throttling probability climbed to 1 and a worker nearly stopped for a
    random time after a handful of 429s.)
    """

    def __init__(self, per_hour: float, settings: ClientSettings):
        self.settings = settings
        self.bucket = TokenBucket(per_hour)
        self.hold_until = 0.0  # monotonic
        self.lock = threading.Lock()

    def _admit(self, tally: Tally) -> None:
        tally.waited_s += self.bucket.take()
        with self.lock:
            held = self.hold_until - time.monotonic()
        if held > 0:
            time.sleep(held)
            tally.waited_s += held

    def _hold(self, seconds: float) -> None:
        with self.lock:
            self.hold_until = max(self.hold_until, time.monotonic() + seconds)

    def call(self, request: Callable[[], T], tally: Tally) -> T:
        """``request()`` paced, retried while its failure is retriable; the last failure is raised
        (classify it with :func:`failure_of`)."""
        s, attempt = self.settings, 0
        while True:
            self._admit(tally)
            tally.sent()
            try:
                return request()
            except Exception as exc:
                failure = failure_of(exc)
                tally.rate_limited += failure.rate_limited
                if not failure.retriable or attempt + 1 >= s.retry_attempts:
                    raise
                wait = backoff_seconds(attempt, s.retry_backoff, s.retry_max_wait, failure.retry_after)
                if failure.rate_limited:  # the whole process waits what the site asked, not only this request
                    self._hold(wait)
                tally.retries, tally.waited_s, attempt = tally.retries + 1, tally.waited_s + wait, attempt + 1
                time.sleep(wait)


_pacers: dict[tuple[str, ClientSettings], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer(stage: str, settings: ClientSettings) -> Pacer:
    """This process's pacer of ``stage`` (``search`` or ``download``): shared by all its DoFn
    instances and threads."""
    per_hour = settings.max_searches_per_hour if stage == "search" else 0.0  # downloads: per session, fleet-wide
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


def session(stage: str, settings: ClientSettings, identity: "SiteSession | None" = None) -> Session:
    """A fresh tally on this process's pacer of ``stage``, with the yt-dlp params of ``identity``
    (default: the first session of the settings)."""
    return Session(pacer(stage, settings), ydl_params(settings, identity), Tally(stage))


# -- sessions -------------------------------------------------------------------------------------

SESSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SESSION_COLUMNS = ("name", "proxy", "cookies", "per_hour")


@dataclass(frozen=True)
class SiteSession:
    """One identity the site rate-limits: a proxy (its IP), a cookies file (an account), or this
    machine's own IP. Its ``name`` is all that logs, the audit and the report ever show of it."""

    name: str
    proxy: str | None = None
    cookies: str | None = None
    per_hour: float = 0.0  # 0: unlimited

    @property
    def interval(self) -> float:
        """Seconds between two requests of this session (0: no limit)."""
        return 3600.0 / self.per_hour if self.per_hour > 0 else 0.0

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in (("proxy", self.proxy), ("cookiefile", self.cookies)) if v}

    def secrets(self) -> tuple[str, ...]:
        return proxy_secrets(self.proxy) + cookie_values(self.cookies)


def read_sessions(settings: ClientSettings) -> tuple[SiteSession, ...]:
    """The sessions downloads are spread over: ``--sessions`` (a csv/tsv with a header naming some of
    name, proxy, cookies, per_hour; an empty cell takes ``--cookies`` / ``--max-downloads-per-hour``),
    else one per ``--proxy`` entry, else this machine's own IP. One-line errors for a bad table."""
    budget = settings.max_downloads_per_hour
    if not settings.sessions:
        proxies = [p.strip() for p in (settings.proxy or "").split(",") if p.strip()] or [None]
        return tuple(SiteSession(f"proxy{i + 1}" if proxy else "local", proxy, settings.cookies, budget)
                     for i, proxy in enumerate(proxies))
    import csv

    path = settings.sessions
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise UserError(f"--sessions {path}: {exc.strerror}") from None
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if "\t" in text.split("\n", 1)[0] else ","))
    unknown = set(rows[0] if rows else ()) - set(SESSION_COLUMNS)
    if not rows or unknown:
        raise UserError(f"--sessions {path}: expected a header of {', '.join(SESSION_COLUMNS)} and one row per session"
                        + (f" (unknown column {sorted(unknown)[0]!r})" if unknown else ""))
    sessions = []
    for n, row in enumerate(rows, start=2):
        cell = {k: (v or "").strip() for k, v in row.items() if k}
        name = cell.get("name") or f"session{n - 1}"
        try:
            per_hour = float(cell.get("per_hour") or budget)
        except ValueError:
            per_hour = -1.0
        if per_hour < 0:
            raise UserError(f"--sessions {path} line {n}: per_hour must be a number >= 0")
        if not SESSION_NAME.fullmatch(name) or name in {s.name for s in sessions}:
            raise UserError(f"--sessions {path} line {n}: name must be unique letters, digits, '.', '_' or '-'")
        cookies = cell.get("cookies") or settings.cookies
        if cookies and not os.path.isfile(cookies):
            raise UserError(f"--sessions {path} line {n}: cookies file not found")  # the path itself may be telling
        sessions.append(SiteSession(name, cell.get("proxy") or None, cookies, per_hour))
    return tuple(sessions)


def home_session(identity: str, sessions: tuple[SiteSession, ...], parked: frozenset[str] = frozenset(),
                 turn: int = 0) -> SiteSession:
    """The session that downloads a video: spread by a hash of the video (the same on every worker,
    unlike a pid), skipping ``parked`` ones while any other is free; ``turn`` > 0 moves the video on
    to the next free sessions (its first session was parked)."""
    import zlib

    free = [s for s in sessions if s.name not in parked] or list(sessions)
    return free[(zlib.crc32(identity.encode("utf-8", "surrogateescape")) + turn) % len(free)]


def jittered(interval: float, jitter: float, draw: float) -> float:
    """The gap before a session's next request: ``interval`` stretched by up to ``jitter`` (``draw``
    in [0, 1)); never shorter, so the budget holds, and never the same twice, so it looks less like a bot."""
    return interval * (1.0 + jitter * draw)


def breaker_trips(recent: list[str | None], window: int, share: float) -> str | None:
    """The failure kind that fills at least ``share`` of the last ``window`` downloads (None: a
    success), or None: the circuit breaker's rule. Only kinds with advice count (they say the set-up
    is wrong, not the video)."""
    if len(recent) < window:
        return None
    last = recent[-window:]
    for kind in set(last) - {None}:
        if _BY_KIND.get(kind, status_rule(int(kind[5:])) if kind.startswith("http_") else UNKNOWN).advice \
                and last.count(kind) >= share * window:
            return kind
    return None


class CircuitOpen(UserError):
    """Most recent downloads failed alike: the run stops, writing nothing off, and says what to do."""

    MARK, END = "videonet-circuit-open: ", " (circuit breaker)"

    @classmethod
    def of(cls, failure: Failure, count: int, window: int, session: str) -> "CircuitOpen":
        return cls(f"{cls.MARK}stopped: {count} of the last {window} downloads of session {session} failed with "
                   f"{failure.kind} ({failure.reason[:120]}); {failure.advice}. Nothing was written off: rerun the "
                   f"same command when fixed.{cls.END}")

    @classmethod
    def found_in(cls, text: str) -> "CircuitOpen | None":
        """The breaker's line inside a runner's wrapped error (Beam re-raises a DoFn's exception as text)."""
        match = re.search(re.escape(cls.MARK) + "(.*?)" + re.escape(cls.END), text, re.S)
        return cls(match.group(1).replace("\\'", "'") + cls.END) if match else None


@dataclass(frozen=True)
class Standing:
    """A session's standing, shared by every worker and the next run: when it was parked until after a
    rate-limit signal (and why), and its next free slot (so that the passes of the download stage,
    each with state of its own, still share one clock per session)."""

    until: float = 0.0  # epoch seconds
    kind: str = ""
    next_free: float = 0.0

    def merged(self, other: "Standing") -> "Standing":
        later = self if self.until >= other.until else other
        return Standing(later.until, later.kind, max(self.next_free, other.next_free))


class SessionLedger:
    """The sessions' standings: one small JSON file per session under ``directory`` (any Beam
    filesystem), read at most every ``ttl`` seconds, plus this process's own writes at once.

    The slot of a session's next request is reserved here under a process lock, on top of the
    stateful DoFn's state: a runner may run bundles of one key side by side in threads of one process
    (the local runner with several workers does), and the state's read-modify-write alone would let
    two of them take the same slot. Across processes the runner's key serialization does it.
    """

    _lock = threading.Lock()
    _mine: dict[tuple[str, str], Standing] = {}  # (directory, session): this process's latest word

    def __init__(self, directory: str, ttl: float = 5.0):
        self.directory, self.ttl = directory.rstrip("/"), ttl
        self.cache: tuple[float, dict[str, Standing]] | None = None

    def _read(self) -> dict[str, Standing]:
        from apache_beam.io.filesystems import FileSystems

        if self.cache is None or time.monotonic() - self.cache[0] > self.ttl:
            book = {}
            if FileSystems.exists(self.directory):
                for meta in FileSystems.match([f"{self.directory}/*.json"])[0].metadata_list:
                    with FileSystems.open(meta.path) as fh:
                        book[os.path.basename(meta.path)[:-5]] = Standing(**json.loads(fh.read()))
            self.cache = (time.monotonic(), book)
        book = dict(self.cache[1])
        for (directory, name), standing in list(self._mine.items()):
            if directory == self.directory:
                book[name] = standing.merged(book.get(name, Standing()))
        return book

    def _write(self, name: str, standing: Standing) -> None:
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(self.directory):
            FileSystems.mkdirs(self.directory)
        path = f"{self.directory}/{name}.json"
        with FileSystems.create(f"{path}.{os.getpid()}.{threading.get_ident()}.tmp") as fh:
            fh.write(json.dumps(asdict(standing)).encode())
        FileSystems.rename([f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"], [path])

    def _fresh(self, name: str) -> Standing:
        """The session's standing from its file now, with this process's own word."""
        from apache_beam.io.filesystems import FileSystems

        path, standing = f"{self.directory}/{name}.json", Standing()
        if FileSystems.exists(path):
            with FileSystems.open(path) as fh:
                standing = Standing(**json.loads(fh.read()))
        return standing.merged(self._mine.get((self.directory, name), Standing()))

    def standing(self, name: str) -> Standing:
        return self._read().get(name, Standing())

    def park(self, name: str, until: float, kind: str) -> None:
        with self._lock:
            standing = self.standing(name)
            standing = Standing(max(until, standing.until), kind, standing.next_free)
            self._mine[self.directory, name] = standing
        self._write(name, standing)

    def reserve(self, name: str, earliest: float, gap: float) -> float:
        """The time of the session's next request, at or after ``earliest`` and its next free slot; the
        slot after it is ``gap`` later. The session's file is read afresh: another process may have
        taken a slot since."""
        with self._lock:
            standing = self._fresh(name)
            slot = max(time.time(), earliest, standing.next_free)
            standing = Standing(standing.until, standing.kind, slot + gap)
            self._mine[self.directory, name] = standing
        if gap:
            self._write(name, standing)
        return slot

    def hold(self, name: str, until: float) -> None:
        """No request of the session before ``until`` (a stated wait, a backoff)."""
        with self._lock:
            standing = self.standing(name)
            standing = Standing(standing.until, standing.kind, max(standing.next_free, until))
            self._mine[self.directory, name] = standing
        self._write(name, standing)

    def parked(self, now: float | None = None) -> dict[str, Standing]:
        """The sessions parked at ``now``."""
        now = time.time() if now is None else now
        return {name: s for name, s in self._read().items() if s.until > now}
